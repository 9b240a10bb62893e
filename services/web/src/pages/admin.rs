//! The admin's pages: access tokens (create, list, revoke), the audit trail (verify, export)
//! and the reference releases.

use askama::Template;
use axum::{
    body::Body,
    extract::{Path, Query, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use chrono::{NaiveDate, Utc};
use observatory_app::{audit as audit_ops, reference as reference_ops, tokens as ops};
use observatory_domain::{
    access::Role,
    catalogue::EntryKind,
    codes::{Filiere, Finess},
};
use serde::Deserialize;

use super::{Page, refused, render};
use crate::{Posted, Signed, Web, form::FormState, op};

/// One token, as the list shows it (never its secret, which is not kept).
pub struct TokenRow {
    pub id: String,
    pub role: String,
    pub scope: String,
    pub created: String,
    pub created_by: String,
    pub expires: String,
    pub state: String,
    pub live: bool,
}

#[derive(Template)]
#[template(path = "admin_tokens.html")]
struct Tokens {
    page: Page,
    rows: Vec<TokenRow>,
    form: FormState,
    roles: Vec<(String, String)>,
    /// The secret of the token just created: shown once, in this answer only.
    created: Option<(String, String)>,
    /// A second submission of a form that already made this token.
    replayed: Option<String>,
}

async fn tokens_page(
    web: &Web,
    signed: &Signed,
    form: FormState,
    created: Option<(String, String)>,
    replayed: Option<String>,
    status: StatusCode,
) -> Response {
    let lang = signed.lang;
    let tokens = match ops::list_tokens(&web.app().store, &signed.call(op("ListTokens"))).await {
        Ok(t) => t,
        Err(e) => return refused(signed, e),
    };
    let now = Utc::now();
    let mut rows: Vec<TokenRow> = tokens
        .iter()
        .map(|r| {
            let t = &r.token;
            let mut scope: Vec<String> = t.scope.centres().iter().map(|c| c.as_str().to_owned()).collect();
            scope.extend(t.scope.filieres().iter().map(|f| f.as_str().to_owned()));
            let (state, live) = match (&r.revocation, t.expires_at) {
                (Some(rv), _) => (
                    format!("{} {}", lang.t("admin.revoked"), lang.instant(rv.revoked_at)),
                    false,
                ),
                (None, Some(e)) if e <= now => (lang.t("admin.expired").to_owned(), false),
                _ => (lang.t("admin.active").to_owned(), true),
            };
            TokenRow {
                id: t.id.clone(),
                role: crate::labels::label(lang, "role", t.role.code()),
                scope: scope.join(", "),
                created: lang.instant(t.created_at),
                created_by: t.created_by.clone(),
                expires: t
                    .expires_at
                    .map_or_else(|| lang.t("admin.never").to_owned(), |e| lang.instant(e)),
                state,
                live,
            }
        })
        .collect();
    rows.reverse();
    let mut r = render(&Tokens {
        page: signed.page(lang.t("admin.tokens_title")),
        rows,
        form,
        roles: Role::ALL
            .iter()
            .map(|r| (r.code().to_owned(), crate::labels::label(lang, "role", r.code())))
            .collect(),
        created,
        replayed,
    });
    *r.status_mut() = status;
    r
}

pub async fn tokens(State(web): State<Web>, signed: Signed) -> Response {
    let form = FormState::with(&[("expires_days", "90".to_owned())]);
    tokens_page(&web, &signed, form, None, None, StatusCode::OK).await
}

/// The token a form asks for; every fault named by its field.
fn token_request(f: &crate::form::Fields) -> Result<ops::TokenRequest, observatory_domain::Violations> {
    let mut v = observatory_domain::Violations::new();
    let role = Role::ALL.iter().copied().find(|r| r.code() == f.get("role"));
    if role.is_none() {
        v.push("role", "REQUIRED", "choose a role");
    }
    let list = |raw: &str| -> Vec<String> {
        raw.split([',', ' ', ';'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let mut centres = Vec::new();
    for c in list(f.get("centres")).into_iter().take(50) {
        match Finess::parse(&c) {
            Ok(x) => centres.push(x),
            Err(e) => v.push("centres", e.reason, e.description),
        }
    }
    let mut filieres = Vec::new();
    for x in list(f.get("filieres")).into_iter().take(30) {
        match Filiere::parse(&x) {
            Ok(x) => filieres.push(x),
            Err(e) => v.push("filieres", e.reason, e.description),
        }
    }
    let expires_at = match f.get("expires_days") {
        "" | "never" => None,
        raw => match raw.parse::<i64>() {
            Ok(d) if (1..=3660).contains(&d) => Some(Utc::now() + chrono::Duration::days(d)),
            _ => {
                v.push(
                    "expires_days",
                    "OUT_OF_RANGE",
                    "must be 1 to 3660 days, or empty for never",
                );
                None
            }
        },
    };
    v.into_result().map_err(|e| match e {
        observatory_domain::DomainError::Invalid(v) => v,
        _ => observatory_domain::Violations::new(),
    })?;
    Ok(ops::TokenRequest {
        role: role.unwrap_or(Role::Analyst),
        centres,
        filieres,
        expires_at,
        client_subject: None,
    })
}

pub async fn create_token(State(web): State<Web>, posted: Posted) -> Response {
    let Posted { signed, fields } = posted;
    let fresh = || FormState::with(&[("expires_days", "90".to_owned())]);
    let key = fields.get("idempotency_key").to_owned();
    if let Err(e) = observatory_grpc::convert::idempotency_key(&key) {
        let status = observatory_grpc::error::invalid_field("idempotency_key", e.reason, &e.description);
        let form = FormState::refused(&fields, &status, signed.lang);
        return tokens_page(&web, &signed, form, None, None, StatusCode::BAD_REQUEST).await;
    }
    // A second submission of the same form (a double click, a reload) makes no second token.
    if let crate::TokenKey::Used(id) = web.claim_token_key(&key) {
        return tokens_page(&web, &signed, fresh(), None, Some(id), StatusCode::OK).await;
    }
    let outcome = match token_request(&fields) {
        Err(v) => Err(observatory_grpc::error::invalid(&v)),
        Ok(request) => ops::create_token(&web.app().store, &signed.call(op("CreateToken")), request)
            .await
            .map_err(observatory_grpc::error::app),
    };
    match outcome {
        Ok((token, secret)) => {
            web.settle_token_key(&key, Some(&token.id));
            tokens_page(&web, &signed, fresh(), Some((token.id, secret)), None, StatusCode::OK).await
        }
        Err(status) => {
            web.settle_token_key(&key, None);
            let form = FormState::refused(&fields, &status, signed.lang);
            tokens_page(&web, &signed, form, None, None, super::http_status(&status)).await
        }
    }
}

/// Revokes a token; its web sessions close at once (its gRPC calls are refused from now on).
pub async fn revoke_token(State(web): State<Web>, Path(id): Path<String>, posted: Posted) -> Response {
    let signed = posted.signed;
    if id.len() > 64 {
        return super::failure_for(&signed, StatusCode::NOT_FOUND, signed.lang.t("error.not_found"));
    }
    match ops::revoke_token(&web.app().store, &signed.call(op("RevokeToken")), &id).await {
        Ok(()) => {
            web.sessions().close_token(&id);
            Redirect::to("/admin/tokens").into_response()
        }
        Err(e) => refused(&signed, e),
    }
}

#[derive(Template)]
#[template(path = "admin_audit.html")]
struct Audit {
    page: Page,
    verified: Option<Verified>,
    from: String,
    to: String,
}

pub struct Verified {
    pub intact: bool,
    pub events: u64,
    pub keyed: u64,
    pub versions_checked: u64,
    pub versions_without_event: u64,
    pub head: String,
    pub problem: String,
}

fn audit_page(signed: &Signed, verified: Option<Verified>) -> Response {
    let today = Utc::now().date_naive();
    render(&Audit {
        page: signed.page(signed.lang.t("admin.audit_title")),
        verified,
        from: (today - chrono::Duration::days(30)).to_string(),
        to: today.to_string(),
    })
}

pub async fn audit(signed: Signed) -> Response {
    audit_page(&signed, None)
}

pub async fn verify(State(web): State<Web>, posted: Posted) -> Response {
    let signed = posted.signed;
    match audit_ops::verify(web.app(), &signed.call(op("VerifyAudit")), None).await {
        Ok(v) => audit_page(
            &signed,
            Some(Verified {
                intact: v.broken.is_none(),
                events: v.events,
                keyed: v.keyed,
                versions_checked: v.versions_checked,
                versions_without_event: v.versions_without_event,
                head: v.head.map(|(seq, hash)| format!("{seq}:{hash}")).unwrap_or_default(),
                problem: v
                    .broken
                    .map(|b| format!("{} (seq {})", b.problem, b.seq))
                    .unwrap_or_default(),
            }),
        ),
        Err(e) => refused(&signed, e),
    }
}

#[derive(Debug, Deserialize)]
pub struct ExportQuery {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

/// Events per read of an export.
const EXPORT_BATCH: i64 = 1000;

/// The trail of a period, as JSON lines (the format of `observatory audit export`), streamed
/// in batches: memory stays bounded whatever the period. The export is itself recorded.
pub async fn export(State(web): State<Web>, signed: Signed, Query(q): Query<ExportQuery>) -> Response {
    let day = |raw: &str| NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok();
    let (Some(from), Some(to)) = (day(&q.from), day(&q.to)) else {
        return super::failure_for(&signed, StatusCode::BAD_REQUEST, signed.lang.t("admin.bad_period"));
    };
    if to < from {
        return super::failure_for(&signed, StatusCode::BAD_REQUEST, signed.lang.t("admin.bad_period"));
    }
    let (from, to) = (
        from.and_hms_opt(0, 0, 0).map(|t| t.and_utc()),
        (to + chrono::Days::new(1)).and_hms_opt(0, 0, 0).map(|t| t.and_utc()),
    );
    let (Some(from), Some(to)) = (from, to) else {
        return super::failure_for(&signed, StatusCode::BAD_REQUEST, signed.lang.t("admin.bad_period"));
    };
    let call = signed.call(op("ExportAudit"));
    // The first batch before answering: a refusal is a page, not a broken download.
    let first = match audit_ops::export(web.app(), &call, from, to, 0, EXPORT_BATCH).await {
        Ok(events) => events,
        Err(e) => return refused(&signed, e),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let app = web.app().clone();
    tokio::spawn(async move {
        let mut batch = first;
        loop {
            let mut bytes = Vec::new();
            for e in &batch {
                if let Ok(line) = serde_json::to_vec(e) {
                    bytes.extend(line);
                    bytes.push(b'\n');
                }
            }
            if tx.send(Ok(bytes)).await.is_err() {
                return;
            }
            let Some(last) = batch.last().map(|e| e.seq) else {
                return;
            };
            if (batch.len() as i64) < EXPORT_BATCH {
                return;
            }
            batch = match audit_ops::export(&app, &call, from, to, last, EXPORT_BATCH).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "an audit export stopped");
                    let _ = tx.send(Err(std::io::Error::other("the export stopped"))).await;
                    return;
                }
            };
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    let mut r = Response::new(Body::from_stream(stream));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"audit_{}_{}.jsonl\"", q.from, q.to)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// One reference release, as the admin's page lists it.
pub struct ReleaseRow {
    pub seq: i64,
    pub source: String,
    pub version: String,
    pub date: String,
    pub counts: String,
    pub files: Vec<String>,
    pub sha256: String,
    pub imported: String,
    pub by: String,
    pub in_force: String,
}

#[derive(Template)]
#[template(path = "admin_reference.html")]
struct Reference {
    page: Page,
    rows: Vec<ReleaseRow>,
}

/// The reference releases recorded, oldest first, and the kinds each is in force for.
pub async fn reference(State(web): State<Web>, signed: Signed) -> Response {
    let lang = signed.lang;
    let releases = match reference_ops::list_releases(web.app(), &signed.call(op("ListReferenceReleases"))).await {
        Ok(r) => r,
        Err(e) => return refused(&signed, e),
    };
    let in_force = observatory_domain::catalogue::in_force_for(&releases);
    let label = |prefix, code| crate::labels::label(lang, prefix, code);
    let rows = releases
        .iter()
        .map(|r| {
            let kinds: Vec<String> = in_force
                .get(&r.seq)
                .into_iter()
                .flatten()
                .map(|k| label("entry_kind", k.code()))
                .collect();
            // "Diseases (ORPHA) 10 (2 retired)", kind by kind.
            let counts: Vec<String> = EntryKind::ALL
                .iter()
                .filter_map(|k| {
                    let n = r.counts.get(k.code()).copied().unwrap_or(0);
                    let retired = r.counts.get(&format!("{}_RETIRED", k.code())).copied().unwrap_or(0);
                    (n + retired > 0).then(|| {
                        let mut text = format!("{} {}", label("entry_kind", k.code()), lang.count(n));
                        if retired > 0 {
                            text.push_str(&format!(
                                " ({} {})",
                                lang.count(retired),
                                lang.t("admin.release_retired")
                            ));
                        }
                        text
                    })
                })
                .collect();
            ReleaseRow {
                seq: r.seq,
                source: label("reference_source", r.source.code()),
                version: r.version.clone(),
                date: r.release_date.map(|d| lang.date(d)).unwrap_or_default(),
                counts: counts.join(" · "),
                files: r.files.iter().map(|f| f.name.clone()).collect(),
                sha256: r.sha256.clone(),
                imported: lang.instant(r.imported_at),
                by: r.imported_by.clone(),
                in_force: if kinds.is_empty() {
                    lang.t("admin.release_superseded").to_owned()
                } else {
                    kinds.join(", ")
                },
            }
        })
        .collect();
    render(&Reference {
        page: signed.page(lang.t("admin.reference_title")),
        rows,
    })
}
