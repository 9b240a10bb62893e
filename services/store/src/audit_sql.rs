//! SQL of the audit trail, compiled once per backend like `shared.rs`.

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

use super::{BEGIN, Db, LOCK_AUDIT_CHAIN};
use crate::Result;
use crate::audit::{AuditEntry, AuditEvent, AuditKey, GENESIS};

type Pool = sqlx::Pool<Db>;
type Conn = <Db as sqlx::Database>::Connection;

const HEAD: &str = "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1";

const COLUMNS: &str =
    "seq, recorded_at, actor, role, action, targets, request_id, trace_id, reason, prev_hash, hash, mac";

/// Appends events, in order, after the current head of the chain. Call inside the transaction
/// of what they record. On PostgreSQL an advisory lock held to the end of the transaction keeps
/// concurrent appenders in line; SQLite has a single writer already. With `key`, each event
/// carries the MAC of its hash.
pub(crate) async fn append(
    conn: &mut Conn,
    entries: &[(AuditEntry, DateTime<Utc>)],
    key: Option<&AuditKey>,
) -> sqlx::Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    if let Some(lock) = LOCK_AUDIT_CHAIN {
        sqlx::query(lock).execute(&mut *conn).await?;
    }
    let head: Option<(i64, String)> = sqlx::query_as(HEAD).fetch_optional(&mut *conn).await?;
    let (mut seq, mut prev) = head.unwrap_or_else(|| (0, GENESIS.to_owned()));
    let events: Vec<AuditEvent> = entries
        .iter()
        .map(|(entry, at)| {
            seq += 1;
            let mut event = entry.chain(seq, *at, &prev);
            event.mac = key.map(|k| k.mac(&event.hash));
            prev.clone_from(&event.hash);
            event
        })
        .collect();
    // 12 parameters an event: 256 events a statement stays far below either database's limit.
    for chunk in events.chunks(256) {
        let mut q = QueryBuilder::<Db>::new(format!("INSERT INTO audit_events ({COLUMNS}) "));
        q.push_values(chunk, |mut b, e| {
            b.push_bind(e.seq)
                .push_bind(e.recorded_at)
                .push_bind(e.actor.clone())
                .push_bind(e.role.clone())
                .push_bind(e.action.clone())
                .push_bind(e.targets.clone())
                .push_bind(e.request_id.clone())
                .push_bind(e.trace_id.clone())
                .push_bind(e.reason.clone())
                .push_bind(e.prev_hash.clone())
                .push_bind(e.hash.clone())
                .push_bind(e.mac.clone());
        });
        q.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Runs `work` in a transaction on a connection of `pool`, and commits. When anything fails the
/// connection is closed rather than given back to the pool: after a failed statement or COMMIT
/// for want of the database (disk full, I/O error), SQLite may have rolled the transaction back
/// on its own, so that the driver's idea of it is wrong and the connection would refuse every
/// later BEGIN; a fresh connection has no such past.
pub(crate) async fn transaction<T>(
    pool: &Pool,
    work: impl AsyncFnOnce(&mut sqlx::Transaction<'_, Db>) -> Result<T>,
) -> Result<T> {
    let mut conn = pool.acquire().await?;
    let outcome = async {
        let mut tx = sqlx::Connection::begin_with(&mut *conn, BEGIN).await?;
        let out = work(&mut tx).await?;
        tx.commit().await?;
        Ok(out)
    }
    .await;
    if outcome.is_err() {
        conn.close_on_drop();
    }
    outcome
}

/// Appends one event in a transaction of its own, with the write it records (`write` runs
/// first, in the same transaction).
pub(crate) async fn in_transaction<T>(
    pool: &Pool,
    entry: AuditEntry,
    key: Option<&AuditKey>,
    write: impl AsyncFnOnce(&mut Conn) -> Result<T>,
) -> Result<T> {
    transaction(pool, async |tx| {
        let out = write(&mut *tx).await?;
        append(tx, &[(entry, chrono::SubsecRound::trunc_subsecs(Utc::now(), 6))], key).await?;
        Ok(out)
    })
    .await
}

/// The newest event's seq and hash.
pub async fn head(_write: &Pool, read: &Pool) -> Result<Option<(i64, String)>> {
    Ok(
        sqlx::query_as("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
            .fetch_optional(read)
            .await?,
    )
}

/// Events after `after_seq`, in chain order.
pub async fn after(_write: &Pool, read: &Pool, after_seq: i64, limit: i64) -> Result<Vec<AuditEvent>> {
    Ok(sqlx::query_as::<_, AuditEvent>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2"
    )))
    .bind(after_seq)
    .bind(limit)
    .fetch_all(read)
    .await?)
}

/// Events recorded in `[from, to)` after `after_seq`, in chain order.
pub async fn between(
    _write: &Pool,
    read: &Pool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<AuditEvent>> {
    Ok(sqlx::query_as::<_, AuditEvent>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM audit_events WHERE recorded_at >= $1 AND recorded_at < $2 AND seq > $3 \
         ORDER BY seq LIMIT $4"
    )))
    .bind(from)
    .bind(to)
    .bind(after_seq)
    .bind(limit)
    .fetch_all(read)
    .await?)
}

/// The newest archive of the trail's oldest events: (last_seq, last_hash, last_recorded_at, mac).
pub async fn archive_point(write: &Pool, _read: &Pool) -> Result<Option<(i64, String, DateTime<Utc>, Option<String>)>> {
    Ok(sqlx::query_as(
        "SELECT last_seq, last_hash, last_recorded_at, mac FROM audit_archives ORDER BY last_seq DESC LIMIT 1",
    )
    .fetch_optional(write)
    .await?)
}

/// The newest event recorded before `cutoff`.
pub async fn last_before(_write: &Pool, read: &Pool, cutoff: DateTime<Utc>) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(seq) FROM audit_events WHERE recorded_at < $1")
            .bind(cutoff)
            .fetch_one(read)
            .await?,
    )
}

/// Records the archive of events `first_seq..=last.seq` and removes them, in one transaction
/// that first records the archiving itself in the trail (so the head never moves back). Refused
/// when event `last.seq` is no longer the one archived.
pub async fn remove_archived(
    write: &Pool,
    _read: &Pool,
    first_seq: i64,
    last: &AuditEvent,
    file_sha256: &str,
    entry: AuditEntry,
    key: Option<&AuditKey>,
) -> Result<u64> {
    transaction(write, async |tx| {
        let now = chrono::SubsecRound::trunc_subsecs(Utc::now(), 6);
        let archived_by = entry.actor.clone();
        append(tx, &[(entry, now)], key).await?;
        let stored: Option<String> = sqlx::query_scalar("SELECT hash FROM audit_events WHERE seq = $1")
            .bind(last.seq)
            .fetch_optional(&mut **tx)
            .await?;
        if stored.as_deref() != Some(last.hash.as_str()) {
            return Err(crate::StoreError::AlreadyExists(format!(
                "event {} changed or went since it was archived: nothing removed",
                last.seq
            )));
        }
        sqlx::query(
            "INSERT INTO audit_archives (last_seq, last_hash, last_recorded_at, first_seq, file_sha256, archived_at, \
             archived_by, mac) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(last.seq)
        .bind(&last.hash)
        .bind(last.recorded_at)
        .bind(first_seq)
        .bind(file_sha256)
        .bind(now)
        .bind(&archived_by)
        .bind(key.map(|k| k.mac(&crate::audit::archive_text(last.seq, &last.hash))))
        .execute(&mut **tx)
        .await?;
        let removed = sqlx::query("DELETE FROM audit_events WHERE seq <= $1")
            .bind(last.seq)
            .execute(&mut **tx)
            .await?
            .rows_affected();
        Ok(removed)
    })
    .await
}
