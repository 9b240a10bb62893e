//! The one mapping from store and domain errors to gRPC statuses. No wildcard arm: a new error
//! variant must decide its code here.

use observatory_app::AppError;
use observatory_domain::{DomainError, Violations};
use observatory_store::StoreError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// INVALID_ARGUMENT with a `google.rpc.BadRequest` naming every offending field.
pub fn invalid(v: &Violations) -> Status {
    let mut violations: Vec<FieldViolation> = v
        .as_slice()
        .iter()
        .map(|x| {
            let mut f = FieldViolation::new(x.field.clone(), x.description.clone());
            f.reason = x.reason.to_owned();
            f
        })
        .collect();
    if v.omitted() > 0 {
        let mut f = FieldViolation::new("", format!("{} more violations not listed", v.omitted()));
        f.reason = "TRUNCATED".to_owned();
        violations.push(f);
    }
    Status::with_error_details(
        Code::InvalidArgument,
        format!("invalid request: {v}"),
        ErrorDetails::with_bad_request(violations),
    )
}

pub fn invalid_field(field: &str, reason: &'static str, description: &str) -> Status {
    let mut v = Violations::new();
    v.push(field, reason, description);
    invalid(&v)
}

pub fn domain(e: DomainError) -> Status {
    match e {
        DomainError::Invalid(v) => invalid(&v),
        e @ DomainError::Precondition(_) => Status::failed_precondition(e.to_string()),
        e @ DomainError::IllegalTransition { .. } => Status::failed_precondition(e.to_string()),
    }
}

/// The answer to a refused operation of the application layer.
pub fn app(e: AppError) -> Status {
    match e {
        AppError::Store(e) => store(e),
        AppError::Denied(why) => Status::permission_denied(why),
        AppError::Exhausted(why) => Status::with_error_details(
            Code::ResourceExhausted,
            why,
            ErrorDetails::with_retry_info(Some(std::time::Duration::from_secs(10))),
        ),
        AppError::Internal(what) => {
            tracing::error!(what, "internal error");
            Status::internal("internal error; it has been logged")
        }
    }
}

pub fn store(e: StoreError) -> Status {
    match e {
        StoreError::Domain(d) => domain(d),
        e @ StoreError::NotFound { .. } => Status::not_found(e.to_string()),
        StoreError::AlreadyExists(msg) => Status::already_exists(msg),
        e @ (StoreError::Stale { .. } | StoreError::ConcurrentKey) => Status::aborted(e.to_string()),
        e @ StoreError::IdempotencyMismatch { .. } => invalid_field(
            "idempotency_key",
            "KEY_REUSED",
            &format!("{e}; use a new key for a new operation"),
        ),
        StoreError::BadPageToken => {
            invalid_field("page.page_token", "BAD_FORMAT", "is not a token returned by this list")
        }
        StoreError::ShuttingDown => Status::unavailable("the registry is shutting down; retry on another instance"),
        e @ StoreError::Unavailable(_) => {
            tracing::warn!(error = %e, cause = ?std::error::Error::source(&e), "database unavailable");
            unavailable(
                "the registry's database is unavailable; nothing was stored: retry later (with the same idempotency key for a write)",
            )
        }
        e @ (StoreError::Database(_)
        | StoreError::Migrate(_)
        | StoreError::Corrupt { .. }
        | StoreError::BadUrl(_)
        | StoreError::Sink(_)) => {
            tracing::error!(error = %e, cause = ?std::error::Error::source(&e), "internal error");
            Status::internal("internal error; it has been logged")
        }
    }
}

/// How long a caller is told to wait before retrying a call refused for want of the database.
pub const RETRY_AFTER_UNAVAILABLE: std::time::Duration = std::time::Duration::from_secs(1);

/// UNAVAILABLE with a `google.rpc.RetryInfo` saying when to try again.
pub fn unavailable(message: &str) -> Status {
    Status::with_error_details(
        Code::Unavailable,
        message,
        ErrorDetails::with_retry_info(Some(RETRY_AFTER_UNAVAILABLE)),
    )
}

/// Name of a gRPC status code, as metrics label it (`OK`, `NOT_FOUND`...).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
