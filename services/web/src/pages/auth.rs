//! Sign-in, sign-out and the language switch.

use askama::Template;
use axum::{
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use chrono::Utc;
use observatory_store::audit::AuditEntry;
use serde::Deserialize;

use super::{Page, local_path, render};
use crate::{
    Posted, Web,
    form::Fields,
    i18n::Lang,
    lang_of,
    session::{self, LANG_COOKIE, SESSION_COOKIE, SIGN_IN_COOKIE, set_cookie},
};

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignIn {
    page: Page,
    csrf: String,
    next: String,
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct SignInQuery {
    #[serde(default)]
    next: String,
    #[serde(default)]
    ended: String,
    #[serde(default)]
    code: String,
}

/// The sign-in form; its CSRF secret goes in a cookie too (there is no session yet), so that
/// no other site can sign a browser in with a token of its own.
fn sign_in_form(web: &Web, lang: Lang, next: &str, message: Option<String>, status: StatusCode) -> Response {
    let csrf = session::secret();
    let page = Page::anonymous(lang, lang.t("sign_in.title"), "/sign-in");
    let mut r = render(&SignIn {
        page,
        csrf: csrf.clone(),
        next: local_path(next).unwrap_or("/").to_owned(),
        message,
    });
    *r.status_mut() = status;
    if let Ok(v) = set_cookie(SIGN_IN_COOKIE, &csrf, web.secure_cookies(), Some(1800)).parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

pub async fn sign_in_page(
    State(web): State<Web>,
    peer: Option<axum::Extension<crate::Peer>>,
    headers: HeaderMap,
    Query(q): Query<SignInQuery>,
) -> Response {
    let lang = lang_of(&headers);
    let peer = peer.map(|p| p.0);
    if !q.code.is_empty() {
        // Development mode: the link printed at start.
        return match web.secret_of_code(&q.code) {
            Some(secret) => open_session(&web, peer, lang, &secret, local_path(&q.next).unwrap_or("/")).await,
            None => sign_in_form(
                &web,
                lang,
                &q.next,
                Some(lang.t("sign_in.bad_code").to_owned()),
                StatusCode::UNAUTHORIZED,
            ),
        };
    }
    let message = match q.ended.as_str() {
        "token" => Some(lang.t("sign_in.ended_token").to_owned()),
        "none" if !q.next.is_empty() && q.next != "/" => Some(lang.t("sign_in.needed").to_owned()),
        "out" => Some(lang.t("sign_in.signed_out").to_owned()),
        _ => None,
    };
    sign_in_form(&web, lang, &q.next, message, StatusCode::OK)
}

pub async fn sign_in(
    State(web): State<Web>,
    peer: Option<axum::Extension<crate::Peer>>,
    headers: HeaderMap,
    fields: Fields,
) -> Response {
    let lang = lang_of(&headers);
    let peer = peer.map(|p| p.0);
    let expected = session::cookie(&headers, SIGN_IN_COOKIE).unwrap_or_default();
    if !crate::same_origin(&headers) || expected.is_empty() || !session::same_secret(fields.get("csrf"), expected) {
        tracing::warn!(
            same_origin = crate::same_origin(&headers),
            has_cookie = !expected.is_empty(),
            "a sign-in form without its CSRF secret was refused"
        );
        return super::failure(lang, StatusCode::FORBIDDEN, lang.t("error.csrf"));
    }
    let secret = fields.get("token");
    let next = local_path(fields.get("next")).unwrap_or("/").to_owned();
    if secret.is_empty() || secret.len() > 200 {
        return sign_in_form(
            &web,
            lang,
            &next,
            Some(lang.t("sign_in.invalid").to_owned()),
            StatusCode::UNAUTHORIZED,
        );
    }
    open_session(&web, peer, lang, secret, &next).await
}

/// Checks a token as the gRPC layer does, opens a session for it and records the sign-in in
/// the audit trail.
async fn open_session(web: &Web, peer: Option<crate::Peer>, lang: Lang, secret: &str, next: &str) -> Response {
    // An address that has used up its failed sign-ins waits before any token is looked up.
    if let Some(wait) = web.sign_in_barred(peer) {
        let mut r = super::failure(lang, StatusCode::TOO_MANY_REQUESTS, lang.t("sign_in.barred"));
        if let Ok(v) = wait.as_secs().max(1).to_string().parse() {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let store = &web.app().store;
    let record = match store
        .token_by_secret_hash(&observatory_grpc::access::secret_sha256(secret))
        .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot look up a token");
            return super::failure(lang, StatusCode::SERVICE_UNAVAILABLE, lang.t("error.unavailable"));
        }
    };
    // One answer for unknown, expired and revoked tokens.
    let Some((principal, expires)) = record.and_then(|r| r.principal_at(Utc::now()).map(|p| (p, r.token.expires_at)))
    else {
        web.sign_in_failed(peer);
        return sign_in_form(
            web,
            lang,
            next,
            Some(lang.t("sign_in.invalid").to_owned()),
            StatusCode::UNAUTHORIZED,
        );
    };
    let entry = AuditEntry {
        actor: principal.actor(),
        action: "SignIn".to_owned(),
        targets: Vec::new(),
        request_id: uuid::Uuid::now_v7().to_string(),
        trace_id: String::new(),
        reason: "web session opened".to_owned(),
    };
    if let Err(e) = store.record_access(entry).await {
        tracing::warn!(error = %e, "cannot record a sign-in");
        return super::failure(lang, StatusCode::SERVICE_UNAVAILABLE, lang.t("error.unavailable"));
    }
    let cookie = web.sessions().open(&principal, expires);
    let mut r = Redirect::to(next).into_response();
    let h = r.headers_mut();
    if let Ok(v) = set_cookie(SESSION_COOKIE, &cookie, web.secure_cookies(), None).parse() {
        h.append(header::SET_COOKIE, v);
    }
    if let Ok(v) = set_cookie(SIGN_IN_COOKIE, "", web.secure_cookies(), Some(0)).parse() {
        h.append(header::SET_COOKIE, v);
    }
    r
}

pub async fn sign_out(State(web): State<Web>, posted: Posted) -> Response {
    web.sessions().close(&posted.signed.session.key);
    let mut r = Redirect::to("/sign-in?ended=out").into_response();
    if let Ok(v) = set_cookie(SESSION_COOKIE, "", web.secure_cookies(), Some(0)).parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[derive(Debug, Deserialize)]
pub struct LanguageQuery {
    #[serde(default)]
    lang: String,
    #[serde(default)]
    back: String,
}

/// Sets the language cookie and goes back to the page.
pub async fn language(State(web): State<Web>, Query(q): Query<LanguageQuery>) -> Response {
    let lang = Lang::from_code(&q.lang);
    let mut r = Redirect::to(local_path(&q.back).unwrap_or("/")).into_response();
    if let Ok(v) = set_cookie(LANG_COOKIE, lang.code(), web.secure_cookies(), Some(365 * 24 * 3600)).parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}
