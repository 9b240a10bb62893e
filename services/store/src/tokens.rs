//! Access tokens: what a bearer secret stands for. Only the SHA-256 of a secret is stored;
//! tokens are never edited or removed, a revocation is recorded beside them.

use chrono::{DateTime, Utc};
use observatory_domain::access::{Principal, Role, Scope};

use tracing::Instrument;

use crate::{Result, Store};

/// A token as created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    /// Public id (UUIDv7): listed, revoked, and recorded as the author of what the token does.
    pub id: String,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
    pub role: Role,
    pub scope: Scope,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub expires_at: Option<DateTime<Utc>>,
    /// For a token held as a client certificate: the certificate's subject, as
    /// `observatory_grpc::access::certificate_subject` renders it.
    pub client_subject: Option<String>,
}

/// A revocation: when and by whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub revoked_at: DateTime<Utc>,
    pub revoked_by: String,
}

/// A stored token and its revocation, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub token: NewToken,
    pub revocation: Option<Revocation>,
}

impl TokenRecord {
    /// The principal the token stands for at `now`: none once expired or revoked.
    pub fn principal_at(&self, now: DateTime<Utc>) -> Option<Principal> {
        let live = self.revocation.is_none() && self.token.expires_at.is_none_or(|e| now < e);
        live.then(|| Principal {
            token_id: self.token.id.clone(),
            role: self.token.role,
            scope: self.token.scope.clone(),
        })
    }
}

impl Store {
    /// Stores a new token.
    pub async fn create_token(&self, token: &NewToken) -> Result<()> {
        dispatch!(self, tokens_sql::create(token, self.audit_key.as_ref()))
    }

    /// The token whose secret hashes to `secret_sha256`, revoked or expired ones included.
    pub async fn token_by_secret_hash(&self, secret_sha256: &str) -> Result<Option<TokenRecord>> {
        async { read!(self, tokens_sql::by_secret_hash(secret_sha256)) }
            .instrument(tracing::info_span!("store.token_lookup"))
            .await
    }

    /// The token of public id `id`, revoked or expired ones included.
    pub async fn token_by_id(&self, id: &str) -> Result<Option<TokenRecord>> {
        async { read!(self, tokens_sql::by_id(id)) }
            .instrument(tracing::info_span!("store.token_lookup"))
            .await
    }

    /// The tokens bound to a client certificate subject, newest first.
    pub async fn tokens_by_client_subject(&self, subject: &str) -> Result<Vec<TokenRecord>> {
        async { read!(self, tokens_sql::by_client_subject(subject)) }
            .instrument(tracing::info_span!("store.token_lookup"))
            .await
    }

    /// Every token, oldest first.
    pub async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        dispatch!(self, tokens_sql::list())
    }

    /// Revokes a token: [`crate::StoreError::NotFound`] when there is none of that id,
    /// [`crate::StoreError::AlreadyExists`] when it was revoked before.
    pub async fn revoke_token(&self, id: &str, revocation: &Revocation) -> Result<()> {
        dispatch!(self, tokens_sql::revoke(id, revocation, self.audit_key.as_ref()))
    }
}
