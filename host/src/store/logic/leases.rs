//! Leases: a named piece of background work (delivery, purge, a scheduled re-apply) held by
//! one process at a time, until it lets go or stops renewing (it died): then the next
//! process asking gets it.

use crate::store::StoreResult;
use crate::store::sql::Sql;

/// Takes the lease `name` for `holder` until `now_ms + ttl_ms`, or renews it; false when
/// another holder has it and it has not expired.
pub fn acquire(t: &dyn Sql, name: &str, holder: &str, now_ms: i64, ttl_ms: i64) -> StoreResult<bool> {
    let n = t.execute(
        "INSERT INTO leases (name, holder, expires_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms
         WHERE leases.holder = excluded.holder OR leases.expires_ms < ?4",
        &[&name, &holder, &(now_ms + ttl_ms), &now_ms],
    )?;
    Ok(n == 1)
}

/// Lets go of the lease `name` if `holder` has it.
pub fn release(t: &dyn Sql, name: &str, holder: &str) -> StoreResult<()> {
    t.execute("DELETE FROM leases WHERE name = ?1 AND holder = ?2", &[&name, &holder])?;
    Ok(())
}
