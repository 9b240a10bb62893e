//! Access tokens from the command line (`observatory token create | list | revoke`) and the
//! development mode's one-time admin token.

use anyhow::Context;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use observatory_domain::{
    access::{Role, Scope},
    codes::{Filiere, Finess},
};
use observatory_store::tokens::{NewToken, TokenRecord};

/// Who creates and revokes tokens from the command line: whoever can open the database.
pub const COMMAND_LINE_ACTOR: &str = "command-line";

/// When a token stops working: `90d` (days from now), `2027-01-31` (start of that day, UTC),
/// an RFC 3339 instant, or `never`.
pub fn parse_expiry(raw: &str, now: DateTime<Utc>) -> anyhow::Result<Option<DateTime<Utc>>> {
    if raw == "never" {
        return Ok(None);
    }
    if let Some(days) = raw.strip_suffix('d') {
        let days: i64 = days
            .parse()
            .ok()
            .filter(|d| (1..=3660).contains(d))
            .context("--expires in days must be 1d to 3660d")?;
        return Ok(Some(now + Duration::days(days)));
    }
    let at = match NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        Ok(day) => day.and_hms_opt(0, 0, 0).map(|t| t.and_utc()),
        Err(_) => DateTime::parse_from_rfc3339(raw).ok().map(|t| t.with_timezone(&Utc)),
    }
    .context("--expires is 90d, a date (YYYY-MM-DD), an RFC 3339 instant, or never")?;
    anyhow::ensure!(at > now, "--expires must be in the future");
    Ok(Some(at))
}

/// What `token create` asks for.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub role: Role,
    pub centres: Vec<String>,
    pub filieres: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Held as a client certificate of this subject (see [`client_certificate_subject`]).
    pub client_subject: Option<String>,
}

/// The subject of the first certificate of a PEM file, as client certificates are matched.
pub fn client_certificate_subject(path: &std::path::Path) -> anyhow::Result<String> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    observatory_grpc::access::pem_certificate_subject(&pem)
        .with_context(|| format!("{} holds no PEM certificate with a readable subject", path.display()))
}

/// Creates a token as the local process `created_by` (the command line, development mode);
/// returns its record and its secret, which is stored nowhere (for a token held as a client
/// certificate, a secret nobody is given).
pub async fn create_token(
    store: &observatory_store::Store,
    request: &TokenRequest,
    created_by: &'static str,
) -> anyhow::Result<(NewToken, String)> {
    let centres = request
        .centres
        .iter()
        .map(|c| Finess::parse(c).map_err(|e| anyhow::anyhow!("--centre {c}: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let filieres = request
        .filieres
        .iter()
        .map(|f| Filiere::parse(f).map_err(|e| anyhow::anyhow!("--filiere {f}: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // The scope's own words (a prescriber needs a centre...), as the command line gave them.
    Scope::new(request.role, centres.clone(), filieres.clone())?;
    let call = observatory_app::Call::local(created_by, "CreateToken", uuid::Uuid::now_v7().to_string());
    let asked = observatory_app::tokens::TokenRequest {
        role: request.role,
        centres,
        filieres,
        expires_at: request.expires_at,
        client_subject: request.client_subject.clone(),
    };
    observatory_app::tokens::create_token(store, &call, asked)
        .await
        .map_err(|e| anyhow::anyhow!("cannot store the token: {e}"))
}

/// Revokes a token by id, as the local process `revoked_by`.
pub async fn revoke_token(store: &observatory_store::Store, id: &str, revoked_by: &'static str) -> anyhow::Result<()> {
    let call = observatory_app::Call::local(revoked_by, "RevokeToken", uuid::Uuid::now_v7().to_string());
    observatory_app::tokens::revoke_token(store, &call, id)
        .await
        .map_err(|e| anyhow::anyhow!("cannot revoke token {id}: {e}"))
}

/// One line per token for `token list`: id, role, scope, created, expiry, state, and the
/// client certificate subject of a token held as a certificate (never the secret, which is
/// not kept).
pub fn token_lines(tokens: &[TokenRecord], now: DateTime<Utc>) -> Vec<String> {
    let mut lines = vec!["id\trole\tcentres\tfilieres\tcreated_at\texpires_at\tstate\tclient_certificate".to_owned()];
    for record in tokens {
        let t = &record.token;
        let join = |items: Vec<&str>| {
            if items.is_empty() {
                "-".to_owned()
            } else {
                items.join(",")
            }
        };
        let state = match (&record.revocation, t.expires_at) {
            (Some(r), _) => format!("revoked {}", r.revoked_at.to_rfc3339()),
            (None, Some(e)) if e <= now => "expired".to_owned(),
            _ => "active".to_owned(),
        };
        lines.push(format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            t.id,
            t.role,
            join(t.scope.centres().iter().map(|c| c.as_str()).collect()),
            join(t.scope.filieres().iter().map(|f| f.as_str()).collect()),
            t.created_at.to_rfc3339(),
            t.expires_at.map_or("never".to_owned(), |e| e.to_rfc3339()),
            state,
            t.client_subject.as_deref().unwrap_or("-"),
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries_read_as_days_dates_instants_or_never() {
        let now = DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_expiry("never", now).unwrap(), None);
        assert_eq!(parse_expiry("30d", now).unwrap(), Some(now + Duration::days(30)));
        assert_eq!(
            parse_expiry("2027-01-31", now).unwrap().unwrap().to_rfc3339(),
            "2027-01-31T00:00:00+00:00"
        );
        assert!(parse_expiry("2026-11-23T09:00:00Z", now).is_err(), "in the past");
        assert!(parse_expiry("0d", now).is_err());
        assert!(parse_expiry("soon", now).is_err());
    }
}
