//! The observatory's operations, free of any transport.
//!
//! Each operation is one function taking the [`Call`] (the caller's principal and the ids of
//! the call) and a request already parsed into domain types, and returning domain results or
//! an [`AppError`]. The gRPC services, the partner import, `seed` and the web front all call
//! these functions: what a caller may do, on which records, what is audited and which rules
//! apply is decided here (and in `observatory-domain`, `observatory-store`) once, whatever the
//! way in. A transport parses its own wire format into the request types (reporting its own
//! field paths) and renders the results; it holds no rule.

pub mod access;
pub mod audit;
pub mod cases;
pub mod exchange;
pub mod fhir;
pub mod reference;
pub mod registry;
pub mod reports;
pub mod scope;
pub mod tokens;

use std::sync::{Arc, RwLock};

use observatory_domain::{DomainError, Violations, access::Principal, catalogue::Catalogue, pseudonym::PseudonymKey};
use observatory_store::{Store, StoreError, WriteContext};

/// What every operation works with.
#[derive(Clone)]
pub struct App {
    pub store: Store,
    pub pseudonym_key: Arc<PseudonymKey>,
    /// The reference catalogue in force, and the newest release number it was built after.
    catalogue: Arc<RwLock<(i64, Arc<Catalogue>)>>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl App {
    /// The application over a migrated store, with the reference catalogue in force.
    pub async fn open(store: Store, pseudonym_key: Arc<PseudonymKey>) -> AppResult<Self> {
        let seq = store.last_release_seq().await?;
        let catalogue = Arc::new(store.catalogue().await?);
        Ok(Self {
            store,
            pseudonym_key,
            catalogue: Arc::new(RwLock::new((seq, catalogue))),
        })
    }

    /// The reference catalogue in force: what input codes are checked against.
    pub fn catalogue(&self) -> Arc<Catalogue> {
        let guard = self.catalogue.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(&guard.1)
    }

    /// Rebuilds the catalogue when a release was recorded since it was built (by this process
    /// or another one on the same database); true when it changed.
    pub async fn refresh_catalogue(&self) -> AppResult<bool> {
        let seq = self.store.last_release_seq().await?;
        let seen = self
            .catalogue
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0;
        if seq == seen {
            return Ok(false);
        }
        let catalogue = Arc::new(self.store.catalogue().await?);
        let mut guard = self
            .catalogue
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seq > guard.0 {
            *guard = (seq, catalogue);
        }
        Ok(true)
    }
}

/// Who makes a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The holder of a token: its role and scope decide what it may do.
    Token(Principal),
    /// A process run by whoever holds the database and its keys (`seed`, the command line),
    /// named in the audit trail: it holds the whole registry, as a local process does anyway.
    Local(&'static str),
}

/// One call of an operation: who makes it, and under which ids it is traced and audited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub actor: Actor,
    /// The operation, as the table of [`access::OPERATIONS`] names it (`RegisterPatient`): its
    /// role rule, and the action its refusal is audited as.
    pub operation: &'static str,
    /// Recorded with every version and audit event the call writes (a UUID, or the caller's
    /// own id when the transport accepts one).
    pub request_id: String,
    /// W3C trace id of the call (32 hexadecimal digits), empty when there is none.
    pub trace_id: String,
}

impl Call {
    /// A call of a token's holder.
    pub fn new(principal: Principal, operation: &'static str, request_id: String, trace_id: String) -> Self {
        Self {
            actor: Actor::Token(principal),
            operation,
            request_id,
            trace_id,
        }
    }

    /// A call of the local process `name`, under `request_id`.
    pub fn local(name: &'static str, operation: &'static str, request_id: String) -> Self {
        Self {
            actor: Actor::Local(name),
            operation,
            request_id,
            trace_id: String::new(),
        }
    }

    /// The token's principal; `None` for a local process.
    pub fn principal(&self) -> Option<&Principal> {
        match &self.actor {
            Actor::Token(p) => Some(p),
            Actor::Local(_) => None,
        }
    }

    /// The same caller and ids, making another operation (an import item, a page that reads
    /// several records).
    pub fn making(&self, operation: &'static str) -> Self {
        Self {
            operation,
            ..self.clone()
        }
    }

    /// Who writes, under which ids, with `idempotency_key`.
    pub fn context(&self, idempotency_key: Option<String>) -> WriteContext {
        let (actor, scope) = match &self.actor {
            Actor::Token(p) => (p.actor(), Some(p.scope.clone())),
            Actor::Local(name) => ((*name).to_owned(), None),
        };
        WriteContext {
            actor,
            request_id: self.request_id.clone(),
            trace_id: self.trace_id.clone(),
            idempotency_key,
            scope,
        }
    }
}

/// Why an operation was refused. Every transport maps it to its own answer (a gRPC status, an
/// import error, a page); none decides anything else from it.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Refused by the registry (invalid, not found, conflicting, unavailable...).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The caller's role may not make the operation, or what it touches is outside its scope
    /// (or does not exist: the two get the same answer, so that ids cannot be probed).
    #[error("{0}")]
    Denied(String),
    /// Too much at once for this caller (report runs waiting or running): retry later.
    #[error("{0}")]
    Exhausted(String),
    /// A broken promise of the registry itself (a write that returned nothing); logged where it
    /// is answered.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl From<DomainError> for AppError {
    fn from(e: DomainError) -> Self {
        AppError::Store(StoreError::Domain(e))
    }
}

impl From<Violations> for AppError {
    fn from(v: Violations) -> Self {
        AppError::Store(StoreError::Domain(DomainError::Invalid(v)))
    }
}

impl AppError {
    /// One invalid field.
    pub fn invalid(field: &str, reason: &'static str, description: impl Into<String>) -> Self {
        let mut v = Violations::new();
        v.push(field, reason, description);
        v.into()
    }
}

pub type AppResult<T> = Result<T, AppError>;

/// The record of kind `T` a write gave back (its primary record comes first).
pub(crate) fn written<T>(
    w: observatory_store::Written,
    pick: impl Fn(observatory_store::Record) -> Option<observatory_store::Versioned<T>>,
) -> AppResult<observatory_store::Versioned<T>> {
    w.records
        .into_iter()
        .find_map(pick)
        .ok_or(AppError::Internal("a write returned no record of the expected kind"))
}
