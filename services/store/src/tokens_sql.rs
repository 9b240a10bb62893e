//! SQL of the access tokens, compiled once per backend like `runs_sql.rs`.

use chrono::{DateTime, Utc};
use observatory_domain::{
    access::{Role, Scope},
    codes::{Filiere, Finess},
};
use sqlx::types::Json;

use super::{Db, audit_sql};
use crate::audit::{AuditEntry, AuditKey, AuditTarget};
use crate::tokens::{NewToken, Revocation, TokenRecord};
use crate::{Result, StoreError};

type Pool = sqlx::Pool<Db>;
type Conn = <Db as sqlx::Database>::Connection;

const SELECT: &str = "SELECT t.id, t.secret_sha256, t.role, t.centres, t.filieres, t.created_at, t.created_by, \
     t.expires_at, t.client_subject, r.revoked_at, r.revoked_by \
     FROM access_tokens t LEFT JOIN access_token_revocations r ON r.token_id = t.id";

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: String,
    secret_sha256: String,
    role: String,
    centres: Json<Vec<String>>,
    filieres: Json<Vec<String>>,
    created_at: DateTime<Utc>,
    created_by: String,
    expires_at: Option<DateTime<Utc>>,
    client_subject: Option<String>,
    revoked_at: Option<DateTime<Utc>>,
    revoked_by: Option<String>,
}

impl TokenRow {
    fn into_record(self) -> Result<TokenRecord> {
        let corrupt = |what: String| StoreError::Corrupt {
            kind: "ACCESS_TOKEN",
            id: self.id.clone(),
            source: std::sync::Arc::new(<serde_json::Error as serde::de::Error>::custom(what)),
        };
        let role = Role::from_code(&self.role).ok_or_else(|| corrupt(format!("unknown role {}", self.role)))?;
        let centres = self
            .centres
            .0
            .iter()
            .map(|c| Finess::parse(c).map_err(|e| corrupt(e.to_string())))
            .collect::<Result<Vec<_>>>()?;
        let filieres = self
            .filieres
            .0
            .iter()
            .map(|f| Filiere::parse(f).map_err(|e| corrupt(e.to_string())))
            .collect::<Result<Vec<_>>>()?;
        let scope = Scope::new(role, centres, filieres).map_err(|e| corrupt(e.to_string()))?;
        let revocation = match (self.revoked_at, self.revoked_by) {
            (Some(revoked_at), Some(revoked_by)) => Some(Revocation { revoked_at, revoked_by }),
            _ => None,
        };
        Ok(TokenRecord {
            token: NewToken {
                id: self.id,
                secret_sha256: self.secret_sha256,
                role,
                scope,
                created_at: self.created_at,
                created_by: self.created_by,
                expires_at: self.expires_at,
                client_subject: self.client_subject,
            },
            revocation,
        })
    }
}

pub async fn create(write: &Pool, _read: &Pool, token: &NewToken, key: Option<&AuditKey>) -> Result<()> {
    let centres: Vec<&str> = token.scope.centres().iter().map(|c| c.as_str()).collect();
    let filieres: Vec<&str> = token.scope.filieres().iter().map(|f| f.as_str()).collect();
    let entry = AuditEntry::local(
        &token.created_by,
        "CreateToken",
        AuditTarget::object("ACCESS_TOKEN", &token.id),
    );
    audit_sql::in_transaction(write, entry, key, async |conn| {
        sqlx::query(
            "INSERT INTO access_tokens (id, secret_sha256, role, centres, filieres, created_at, created_by, expires_at, \
             client_subject) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&token.id)
        .bind(&token.secret_sha256)
        .bind(token.role.code())
        .bind(Json(centres))
        .bind(Json(filieres))
        .bind(token.created_at)
        .bind(&token.created_by)
        .bind(token.expires_at)
        .bind(&token.client_subject)
        .execute(conn)
        .await?;
        Ok(())
    })
    .await
}

pub async fn by_secret_hash(conn: &mut Conn, secret_sha256: &str) -> Result<Option<TokenRecord>> {
    let sql = format!("{SELECT} WHERE t.secret_sha256 = $1");
    sqlx::query_as::<_, TokenRow>(sqlx::AssertSqlSafe(sql))
        .bind(secret_sha256)
        .fetch_optional(conn)
        .await?
        .map(TokenRow::into_record)
        .transpose()
}

pub async fn by_id(conn: &mut Conn, id: &str) -> Result<Option<TokenRecord>> {
    let sql = format!("{SELECT} WHERE t.id = $1");
    sqlx::query_as::<_, TokenRow>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .map(TokenRow::into_record)
        .transpose()
}

pub async fn by_client_subject(conn: &mut Conn, subject: &str) -> Result<Vec<TokenRecord>> {
    let sql = format!("{SELECT} WHERE t.client_subject = $1 ORDER BY t.created_at DESC, t.id DESC");
    sqlx::query_as::<_, TokenRow>(sqlx::AssertSqlSafe(sql))
        .bind(subject)
        .fetch_all(conn)
        .await?
        .into_iter()
        .map(TokenRow::into_record)
        .collect()
}

pub async fn list(_write: &Pool, read: &Pool) -> Result<Vec<TokenRecord>> {
    let sql = format!("{SELECT} ORDER BY t.created_at, t.id");
    sqlx::query_as::<_, TokenRow>(sqlx::AssertSqlSafe(sql))
        .fetch_all(read)
        .await?
        .into_iter()
        .map(TokenRow::into_record)
        .collect()
}

pub async fn revoke(
    write: &Pool,
    _read: &Pool,
    id: &str,
    revocation: &Revocation,
    key: Option<&AuditKey>,
) -> Result<()> {
    let entry = AuditEntry::local(
        &revocation.revoked_by,
        "RevokeToken",
        AuditTarget::object("ACCESS_TOKEN", id),
    );
    audit_sql::in_transaction(write, entry, key, async |conn| {
        let inserted = sqlx::query(
            "INSERT INTO access_token_revocations (token_id, revoked_at, revoked_by) \
             SELECT id, $2, $3 FROM access_tokens WHERE id = $1",
        )
        .bind(id)
        .bind(revocation.revoked_at)
        .bind(&revocation.revoked_by)
        .execute(conn)
        .await;
        match inserted {
            Ok(done) if done.rows_affected() == 1 => Ok(()),
            Ok(_) => Err(StoreError::NotFound {
                kind: "ACCESS_TOKEN",
                id: id.to_owned(),
            }),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::AlreadyExists(format!("token {id} is already revoked")))
            }
            Err(e) => Err(e.into()),
        }
    })
    .await
}
