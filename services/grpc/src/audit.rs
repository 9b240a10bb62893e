//! `observatory.v1.AuditService`: the audit trail of a period, and its verification.

use chrono::{DateTime, Utc};
use observatory_app::audit as ops;
use observatory_domain::Violations;
use observatory_proto::v1::{self as pb, audit_service_server::AuditService};
use observatory_store::audit::{Anchor, AuditEvent};
use tonic::{Request, Response, Status};

use crate::convert::{self as c, all_some};
use crate::{ApiState, error, guard};

#[derive(Debug, Clone)]
pub struct AuditApi {
    state: ApiState,
}

impl AuditApi {
    pub fn new(state: ApiState) -> Self {
        Self { state }
    }
}

fn required_instant(v: &mut Violations, field: &str, t: Option<&prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    match t {
        None => {
            v.push(field, "REQUIRED", "is required");
            None
        }
        Some(t) => v.check(field, c::instant(t)),
    }
}

/// An event as exported; `Corrupt` targets are exported as stored, unparsed.
pub fn event_out(e: &AuditEvent) -> pb::AuditEvent {
    let targets = e.parsed_targets().unwrap_or_default();
    pb::AuditEvent {
        seq: e.seq,
        recorded_at: Some(c::ts(e.recorded_at)),
        actor: e.actor.clone(),
        role: e.role.clone(),
        action: e.action.clone(),
        targets: targets
            .into_iter()
            .map(|t| pb::AuditTarget {
                kind: t.kind,
                id: t.id,
                version: t.version.unwrap_or(0),
                before_sha256: t.before.unwrap_or_default(),
                after_sha256: t.after.unwrap_or_default(),
            })
            .collect(),
        request_id: e.request_id.clone(),
        trace_id: e.trace_id.clone(),
        reason: e.reason.clone(),
        prev_hash: e.prev_hash.clone(),
        hash: e.hash.clone(),
        targets_json: e.targets.clone(),
    }
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn export_audit(
        &self,
        req: Request<pb::ExportAuditRequest>,
    ) -> Result<Response<pb::ExportAuditResponse>, Status> {
        let r = req.get_ref();
        let mut v = Violations::new();
        let page = c::page(&mut v, r.page.as_ref());
        let from = required_instant(&mut v, "from", r.from.as_ref());
        let to = required_instant(&mut v, "to", r.to.as_ref());
        if let (Some(f), Some(t)) = (from, to)
            && t <= f
        {
            v.push("to", "BEFORE_START", "must be after from");
        }
        let after = match page.token.as_deref() {
            None => Some(0),
            Some(t) => match t.parse::<i64>() {
                Ok(seq) if seq >= 1 => Some(seq),
                _ => {
                    v.push("page.page_token", "BAD_FORMAT", "is not a token this service returned");
                    None
                }
            },
        };
        all_some!(v; from, to, after);
        let size = i64::from(page.size);
        let call = guard::call(&req, "ExportAudit")?;
        let events = ops::export(&self.state.app, &call, from, to, after, size)
            .await
            .map_err(error::app)?;
        let next_page_token = match events.last() {
            Some(last) if events.len() as i64 == size => last.seq.to_string(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ExportAuditResponse {
            events: events.iter().map(event_out).collect(),
            next_page_token,
        }))
    }

    async fn verify_audit(
        &self,
        req: Request<pb::VerifyAuditRequest>,
    ) -> Result<Response<pb::VerifyAuditResponse>, Status> {
        let r = req.get_ref();
        let anchor = match r.anchor.trim() {
            "" => None,
            a => Some(
                a.parse::<Anchor>()
                    .map_err(|e| error::invalid_field("anchor", "BAD_FORMAT", &e))?,
            ),
        };
        let call = guard::call(&req, "VerifyAudit")?;
        let found = ops::verify(&self.state.app, &call, anchor.as_ref())
            .await
            .map_err(error::app)?;
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let (keyed_events, unkeyed_events, versions_checked, versions_without_event) = (
            count(found.keyed),
            count(found.unkeyed),
            count(found.versions_checked),
            count(found.versions_without_event),
        );
        let (head_seq, head_hash) = found.head.unwrap_or_default();
        let (broken_seq, problem) = found.broken.map(|b| (b.seq, b.problem)).unwrap_or_default();
        Ok(Response::new(pb::VerifyAuditResponse {
            intact: broken_seq == 0,
            events: i64::try_from(found.events).unwrap_or(i64::MAX),
            head_seq,
            head_hash,
            broken_seq,
            problem,
            keyed_events,
            unkeyed_events,
            versions_checked,
            versions_without_event,
        }))
    }
}
