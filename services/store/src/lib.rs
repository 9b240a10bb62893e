//! The persistence boundary of the observatory: a versioned registry on SQLite (embedded,
//! default) or PostgreSQL (production), through sqlx.
//!
//! Writes are [`Command`]s handed to a single writer task that commits them in groups (one
//! transaction, one fsync, for every command waiting); one rejected command leaves its
//! neighbours untouched, and a caller is answered only once its group has committed. Reads go
//! straight to the pool. Every write, and every patient-level read the API reports with
//! [`Store::record_access`], appends an event to the hash-chained audit trail ([`audit`]) in
//! the same transaction.
//!
//! Architecture invariant: only this crate (and later the analytics extract step) runs SQL.

/// Calls `module::f(writer, reader, args...)` of the store's backend: modules of SQL compiled
/// once per backend (`runs_sql`, `tokens_sql`) take the pool to write to and the pool to read
/// from (the same one on PostgreSQL; SQLite's single writer and its readers).
macro_rules! dispatch {
    ($store:expr, $module:ident :: $f:ident ( $($arg:expr),* )) => {
        match &*$store.backend {
            $crate::Backend::Sqlite { writer, readers } => {
                $crate::backend_sqlite::$module::$f(writer, readers $(, $arg)*).await
            }
            $crate::Backend::Postgres(p) => $crate::backend_pg::$module::$f(p, p $(, $arg)*).await,
        }
    };
}

/// Calls `module::f(conn, args...)` of the store's backend on a connection from the read pool,
/// the wait for it recorded (see [`metrics`]).
macro_rules! read {
    ($store:expr, $module:ident :: $f:ident $(::<$t:ty>)? ( $($arg:expr),* )) => {
        match &*$store.backend {
            $crate::Backend::Sqlite { readers, .. } => {
                let mut conn = $store.metrics.acquire(readers, $crate::metrics::SQLITE_READERS).await?;
                $crate::backend_sqlite::$module::$f$(::<$t>)?(&mut conn $(, $arg)*).await
            }
            $crate::Backend::Postgres(p) => {
                let mut conn = $store.metrics.acquire(p, $crate::metrics::POSTGRES).await?;
                $crate::backend_pg::$module::$f$(::<$t>)?(&mut conn $(, $arg)*).await
            }
        }
    };
}

pub mod audit;
mod backend_pg;
mod backend_sqlite;
mod kinds;
mod metrics;
pub mod reference;
pub mod report_runs;
pub mod tokens;

use std::{collections::HashMap, fmt, sync::Arc, time::Duration};

use chrono::{DateTime, NaiveDate, Utc};
use observatory_domain::{
    DomainError,
    access::{Reach, Scope},
    codes::{Atc, Filiere, Finess, OrphaCode, RegionCode, Rpps},
    corrections::{
        AdverseEventUpdate, CentreUpdate, CohortTransition, FrameworkTransition, PatientUpdate, PrescriberUpdate,
    },
    lifecycle::{AuthorisationTransition, EpisodeDeclaration, EpisodeTransition},
    model::{
        AdverseEvent, Authorisation, AuthorisationStatus, Centre, Cohort, Episode, EpisodeStatus, FollowUp, Framework,
        Pathway, Patient, Prescriber, RecordId, RecordKind,
    },
    treatment_corrections::{AuthorisationUpdate, EpisodeUpdate, FollowUpUpdate},
};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

pub use kinds::Stored;

/// Who wrote a version, when, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Meta {
    pub id: String,
    pub version: i64,
    pub recorded_at: DateTime<Utc>,
    pub recorded_by: String,
    pub reason: String,
    pub request_id: String,
}

/// One version of a record.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub meta: Meta,
    pub record: T,
}

/// A version of any kind of record, as returned by writes and history.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Centre(Versioned<Centre>),
    Prescriber(Versioned<Prescriber>),
    Framework(Versioned<Framework>),
    Cohort(Versioned<Cohort>),
    Patient(Versioned<Patient>),
    Episode(Versioned<Episode>),
    Authorisation(Versioned<Authorisation>),
    FollowUp(Versioned<FollowUp>),
    AdverseEvent(Versioned<AdverseEvent>),
}

impl Record {
    pub fn meta(&self) -> &Meta {
        match self {
            Record::Centre(v) => &v.meta,
            Record::Prescriber(v) => &v.meta,
            Record::Framework(v) => &v.meta,
            Record::Cohort(v) => &v.meta,
            Record::Patient(v) => &v.meta,
            Record::Episode(v) => &v.meta,
            Record::Authorisation(v) => &v.meta,
            Record::FollowUp(v) => &v.meta,
            Record::AdverseEvent(v) => &v.meta,
        }
    }

    /// The version as an audit target, with the digest of its content.
    pub fn audit_target(&self) -> audit::AuditTarget {
        match self {
            Record::Centre(v) => audit::AuditTarget::read(RecordKind::Centre, v),
            Record::Prescriber(v) => audit::AuditTarget::read(RecordKind::Prescriber, v),
            Record::Framework(v) => audit::AuditTarget::read(RecordKind::Framework, v),
            Record::Cohort(v) => audit::AuditTarget::read(RecordKind::Cohort, v),
            Record::Patient(v) => audit::AuditTarget::read(RecordKind::Patient, v),
            Record::Episode(v) => audit::AuditTarget::read(RecordKind::Episode, v),
            Record::Authorisation(v) => audit::AuditTarget::read(RecordKind::Authorisation, v),
            Record::FollowUp(v) => audit::AuditTarget::read(RecordKind::FollowUp, v),
            Record::AdverseEvent(v) => audit::AuditTarget::read(RecordKind::AdverseEvent, v),
        }
    }

    pub fn kind(&self) -> RecordKind {
        match self {
            Record::Centre(_) => RecordKind::Centre,
            Record::Prescriber(_) => RecordKind::Prescriber,
            Record::Framework(_) => RecordKind::Framework,
            Record::Cohort(_) => RecordKind::Cohort,
            Record::Patient(_) => RecordKind::Patient,
            Record::Episode(_) => RecordKind::Episode,
            Record::Authorisation(_) => RecordKind::Authorisation,
            Record::FollowUp(_) => RecordKind::FollowUp,
            Record::AdverseEvent(_) => RecordKind::AdverseEvent,
        }
    }
}

/// A cohort as requested; the store resolves its framework and defaults.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewCohort {
    pub name: String,
    pub filiere: Filiere,
    pub pathway: Pathway,
    pub drug_atc: Atc,
    pub orpha_codes: Vec<OrphaCode>,
    pub framework_id: Option<RecordId>,
    /// `None`: take the framework's schedule (or no schedule).
    pub follow_up_months: Option<u32>,
}

/// A write, already parsed into domain types. Rules that depend on other records are checked by
/// the writer inside the transaction.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "command")]
pub enum Command {
    CreateCentre(Centre),
    CreatePrescriber(Prescriber),
    CreateFramework(Framework),
    CreateCohort(NewCohort),
    RegisterPatient(Patient),
    DeclareEpisode(EpisodeDeclaration),
    TransitionEpisode {
        id: RecordId,
        expected_version: i64,
        transition: EpisodeTransition,
    },
    TransitionAuthorisation {
        id: RecordId,
        expected_version: i64,
        transition: AuthorisationTransition,
    },
    RecordFollowUp(FollowUp),
    RecordAdverseEvent(AdverseEvent),
    UpdatePatient {
        id: RecordId,
        expected_version: i64,
        update: PatientUpdate,
        reason: String,
    },
    UpdateAdverseEvent {
        id: RecordId,
        expected_version: i64,
        update: AdverseEventUpdate,
        reason: String,
    },
    UpdateEpisode {
        id: RecordId,
        expected_version: i64,
        update: EpisodeUpdate,
        reason: String,
    },
    UpdateAuthorisation {
        id: RecordId,
        expected_version: i64,
        update: AuthorisationUpdate,
        reason: String,
    },
    UpdateFollowUp {
        id: RecordId,
        expected_version: i64,
        update: FollowUpUpdate,
        reason: String,
    },
    TransitionCohort {
        id: RecordId,
        expected_version: i64,
        transition: CohortTransition,
    },
    TransitionFramework {
        id: RecordId,
        expected_version: i64,
        transition: FrameworkTransition,
    },
    UpdateCentre {
        finess: Finess,
        expected_version: i64,
        update: CentreUpdate,
        reason: String,
    },
    UpdatePrescriber {
        rpps: Rpps,
        expected_version: i64,
        update: PrescriberUpdate,
        reason: String,
    },
    /// A patient's case put to an RCP: a new version of the patient with the review asked for.
    RequestRcpReview {
        patient_id: RecordId,
        expected_version: i64,
        request: observatory_domain::rcp::RcpRequest,
    },
    /// An RCP's opinion on a review of the patient's.
    RecordRcpOpinion {
        patient_id: RecordId,
        expected_version: i64,
        opinion: observatory_domain::rcp::RcpOpinionRecord,
    },
    /// Two records of one person: `merged` into `kept` (see `observatory_domain::merge`).
    MergePatients {
        kept: RecordId,
        kept_version: i64,
        merged: RecordId,
        merged_version: i64,
        reason: String,
    },
}

impl Command {
    /// Name of the operation, used as the idempotency scope and in history reasons.
    pub fn name(&self) -> &'static str {
        match self {
            Command::CreateCentre(_) => "CreateCentre",
            Command::CreatePrescriber(_) => "CreatePrescriber",
            Command::CreateFramework(_) => "CreateFramework",
            Command::CreateCohort(_) => "CreateCohort",
            Command::RegisterPatient(_) => "RegisterPatient",
            Command::DeclareEpisode(_) => "DeclareEpisode",
            Command::TransitionEpisode { .. } => "TransitionEpisode",
            Command::TransitionAuthorisation { .. } => "TransitionAuthorisation",
            Command::RecordFollowUp(_) => "RecordFollowUp",
            Command::RecordAdverseEvent(_) => "RecordAdverseEvent",
            Command::UpdatePatient { .. } => "UpdatePatient",
            Command::UpdateAdverseEvent { .. } => "UpdateAdverseEvent",
            Command::UpdateEpisode { .. } => "UpdateEpisode",
            Command::UpdateAuthorisation { .. } => "UpdateAuthorisation",
            Command::UpdateFollowUp { .. } => "UpdateFollowUp",
            Command::TransitionCohort { .. } => "TransitionCohort",
            Command::TransitionFramework { .. } => "TransitionFramework",
            Command::UpdateCentre { .. } => "UpdateCentre",
            Command::UpdatePrescriber { .. } => "UpdatePrescriber",
            Command::RequestRcpReview { .. } => "RequestRcpReview",
            Command::RecordRcpOpinion { .. } => "RecordRcpOpinion",
            Command::MergePatients { .. } => "MergePatients",
        }
    }

    /// SHA-256 of the command's canonical JSON: what an idempotency key is bound to.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let json = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(sha2::Sha256::digest(&json))
    }
}

/// Who is writing and under which request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteContext {
    /// `role:token-id` for a token holder, the name of a local process otherwise.
    pub actor: String,
    pub request_id: String,
    /// W3C trace id of the call (32 hexadecimal digits), empty when it carried none.
    pub trace_id: String,
    /// Client idempotency key of a create call.
    pub idempotency_key: Option<String>,
    /// The centres and filières of the caller's token, for the rules that depend on them (a
    /// registration belongs to its caller's scope); `None` for a local process (`seed`, the
    /// command line), which holds the whole registry.
    pub scope: Option<observatory_domain::access::Scope>,
}

/// The versions a command wrote, the primary one first.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub records: Vec<Record>,
    /// True when this is the replay of an earlier call with the same idempotency key.
    pub replayed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{kind} {id} is at version {current}, not {expected}: read it again and retry")]
    Stale {
        kind: &'static str,
        id: String,
        expected: i64,
        current: i64,
    },
    #[error("idempotency key already used by {scope} with another request payload")]
    IdempotencyMismatch { scope: String },
    /// A call with the same idempotency key, on another server of the same database, committed
    /// while this one was being written: nothing of this one was stored.
    #[error(
        "a concurrent call with the same idempotency key committed first: retry with the same key to get its answer"
    )]
    ConcurrentKey,
    #[error("invalid page token")]
    BadPageToken,
    #[error("the registry is shutting down")]
    ShuttingDown,
    #[error("database error")]
    Database(#[source] Arc<sqlx::Error>),
    /// The database cannot take the call now: unreachable, refusing connections, a standby,
    /// read-only or out of space, or too slow. Retrying later (or elsewhere) may succeed.
    #[error("the database is unavailable")]
    Unavailable(#[source] Arc<sqlx::Error>),
    #[error("database migration failed")]
    Migrate(#[source] Arc<sqlx::migrate::MigrateError>),
    #[error("stored record {kind} {id} could not be decoded")]
    Corrupt {
        kind: &'static str,
        id: String,
        #[source]
        source: Arc<serde_json::Error>,
    },
    #[error("unsupported database url: {0}")]
    BadUrl(String),
    #[error("a scan consumer failed")]
    Sink(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) {
            StoreError::Unavailable(Arc::new(e))
        } else {
            StoreError::Database(Arc::new(e))
        }
    }
}

impl StoreError {
    /// The kind of refusal, as the audit trail records it (gRPC status names).
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Domain(DomainError::Invalid(_)) => "INVALID_ARGUMENT",
            StoreError::Domain(DomainError::Precondition(_) | DomainError::IllegalTransition { .. }) => {
                "FAILED_PRECONDITION"
            }
            StoreError::NotFound { .. } => "NOT_FOUND",
            StoreError::AlreadyExists(_) => "ALREADY_EXISTS",
            StoreError::Stale { .. } | StoreError::ConcurrentKey => "ABORTED",
            StoreError::IdempotencyMismatch { .. } | StoreError::BadPageToken => "INVALID_ARGUMENT",
            StoreError::ShuttingDown | StoreError::Unavailable(_) => "UNAVAILABLE",
            StoreError::Database(_)
            | StoreError::Migrate(_)
            | StoreError::Corrupt { .. }
            | StoreError::BadUrl(_)
            | StoreError::Sink(_) => "INTERNAL",
        }
    }

    /// A database error shared by every command of a group, classified like any other.
    pub(crate) fn of_shared(e: Arc<sqlx::Error>) -> StoreError {
        if is_unavailable(&e) {
            StoreError::Unavailable(e)
        } else {
            StoreError::Database(e)
        }
    }
}

/// Whether a database error is a fault of the database's availability (the call may succeed
/// later) rather than of the request or of this program.
fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => {
            if let Some(pg) = d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                let code = pg.code();
                // 08: connection exceptions; 53: insufficient resources (disk full, out of
                // memory, too many connections); 57P01-03: shutting down or not accepting
                // connections; 57014: cancelled by statement_timeout; 25006: read-only
                // transaction (a standby after failover); 55P03: lock not available.
                code.starts_with("08")
                    || code.starts_with("53")
                    || matches!(code, "57P01" | "57P02" | "57P03" | "57014" | "25006" | "55P03")
            } else if d.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // Primary result codes: BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN.
                let primary = d.code().and_then(|c| c.parse::<i64>().ok()).map(|c| c & 0xff);
                matches!(primary, Some(5 | 6 | 8 | 10 | 13 | 14))
            } else {
                false
            }
        }
        _ => false,
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migrate(Arc::new(e))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: Option<String>,
}

/// Page request: size already bounded by the caller (1..=500).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PageRequest {
    pub size: u32,
    pub token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CentreFilter {
    pub region: Option<RegionCode>,
    pub filiere: Option<Filiere>,
}

/// Which adverse events a list keeps.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AdverseEventFilter {
    /// Onset on or after this day.
    pub onset_from: Option<NaiveDate>,
    /// Onset on or before this day.
    pub onset_to: Option<NaiveDate>,
    pub serious_only: bool,
    /// Events of the episodes of this cohort only.
    pub cohort_id: Option<RecordId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PatientFilter {
    /// The pseudonym's value: an IdMR, or the keyed pseudonym of identity fields.
    pub pseudonym: Option<String>,
    pub cohort_id: Option<RecordId>,
    /// Patients with a current episode of this pathway and/or in this status.
    pub pathway: Option<Pathway>,
    pub status: Option<EpisodeStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CohortFilter {
    pub pathway: Option<Pathway>,
    pub drug_atc: Option<Atc>,
    pub filiere: Option<Filiere>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EpisodeFilter {
    pub cohort_id: Option<RecordId>,
    pub patient_id: Option<RecordId>,
    pub centre: Option<Finess>,
    pub pathway: Option<Pathway>,
    pub drug_atc: Option<Atc>,
    pub orpha_code: Option<OrphaCode>,
    pub status: Option<EpisodeStatus>,
    pub request_from: Option<NaiveDate>,
    pub request_to: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FrameworkFilter {
    pub pathway: Option<Pathway>,
    pub drug_atc: Option<Atc>,
}

/// Connection settings.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `sqlite://path?mode=rwc`, `sqlite:path` or `postgres://...`.
    pub url: String,
    /// Readers in the pool (SQLite) or connections in total (PostgreSQL).
    pub max_connections: u32,
    /// How many waiting commands one transaction may carry.
    pub max_batch: usize,
    /// How long a SQLite connection waits on a lock before failing.
    pub busy_timeout: Duration,
    /// PostgreSQL: how long a call waits for a connection (including connecting) before it is
    /// answered UNAVAILABLE.
    pub acquire_timeout: Duration,
    /// PostgreSQL: the longest a statement may run (`statement_timeout`) before it is cancelled
    /// and its call answered UNAVAILABLE.
    pub statement_timeout: Duration,
    /// Where the store's instruments report: `None` for the global meter provider (what the
    /// binary installs), a meter of its own for a test that reads its metrics in isolation.
    pub meter: Option<opentelemetry::metrics::Meter>,
    /// The key of the audit events' MACs (kept outside the database); `None`: events are hash
    /// chained only.
    pub audit_key: Option<audit::AuditKey>,
}

impl StoreOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 8,
            max_batch: 256,
            busy_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_millis(1500),
            statement_timeout: Duration::from_secs(20),
            meter: None,
            audit_key: None,
        }
    }
}

/// What the writer task is handed: a command, or the audit event of a read. Jobs move through
/// a channel by value once each; boxing the larger variant would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Work {
    Command { command: Command, ctx: WriteContext },
    Access(audit::AuditEntry),
}

pub(crate) struct Job {
    pub work: Work,
    pub reply: oneshot::Sender<Result<Written>>,
    /// The caller's span: the group that commits the job links to it.
    pub span: tracing::Span,
}

#[derive(Clone)]
enum Backend {
    /// Read-only readers, and the single writer connection (shared with the writer task).
    Sqlite {
        readers: sqlx::SqlitePool,
        writer: sqlx::SqlitePool,
    },
    Postgres(sqlx::PgPool),
}

/// Handle on the registry: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Store {
    backend: Arc<Backend>,
    writer: mpsc::Sender<Job>,
    metrics: metrics::StoreMetrics,
    /// Signalled by the writer after each commit that added to the change feed.
    changes: tokio::sync::watch::Receiver<u64>,
    /// When and why a write last failed for want of the database (read-only, full, gone),
    /// cleared by the next write that commits: readiness reports it.
    write_fault: Arc<std::sync::Mutex<Option<(std::time::Instant, String)>>>,
    /// Signalled when `write_fault` turns on or off, so that health follows at once rather than
    /// at its next periodic check.
    write_fault_changed: Arc<tokio::sync::Notify>,
    /// The key of the audit events' MACs, for appenders and verification.
    pub(crate) audit_key: Option<audit::AuditKey>,
}

/// How long a write refused for want of the database keeps the store not ready, unless a later
/// write commits: long enough for health checks to see it, short enough that readiness comes back
/// by itself once the fault is gone (the next write then sets it again if not).
pub const WRITE_FAULT_HOLD: Duration = Duration::from_secs(10);

/// A version written to the registry, at its position in the change feed.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub position: i64,
    pub record: Record,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match *self.backend {
            Backend::Sqlite { .. } => "Store(sqlite)",
            Backend::Postgres(_) => "Store(postgres)",
        })
    }
}

/// Today's date for "not in the future" rules: the calendar date at UTC+4, the easternmost
/// offset of the French regions (La Reunion), so no date that has begun somewhere in France is
/// refused.
pub fn today(now: DateTime<Utc>) -> NaiveDate {
    (now + chrono::Duration::hours(4)).date_naive()
}

impl Store {
    /// Connects (creating the SQLite file if needed). Does not migrate: call [`Store::migrate`].
    pub async fn connect(options: &StoreOptions) -> Result<Store> {
        let (tx, rx) = mpsc::channel(4096);
        let max_batch = options.max_batch.max(1);
        let backend = if options.url.starts_with("sqlite:") {
            let (readers, writer) = backend_sqlite::connect(options).await?;
            Arc::new(Backend::Sqlite { readers, writer })
        } else if options.url.starts_with("postgres://") || options.url.starts_with("postgresql://") {
            Arc::new(Backend::Postgres(backend_pg::connect(options).await?))
        } else {
            return Err(StoreError::BadUrl(redact_url(&options.url)));
        };
        let meter = options
            .meter
            .clone()
            .unwrap_or_else(|| opentelemetry::global::meter("observatory"));
        let metrics = metrics::StoreMetrics::new(&meter, &backend);
        let (changed, changes) = tokio::sync::watch::channel(0);
        match &*backend {
            Backend::Sqlite { writer, .. } => {
                let writer = backend_sqlite::shared::GroupWriter::new(
                    writer.clone(),
                    metrics::SQLITE_WRITER,
                    metrics.clone(),
                    changed,
                    options.audit_key.clone(),
                );
                tokio::spawn(writer.run(rx, max_batch));
            }
            Backend::Postgres(pool) => {
                let writer = backend_pg::shared::GroupWriter::new(
                    pool.clone(),
                    metrics::POSTGRES,
                    metrics.clone(),
                    changed,
                    options.audit_key.clone(),
                );
                tokio::spawn(writer.run(rx, max_batch));
            }
        }
        Ok(Store {
            backend,
            writer: tx,
            metrics,
            changes,
            write_fault: Arc::default(),
            write_fault_changed: Arc::default(),
            audit_key: options.audit_key.clone(),
        })
    }

    /// Applies pending migrations, records the shipped lists as a reference release and loads
    /// the shipped frameworks (idempotent).
    pub async fn migrate(&self) -> Result<()> {
        match &*self.backend {
            Backend::Sqlite { writer, .. } => {
                sqlx::migrate!("../../migrations/sqlite").run(writer).await?;
                backend_sqlite::shared::load_reference(writer, self.audit_key.as_ref()).await
            }
            Backend::Postgres(p) => {
                sqlx::migrate!("../../migrations/postgres").run(p).await?;
                backend_pg::shared::load_reference(p, self.audit_key.as_ref()).await
            }
        }
    }

    /// Hands a command to the group-commit writer and waits for its commit.
    pub async fn execute(&self, command: Command, ctx: WriteContext) -> Result<Written> {
        let span = tracing::info_span!("store.execute", command = command.name());
        self.submit(Work::Command { command, ctx }).instrument(span).await
    }

    /// Hands work to the writer and waits for the commit of its group, in the current span (the
    /// group's span links to it).
    pub(crate) async fn submit(&self, work: Work) -> Result<Written> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(Job {
                work,
                reply,
                span: tracing::Span::current(),
            })
            .await
            .map_err(|_| StoreError::ShuttingDown)?;
        let result = rx.await.map_err(|_| StoreError::ShuttingDown)?;
        let mut fault = self.write_fault.lock().unwrap_or_else(|e| e.into_inner());
        let held = |f: &Option<(std::time::Instant, String)>| {
            f.as_ref().is_some_and(|(at, _)| at.elapsed() < WRITE_FAULT_HOLD)
        };
        let before = held(&fault);
        match &result {
            Ok(_) => *fault = None,
            Err(StoreError::Unavailable(e)) => *fault = Some((std::time::Instant::now(), e.to_string())),
            Err(_) => {}
        }
        let after = held(&fault);
        drop(fault);
        if before != after {
            self.write_fault_changed.notify_one();
        }
        result
    }

    /// Waits until a write fails for want of the database after writes went through, or the
    /// reverse: readiness has changed, and health should be checked now.
    pub async fn write_fault_changed(&self) {
        self.write_fault_changed.notified().await;
    }

    /// Current version of a record, `None` when absent.
    pub async fn get<T: Stored>(&self, id: &str) -> Result<Option<Versioned<T>>> {
        async { read!(self, shared::get_current::<T>(id)) }
            .instrument(tracing::info_span!("store.get", kind = T::KIND.code()))
            .await
    }

    /// Current version of a record, NOT_FOUND when absent.
    pub async fn require<T: Stored>(&self, id: &str) -> Result<Versioned<T>> {
        self.get::<T>(id).await?.ok_or_else(|| StoreError::NotFound {
            kind: T::KIND.code(),
            id: id.to_owned(),
        })
    }

    /// Every version of a record, oldest first; NOT_FOUND when it has none.
    pub async fn history(&self, kind: RecordKind, id: &str) -> Result<Vec<Record>> {
        let versions = async { read!(self, shared::history(kind, id)) }
            .instrument(tracing::info_span!("store.history", kind = kind.code()))
            .await?;
        if versions.is_empty() {
            return Err(StoreError::NotFound {
                kind: kind.code(),
                id: id.to_owned(),
            });
        }
        Ok(versions)
    }

    pub async fn list_centres(&self, f: &CentreFilter, page: &PageRequest) -> Result<Page<Versioned<Centre>>> {
        let mut q = kinds::ListQuery::new(page)?;
        q.eq("region_code", f.region.as_ref().map(|r| r.as_str().to_owned()));
        if let Some(f) = &f.filiere {
            q.filters
                .push(("filiere", kinds::Filter::CentresOfFiliere(f.as_str().to_owned())));
        }
        self.list(q).await
    }

    /// Patient records, by id: all of them, or (`within` a scope) those it covers; of one
    /// pseudonym (an IdMR, or the keyed pseudonym of identity fields) and/or with a current
    /// episode in one cohort.
    pub async fn list_patients(
        &self,
        f: &PatientFilter,
        within: Option<&Scope>,
        page: &PageRequest,
    ) -> Result<Page<Versioned<Patient>>> {
        let mut q = kinds::ListQuery::new(page)?;
        if let Some(scope) = within {
            q.patients_within(scope);
        }
        q.eq("pseudonym", f.pseudonym.clone());
        q.patients_in_cohort(f.cohort_id.as_ref().map(|c| c.as_str().to_owned()));
        if f.pathway.is_some() || f.status.is_some() {
            q.filters.push((
                "id",
                kinds::Filter::PatientsWithEpisode {
                    pathway: f.pathway.map(|p| p.code().to_owned()),
                    status: f.status.map(|s| s.code().to_owned()),
                },
            ));
        }
        // A record merged into another is that other's person: listed there only, but found by
        // its own pseudonym (its page names the record it was merged into).
        if f.pseudonym.is_none() {
            q.filters.push(("merged_into", kinds::Filter::IsNull));
        }
        self.list(q).await
    }

    /// Prescribers, by RPPS: all of them, or those practising at `centre`.
    pub async fn list_prescribers(
        &self,
        centre: Option<&Finess>,
        page: &PageRequest,
    ) -> Result<Page<Versioned<Prescriber>>> {
        let mut q = kinds::ListQuery::new(page)?;
        q.eq("centre_finess", centre.map(|c| c.as_str().to_owned()));
        self.list(q).await
    }

    /// Cohorts matching `f`: all of them, or (`within` a scope) those whose catalogue entries
    /// the scope may read.
    pub async fn list_cohorts(
        &self,
        f: &CohortFilter,
        within: Option<&Scope>,
        page: &PageRequest,
    ) -> Result<Page<Versioned<Cohort>>> {
        let mut q = kinds::ListQuery::new(page)?;
        if let Some(scope) = within {
            q.cohorts_within(scope);
        }
        q.eq("pathway", f.pathway.map(|p| p.code().to_owned()));
        q.eq("drug_atc", f.drug_atc.as_ref().map(|r| r.as_str().to_owned()));
        q.eq("filiere", f.filiere.as_ref().map(|r| r.as_str().to_owned()));
        self.list(q).await
    }

    /// The filières that have at least one cohort (current versions), sorted.
    pub async fn cohort_filieres(&self) -> Result<Vec<String>> {
        let mut filieres = std::collections::BTreeSet::new();
        let mut page = PageRequest { size: 500, token: None };
        loop {
            let q = kinds::ListQuery::new(&page)?;
            let got: Page<Versioned<Cohort>> = self.list(q).await?;
            filieres.extend(got.items.into_iter().map(|c| c.record.filiere.to_string()));
            match got.next_page_token {
                Some(t) => page.token = Some(t),
                None => return Ok(filieres.into_iter().collect()),
            }
        }
    }

    /// The cohorts bound to a framework (current versions).
    pub async fn cohorts_of_framework(&self, framework_id: &str) -> Result<Vec<Versioned<Cohort>>> {
        let mut all = Vec::new();
        let mut page = PageRequest { size: 500, token: None };
        loop {
            let mut q = kinds::ListQuery::new(&page)?;
            q.eq("framework_id", Some(framework_id.to_owned()));
            let got: Page<Versioned<Cohort>> = self.list(q).await?;
            all.extend(got.items);
            match got.next_page_token {
                Some(t) => page.token = Some(t),
                None => return Ok(all),
            }
        }
    }

    pub async fn list_frameworks(&self, f: &FrameworkFilter) -> Result<Vec<Versioned<Framework>>> {
        let mut all = Vec::new();
        let mut page = PageRequest { size: 500, token: None };
        loop {
            let mut q = kinds::ListQuery::new(&page)?;
            q.eq("pathway", f.pathway.map(|p| p.code().to_owned()));
            q.eq("drug_atc", f.drug_atc.as_ref().map(|r| r.as_str().to_owned()));
            let got: Page<Versioned<Framework>> = self.list(q).await?;
            all.extend(got.items);
            match got.next_page_token {
                Some(t) => page.token = Some(t),
                None => return Ok(all),
            }
        }
    }

    /// Episodes matching `f`: all of them, or (`within` a scope) those the scope covers.
    pub async fn list_episodes(
        &self,
        f: &EpisodeFilter,
        within: Option<&Scope>,
        page: &PageRequest,
    ) -> Result<Page<Versioned<Episode>>> {
        let mut q = kinds::ListQuery::new(page)?;
        if let Some(scope) = within {
            q.episodes_within(scope);
        }
        q.eq("cohort_id", f.cohort_id.as_ref().map(|r| r.as_str().to_owned()));
        q.eq("patient_id", f.patient_id.as_ref().map(|r| r.as_str().to_owned()));
        q.eq("centre_finess", f.centre.as_ref().map(|r| r.as_str().to_owned()));
        q.eq("pathway", f.pathway.map(|p| p.code().to_owned()));
        q.eq("drug_atc", f.drug_atc.as_ref().map(|r| r.as_str().to_owned()));
        q.eq(
            "indication_orpha_code",
            f.orpha_code.as_ref().map(|r| r.as_str().to_owned()),
        );
        q.eq("status", f.status.map(|s| s.code().to_owned()));
        q.date_between("request_date", f.request_from, f.request_to);
        self.list(q).await
    }

    /// Authorisations in force (granted or renewed) whose validity ends between `from` and `to`,
    /// of the episodes `within` covers (all without a scope), at most `limit` (1 to 500).
    pub async fn expiring_authorisations(
        &self,
        within: Option<&Scope>,
        from: NaiveDate,
        to: NaiveDate,
        limit: u32,
    ) -> Result<Page<Versioned<Authorisation>>> {
        let mut q = kinds::ListQuery::new(&PageRequest {
            size: limit,
            token: None,
        })?;
        if let Some(scope) = within {
            q.authorisations_within(scope);
        }
        q.filters.push((
            "status",
            kinds::Filter::In(vec![
                AuthorisationStatus::Granted.code().to_owned(),
                AuthorisationStatus::Renewed.code().to_owned(),
            ]),
        ));
        q.date_between("valid_to", Some(from), Some(to));
        self.list(q).await
    }

    /// Serious adverse events of the episodes `within` covers, a page at a time.
    pub async fn serious_adverse_events(
        &self,
        within: Option<&Scope>,
        page: &PageRequest,
    ) -> Result<Page<Versioned<AdverseEvent>>> {
        let filter = AdverseEventFilter {
            serious_only: true,
            ..AdverseEventFilter::default()
        };
        self.list_adverse_events(&filter, within, page).await
    }

    /// Adverse events of the episodes `within` covers (all of them for `None`) whose onset falls
    /// within the filter's dates, serious ones only when it says so; a page at a time, by id.
    pub async fn list_adverse_events(
        &self,
        f: &AdverseEventFilter,
        within: Option<&Scope>,
        page: &PageRequest,
    ) -> Result<Page<Versioned<AdverseEvent>>> {
        let mut q = kinds::ListQuery::new(page)?;
        if let Some(scope) = within {
            // Like an authorisation, an event belongs where its episode (`episode_id`) does.
            q.authorisations_within(scope);
        }
        q.date_between("onset_date", f.onset_from, f.onset_to);
        if f.serious_only {
            q.filters.push(("serious", kinds::Filter::IsTrue));
        }
        if let Some(cohort) = &f.cohort_id {
            q.filters.push((
                "episode_id",
                kinds::Filter::EpisodesOfCohort(cohort.as_str().to_owned()),
            ));
        }
        self.list(q).await
    }

    /// The date of the latest visit of each of `episodes` (at most 1000) that has one.
    pub async fn last_visit_dates(&self, episodes: &[String]) -> Result<std::collections::HashMap<String, NaiveDate>> {
        let ids = episodes.iter().take(1000).cloned().collect::<Vec<_>>();
        let rows = read!(self, shared::last_visit_dates(ids))?;
        Ok(rows.into_iter().collect())
    }

    /// Reads every record of kind `T` as the registry knew it at `as_of`, `batch` records at a
    /// time in id order, handing each batch to `sink`: memory stays bounded by the batch size.
    pub async fn scan_as_of<T: Stored>(
        &self,
        as_of: DateTime<Utc>,
        batch: u32,
        sink: impl FnMut(Vec<Versioned<T>>) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>,
    ) -> Result<u64> {
        self.scan(as_of, true, batch, sink).await
    }

    /// The patient records that stand for one person enrolled by several scopes (one pseudonym,
    /// several records current at `as_of`): each record's id, the id of that person's first
    /// record, and whether the record objects to the reuse of its data. Reports count such a
    /// person once, under the first record, and leave the person out if any record objects.
    pub async fn people_enrolled_twice(&self, as_of: DateTime<Utc>) -> Result<Vec<(String, String, bool)>> {
        async { read!(self, shared::people_enrolled_twice(as_of)) }
            .instrument(tracing::info_span!("store.scan", kind = "PATIENT"))
            .await
    }

    /// Reads every version of kind `T` recorded at or before `as_of` (the whole history as it
    /// was known then), `batch` versions at a time in (id, version) order.
    pub async fn scan_history_as_of<T: Stored>(
        &self,
        as_of: DateTime<Utc>,
        batch: u32,
        sink: impl FnMut(Vec<Versioned<T>>) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>,
    ) -> Result<u64> {
        self.scan(as_of, false, batch, sink).await
    }

    async fn scan<T: Stored>(
        &self,
        as_of: DateTime<Utc>,
        current_only: bool,
        batch: u32,
        sink: impl FnMut(Vec<Versioned<T>>) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>,
    ) -> Result<u64> {
        let span = tracing::info_span!(
            "store.scan",
            kind = T::KIND.code(),
            current_only,
            rows = tracing::field::Empty
        );
        let scanned = self
            .scan_batches(as_of, current_only, batch, sink)
            .instrument(span.clone())
            .await;
        if let Ok(rows) = &scanned {
            span.record("rows", rows);
        }
        scanned
    }

    async fn scan_batches<T: Stored>(
        &self,
        as_of: DateTime<Utc>,
        current_only: bool,
        batch: u32,
        mut sink: impl FnMut(Vec<Versioned<T>>) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>,
    ) -> Result<u64> {
        let limit = i64::from(batch.max(1));
        let mut after: Option<(String, i64)> = None;
        let mut total = 0u64;
        loop {
            let cursor = after.as_ref().map(|(id, v)| (id.as_str(), *v));
            let rows = read!(
                self,
                shared::versions_recorded_by::<T>(as_of, current_only, cursor, limit)
            )?;
            let n = rows.len();
            total += n as u64;
            after = rows.last().map(|v| (v.meta.id.clone(), v.meta.version));
            if n > 0 {
                sink(rows).map_err(StoreError::Sink)?;
            }
            if (n as i64) < limit {
                return Ok(total);
            }
        }
    }

    /// Where a record belongs, for access checks (see [`Reach`]): nothing for a record that
    /// does not exist, so that a scoped caller cannot tell it from one out of scope.
    pub async fn reach(&self, kind: RecordKind, id: &str) -> Result<Reach> {
        let ids = [id.to_owned()];
        let mut reaches = async { read!(self, shared::reach_many(kind, &ids)) }
            .instrument(tracing::info_span!("store.reach", kind = kind.code()))
            .await?;
        Ok(reaches.remove(id).unwrap_or_default())
    }

    /// Where each of `ids`, records of one kind, belongs (see [`Store::reach`]); ids of records
    /// that do not exist or belong nowhere are absent.
    pub async fn reach_many(&self, kind: RecordKind, ids: &[String]) -> Result<HashMap<String, Reach>> {
        async { read!(self, shared::reach_many(kind, ids)) }
            .instrument(tracing::info_span!(
                "store.reach",
                kind = kind.code(),
                records = ids.len()
            ))
            .await
    }

    /// Up to `limit` changes of the registry after position `after`, in commit order: every
    /// version written, of `kinds` (every kind when empty). Positions have no gaps.
    pub async fn changes_after(&self, after: i64, kinds: &[RecordKind], limit: u32) -> Result<Vec<Change>> {
        let rows = async { read!(self, shared::changes_after(after, kinds, i64::from(limit.max(1)))) }
            .instrument(tracing::info_span!("store.changes", after))
            .await?;
        Ok(rows
            .into_iter()
            .map(|(position, record)| Change { position, record })
            .collect())
    }

    /// A receiver whose value changes after each commit that added to the change feed (of this
    /// process: writers of other processes on the same PostgreSQL database do not signal it).
    pub fn watch_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.clone()
    }

    /// Current versions of the follow-ups or adverse events of one episode.
    pub async fn list_by_episode<T: Stored>(
        &self,
        episode: &RecordId,
        page: &PageRequest,
    ) -> Result<Page<Versioned<T>>> {
        let mut q = kinds::ListQuery::new(page)?;
        q.eq("episode_id", Some(episode.as_str().to_owned()));
        self.list(q).await
    }

    async fn list<T: Stored>(&self, q: kinds::ListQuery) -> Result<Page<Versioned<T>>> {
        async { read!(self, shared::list::<T>(q)) }
            .instrument(tracing::info_span!("store.list", kind = T::KIND.code()))
            .await
    }

    /// Whether the registry can serve: the database answers within `within`, and every
    /// migration this binary carries has been applied to it. `Err` says why not, for the log.
    pub async fn readiness(&self, within: Duration) -> std::result::Result<(), String> {
        const APPLIED: &str = "SELECT version FROM _sqlx_migrations WHERE success";
        let (expected, applied): (Vec<i64>, _) = match &*self.backend {
            Backend::Sqlite { readers: p, .. } => (
                sqlx::migrate!("../../migrations/sqlite")
                    .iter()
                    .map(|m| m.version)
                    .collect(),
                tokio::time::timeout(within, sqlx::query_scalar::<_, i64>(APPLIED).fetch_all(p)).await,
            ),
            Backend::Postgres(p) => (
                sqlx::migrate!("../../migrations/postgres")
                    .iter()
                    .map(|m| m.version)
                    .collect(),
                tokio::time::timeout(within, sqlx::query_scalar::<_, i64>(APPLIED).fetch_all(p)).await,
            ),
        };
        let applied = match applied {
            Err(_) => return Err(format!("the database did not answer within {} ms", within.as_millis())),
            Ok(Err(e)) => return Err(format!("the database cannot be read: {e}")),
            Ok(Ok(applied)) => applied,
        };
        let missing: Vec<i64> = expected.into_iter().filter(|v| !applied.contains(v)).collect();
        if !missing.is_empty() {
            return Err(format!("migrations not applied to the database: {missing:?}"));
        }
        if let Backend::Postgres(p) = &*self.backend {
            // After a failover the old primary may come back as a standby: it answers reads and
            // refuses every write.
            let standby = tokio::time::timeout(
                within,
                sqlx::query_scalar::<_, bool>("SELECT pg_is_in_recovery()").fetch_one(p),
            )
            .await;
            match standby {
                Ok(Ok(false)) => {}
                Ok(Ok(true)) => return Err("the database is a read-only standby".to_owned()),
                Ok(Err(e)) => return Err(format!("the database cannot be read: {e}")),
                Err(_) => return Err(format!("the database did not answer within {} ms", within.as_millis())),
            }
        }
        let fault = self.write_fault.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match fault {
            Some((at, why)) if at.elapsed() < WRITE_FAULT_HOLD => {
                Err(format!("writes are refused by the database: {why}"))
            }
            _ => Ok(()),
        }
    }

    /// Checks that the database answers (for readiness).
    pub async fn ping(&self) -> Result<()> {
        match &*self.backend {
            Backend::Sqlite { readers: p, .. } => sqlx::query("SELECT 1").execute(p).await.map(drop)?,
            Backend::Postgres(p) => sqlx::query("SELECT 1").execute(p).await.map(drop)?,
        }
        Ok(())
    }

    /// SQLite: writes a consistent copy of the whole database to `path` (a new file) while the
    /// registry goes on serving (`VACUUM INTO`, a read transaction: writers are not held up).
    /// PostgreSQL: refused, naming the `pg_dump` procedure, which does the same there.
    pub async fn backup(&self, path: &std::path::Path) -> Result<()> {
        match &*self.backend {
            Backend::Sqlite { readers, .. } => {
                if path.exists() {
                    return Err(StoreError::AlreadyExists(format!(
                        "{} exists: a backup is written to a new file",
                        path.display()
                    )));
                }
                let target = path.to_string_lossy().into_owned();
                sqlx::query("VACUUM INTO $1").bind(target).execute(readers).await?;
                Ok(())
            }
            Backend::Postgres(_) => Err(StoreError::BadUrl(
                "a PostgreSQL registry is backed up with pg_dump --format=custom (README, Operations)".to_owned(),
            )),
        }
    }

    /// Closes the pools; the writer stops when the last handle is dropped.
    pub async fn close(&self) {
        match &*self.backend {
            Backend::Sqlite { readers, writer } => {
                readers.close().await;
                writer.close().await;
            }
            Backend::Postgres(p) => p.close().await,
        }
    }

    /// Runs a read-only SQL query returning one integer, for tests and diagnostics (table
    /// counts). Not exposed over the network.
    pub async fn scalar_i64(&self, sql: &'static str) -> Result<i64> {
        Ok(match &*self.backend {
            Backend::Sqlite { readers: p, .. } => sqlx::query_scalar(sql).fetch_one(p).await?,
            Backend::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await?,
        })
    }
}

/// Hides the password of a database URL for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &url[scheme_end + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}://{}:***@{}", &url[..scheme_end], user, &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// Helpers for the test suites of this workspace (fresh databases per test).
#[doc(hidden)]
pub mod testing {
    use sqlx::Connection;

    /// The PostgreSQL server tests run against, when `OBSERVATORY_TEST_POSTGRES_URL` is set.
    /// Once it is set, failing to reach the server fails the tests: they never skip silently.
    pub fn postgres_url() -> Option<String> {
        std::env::var("OBSERVATORY_TEST_POSTGRES_URL")
            .ok()
            .filter(|s| !s.is_empty())
    }

    /// Creates a database with a unique name on the server of `base` and returns its URL.
    ///
    /// # Panics
    /// When the server cannot be reached or refuses: tests must fail, not skip.
    pub async fn fresh_postgres_database(base: &str) -> String {
        let name = format!("observatory_test_{}", uuid::Uuid::now_v7().simple());
        let mut conn = sqlx::PgConnection::connect(base)
            .await
            .unwrap_or_else(|e| panic!("OBSERVATORY_TEST_POSTGRES_URL is set but PostgreSQL is unreachable: {e}"));
        // The name is generated above from hex digits only.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("cannot create test database: {e}"));
        conn.close().await.ok();
        let prefix = base.rsplit_once('/').map_or(base, |(prefix, _)| prefix);
        format!("{prefix}/{name}")
    }

    /// The baseline of the write benchmarks: `ops` bare single-row inserts into a table of their
    /// own (`bench_rows`) on the database of `url`, from `clients` concurrent callers, each
    /// insert its own transaction with full durability (SQLite: WAL, `synchronous=FULL`, its one
    /// writer connection; PostgreSQL: as configured, over up to 64 connections). Returns inserts
    /// per second. Ids are made of `run` and the insert's number, so runs do not collide.
    ///
    /// # Panics
    /// When the database refuses: a benchmark has nothing to measure then.
    pub async fn bare_inserts(url: &str, run: usize, ops: usize, clients: usize) -> f64 {
        macro_rules! go {
            ($pool:expr) => {{
                let pool = $pool;
                sqlx::query("CREATE TABLE IF NOT EXISTS bench_rows (id TEXT PRIMARY KEY, body TEXT NOT NULL)")
                    .execute(&pool)
                    .await
                    .expect("table");
                let inserting = pool.clone();
                let rate = per_second(ops, clients, move |i| {
                    let pool = inserting.clone();
                    async move {
                        sqlx::query("INSERT INTO bench_rows (id, body) VALUES ($1, $2)")
                            .bind(format!("r{run}-{i}"))
                            .bind("{\"visit_date\":\"2025-02-01\",\"efficacy\":\"STABLE\"}")
                            .execute(&pool)
                            .await
                            .expect("insert");
                    }
                })
                .await;
                pool.close().await;
                rate
            }};
        }
        if url.starts_with("sqlite:") {
            let options = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(url)
                .expect("url")
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
                .busy_timeout(std::time::Duration::from_secs(30));
            // SQLite has one writer: one connection, every insert its own commit.
            go!(sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await
                .expect("pool"))
        } else {
            go!(sqlx::postgres::PgPoolOptions::new()
                .max_connections(clients.min(64) as u32)
                .connect(url)
                .await
                .expect("pool"))
        }
    }

    /// The databases a benchmark measures: a SQLite file in `dir`, and a fresh database on the
    /// PostgreSQL server named by `OBSERVATORY_BENCH_POSTGRES_URL` when it is set (said on
    /// standard output when it is not): (name, url) pairs.
    pub async fn bench_databases(dir: &std::path::Path) -> Vec<(&'static str, String)> {
        let mut databases = vec![("sqlite", format!("sqlite://{}", dir.join("bench.db").display()))];
        match std::env::var("OBSERVATORY_BENCH_POSTGRES_URL")
            .ok()
            .filter(|s| !s.is_empty())
        {
            Some(base) => databases.push(("postgres", fresh_postgres_database(&base).await)),
            None => println!("postgres   skipped: set OBSERVATORY_BENCH_POSTGRES_URL to measure it"),
        }
        databases
    }

    /// Runs `op(0)` to `op(ops - 1)` from `clients` concurrent callers (caller `c` runs `c`,
    /// `c + clients`...) and returns operations per second.
    ///
    /// # Panics
    /// When an operation panics.
    pub async fn per_second<F, Fut>(ops: usize, clients: usize, op: F) -> f64
    where
        F: Fn(usize) -> Fut + Clone + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let started = std::time::Instant::now();
        let mut tasks = Vec::with_capacity(clients);
        for client in 0..clients.max(1) {
            let op = op.clone();
            tasks.push(tokio::spawn(async move {
                for i in (client..ops).step_by(clients.max(1)) {
                    op(i).await;
                }
            }));
        }
        for t in tasks {
            t.await.expect("a benchmark caller failed");
        }
        ops as f64 / started.elapsed().as_secs_f64()
    }

    /// The median of a benchmark's runs.
    pub fn median(mut runs: Vec<f64>) -> f64 {
        runs.sort_by(f64::total_cmp);
        runs[runs.len() / 2]
    }
}
