//! Pharmacovigilance case files: one adverse event (the links of the treatment page's events)
//! or the events of a period (this section's form), as an ICH E2B(R3) message to send or case
//! sheets to read and print. The request is the contract's `ExportAdverseEventsRequest`, parsed
//! by its parser; the export is the application's operation (scope, audit).

use askama::Template;
use axum::{
    extract::{Query, State},
    http::{HeaderValue, StatusCode, header},
    response::Response,
};
use observatory_proto::v1 as pb;

use super::{Page, http_status, refused, render};
use crate::{
    Signed, Web,
    form::{Fields, FormState},
    op,
};

/// Most cases one file of the web front holds (ten pages of the operation).
const MAX_WEB_CASES: usize = 1000;

#[derive(Template)]
#[template(path = "cases.html")]
struct CasesPage {
    page: Page,
    form: FormState,
    formats: Vec<(String, String)>,
    languages: Vec<(String, String)>,
}

fn page(signed: &Signed, form: FormState, status: StatusCode) -> Response {
    let lang = signed.lang;
    let mut r = render(&CasesPage {
        page: signed.page(lang.t("cases.title")),
        form,
        formats: vec![
            ("html".to_owned(), lang.t("cases.format_html").to_owned()),
            ("e2b".to_owned(), lang.t("cases.format_e2b").to_owned()),
        ],
        languages: vec![
            ("fr".to_owned(), "Français".to_owned()),
            ("en".to_owned(), "English".to_owned()),
        ],
    });
    *r.status_mut() = status;
    r
}

/// The section's page: with no query, the period form; with one (`event`, or `period.from` and
/// `period.to`), the case file, or the form again with its errors by field.
pub async fn show(State(web): State<Web>, signed: Signed, Query(query): Query<Vec<(String, String)>>) -> Response {
    if query.len() > crate::form::MAX_FIELDS {
        return super::failure_for(&signed, StatusCode::PAYLOAD_TOO_LARGE, signed.lang.t("error.bad_form"));
    }
    let fields = Fields::new(query);
    if fields.get("event").is_empty() && fields.get("period.from").is_empty() && fields.get("period.to").is_empty() {
        let defaults = FormState::with(&[
            ("format", "html".to_owned()),
            ("language", signed.lang.code().to_owned()),
        ]);
        return page(&signed, defaults, StatusCode::OK);
    }
    let f = &fields;
    let selection = if f.get("event").is_empty() {
        pb::export_adverse_events_request::Selection::Period(pb::CasePeriod {
            from: f.get("period.from").to_owned(),
            to: f.get("period.to").to_owned(),
            serious_only: f.ticked("period.serious_only"),
        })
    } else {
        pb::export_adverse_events_request::Selection::AdverseEventId(f.get("event").to_owned())
    };
    let language = match f.get("language") {
        "" => signed.lang.code().to_owned(),
        other => other.to_owned(),
    };
    let request = pb::ExportAdverseEventsRequest {
        selection: Some(selection),
        format: match f.get("format") {
            "e2b" => pb::CaseFormat::E2bXml as i32,
            "html" | "" => pb::CaseFormat::Html as i32,
            _ => -1,
        },
        language,
        page: Some(pb::PageRequest {
            page_size: 0,
            page_token: String::new(),
        }),
    };
    let asked = match observatory_grpc::parse::parse_case_export(&request) {
        Ok(a) => a,
        Err(status) => {
            let form = FormState::refused(&fields, &status, signed.lang);
            return page(&signed, form, http_status(&status));
        }
    };
    // A period's pages gathered into one file, up to a bound: past it, the period is split (or
    // exported with the command line, or page by page over gRPC).
    let call = signed.call(op("ExportAdverseEvents"));
    let mut page_request = asked.page.clone();
    let mut file: Option<observatory_app::cases::CaseFile> = None;
    loop {
        let part = match observatory_app::cases::export_cases(web.app(), &call, &asked.selection, &page_request).await {
            Ok(part) => part,
            Err(e) => return refused(&signed, e),
        };
        let next = part.next_page_token.clone();
        let total = match &mut file {
            None => {
                file = Some(part);
                file.as_ref().map_or(0, |f| f.cases.len())
            }
            Some(all) => {
                all.cases.extend(part.cases);
                all.cases.len()
            }
        };
        match next {
            None => break,
            Some(_) if total >= MAX_WEB_CASES => {
                let mut form = FormState::refused(
                    &fields,
                    &tonic::Status::failed_precondition("too many cases"),
                    signed.lang,
                );
                form.message = Some(signed.lang.t("cases.too_many").to_owned());
                return page(&signed, form, StatusCode::UNPROCESSABLE_ENTITY);
            }
            Some(token) => page_request.token = Some(token),
        }
    }
    let Some(mut file) = file else {
        return super::failure_for(
            &signed,
            StatusCode::INTERNAL_SERVER_ERROR,
            signed.lang.t("error.internal"),
        );
    };
    file.next_page_token = None;
    let (content, content_type, extension) = asked.format.render(&file, asked.lang);
    let name = observatory_grpc::parse::case_file_name(&asked.selection, &file, extension);
    let mut r = Response::new(axum::body::Body::from(content));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if extension == "html" {
        // Shown in the browser to read or print: no script, its own inline style only.
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
        );
    } else if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}
