//! The pages: each handler parses its request, calls one or more operations of the
//! application layer as the signed-in caller, and renders a template.

pub mod admin;
pub mod auth;
pub mod cases;
pub mod episode_corrections;
pub mod episodes;
pub mod history;
pub mod patients;
pub mod reference;
pub mod reports;
pub mod worklist;

use askama::Template;
use axum::{
    extract::{Path, Request},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{Html, IntoResponse, Redirect, Response},
};
use observatory_domain::access::Role;
use tonic::Code;

use crate::{Signed, i18n::Lang};

/// What every page's layout shows: language, title, who is signed in, the sections of its
/// role, the CSRF secret its forms carry.
#[derive(Debug, Clone)]
pub struct Page {
    pub lang: Lang,
    pub title: String,
    pub csrf: String,
    pub signed_in: bool,
    pub who: String,
    pub nav: Vec<(&'static str, &'static str, bool)>,
    /// Where the language switch comes back to.
    pub here: String,
}

/// The sections of a role: `(path, label key)`.
fn sections(role: Role) -> Vec<(&'static str, &'static str)> {
    let mut s = Vec::new();
    if matches!(role, Role::Prescriber | Role::DataManager | Role::Partner) {
        s.push(("/patients", "nav.patients"));
        s.push(("/worklist", "nav.worklist"));
        s.push(("/cases", "nav.cases"));
    }
    if matches!(role, Role::Analyst | Role::NationalAnalyst | Role::DataManager) {
        s.push(("/reports", "nav.reports"));
    }
    if role == Role::DataManager {
        s.push(("/cohorts", "nav.cohorts"));
    }
    if reference::reads_reference(role) {
        s.push(("/centres", "nav.centres"));
        s.push(("/frameworks", "nav.frameworks"));
    } else if matches!(role, Role::Analyst | Role::NationalAnalyst) {
        // Where a framework's periodic synthesis is written.
        s.push(("/frameworks", "nav.frameworks"));
    }
    if role == Role::Admin {
        s.push(("/admin/tokens", "nav.tokens"));
        s.push(("/admin/audit", "nav.audit"));
        s.push(("/admin/reference", "nav.reference"));
    }
    s
}

impl Page {
    pub fn signed(signed: &Signed, title: &str) -> Self {
        let p = &signed.principal;
        let mut scope: Vec<String> = p.scope.centres().iter().map(|c| c.as_str().to_owned()).collect();
        scope.extend(p.scope.filieres().iter().map(|f| f.as_str().to_owned()));
        let role = crate::labels::label(signed.lang, "role", p.role.code());
        let who = if scope.is_empty() {
            role
        } else {
            format!("{role} · {}", scope.join(", "))
        };
        let section = signed.here.split(['?', '/']).nth(1).unwrap_or_default();
        Self {
            lang: signed.lang,
            title: title.to_owned(),
            csrf: signed.session.csrf.clone(),
            signed_in: true,
            who,
            nav: sections(p.role)
                .into_iter()
                .map(|(path, key)| (path, signed.lang.t(key), path.trim_start_matches('/') == section))
                .collect(),
            here: encode(&signed.here),
        }
    }

    /// The layout of a page with nobody signed in.
    pub fn anonymous(lang: Lang, title: &str, here: &str) -> Self {
        Self {
            lang,
            title: title.to_owned(),
            csrf: String::new(),
            signed_in: false,
            who: String::new(),
            nav: Vec::new(),
            here: encode(here),
        }
    }

    pub fn t<'a>(&self, key: &'a str) -> &'a str {
        self.lang.t(key)
    }

    /// The label of a coded value.
    pub fn label(&self, prefix: &str, code: &str) -> String {
        crate::labels::label(self.lang, prefix, code)
    }

    pub fn other_lang(&self) -> &'static str {
        self.lang.other().code()
    }
}

/// Percent-encodes a path and query for a query parameter.
pub fn encode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A local path to come back to, never another site's (`//host`, `https://...`).
pub fn local_path(raw: &str) -> Option<&str> {
    (raw.starts_with('/') && !raw.starts_with("//") && !raw.contains('\\') && raw.len() <= 512).then_some(raw)
}

pub fn render<T: Template>(template: &T) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a page did not render");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error; it has been logged").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    page: Page,
    message: &'a str,
}

/// A page that says why a request was refused.
pub fn failure(lang: Lang, status: StatusCode, message: &str) -> Response {
    let page = Page::anonymous(lang, lang.t("error.title"), "/");
    let mut r = render(&ErrorPage { page, message });
    *r.status_mut() = status;
    r
}

/// The same, with the header of a signed-in caller.
pub fn failure_for(signed: &Signed, status: StatusCode, message: &str) -> Response {
    let page = signed.page(signed.lang.t("error.title"));
    let mut r = render(&ErrorPage { page, message });
    *r.status_mut() = status;
    r
}

/// What a refusal of the application layer tells the reader. Records outside the caller's
/// scope and records that do not exist get the same words, as over gRPC.
pub fn explain(lang: Lang, status: &tonic::Status) -> String {
    match status.code() {
        Code::NotFound | Code::PermissionDenied => lang.t("error.not_found").to_owned(),
        Code::Unavailable => lang.t("error.unavailable").to_owned(),
        Code::ResourceExhausted => lang.t("error.exhausted").to_owned(),
        Code::Aborted => lang.t("error.stale").to_owned(),
        Code::FailedPrecondition | Code::AlreadyExists | Code::InvalidArgument => {
            format!("{} {}", lang.t("error.refused"), status.message())
        }
        _ => lang.t("error.internal").to_owned(),
    }
}

/// The HTTP status of a refusal.
pub fn http_status(status: &tonic::Status) -> StatusCode {
    match status.code() {
        Code::NotFound | Code::PermissionDenied => StatusCode::NOT_FOUND,
        Code::InvalidArgument => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The page of an operation's refusal.
pub fn refused(signed: &Signed, e: observatory_app::AppError) -> Response {
    let status = observatory_grpc::error::app(e);
    failure_for(signed, http_status(&status), &explain(signed.lang, &status))
}

/// The start page: the first section of the caller's role, or the sign-in page.
pub async fn home(signed: Result<Signed, Response>) -> Response {
    match signed {
        Ok(s) => match sections(s.role()).first() {
            Some((path, _)) => Redirect::to(path).into_response(),
            None => {
                let page = s.page(s.lang.t("home.title"));
                render(&Home { page })
            }
        },
        Err(_) => Redirect::to("/sign-in").into_response(),
    }
}

#[derive(Template)]
#[template(path = "home.html")]
struct Home {
    page: Page,
}

pub async fn not_found(req: Request) -> Response {
    let lang = crate::lang_of(req.headers());
    failure(lang, StatusCode::NOT_FOUND, lang.t("error.no_page"))
}

const STYLE: &str = include_str!("../../static/style.css");

/// The files the pages need, embedded in the binary: nothing is fetched from elsewhere.
pub async fn static_file(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "style.css" => (
            [
                (header::CONTENT_TYPE, "text/css; charset=utf-8"),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            STYLE,
        )
            .into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Headers of every answer: no script or style from elsewhere, no framing, no sniffing, no
/// referrer sent to other sites (same-origin: with none at all, browsers send `Origin: null`
/// with forms, which the CSRF check refuses), and no caching of pages that hold patient data.
pub async fn headers(req: Request, next: Next) -> Response {
    use tracing::Instrument;
    let is_static = req.uri().path().starts_with("/static/");
    // One span per page, named by its route's template (`/patients/{id}`), never by the path
    // itself, which holds record ids; the caller's query and form are never recorded.
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("_OTHER", |p| p.as_str())
        .to_owned();
    let span = tracing::info_span!(
        "web.request",
        otel.name = %format!("{} {route}", req.method()),
        otel.kind = "server",
        http.request.method = %req.method(),
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    let mut r = next.run(req).instrument(span.clone()).await;
    span.record("http.response.status_code", r.status().as_u16());
    let h = r.headers_mut();
    // A page may set its own (the published HTML report, with its inline style).
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !is_static {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

/// A coded value of a form (`FEMALE`) as the contract's enum number (`SEX_FEMALE`): 0 when
/// empty (unspecified, which the parser reports as required where it is), an unknown number
/// when it names no value (which the parser reports as unknown).
pub fn pb_enum<E: Into<i32>>(code: &str, prefix: &str, from: fn(&str) -> Option<E>) -> i32 {
    if code.is_empty() {
        return 0;
    }
    from(&format!("{prefix}{code}")).map_or(i32::MAX, Into::into)
}

/// A number typed in a form, with a decimal comma or point; not a number when it is none
/// (which the parser reports as out of range).
pub fn number(raw: &str) -> f64 {
    raw.trim().replace(',', ".").parse().unwrap_or(f64::NAN)
}

/// A date as the reader's language writes it, or empty.
pub fn date_opt(lang: Lang, d: Option<chrono::NaiveDate>) -> String {
    d.map(|d| lang.date(d)).unwrap_or_default()
}

/// The short form of a pseudonym for lists: an IdMR whole, a keyed pseudonym's first 12 digits.
pub fn short_pseudonym(p: &observatory_domain::model::Pseudonym) -> String {
    match p.kind {
        observatory_domain::model::PseudonymKind::IdMr => p.value.clone(),
        observatory_domain::model::PseudonymKind::Hmac => format!("{}…", &p.value[..p.value.len().min(12)]),
    }
}

/// Today, for the default of date fields.
pub fn today() -> String {
    chrono::Utc::now().date_naive().to_string()
}

/// The regions of the shipped list, as `(code, name)` options.
pub fn regions() -> Vec<(String, String)> {
    observatory_domain::reference::regions()
        .map(|(c, n)| (c.to_owned(), n.to_owned()))
        .collect()
}

/// What a form left empty stays as it is.
pub(super) fn some(raw: &str) -> Option<String> {
    (!raw.is_empty()).then(|| raw.to_owned())
}
