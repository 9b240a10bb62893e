//! SQL of the reference releases, compiled once per backend like `tokens_sql.rs`.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use observatory_domain::catalogue::{Entry, EntryKind, Release, ReleaseContent, ReleaseFile, Source};
use sqlx::types::Json;

use super::{Db, audit_sql};
use crate::audit::{AuditEntry, AuditKey, AuditTarget};
use crate::{Result, StoreError};

type Pool = sqlx::Pool<Db>;
type Conn = <Db as sqlx::Database>::Connection;

/// Entries per INSERT statement: 4 parameters each, far below either backend's limit.
const ROWS_PER_INSERT: usize = 1000;

const SELECT: &str = "SELECT seq, source, version, release_date, sha256, files, counts, imported_at, imported_by \
     FROM reference_releases";

#[derive(sqlx::FromRow)]
struct ReleaseRow {
    seq: i64,
    source: String,
    version: String,
    release_date: Option<NaiveDate>,
    sha256: String,
    files: Json<Vec<ReleaseFile>>,
    counts: Json<BTreeMap<String, u64>>,
    imported_at: DateTime<Utc>,
    imported_by: String,
}

fn corrupt(id: String, what: String) -> StoreError {
    StoreError::Corrupt {
        kind: "REFERENCE_RELEASE",
        id,
        source: std::sync::Arc::new(<serde_json::Error as serde::de::Error>::custom(what)),
    }
}

impl ReleaseRow {
    fn into_release(self) -> Result<Release> {
        let source = Source::from_code(&self.source)
            .ok_or_else(|| corrupt(self.seq.to_string(), format!("unknown source {}", self.source)))?;
        Ok(Release {
            seq: self.seq,
            source,
            version: self.version,
            release_date: self.release_date,
            sha256: self.sha256,
            files: self.files.0,
            counts: self.counts.0,
            imported_at: self.imported_at,
            imported_by: self.imported_by,
        })
    }
}

async fn by_checksum(conn: &mut Conn, source: Source, sha256: &str) -> Result<Option<Release>> {
    let sql = format!("{SELECT} WHERE source = $1 AND sha256 = $2");
    sqlx::query_as::<_, ReleaseRow>(sqlx::AssertSqlSafe(sql))
        .bind(source.code())
        .bind(sha256)
        .fetch_optional(conn)
        .await?
        .map(ReleaseRow::into_release)
        .transpose()
}

/// Inserts `content` as release rows and entry rows (multi-row statements), in the caller's
/// transaction.
async fn insert(
    conn: &mut Conn,
    content: &ReleaseContent,
    sha256: String,
    actor: &str,
    request_id: &str,
    now: DateTime<Utc>,
) -> Result<Release> {
    let counts = content.counts();
    let (seq,): (i64,) = sqlx::query_as(
        "INSERT INTO reference_releases (source, version, release_date, sha256, files, counts, imported_at, \
         imported_by, request_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING seq",
    )
    .bind(content.source.code())
    .bind(&content.version)
    .bind(content.release_date)
    .bind(&sha256)
    .bind(Json(&content.files))
    .bind(Json(&counts))
    .bind(now)
    .bind(actor)
    .bind(request_id)
    .fetch_one(&mut *conn)
    .await?;
    let rows: Vec<(&EntryKind, &String, serde_json::Value)> = content
        .entries
        .iter()
        .map(|((kind, code), e)| (kind, code, e.body()))
        .collect();
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut q = sqlx::QueryBuilder::<Db>::new("INSERT INTO reference_entries (release_seq, kind, code, body) ");
        q.push_values(chunk, |mut b, (kind, code, body)| {
            b.push_bind(seq)
                .push_bind(kind.code())
                .push_bind(*code)
                .push_bind(Json(body));
        });
        q.build().execute(&mut *conn).await?;
    }
    Ok(Release {
        seq,
        source: content.source,
        version: content.version.clone(),
        release_date: content.release_date,
        sha256,
        files: content.files.clone(),
        counts,
        imported_at: now,
        imported_by: actor.to_owned(),
    })
}

/// Records the shipped lists as a release in the caller's transaction, unless the newest
/// shipped release has the same files; codes a newer binary's lists dropped are carried as
/// retired. The caller records the audit event.
pub async fn record_shipped(
    conn: &mut Conn,
    actor: &str,
    request_id: &str,
    now: DateTime<Utc>,
) -> Result<Option<Release>> {
    let content = observatory_domain::catalogue::shipped_release();
    let sha256 = content.sha256();
    let releases = list(&mut *conn).await?;
    let previous = releases.iter().rev().find(|r| r.source == Source::Shipped);
    if previous.is_some_and(|p| p.sha256 == sha256) {
        return Ok(None);
    }
    let content = match previous {
        None => content,
        Some(p) => {
            let mut entries = BTreeMap::new();
            for &kind in Source::Shipped.kinds() {
                for (code, entry) in self::entries(&mut *conn, p.seq, kind).await? {
                    entries.insert((kind, code), entry);
                }
            }
            observatory_domain::catalogue::Catalogue::new(BTreeMap::new(), entries).successor(content)
        }
    };
    Ok(Some(insert(conn, &content, sha256, actor, request_id, now).await?))
}

/// Records `content` as a new release, its entries and an audit event in one transaction; or,
/// when a release of the same source and checksum exists, returns it (`false`) and writes
/// nothing.
pub async fn record(
    write: &Pool,
    _read: &Pool,
    content: &ReleaseContent,
    actor: &str,
    request_id: &str,
    key: Option<&AuditKey>,
) -> Result<(Release, bool)> {
    let sha256 = content.sha256();
    audit_sql::transaction(write, async |tx| {
        if let Some(existing) = by_checksum(tx, content.source, &sha256).await? {
            return Ok((existing, false));
        }
        let now = chrono::SubsecRound::trunc_subsecs(Utc::now(), 6);
        let release = insert(tx, content, sha256.clone(), actor, request_id, now).await?;
        let mut entry = AuditEntry::local(
            actor,
            "ImportReferenceRelease",
            AuditTarget::object("REFERENCE_RELEASE", release.seq.to_string()),
        );
        entry.request_id = request_id.to_owned();
        audit_sql::append(tx, &[(entry, now)], key).await?;
        Ok((release, true))
    })
    .await
}

/// Every release, oldest first.
pub async fn list(conn: &mut Conn) -> Result<Vec<Release>> {
    let sql = format!("{SELECT} ORDER BY seq");
    sqlx::query_as::<_, ReleaseRow>(sqlx::AssertSqlSafe(sql))
        .fetch_all(conn)
        .await?
        .into_iter()
        .map(ReleaseRow::into_release)
        .collect()
}

/// The entries of `kind` in release `seq`.
pub async fn entries(conn: &mut Conn, seq: i64, kind: EntryKind) -> Result<Vec<(String, Entry)>> {
    let rows: Vec<(String, Json<serde_json::Value>)> =
        sqlx::query_as("SELECT code, body FROM reference_entries WHERE release_seq = $1 AND kind = $2")
            .bind(seq)
            .bind(kind.code())
            .fetch_all(conn)
            .await?;
    rows.into_iter()
        .map(|(code, body)| {
            Entry::from_body(kind, body.0)
                .map(|e| (code.clone(), e))
                .map_err(|e| corrupt(format!("{seq}/{}/{code}", kind.code()), e.to_string()))
        })
        .collect()
}

/// The newest release's number (0 when there is none).
pub async fn last_seq(conn: &mut Conn) -> Result<i64> {
    let (seq,): (Option<i64>,) = sqlx::query_as("SELECT MAX(seq) FROM reference_releases")
        .fetch_one(conn)
        .await?;
    Ok(seq.unwrap_or(0))
}
