//! The web front: server-rendered pages over the application layer.
//!
//! Every page is a handler that reads its request into the parameters of an operation (the
//! form fields of a write are the fields of the gRPC request, parsed by the same functions, so
//! that a refusal names the same field paths), calls the operation of `observatory-app` as the
//! signed-in principal, and renders the result with a compile-time-checked template. No handler
//! decides who may do what, on which records, or what a valid record is: the application layer
//! and the domain do, for every way in. Pages work without JavaScript: every control is a link
//! or a form.

pub mod form;
pub mod i18n;
pub mod labels;
mod pages;
pub mod serve;
pub mod session;

use std::{collections::HashMap, sync::Arc};

use axum::{
    Router,
    extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use observatory_app::{App, Call, reports::Reports};
use observatory_domain::access::{Principal, Role};

use crate::form::Fields;
use crate::i18n::Lang;
use crate::session::{LANG_COOKIE, Open, SESSION_COOKIE, SessionPolicy, Sessions};

/// Largest form a page accepts (64 KiB): every field is bounded again by its parser.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// What the web front is configured with.
#[derive(Debug, Clone)]
pub struct WebOptions {
    /// Cookies are marked Secure (set when the front is not on a loopback address, or is
    /// behind TLS).
    pub secure_cookies: bool,
    pub sessions: SessionPolicy,
    /// Failed sign-ins one peer address may make at once, and per second once that burst is
    /// used up (the gRPC layer's bounds on calls with invalid credentials).
    pub failures_burst: u32,
    pub failures_per_second: f64,
}

/// The address a request came from (the proxy's, behind one), for the bound on failed
/// sign-ins.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::IpAddr);

/// The web front's state, shared by every request.
#[derive(Clone)]
pub struct Web(Arc<Inner>);

struct Inner {
    app: App,
    reports: Reports,
    sessions: Sessions,
    options: WebOptions,
    /// Development mode: sign-in links of the tokens the server created at start, by code.
    sign_in_codes: std::sync::Mutex<HashMap<String, String>>,
    /// Idempotency keys of the token forms lately submitted, and the token each made (empty
    /// while it is being made): a second submission of the same form creates no second token.
    token_keys: std::sync::Mutex<std::collections::VecDeque<(String, String)>>,
    /// Failed sign-ins by peer address.
    failures: observatory_grpc::bounds::RateLimiter,
}

/// How many token forms' keys are remembered.
const TOKEN_KEYS: usize = 1000;

/// What a token form's idempotency key says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKey {
    /// Never seen: now held for this submission.
    Fresh,
    /// Seen: the token it made (empty while that submission is still being made).
    Used(String),
}

impl std::fmt::Debug for Web {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Web")
            .field("sessions", &self.0.sessions.len())
            .finish_non_exhaustive()
    }
}

impl Web {
    pub fn new(app: App, reports: Reports, options: WebOptions) -> Self {
        let failures = observatory_grpc::bounds::RateLimiter::new(observatory_grpc::bounds::Limits {
            per_second: options.failures_per_second,
            burst: options.failures_burst,
            ..observatory_grpc::bounds::Limits::default()
        });
        Self(Arc::new(Inner {
            app,
            reports,
            sessions: Sessions::new(options.sessions),
            options,
            sign_in_codes: std::sync::Mutex::new(HashMap::new()),
            token_keys: std::sync::Mutex::new(std::collections::VecDeque::new()),
            failures,
        }))
    }

    pub fn app(&self) -> &App {
        &self.0.app
    }

    pub fn reports(&self) -> &Reports {
        &self.0.reports
    }

    pub fn sessions(&self) -> &Sessions {
        &self.0.sessions
    }

    pub fn secure_cookies(&self) -> bool {
        self.0.options.secure_cookies
    }

    /// Development mode: a sign-in code for the token `secret`, for the link printed at start
    /// (`/sign-in?code=...`). The code stands for the token until the token ends.
    pub fn add_sign_in_code(&self, secret: &str) -> String {
        let code = session::secret();
        self.0
            .sign_in_codes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(code.clone(), secret.to_owned());
        code
    }

    /// How long `peer` must wait before signing in again, when it has used up its failed
    /// sign-ins.
    pub fn sign_in_barred(&self, peer: Option<Peer>) -> Option<std::time::Duration> {
        let peer = peer?.0.to_string();
        self.0.failures.empty(&peer, tokio::time::Instant::now())
    }

    /// Counts a failed sign-in from `peer`.
    pub fn sign_in_failed(&self, peer: Option<Peer>) {
        if let Some(p) = peer {
            let _ = self.0.failures.take(&p.0.to_string(), tokio::time::Instant::now());
        }
    }

    /// Claims a token form's idempotency key (see [`TokenKey`]).
    pub fn claim_token_key(&self, key: &str) -> TokenKey {
        let mut keys = self.0.token_keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, id)) = keys.iter().find(|(k, _)| k == key) {
            return TokenKey::Used(id.clone());
        }
        if keys.len() >= TOKEN_KEYS {
            keys.pop_front();
        }
        keys.push_back((key.to_owned(), String::new()));
        TokenKey::Fresh
    }

    /// Records the token a claimed key made, or frees the key when none was made.
    pub fn settle_token_key(&self, key: &str, token_id: Option<&str>) {
        let mut keys = self.0.token_keys.lock().unwrap_or_else(|e| e.into_inner());
        match token_id {
            Some(id) => {
                if let Some(entry) = keys.iter_mut().find(|(k, _)| k == key) {
                    entry.1 = id.to_owned();
                }
            }
            None => keys.retain(|(k, _)| k != key),
        }
    }

    fn secret_of_code(&self, code: &str) -> Option<String> {
        self.0
            .sign_in_codes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(code)
            .cloned()
    }

    /// The routes of the front.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(pages::home))
            .route("/sign-in", get(pages::auth::sign_in_page).post(pages::auth::sign_in))
            .route("/sign-out", post(pages::auth::sign_out))
            .route("/language", get(pages::auth::language))
            .route("/static/{file}", get(pages::static_file))
            .route("/patients", get(pages::patients::list).post(pages::patients::register))
            .route("/patients/new", get(pages::patients::new))
            .route("/patients/{id}", get(pages::patients::show))
            .route("/patients/{id}/update", post(pages::patients::correct))
            .route("/patients/{id}/rcp", post(pages::patients::request_rcp))
            .route("/patients/{id}/merge", post(pages::patients::merge))
            .route("/patients/{id}/rcp/opinion", post(pages::patients::record_rcp_opinion))
            .route("/patients/{id}/episodes/new", get(pages::episodes::new))
            .route("/episodes", post(pages::episodes::declare))
            .route("/episodes/{id}", get(pages::episodes::show))
            .route("/episodes/{id}/transition", post(pages::episodes::transition))
            .route("/episodes/{id}/follow-ups", post(pages::episodes::follow_up))
            .route("/episodes/{id}/adverse-events", post(pages::episodes::adverse_event))
            .route(
                "/episodes/{id}/adverse-events/update",
                post(pages::episodes::correct_event),
            )
            .route("/authorisations/{id}/transition", post(pages::episodes::authorise))
            .route("/episodes/{id}/update", post(pages::episode_corrections::episode))
            .route(
                "/episodes/{id}/follow-ups/update",
                post(pages::episode_corrections::visit),
            )
            .route(
                "/authorisations/{id}/update",
                post(pages::episode_corrections::authorisation),
            )
            .route("/history/{kind}/{id}", get(pages::history::show))
            .route("/worklist", get(pages::worklist::show))
            .route("/cases", get(pages::cases::show))
            .route(
                "/centres",
                get(pages::reference::centres).post(pages::reference::create_centre),
            )
            .route("/centres/{finess}", get(pages::reference::centre))
            .route("/centres/{finess}/update", post(pages::reference::update_centre))
            .route(
                "/centres/{finess}/prescribers",
                post(pages::reference::create_prescriber),
            )
            .route("/prescribers/{rpps}/update", post(pages::reference::update_prescriber))
            .route(
                "/cohorts",
                get(pages::reference::cohorts).post(pages::reference::create_cohort),
            )
            .route("/cohorts/{id}/transition", post(pages::reference::transition_cohort))
            .route(
                "/frameworks",
                get(pages::reference::frameworks).post(pages::reference::create_framework),
            )
            .route("/frameworks/{id}", get(pages::reference::framework))
            .route(
                "/frameworks/{id}/transition",
                post(pages::reference::transition_framework),
            )
            .route("/frameworks/{id}/synthesis", post(pages::reports::start_synthesis))
            .route(
                "/admin/tokens",
                get(pages::admin::tokens).post(pages::admin::create_token),
            )
            .route("/admin/tokens/{id}/revoke", post(pages::admin::revoke_token))
            .route("/admin/audit", get(pages::admin::audit))
            .route("/admin/reference", get(pages::admin::reference))
            .route("/admin/audit/verify", post(pages::admin::verify))
            .route("/admin/audit/export", get(pages::admin::export))
            .route("/reports", get(pages::reports::list).post(pages::reports::start))
            .route("/reports/{id}", get(pages::reports::show))
            .route("/reports/{id}/files/{file}", get(pages::reports::download))
            .fallback(pages::not_found)
            .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
            .layer(axum::middleware::from_fn(pages::headers))
            .with_state(self.clone())
    }
}

/// The language of a request: its cookie, French by default.
pub fn lang_of(headers: &HeaderMap) -> Lang {
    session::cookie(headers, LANG_COOKIE).map_or(Lang::Fr, Lang::from_code)
}

/// A signed-in caller: its session and the principal of its token, looked up again for this
/// request.
#[derive(Debug, Clone)]
pub struct Signed {
    pub principal: Principal,
    pub session: Open,
    pub lang: Lang,
    /// The path and query of the page, for the language switch.
    pub here: String,
}

impl Signed {
    /// The call of operation `operation` by this caller, under a fresh request id.
    pub fn call(&self, operation: &'static str) -> Call {
        Call::new(
            self.principal.clone(),
            operation,
            uuid::Uuid::now_v7().to_string(),
            String::new(),
        )
    }

    /// The context every page's template gets.
    pub fn page(&self, title: &str) -> pages::Page {
        pages::Page::signed(self, title)
    }

    pub fn role(&self) -> Role {
        self.principal.role
    }
}

impl FromRequestParts<Web> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut http::request::Parts, web: &Web) -> Result<Self, Self::Rejection> {
        let lang = lang_of(&parts.headers);
        let here = parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        let ended = |lang: Lang, why: &'static str| -> Response {
            if parts.method == http::Method::GET {
                let next = pages::encode(&here);
                Redirect::to(&format!("/sign-in?next={next}&ended={why}")).into_response()
            } else {
                pages::failure(lang, StatusCode::UNAUTHORIZED, lang.t("error.session_ended"))
            }
        };
        let Some(open) = session::cookie(&parts.headers, SESSION_COOKIE).and_then(|c| web.sessions().find(c)) else {
            return Err(ended(lang, "none"));
        };
        // The token again, for every request: a revocation or an expiry ends the session now.
        let record = match web.app().store.token_by_id(&open.token_id).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look up a session's token");
                return Err(pages::failure(
                    lang,
                    StatusCode::SERVICE_UNAVAILABLE,
                    lang.t("error.unavailable"),
                ));
            }
        };
        match record.and_then(|r| r.principal_at(chrono::Utc::now())) {
            Some(principal) => Ok(Signed {
                principal,
                session: open,
                lang,
                here,
            }),
            None => {
                web.sessions().close(&open.key);
                Err(ended(lang, "token"))
            }
        }
    }
}

/// A form posted by a signed-in caller, its CSRF secret checked: the secret of the session,
/// in the form's `csrf` field. A post from another site is refused before that (the browser
/// says so in `Sec-Fetch-Site`, or its `Origin` is not this server).
#[derive(Debug)]
pub struct Posted {
    pub signed: Signed,
    pub fields: Fields,
}

/// Whether a request comes from a page of this server, as far as the browser tells.
pub fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    match (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        headers.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) {
        (Some(origin), Some(host)) => origin.split_once("://").is_some_and(|(_, authority)| authority == host),
        (Some(_), None) => false,
        (None, _) => true,
    }
}

impl FromRequest<Web> for Posted {
    type Rejection = Response;

    async fn from_request(req: Request, web: &Web) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let lang = lang_of(&parts.headers);
        if !same_origin(&parts.headers) {
            return Err(pages::failure(lang, StatusCode::FORBIDDEN, lang.t("error.csrf")));
        }
        let signed = Signed::from_request_parts(&mut parts, web).await?;
        let req = Request::from_parts(parts, body);
        let fields = Fields::from_request(req, web).await?;
        if !session::same_secret(fields.get("csrf"), &signed.session.csrf) {
            tracing::warn!(path = %signed.here, "a form without its CSRF secret was refused");
            return Err(pages::failure(lang, StatusCode::FORBIDDEN, lang.t("error.csrf")));
        }
        Ok(Posted { signed, fields })
    }
}

/// An operation of the table, by name (the web front only names operations the table has).
pub(crate) fn op(name: &'static str) -> &'static str {
    debug_assert!(
        observatory_app::access::operation(name).is_some(),
        "{name} is not an operation"
    );
    name
}
