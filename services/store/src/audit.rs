//! The audit trail: one event per write and per patient-level read or export, in a hash chain.
//!
//! Event `n` carries `seq = n` and the hash of event `n - 1` (64 zeros for the first); its own
//! hash is the SHA-256 of its fields and that link ([`AuditEvent::expected_hash`]). Events are
//! appended inside the transaction of what they record (the group-commit writer, token and
//! report-run writes), so an action and its event commit or vanish together; reads are recorded
//! through the same writer and answered once their event has committed. [`Store::verify_audit`]
//! walks the chain and names the first broken link.
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
        };
        event.hash = event.expected_hash();
        event
    }
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
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
    /// The last event checked: its seq and hash, to keep outside the database as an anchor.
    pub head: Option<(i64, String)>,
    pub broken: Option<BrokenLink>,
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
    pub async fn verify_audit(&self, anchor: Option<&Anchor>) -> Result<Verification> {
        let mut checked = 0u64;
        let mut prev: Option<(i64, String)> = None;
        let mut anchor_seen = false;
        let broken = |seq: i64, problem: String, checked: u64, head: Option<(i64, String)>| {
            Ok(Verification {
                events: checked,
                head,
                broken: Some(BrokenLink { seq, problem }),
            })
        };
        loop {
            let batch = dispatch!(self, audit_sql::after(last_seq(&prev), VERIFY_BATCH))?;
            let n = batch.len();
            for event in batch {
                let expected_seq = last_seq(&prev) + 1;
                let expected_prev = prev.as_ref().map_or(GENESIS, |(_, h)| h.as_str());
                if event.seq != expected_seq {
                    let problem = format!(
                        "event {expected_seq} is missing: the next event stored is {}",
                        event.seq
                    );
                    return broken(expected_seq, problem, checked, prev);
                }
                if event.prev_hash != expected_prev {
                    let problem = format!(
                        "event {} does not link to event {}: one of them was altered or replaced",
                        event.seq,
                        event.seq - 1
                    );
                    return broken(event.seq, problem, checked, prev);
                }
                if event.expected_hash() != event.hash {
                    let problem = format!("event {} was altered: its content does not match its hash", event.seq);
                    return broken(event.seq, problem, checked, prev);
                }
                if let Some(a) = anchor
                    && a.seq == event.seq
                {
                    if a.hash != event.hash {
                        let problem = format!("event {} is not the one anchored: its hash differs", event.seq);
                        return broken(event.seq, problem, checked, prev);
                    }
                    anchor_seen = true;
                }
                checked += 1;
                prev = Some((event.seq, event.hash));
            }
            if (n as i64) < VERIFY_BATCH {
                break;
            }
        }
        if let Some(a) = anchor
            && !anchor_seen
        {
            let last = last_seq(&prev);
            let problem = format!(
                "the anchored event {} is gone: the trail ends at event {last}, so its newest events were removed",
                a.seq
            );
            return broken(last + 1, problem, checked, prev);
        }
        Ok(Verification {
            events: checked,
            head: prev,
            broken: None,
        })
    }
}

/// Seq of the last event checked, 0 before the first.
fn last_seq(prev: &Option<(i64, String)>) -> i64 {
    prev.as_ref().map_or(0, |(s, _)| *s)
}
