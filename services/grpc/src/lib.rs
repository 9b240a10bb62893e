//! tonic services of the observatory: each handler parses the prost request into the domain
//! request of its operation (INVALID_ARGUMENT with the contract's field paths on failure),
//! calls the application layer (`observatory-app`), and renders the result.
//!
//! Architecture invariant: prost types appear only here and in `observatory-proto`; handlers
//! hold no business rule, which live in `observatory-app` (who may do what, what is audited),
//! `observatory-domain` (registry rules) and `observatory-analytics` (reports and their runs).

pub mod access;
mod audit;
pub mod bounds;
pub mod convert;
pub mod error;
pub mod exchange;
pub mod guard;
mod reference;
mod registry;
mod reports;

/// The parsers of the contract's requests into the operations' domain requests, for the other
/// transports that speak in the contract's field paths (the web front's forms).
pub mod parse {
    pub use crate::reference::{
        parse_centre, parse_centre_update, parse_framework, parse_framework_transition, parse_prescriber,
        parse_prescriber_update,
    };
    pub use crate::registry::{
        CaseExport, CaseFormat, by_episode, case_file_name, parse_adverse_event, parse_adverse_event_update,
        parse_authorisation_transition, parse_authorisation_update, parse_case_export, parse_cohort,
        parse_cohort_filter, parse_cohort_transition, parse_declaration, parse_episode_filter,
        parse_episode_transition, parse_episode_update, parse_follow_up, parse_follow_up_update, parse_history,
        parse_merge, parse_patient_filter, parse_patient_update, parse_rcp_opinion, parse_rcp_request,
        parse_registration, parse_worklist,
    };
    pub use crate::reports::{Asked, parameters as parse_run, synthesis_parameters as parse_synthesis};
}

use std::sync::Arc;

use observatory_store::Store;
use tonic::Request;

pub use audit::AuditApi;
pub use exchange::{ExchangeApi, IMPORT_WINDOW};
pub use reference::ReferenceApi;
pub use registry::RegistryApi;
pub use reports::ReportApi;

/// What every service shares.
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    /// The application layer the services call (over the same store).
    pub app: observatory_app::App,
    /// Each token's rate, shared by the bounds layer and the import stream (whose items count
    /// against it like calls).
    pub limiter: Arc<bounds::RateLimiter>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// The trace id of a call's span, put in the request's extensions by the server's telemetry
/// layer: what the audit trail records, so that trail, logs and traces meet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallTraceId(pub String);

/// The request id and trace id of a call: `x-request-id` when the caller sends a usable one
/// (8 to 64 hexadecimal digits and dashes, such as a UUID: nothing a name could be written
/// in, since the id is stored with every version), a fresh UUIDv7 otherwise; and the trace id of
/// its span ([`CallTraceId`]), else of a W3C `traceparent` it sent, else empty.
pub(crate) fn request_ids<T>(req: &Request<T>) -> (String, String) {
    let request_id = req
        .metadata()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|s| (8..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let trace_id = match req.extensions().get::<CallTraceId>() {
        Some(CallTraceId(id)) => id.clone(),
        None => req
            .metadata()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(trace_id_of)
            .unwrap_or_default(),
    };
    (request_id, trace_id)
}

/// The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), if well formed and
/// not all zeros.
fn trace_id_of(traceparent: &str) -> Option<String> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(parent, 16)
        && hex(flags, 2))
    .then(|| trace.to_owned())
}

#[cfg(test)]
mod tests {
    use super::trace_id_of;

    #[test]
    fn trace_ids_come_from_well_formed_traceparents_only() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(
            trace_id_of(&format!("00-{id}-00f067aa0ba902b7-01")).as_deref(),
            Some(id)
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
        ] {
            assert_eq!(trace_id_of(bad), None, "{bad}");
        }
    }
}
