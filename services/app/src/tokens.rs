//! Access tokens: create, list, revoke (on the store alone: a token needs no pseudonym key). The admin's (and the command line's, as a local
//! process). A token's secret is shown once, to its creator, and kept nowhere but as its
//! SHA-256; creations and revocations are recorded in the audit trail with the record itself,
//! listings as reads.

use chrono::{DateTime, SubsecRound, Utc};
use observatory_domain::{
    access::{Role, Scope},
    codes::{Filiere, Finess},
};
use observatory_store::{
    Store,
    audit::{AuditEntry, AuditTarget},
    tokens::{NewToken, Revocation, TokenRecord},
};
use sha2::{Digest, Sha256};

use crate::scope::{Target, admit};
use crate::{AppError, AppResult, Call};

/// Prefix of every token: lets secret scanners and people recognise one.
pub const TOKEN_PREFIX: &str = "obs_";

/// A new token secret: `obs_` and 32 random bytes in hexadecimal.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

/// What is stored of a secret.
pub fn secret_sha256(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A token as asked, its fields parsed.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub role: Role,
    pub centres: Vec<Finess>,
    pub filieres: Vec<Filiere>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Held as a client certificate of this subject.
    pub client_subject: Option<String>,
}

/// Creates a token; gives back its record and its secret (for a token held as a client
/// certificate, a secret nobody is given).
pub async fn create_token(store: &Store, call: &Call, request: TokenRequest) -> AppResult<(NewToken, String)> {
    let admitted = admit(store, call, Target::Unbound).await?;
    let scope = Scope::new(request.role, request.centres, request.filieres)
        .map_err(|e| AppError::invalid(e.field(), "BAD_SCOPE", e.to_string()))?;
    let now = Utc::now();
    if request.expires_at.is_some_and(|e| e <= now) {
        return Err(AppError::invalid("expires_at", "OUT_OF_RANGE", "must be in the future"));
    }
    let secret = new_secret();
    let token = NewToken {
        id: uuid::Uuid::now_v7().to_string(),
        secret_sha256: secret_sha256(&secret),
        role: request.role,
        scope,
        // Microseconds, as both databases keep them.
        created_at: now.trunc_subsecs(6),
        created_by: admitted.context(None).actor,
        expires_at: request.expires_at.map(|e| e.trunc_subsecs(6)),
        client_subject: request.client_subject,
    };
    store.create_token(&token).await?;
    Ok((token, secret))
}

/// Every token, oldest first (never a secret, which is not kept).
pub async fn list_tokens(store: &Store, call: &Call) -> AppResult<Vec<TokenRecord>> {
    let admitted = admit(store, call, Target::Unbound).await?;
    let tokens = store.list_tokens().await?;
    let ctx = admitted.context(None);
    store
        .record_access(AuditEntry {
            actor: ctx.actor,
            action: call.operation.to_owned(),
            targets: vec![AuditTarget::object("ACCESS_TOKEN", "*")],
            request_id: ctx.request_id,
            trace_id: ctx.trace_id,
            reason: String::new(),
        })
        .await?;
    Ok(tokens)
}

/// Revokes token `id`: it stops working at once, for every way in (gRPC calls, streams, web
/// sessions).
pub async fn revoke_token(store: &Store, call: &Call, id: &str) -> AppResult<()> {
    let admitted = admit(store, call, Target::Unbound).await?;
    let revocation = Revocation {
        revoked_at: Utc::now(),
        revoked_by: admitted.context(None).actor,
    };
    Ok(store.revoke_token(id, &revocation).await?)
}
