//! The audit trail: one event per write and per patient-level read or export, in a hash chain.
//!
//! Event `n` carries `seq = n` and the hash of event `n - 1` (64 zeros for the first); its own
//! hash is the SHA-256 of its fields and that link ([`AuditEvent::expected_hash`]). Events are
//! appended inside the transaction of what they record (the group-commit writer, token and
//! report-run writes), so an action and its event commit or vanish together; reads are recorded
//! through the same writer and answered once their event has committed. [`Store::verify_audit`]
//! walks the chain and names the first broken link.
//!
//! **Keyed chain**: with an audit key (kept outside the database, like the pseudonymisation key),
//! each event also carries `mac = HMAC-SHA256(key, hash)`. Whoever can write the database but
//! does not hold the key can recompute hashes, not MACs: a rewritten, inserted or reordered event
//! fails verification with the key. [`Store::verify_audit`] also checks every record version an
//! event names against the digest the event recorded, and counts stored versions that no event
//! names.
//!
//! No identity field is ever recorded: actors are `role:token-id` (or the name of a local
//! process), targets are record ids, and record contents appear only as SHA-256 digests.

use chrono::{DateTime, SecondsFormat, Utc};
use observatory_domain::model::RecordKind;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::{Result, Store, StoreError, Versioned, Work, WriteContext};

/// `prev_hash` of the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The key of the audit trail's MACs: at least 32 bytes, kept outside the database. `Debug` is
/// redacted.
#[derive(Clone)]
pub struct AuditKey(std::sync::Arc<Vec<u8>>);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(<redacted>)")
    }
}

impl AuditKey {
    pub fn new(bytes: Vec<u8>) -> std::result::Result<Self, &'static str> {
        if bytes.len() < 32 {
            return Err("the audit key must hold at least 32 bytes");
        }
        Ok(Self(std::sync::Arc::new(bytes)))
    }

    /// Decodes a hex-encoded key (the format of key files and environment variables).
    pub fn from_hex(text: &str) -> std::result::Result<Self, &'static str> {
        Self::new(hex::decode(text.trim()).map_err(|_| "the audit key must be hex-encoded")?)
    }

    /// HMAC-SHA256 (hex) of an event's hash, or of an anchor's `seq:hash`.
    pub fn mac(&self, text: &str) -> String {
        use hmac::{Hmac, Mac};
        // HMAC takes keys of any length: new_from_slice cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!("HMAC key"));
        mac.update(text.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// A record an action touched: its version, and digests of its content before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditTarget {
    /// `PATIENT`, `EPISODE`... or `ACCESS_TOKEN`, `REPORT_RUN`, `AUDIT_PERIOD`.
    pub kind: String,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// SHA-256 of the version the action replaced (writes of a new version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// SHA-256 of the version written, or read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

impl AuditTarget {
    /// Something that is not a versioned record (a token, a run, a period).
    pub fn object(kind: &str, id: impl Into<String>) -> Self {
        Self {
            kind: kind.to_owned(),
            id: id.into(),
            version: None,
            before: None,
            after: None,
        }
    }

    /// A period of the trail itself, `from/to` in RFC 3339 (an export of the trail).
    pub fn period(from: DateTime<Utc>, to: DateTime<Utc>) -> Self {
        Self::object(
            "AUDIT_PERIOD",
            format!("{}/{}", rfc3339_micros(from), rfc3339_micros(to)),
        )
    }

    /// A version as read: its digest is the `after` digest of the write that produced it.
    pub fn read<T: Serialize>(kind: RecordKind, v: &Versioned<T>) -> Self {
        Self {
            kind: kind.code().to_owned(),
            id: v.meta.id.clone(),
            version: Some(v.meta.version),
            before: None,
            after: Some(digest(&v.record)),
        }
    }
}

/// An instant as the trail writes it: RFC 3339 in UTC, to the microsecond (what both databases
/// keep).
pub fn rfc3339_micros(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// SHA-256 (hex) of a record's canonical JSON.
pub fn digest<T: Serialize + ?Sized>(record: &T) -> String {
    let json = serde_json::to_vec(record).unwrap_or_default();
    hex::encode(Sha256::digest(&json))
}

/// The role an actor acts in: actors holding a token are `role:token-id`; any other actor is a
/// local process of the observatory (the command line, the schedule, the reference loader).
pub fn role_of(actor: &str) -> &str {
    actor.split_once(':').map_or("system", |(role, _)| role)
}

/// An action to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub actor: String,
    /// The RPC or command: `GetPatient`, `UpdatePatient`, `CreateToken`...
    pub action: String,
    pub targets: Vec<AuditTarget>,
    pub request_id: String,
    pub trace_id: String,
    /// Why, for corrections and transitions: as recorded in the history.
    pub reason: String,
}

impl AuditEntry {
    pub fn new(ctx: &WriteContext, action: impl Into<String>, targets: Vec<AuditTarget>) -> Self {
        Self {
            actor: ctx.actor.clone(),
            action: action.into(),
            targets,
            request_id: ctx.request_id.clone(),
            trace_id: ctx.trace_id.clone(),
            reason: String::new(),
        }
    }

    /// An action on one object that is a request of its own (a command-line token change, the
    /// outcome of a report run): a fresh request id, no trace.
    pub fn local(actor: &str, action: &str, target: AuditTarget) -> Self {
        Self {
            actor: actor.to_owned(),
            action: action.to_owned(),
            targets: vec![target],
            request_id: uuid::Uuid::now_v7().to_string(),
            trace_id: String::new(),
            reason: String::new(),
        }
    }

    /// The event this entry becomes at position `seq`, after the event hashed `prev_hash`.
    pub(crate) fn chain(&self, seq: i64, recorded_at: DateTime<Utc>, prev_hash: &str) -> AuditEvent {
        let mut event = AuditEvent {
            seq,
            recorded_at,
            actor: self.actor.clone(),
            role: role_of(&self.actor).to_owned(),
            action: self.action.clone(),
            targets: serde_json::to_string(&self.targets).unwrap_or_else(|_| "[]".to_owned()),
            request_id: self.request_id.clone(),
            trace_id: self.trace_id.clone(),
            reason: self.reason.clone(),
            prev_hash: prev_hash.to_owned(),
            hash: String::new(),
            mac: None,
        };
        event.hash = event.expected_hash();
        event
    }
}

/// A stored event (and a line of an archive file).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, Serialize, Deserialize)]
pub struct AuditEvent {
    pub seq: i64,
    pub recorded_at: DateTime<Utc>,
    pub actor: String,
    pub role: String,
    pub action: String,
    /// JSON array of [`AuditTarget`], exactly as stored and hashed.
    pub targets: String,
    pub request_id: String,
    pub trace_id: String,
    pub reason: String,
    pub prev_hash: String,
    pub hash: String,
    /// HMAC-SHA256 of `hash` with the audit key; `None` for events written without a key.
    pub mac: Option<String>,
}

impl AuditEvent {
    /// SHA-256 of the event's fields and link, as a JSON array in a fixed order (time to the
    /// microsecond in UTC, as both databases store it).
    pub fn expected_hash(&self) -> String {
        let fields = serde_json::json!([
            self.seq,
            rfc3339_micros(self.recorded_at),
            self.actor,
            self.role,
            self.action,
            self.targets,
            self.request_id,
            self.trace_id,
            self.reason,
            self.prev_hash,
        ]);
        digest(&fields)
    }

    /// The targets, parsed.
    pub fn parsed_targets(&self) -> Result<Vec<AuditTarget>> {
        serde_json::from_str(&self.targets).map_err(|e| StoreError::Corrupt {
            kind: "AUDIT_EVENT",
            id: self.seq.to_string(),
            source: std::sync::Arc::new(e),
        })
    }
}

/// The first place where the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLink {
    pub seq: i64,
    pub problem: String,
}

/// What [`Store::verify_audit`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Events checked (up to the break, if any).
    pub events: u64,
    /// Of those, events whose MAC was checked with the audit key; and events written without a
    /// key before the first keyed one (a trail older than its key).
    pub keyed: u64,
    pub unkeyed: u64,
    /// Record versions named by events whose content was checked against the digest recorded.
    pub versions_checked: u64,
    /// Record versions stored that no event names (written around the trail, or before it
    /// existed); counted on a whole walk only.
    pub versions_without_event: u64,
    /// The last event checked: its seq and hash, to keep outside the database as an anchor.
    pub head: Option<(i64, String)>,
    pub broken: Option<BrokenLink>,
}

/// Where the events left in the database begin: the last event of the newest archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivePoint {
    pub last_seq: i64,
    pub last_hash: String,
    pub last_recorded_at: DateTime<Utc>,
    /// HMAC of [`archive_text`] with the audit key, when one was configured.
    pub mac: Option<String>,
}

/// What an archive row's MAC is computed over.
pub fn archive_text(last_seq: i64, last_hash: &str) -> String {
    format!("archive:{last_seq}:{last_hash}")
}

/// A point of the chain recorded earlier (`seq:hash` from a previous verification), which
/// must still be there: it catches the removal of the newest events, which leaves no gap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub seq: i64,
    pub hash: String,
}

impl std::str::FromStr for Anchor {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (seq, hash) = s.split_once(':').ok_or("expected SEQ:HASH")?;
        let seq: i64 = seq.parse().map_err(|_| format!("{seq} is not an event number"))?;
        if seq < 1 || hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("expected an event number and a 64-digit hexadecimal hash".to_owned());
        }
        Ok(Anchor {
            seq,
            hash: hash.to_ascii_lowercase(),
        })
    }
}

/// Events read per query while walking the chain.
const VERIFY_BATCH: i64 = 1000;

impl Store {
    /// The newest archive of the trail's oldest events, if any.
    pub async fn audit_archive_point(&self) -> Result<Option<ArchivePoint>> {
        Ok(
            dispatch!(self, audit_sql::archive_point())?.map(|(last_seq, last_hash, last_recorded_at, mac)| {
                ArchivePoint {
                    last_seq,
                    last_hash,
                    last_recorded_at,
                    mac,
                }
            }),
        )
    }

    /// Up to `limit` events after `after_seq`, in chain order.
    pub async fn audit_events_after(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditEvent>> {
        dispatch!(self, audit_sql::after(after_seq, limit))
    }

    /// The newest event recorded before `cutoff`, if any.
    pub async fn audit_last_before(&self, cutoff: DateTime<Utc>) -> Result<Option<i64>> {
        dispatch!(self, audit_sql::last_before(cutoff))
    }

    /// Removes events `first_seq..=last.seq`, archived by `actor` to a file whose SHA-256 is
    /// `file_sha256`, and records the archive (keyed with the audit key) and the archiving itself
    /// in the trail, in one transaction. Returns how many events were removed.
    pub async fn remove_archived_audit(
        &self,
        first_seq: i64,
        last: &AuditEvent,
        file_sha256: &str,
        actor: &str,
    ) -> Result<u64> {
        let mut entry = AuditEntry::local(
            actor,
            "ArchiveAudit",
            AuditTarget::object("AUDIT_ARCHIVE", format!("{first_seq}-{}", last.seq)),
        );
        entry.reason = format!(
            "events {first_seq} to {} archived to a file of SHA-256 {file_sha256}",
            last.seq
        );
        dispatch!(
            self,
            audit_sql::remove_archived(first_seq, last, file_sha256, entry, self.audit_key.as_ref())
        )
    }

    /// Records a read or export; returns once the event has committed, so nothing is disclosed
    /// that the trail does not show.
    pub async fn record_access(&self, entry: AuditEntry) -> Result<()> {
        let span = tracing::info_span!("store.record_access", action = %entry.action);
        self.submit(Work::Access(entry)).instrument(span).await.map(drop)
    }

    /// The newest event's seq and hash, without walking the chain: what the server logs at start
    /// and stop, so that log collectors keep anchors outside the database.
    pub async fn audit_head(&self) -> Result<Option<Anchor>> {
        Ok(dispatch!(self, audit_sql::head())?.map(|(seq, hash)| Anchor { seq, hash }))
    }

    /// Up to `limit` events after `after_seq`, recorded in `[from, to)`, in chain order.
    pub async fn audit_events(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<AuditEvent>> {
        dispatch!(self, audit_sql::between(from, to, after_seq, limit))
    }

    /// Walks the whole chain: every seq present from 1 on, every event hashing to its stored
    /// hash, every link pointing at the event before; and the anchor, if given, still there.
    /// With the store's audit key, every event from the first keyed one on must carry a MAC of
    /// its hash made with that key. Every record version an event names must still hold the
    /// content whose digest the event recorded; stored versions that no event names are counted.
    pub async fn verify_audit(&self, anchor: Option<&Anchor>) -> Result<Verification> {
        let mut v = Verification {
            events: 0,
            keyed: 0,
            unkeyed: 0,
            versions_checked: 0,
            versions_without_event: 0,
            head: None,
            broken: None,
        };
        let mut anchor_seen = false;
        let mut keyed_seen = false;
        // The events left begin after the newest archive, which must carry the key's MAC.
        let archived = self.audit_archive_point().await?;
        if let Some(point) = &archived {
            if let Some(key) = &self.audit_key {
                match &point.mac {
                    Some(mac) if *mac == key.mac(&archive_text(point.last_seq, &point.last_hash)) => keyed_seen = true,
                    _ => {
                        let problem = format!(
                            "the archive of events up to {} does not carry the MAC of the audit key: events were removed without the key",
                            point.last_seq
                        );
                        return Ok(Verification {
                            broken: Some(BrokenLink {
                                seq: point.last_seq,
                                problem,
                            }),
                            ..v
                        });
                    }
                }
            }
            v.head = Some((point.last_seq, point.last_hash.clone()));
        }
        // (kind, id, version) of every version named, as 64-bit digests: a few bytes a version.
        let mut named: std::collections::HashSet<u64> = std::collections::HashSet::new();
        let key = self.audit_key.clone();
        let fail = |mut v: Verification, seq: i64, problem: String| {
            v.broken = Some(BrokenLink { seq, problem });
            Ok(v)
        };
        loop {
            let batch = dispatch!(self, audit_sql::after(last_seq(&v.head), VERIFY_BATCH))?;
            let n = batch.len();
            for event in batch {
                let expected_seq = last_seq(&v.head) + 1;
                let expected_prev = v.head.as_ref().map_or(GENESIS, |(_, h)| h.as_str());
                if event.seq != expected_seq {
                    let problem = format!(
                        "event {expected_seq} is missing: the next event stored is {}",
                        event.seq
                    );
                    return fail(v, expected_seq, problem);
                }
                if event.prev_hash != expected_prev {
                    let problem = format!(
                        "event {} does not link to event {}: one of them was altered or replaced",
                        event.seq,
                        event.seq - 1
                    );
                    return fail(v, event.seq, problem);
                }
                if event.expected_hash() != event.hash {
                    let problem = format!("event {} was altered: its content does not match its hash", event.seq);
                    return fail(v, event.seq, problem);
                }
                if let Some(key) = &key {
                    match &event.mac {
                        Some(mac) if *mac == key.mac(&event.hash) => {
                            v.keyed += 1;
                            keyed_seen = true;
                        }
                        Some(_) => {
                            let problem = format!(
                                "event {} does not carry the MAC of the audit key: it was written or rewritten without the key",
                                event.seq
                            );
                            return fail(v, event.seq, problem);
                        }
                        None if keyed_seen => {
                            let problem = format!(
                                "event {} carries no MAC though earlier events do: it was written without the audit key",
                                event.seq
                            );
                            return fail(v, event.seq, problem);
                        }
                        None => v.unkeyed += 1,
                    }
                }
                for target in event.parsed_targets()? {
                    let (Some(kind), Some(version), Some(after)) =
                        (RecordKind::from_code(&target.kind), target.version, &target.after)
                    else {
                        continue;
                    };
                    named.insert(version_key(kind, &target.id, version));
                    let stored = read!(self, shared::version_digest(kind, &target.id, version))?;
                    match stored {
                        Some(digest) if digest == *after => v.versions_checked += 1,
                        Some(_) => {
                            let problem = format!(
                                "{} {} version {version} differs from what event {} recorded: the stored record was altered",
                                target.kind.to_lowercase(),
                                target.id,
                                event.seq
                            );
                            return fail(v, event.seq, problem);
                        }
                        None => {
                            let problem = format!(
                                "{} {} version {version}, recorded by event {}, is no longer stored",
                                target.kind.to_lowercase(),
                                target.id,
                                event.seq
                            );
                            return fail(v, event.seq, problem);
                        }
                    }
                }
                if let Some(a) = anchor
                    && a.seq == event.seq
                {
                    if a.hash != event.hash {
                        let problem = format!("event {} is not the one anchored: its hash differs", event.seq);
                        return fail(v, event.seq, problem);
                    }
                    anchor_seen = true;
                }
                v.events += 1;
                v.head = Some((event.seq, event.hash));
            }
            if (n as i64) < VERIFY_BATCH {
                break;
            }
        }
        if let Some(a) = anchor
            && !anchor_seen
        {
            let last = last_seq(&v.head);
            let problem = format!(
                "the anchored event {} is gone: the trail ends at event {last}, so its newest events were removed",
                a.seq
            );
            return fail(v, last + 1, problem);
        }
        // Versions no event names: every stored version walked once, in id order (those recorded
        // by archived events, up to the archive's last, are named in the archive).
        let since = archived.as_ref().map(|p| p.last_recorded_at);
        for kind in RecordKind::ALL {
            let mut after: Option<(String, i64)> = None;
            loop {
                let page = read!(self, shared::version_keys(*kind, since, after.clone(), 10_000))?;
                let n = page.len();
                for (id, version) in page {
                    if !named.contains(&version_key(*kind, &id, version)) {
                        v.versions_without_event += 1;
                    }
                    after = Some((id, version));
                }
                if n < 10_000 {
                    break;
                }
            }
        }
        Ok(v)
    }
}

/// A 64-bit digest of (kind, id, version).
fn version_key(kind: RecordKind, id: &str, version: i64) -> u64 {
    let d = Sha256::digest(format!("{}/{id}/{version}", kind.code()).as_bytes());
    u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// Seq of the last event checked, 0 before the first.
fn last_seq(prev: &Option<(i64, String)>) -> i64 {
    prev.as_ref().map_or(0, |(s, _)| *s)
}

#[cfg(test)]
mod tests {
    /// A version's digest is recomputed from its stored body when the trail is verified: a
    /// number must read back as the very value that was hashed (serde_json's exact float
    /// parsing, `float_roundtrip`), or a visit's measure would show as altered.
    #[test]
    fn every_float_reads_back_as_the_value_hashed() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut checked = 0;
        while checked < 50_000 {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let value = f64::from_bits(x.wrapping_mul(0x2545_F491_4F6C_DD1D));
            if !value.is_finite() {
                continue;
            }
            checked += 1;
            let record = serde_json::json!({ "value": value });
            let stored = serde_json::to_string(&record).expect("serialise");
            let read: serde_json::Value = serde_json::from_str(&stored).expect("parse");
            assert_eq!(
                super::digest(&read),
                super::digest(&record),
                "{value:e} reads back as another number"
            );
        }
    }
}
