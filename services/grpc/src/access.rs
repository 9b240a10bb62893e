//! Authentication and access rules, in one place for every RPC.
//!
//! A tower layer in front of all services reads the bearer token of each call, finds the
//! principal it stands for, and checks the role against [`RULES`], the table of every RPC of
//! the observatory. A call answers UNAUTHENTICATED without a valid token (health excepted) and
//! PERMISSION_DENIED when the role may not make it; an RPC missing from the table is refused to
//! everyone, so a new RPC cannot be reached before it has a rule. Handlers find the principal
//! in the request extensions.
//!
//! Tokens are opaque: `obs_` and 64 hexadecimal digits of randomness. Only their SHA-256 is
//! stored, so a stolen database gives no usable token. Under mutual TLS, a token may instead be
//! held as a client certificate: a call with no bearer token, over a connection whose client
//! certificate (already verified against the configured client CA by TLS) has a subject bound
//! to a live token, acts as that token.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use chrono::Utc;
use observatory_domain::access::{Principal, Role};
use observatory_store::Store;
use tonic::Status;
use tonic::transport::CertificateDer;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic_types::StatusExt;

pub use observatory_app::tokens::{TOKEN_PREFIX, new_secret, secret_sha256};

/// Every RPC of the observatory (its path) and the roles that may call it: the application
/// layer's table of operations ([`observatory_app::access::OPERATIONS`]), by gRPC path.
pub static RULES: std::sync::LazyLock<Vec<(String, &'static [Role])>> = std::sync::LazyLock::new(|| {
    observatory_app::access::OPERATIONS
        .iter()
        .filter(|(service, _, _)| service.ends_with("Service"))
        .map(|(service, name, roles)| (format!("/observatory.v1.{service}/{name}"), *roles))
        .collect()
});

/// Services open to every caller, token or not: health checks, so that load balancers and
/// orchestrators need no secret.
const OPEN: &[&str] = &["/grpc.health.v1.Health/"];

/// Services open to every authenticated caller: reflection, which describes the API only.
const ANY_ROLE: &[&str] = &[
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// Roles that may call `path`; `None` for a path with no rule.
pub fn roles_for(path: &str) -> Option<&'static [Role]> {
    if ANY_ROLE.iter().any(|p| path.starts_with(p)) {
        return Some(&Role::ALL);
    }
    RULES.iter().find(|(p, _)| p == path).map(|(_, roles)| *roles)
}

/// `path` when the server serves it, `_OTHER` otherwise: what logs may name.
pub fn known_or_other(path: &str) -> &str {
    if is_known_path(path) { path } else { "_OTHER" }
}

/// Whether `path` is a method the server serves (one with a rule, or an open one): what
/// telemetry may name; any other path is `_OTHER`, so that made-up paths cannot multiply the
/// names of spans and the labels of metrics.
pub fn is_known_path(path: &str) -> bool {
    OPEN.iter().any(|p| path.starts_with(p)) || roles_for(path).is_some()
}

/// Whether the token `principal` stands for is still live: streams that outlast a call check it
/// as they go, so that a revocation or an expiry ends them too (UNAUTHENTICATED).
pub async fn still_live(store: &Store, principal: &Principal) -> Result<(), Status> {
    let record = store.token_by_id(&principal.token_id).await.map_err(|e| {
        tracing::error!(error = %e, "cannot look up a token");
        crate::error::unavailable("cannot check credentials now; retry later")
    })?;
    match record.and_then(|r| r.principal_at(Utc::now())) {
        Some(_) => Ok(()),
        None => Err(Status::unauthenticated("the token was revoked or has expired")),
    }
}

/// The bearer secret of a call, if it sent one in the expected shape.
fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, secret) = value.split_once(' ')?;
    let secret = secret.trim();
    (scheme.eq_ignore_ascii_case("bearer")
        && secret.starts_with(TOKEN_PREFIX)
        && secret.len() == TOKEN_PREFIX.len() + 64
        && secret[TOKEN_PREFIX.len()..].bytes().all(|b| b.is_ascii_hexdigit()))
    .then_some(secret)
}

/// The subject of a DER certificate, as its relative distinguished names in order
/// (`CN=registry.example, O=Partner`): what `token create --client-cert` binds and what a
/// client certificate is looked up by. Values are escaped as in RFC 4514 (`,` `+` `"` `\`
/// `<` `>` `;` `=`, and leading `#` or spaces, trailing spaces), so that no value can pass for
/// several attributes. `None` when the certificate cannot be read or an attribute is not text.
pub fn certificate_subject(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let registry = x509_parser::objects::oid_registry();
    let mut rdns = Vec::new();
    for rdn in cert.subject().iter() {
        let mut attributes = Vec::new();
        for attribute in rdn.iter() {
            let name = x509_parser::objects::oid2abbrev(attribute.attr_type(), registry)
                .map(str::to_owned)
                .unwrap_or_else(|_| attribute.attr_type().to_id_string());
            attributes.push(format!("{name}={}", escape_rdn_value(attribute.as_str().ok()?)));
        }
        rdns.push(attributes.join("+"));
    }
    (!rdns.is_empty()).then(|| rdns.join(", "))
}

/// A distinguished name's attribute value, escaped as RFC 4514 says.
fn escape_rdn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let edge_space = c == ' ' && (i == 0 || i == last);
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=') || edge_space || (i == 0 && c == '#') {
            out.push('\\');
            out.push(c);
        } else if c.is_control() {
            out.push_str(&format!("\\{:02X}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// The subject of the first certificate of a PEM text.
pub fn pem_certificate_subject(pem: &[u8]) -> Option<String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    (pem.label == "CERTIFICATE")
        .then(|| certificate_subject(&pem.contents))
        .flatten()
}

/// Decides whether a call to `path` with `headers`, over a connection whose verified client
/// certificate chain is `peer_certs` (leaf first), may proceed, and as whom (`None`: an open
/// service, no principal needed).
pub async fn authorize(
    store: &Store,
    path: &str,
    headers: &http::HeaderMap,
    peer_certs: Option<&[CertificateDer<'static>]>,
) -> Result<Option<Principal>, Status> {
    if OPEN.iter().any(|p| path.starts_with(p)) {
        return Ok(None);
    }
    let unavailable = |e: observatory_store::StoreError| {
        tracing::error!(error = %e, "cannot look up a token");
        crate::error::unavailable("cannot check credentials now; retry later")
    };
    let now = Utc::now();
    // A credential sent in the wrong shape is refused, never passed over for another one.
    if headers.contains_key(http::header::AUTHORIZATION) && bearer(headers).is_none() {
        return Err(Status::unauthenticated(
            "malformed authorization header: send authorization: Bearer obs_...",
        ));
    }
    let principal = match (bearer(headers), peer_certs.and_then(|c| c.first())) {
        (Some(secret), _) => {
            let record = store
                .token_by_secret_hash(&secret_sha256(secret))
                .await
                .map_err(unavailable)?;
            // One answer for unknown, expired and revoked tokens: nothing to probe.
            record
                .and_then(|r| r.principal_at(now))
                .ok_or_else(|| Status::unauthenticated("invalid, expired or revoked token"))?
        }
        (None, Some(leaf)) => {
            let Some(subject) = certificate_subject(leaf) else {
                return Err(Status::unauthenticated(
                    "the client certificate has no readable subject",
                ));
            };
            let records = store.tokens_by_client_subject(&subject).await.map_err(unavailable)?;
            records
                .iter()
                .find_map(|r| r.principal_at(now))
                .ok_or_else(|| Status::unauthenticated("the client certificate is bound to no live token"))?
        }
        (None, None) => {
            return Err(Status::unauthenticated(
                "missing or malformed bearer token (authorization: Bearer obs_...), and no client certificate",
            ));
        }
    };
    let Some(roles) = roles_for(path) else {
        return Err(Status::permission_denied(format!("{path} has no access rule")));
    };
    if !roles.contains(&principal.role) {
        // Recorded, like every refusal of an authenticated caller: who tried what.
        let trace_id = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(crate::trace_id_of)
            .unwrap_or_default();
        let entry = observatory_store::audit::AuditEntry {
            actor: principal.actor(),
            action: path.rsplit('/').next().unwrap_or_default().to_owned(),
            targets: Vec::new(),
            request_id: uuid::Uuid::now_v7().to_string(),
            trace_id,
            reason: "refused: PERMISSION_DENIED".to_owned(),
        };
        if let Err(e) = store.record_access(entry).await {
            tracing::warn!(error = %e, "cannot record a refused call in the audit trail");
        }
        return Err(Status::permission_denied(format!(
            "the {} role may not call {path}",
            principal.role
        )));
    }
    Ok(Some(principal))
}

/// Puts [`authorize`] in front of every service.
///
/// Calls refused for want of valid credentials (unknown, expired or revoked tokens, malformed
/// headers, unbound certificates) are counted per peer address: once an address has used up
/// its burst of them (`Limits::failures_burst`, refilled at `failures_per_second`), its calls
/// are RESOURCE_EXHAUSTED before any token is looked up, so guessing tokens costs the database
/// nothing past the burst. Valid calls do not count.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    store: Store,
    failures: Arc<crate::bounds::RateLimiter>,
}

impl AuthLayer {
    pub fn new(store: Store, limits: crate::bounds::Limits) -> Self {
        let failures = crate::bounds::Limits {
            per_second: limits.failures_per_second,
            burst: limits.failures_burst,
            ..limits
        };
        Self {
            store,
            failures: Arc::new(crate::bounds::RateLimiter::new(failures)),
        }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            store: self.store.clone(),
            failures: self.failures.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Auth<S> {
    inner: S,
    store: Store,
    failures: Arc<crate::bounds::RateLimiter>,
}

/// The address a call comes from, as the transport saw it.
fn peer_of<B>(req: &http::Request<B>) -> Option<std::net::IpAddr> {
    req.extensions()
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            req.extensions()
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|i| i.get_ref().remote_addr())
        })
        .map(|a| a.ip())
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Auth<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // The service polled ready is the one that must serve the call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let store = self.store.clone();
        let failures = self.failures.clone();
        let peer = peer_of(&req).map(|ip| ip.to_string());
        if let Some(wait) = peer
            .as_deref()
            .and_then(|p| failures.empty(p, tokio::time::Instant::now()))
        {
            tracing::warn!("calls with invalid credentials from one address past its limit");
            let status = Status::with_error_details(
                tonic::Code::ResourceExhausted,
                format!(
                    "too many calls with invalid credentials from this address; retry in {} ms",
                    wait.as_millis().max(1)
                ),
                tonic_types::ErrorDetails::with_retry_info(Some(wait)),
            );
            return Box::pin(async move { Ok(status.into_http()) });
        }
        Box::pin(async move {
            let peer_certs = req
                .extensions()
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(TlsConnectInfo::peer_certs);
            match authorize(
                &store,
                req.uri().path(),
                req.headers(),
                peer_certs.as_deref().map(Vec::as_slice),
            )
            .await
            {
                Ok(principal) => {
                    if let Some(principal) = principal {
                        tracing::Span::current().record("role", principal.role.code());
                        req.extensions_mut().insert(principal);
                    }
                    inner.call(req).await
                }
                Err(status) => {
                    if status.code() == tonic::Code::Unauthenticated
                        && let Some(peer) = &peer
                    {
                        let _ = failures.take(peer, tokio::time::Instant::now());
                    }
                    Ok(status.into_http())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rpc_of_the_api_has_a_rule() {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(observatory_proto::FILE_DESCRIPTOR_SET).unwrap();
        let mut paths = Vec::new();
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    paths.push(format!("/{}.{}/{}", file.package(), service.name(), method.name()));
                }
            }
        }
        assert!(paths.len() >= RULES.len(), "{paths:?}");
        for path in &paths {
            assert!(roles_for(path).is_some(), "{path} has no access rule");
        }
        for (rule, _) in RULES.iter() {
            assert!(paths.contains(rule), "rule for {rule}, which is no RPC");
        }
    }

    #[test]
    fn subject_values_are_escaped_so_none_passes_for_several_attributes() {
        assert_eq!(escape_rdn_value("registry.example"), "registry.example");
        assert_eq!(escape_rdn_value("a, O=Partner"), "a\\, O\\=Partner");
        assert_eq!(escape_rdn_value(" #x+y "), "\\ #x\\+y\\ ");
        assert_eq!(escape_rdn_value("#x"), "\\#x");
        assert_eq!(escape_rdn_value("a\nb"), "a\\0Ab");
        assert_eq!(certificate_subject(b"not a certificate"), None);
    }

    #[test]
    fn only_well_formed_bearer_tokens_are_read() {
        let secret = new_secret();
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, format!("Bearer {secret}").parse().unwrap());
        assert_eq!(bearer(&headers), Some(secret.as_str()));
        for bad in [
            "Basic abc",
            "Bearer",
            "Bearer obs_123",
            "bearer token",
            &format!("Token {secret}"),
        ] {
            headers.insert(http::header::AUTHORIZATION, bad.parse().unwrap());
            assert_eq!(bearer(&headers), None, "{bad}");
        }
        assert_ne!(new_secret(), secret);
        assert_eq!(secret_sha256(&secret).len(), 64);
    }
}
