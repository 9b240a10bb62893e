//! The audit trail from the command line: `observatory audit verify` and `audit export`.

use std::io::Write;

use anyhow::Context;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use observatory_store::{
    Store,
    audit::{Anchor, AuditEntry, AuditTarget, Verification, rfc3339_micros},
};
use serde::Serialize;

use crate::access::COMMAND_LINE_ACTOR;

/// Events read per query while exporting.
const EXPORT_BATCH: i64 = 1000;

/// A bound of `audit export`: a date (the whole day, UTC) or an RFC 3339 instant. `end`: a date
/// names the last day included, so the bound is the start of the next day.
pub fn parse_bound(raw: &str, end: bool) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(day) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        let day = if end { day + Duration::days(1) } else { day };
        return day
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc())
            .context("date out of range");
    }
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .with_context(|| format!("{raw} is neither a date (YYYY-MM-DD) nor an RFC 3339 instant"))
}

/// What `audit verify` prints, and whether the chain holds.
pub fn verification_report(v: &Verification) -> (bool, String) {
    let head = v
        .head
        .as_ref()
        .map_or_else(|| "none".to_owned(), |(seq, hash)| format!("{seq}:{hash}"));
    match &v.broken {
        None => (
            true,
            format!(
                "audit trail intact: {} events\nhead (keep it outside the database; pass it as --anchor next time): {head}",
                v.events
            ),
        ),
        Some(b) => (
            false,
            format!(
                "audit trail BROKEN at event {}: {}\n{} events intact before it; last intact: {head}",
                b.seq, b.problem, v.events
            ),
        ),
    }
}

/// One exported event: the stored fields, with the targets as JSON values (serialised in the
/// order they were hashed).
#[derive(Serialize)]
struct ExportedEvent<'a> {
    seq: i64,
    recorded_at: String,
    actor: &'a str,
    role: &'a str,
    action: &'a str,
    targets: Vec<AuditTarget>,
    request_id: &'a str,
    trace_id: &'a str,
    reason: &'a str,
    prev_hash: &'a str,
    hash: &'a str,
}

/// Writes the events recorded in `[from, to)` as JSON lines, in chain order; the export is
/// itself recorded in the trail. Returns how many were written.
pub async fn export(
    store: &Store,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    out: &mut impl Write,
) -> anyhow::Result<u64> {
    anyhow::ensure!(to > from, "--to must be after --from");
    store
        .record_access(AuditEntry::local(
            COMMAND_LINE_ACTOR,
            "ExportAudit",
            AuditTarget::period(from, to),
        ))
        .await?;
    let mut after = 0;
    let mut written = 0;
    loop {
        let events = store.audit_events(from, to, after, EXPORT_BATCH).await?;
        for e in &events {
            let line = ExportedEvent {
                seq: e.seq,
                recorded_at: rfc3339_micros(e.recorded_at),
                actor: &e.actor,
                role: &e.role,
                action: &e.action,
                targets: e.parsed_targets()?,
                request_id: &e.request_id,
                trace_id: &e.trace_id,
                reason: &e.reason,
                prev_hash: &e.prev_hash,
                hash: &e.hash,
            };
            serde_json::to_writer(&mut *out, &line)?;
            out.write_all(b"\n")?;
            written += 1;
        }
        match events.last() {
            Some(last) if events.len() as i64 == EXPORT_BATCH => after = last.seq,
            _ => break,
        }
    }
    out.flush()?;
    Ok(written)
}

/// Parses `--anchor SEQ:HASH`.
pub fn parse_anchor(raw: &str) -> anyhow::Result<Anchor> {
    raw.parse::<Anchor>().map_err(|e| anyhow::anyhow!("--anchor {e}"))
}
