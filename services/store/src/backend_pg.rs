//! PostgreSQL backend: one pool; the group-commit writer holds one connection at a time and
//! commits each group with a single `COMMIT` (one WAL flush under `synchronous_commit=on`).

use sqlx::postgres::PgPoolOptions;

use crate::{Result, StoreOptions};

pub(crate) type Db = sqlx::Postgres;
// Audit appenders on different connections (the writer, tokens, report runs) take turns.
pub(crate) const LOCK_AUDIT_CHAIN: Option<&str> = Some("SELECT pg_advisory_xact_lock(7301)");
// Positions in the audit chain and the change feed are the head plus one, read under the
// chain's lock: each transaction must see the commits made before it took the lock, which
// READ COMMITTED guarantees whatever the server's default isolation.
pub(crate) const BEGIN: &str = "BEGIN ISOLATION LEVEL READ COMMITTED";

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

/// Opens the pool. A connection that cannot be had within `acquire_timeout` (the server down or
/// refusing connections, the pool exhausted) and a statement running past `statement_timeout`
/// fail fast, as UNAVAILABLE, rather than holding their call until its deadline.
pub(crate) async fn connect(options: &StoreOptions) -> Result<sqlx::PgPool> {
    use std::str::FromStr;
    let connect = sqlx::postgres::PgConnectOptions::from_str(&options.url)?.options([(
        "statement_timeout",
        format!("{}ms", options.statement_timeout.as_millis()),
    )]);
    Ok(PgPoolOptions::new()
        .max_connections(options.max_connections.max(2))
        .acquire_timeout(options.acquire_timeout)
        .connect_with(connect)
        .await?)
}
