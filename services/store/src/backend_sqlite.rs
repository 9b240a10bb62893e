//! SQLite backend: WAL journal, `synchronous=FULL`, foreign keys on, a busy timeout; a pool of
//! read-only connections for reads and a single writer connection that starts every group with
//! `BEGIN IMMEDIATE`, so writers never deadlock on a lock upgrade.

use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::{Result, StoreOptions};

pub(crate) type Db = sqlx::Sqlite;
// The single writer connection already keeps audit appenders in line.
pub(crate) const LOCK_AUDIT_CHAIN: Option<&str> = None;
pub(crate) const BEGIN: &str = "BEGIN IMMEDIATE";

// The same source compiled once per backend, with `Db` and `BEGIN` from this module.
#[allow(clippy::duplicate_mod)]
#[path = "shared.rs"]
pub(crate) mod shared;

#[allow(clippy::duplicate_mod)]
#[path = "runs_sql.rs"]
pub(crate) mod runs_sql;

#[allow(clippy::duplicate_mod)]
#[path = "tokens_sql.rs"]
pub(crate) mod tokens_sql;

#[allow(clippy::duplicate_mod)]
#[path = "reference_sql.rs"]
pub(crate) mod reference_sql;

#[allow(clippy::duplicate_mod)]
#[path = "audit_sql.rs"]
pub(crate) mod audit_sql;

/// Opens the writer (creating the file and switching it to WAL) then the readers.
pub(crate) async fn connect(options: &StoreOptions) -> Result<(sqlx::SqlitePool, sqlx::SqlitePool)> {
    let base = SqliteConnectOptions::from_str(&options.url)?
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(options.busy_timeout);
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(base.clone().create_if_missing(true))
        .await?;
    let readers = SqlitePoolOptions::new()
        .max_connections(options.max_connections.max(1))
        .connect_with(base.read_only(true))
        .await?;
    Ok((readers, writer))
}
