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
    let keys = if v.keyed + v.unkeyed == 0 {
        "no audit key given: MACs not checked".to_owned()
    } else {
        format!(
            "{} events checked against the audit key, {} written before it",
            v.keyed, v.unkeyed
        )
    };
    let versions = format!(
        "{} record versions match their events; {} stored versions named by no event",
        v.versions_checked, v.versions_without_event
    );
    match &v.broken {
        None if v.versions_without_event > 0 => (
            false,
            format!(
                "audit trail intact: {} events ({keys}), but {versions}: versions written around the trail\nhead: {head}",
                v.events
            ),
        ),
        None => (
            true,
            format!(
                "audit trail intact: {} events ({keys}); {versions}\nhead (keep it outside the database; pass it as --anchor next time): {head}",
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

/// The first line of an archive file: which events it holds and where they link.
#[derive(Debug, Serialize, serde::Deserialize)]
struct ArchiveHeader {
    archive: String,
    first_seq: i64,
    last_seq: i64,
    /// Hash of the event before the first (64 zeros for the first event of the trail).
    prev_hash: String,
    last_hash: String,
}

const ARCHIVE_FORMAT: &str = "observatory-audit-archive-1";

/// What `audit archive` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived {
    pub first_seq: i64,
    pub last_seq: i64,
    pub last_hash: String,
    pub file_sha256: String,
    pub removed: u64,
}

/// Archives the events recorded before `before` (a prefix of the chain, after any earlier
/// archive) to `out`, a new file, checking each event's hash and link as it goes; once the file
/// is on disk (fsynced), removes those events from the database and records the archive and the
/// archiving in the trail. `Ok(None)` when no event is old enough.
pub async fn archive(store: &Store, before: DateTime<Utc>, out: &std::path::Path) -> anyhow::Result<Option<Archived>> {
    use sha2::Digest;
    let point = store.audit_archive_point().await?;
    let (after, prev_hash) = point
        .as_ref()
        .map_or((0, observatory_store::audit::GENESIS.to_owned()), |p| {
            (p.last_seq, p.last_hash.clone())
        });
    let Some(last_seq) = store.audit_last_before(before).await?.filter(|s| *s > after) else {
        return Ok(None);
    };
    // Read and check the events first; the file is written whole, or not at all.
    let mut events = Vec::new();
    let mut cursor = after;
    let mut prev = prev_hash.clone();
    while cursor < last_seq {
        let batch = store
            .audit_events_after(cursor, EXPORT_BATCH.min(last_seq - cursor))
            .await?;
        anyhow::ensure!(
            !batch.is_empty(),
            "event {} is missing: verify the trail before archiving",
            cursor + 1
        );
        for e in batch {
            anyhow::ensure!(
                e.seq == cursor + 1 && e.prev_hash == prev && e.expected_hash() == e.hash,
                "event {} does not hold in the chain: run `observatory audit verify`; nothing archived",
                e.seq
            );
            cursor = e.seq;
            prev.clone_from(&e.hash);
            events.push(e);
        }
    }
    let last = events.last().cloned().context("no event to archive")?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .with_context(|| format!("cannot create the archive file {} (it must be new)", out.display()))?;
    let mut text = Vec::new();
    serde_json::to_writer(
        &mut text,
        &ArchiveHeader {
            archive: ARCHIVE_FORMAT.to_owned(),
            first_seq: after + 1,
            last_seq,
            prev_hash,
            last_hash: last.hash.clone(),
        },
    )?;
    text.push(b'\n');
    for e in &events {
        serde_json::to_writer(&mut text, e)?;
        text.push(b'\n');
    }
    file.write_all(&text)?;
    file.sync_all()?;
    let file_sha256 = hex::encode(sha2::Sha256::digest(&text));
    let removed = store
        .remove_archived_audit(after + 1, &last, &file_sha256, COMMAND_LINE_ACTOR)
        .await?;
    Ok(Some(Archived {
        first_seq: after + 1,
        last_seq,
        last_hash: last.hash,
        file_sha256,
        removed,
    }))
}

/// Checks an archive file on its own: every event's hash and link from the header's
/// `prev_hash` to its `last_hash`, and with `key` every event's MAC. Returns the header's range
/// and last hash, and the file's SHA-256 (what the registry's archive record names).
pub fn verify_archive(
    bytes: &[u8],
    key: Option<&observatory_store::audit::AuditKey>,
) -> anyhow::Result<(i64, i64, String, String)> {
    use sha2::Digest;
    let mut lines = bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty());
    let header: ArchiveHeader =
        serde_json::from_slice(lines.next().context("empty archive file")?).context("not an archive header")?;
    anyhow::ensure!(
        header.archive == ARCHIVE_FORMAT,
        "not an archive of the observatory's audit trail"
    );
    let (mut seq, mut prev) = (header.first_seq - 1, header.prev_hash.clone());
    let mut keyed = false;
    for (i, line) in lines.enumerate() {
        let e: observatory_store::audit::AuditEvent =
            serde_json::from_slice(line).with_context(|| format!("line {} is not an event", i + 2))?;
        anyhow::ensure!(e.seq == seq + 1, "event {} is missing", seq + 1);
        anyhow::ensure!(e.prev_hash == prev, "event {} does not link to event {seq}", e.seq);
        anyhow::ensure!(
            e.expected_hash() == e.hash,
            "event {} was altered: its content does not match its hash",
            e.seq
        );
        if let Some(key) = key {
            match &e.mac {
                Some(mac) => {
                    anyhow::ensure!(
                        *mac == key.mac(&e.hash),
                        "event {} does not carry the audit key's MAC",
                        e.seq
                    );
                    keyed = true;
                }
                None => anyhow::ensure!(!keyed, "event {} carries no MAC though earlier events do", e.seq),
            }
        }
        seq = e.seq;
        prev = e.hash;
    }
    anyhow::ensure!(
        seq == header.last_seq,
        "the archive ends at event {seq}, not at {}",
        header.last_seq
    );
    anyhow::ensure!(prev == header.last_hash, "the last event's hash is not the header's");
    Ok((
        header.first_seq,
        header.last_seq,
        prev,
        hex::encode(sha2::Sha256::digest(bytes)),
    ))
}
