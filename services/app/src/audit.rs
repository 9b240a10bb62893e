//! Audit operations: the trail of a period, and its verification. The admin's (the role table
//! says so); reading the trail is itself an access recorded in it.

use chrono::{DateTime, Utc};
use observatory_store::audit::{Anchor, AuditEvent, AuditTarget, Verification};

use crate::scope::{Target, admit};
use crate::{App, AppResult, Call};

/// At most `size` events recorded in `[from, to)`, after event `after` (0: from the first).
pub async fn export(
    app: &App,
    call: &Call,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    after: i64,
    size: i64,
) -> AppResult<Vec<AuditEvent>> {
    admit(&app.store, call, Target::Unbound)
        .await?
        .audit_read(&app.store, call.operation, vec![AuditTarget::period(from, to)])
        .await?;
    Ok(app.store.audit_events(from, to, after, size).await?)
}

/// Walks the chain (from `anchor`, if given), checking hashes, MACs and the record versions the
/// events name.
pub async fn verify(app: &App, call: &Call, anchor: Option<&Anchor>) -> AppResult<Verification> {
    admit(&app.store, call, Target::Unbound).await?;
    Ok(app.store.verify_audit(anchor).await?)
}
