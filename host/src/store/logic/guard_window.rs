//! The guards' sliding windows: one row per destructive operation that went ahead, kept for
//! the window's length. In the database rather than in memory, so that a cap of 100 an hour
//! is 100 an hour for the connection whichever replica serves it (a taker's transaction is
//! serializable: two replicas taking the last slot cannot both get it).

use crate::store::StoreResult;
use crate::store::sql::Sql;

/// Takes up to `n` of the `max` slots the window of `window_ms` ending at `now_ms` has free;
/// returns how many it took.
pub fn take(t: &dyn Sql, idp_id: i64, n: u32, max: u32, window_ms: i64, now_ms: i64) -> StoreResult<u32> {
    t.execute("DELETE FROM guard_spends WHERE idp_id = ?1 AND at_ms <= ?2", &[&idp_id, &(now_ms - window_ms)])?;
    let used: i64 = t.query_one("SELECT count(*) FROM guard_spends WHERE idp_id = ?1", &[&idp_id])?.get(0)?;
    let taken = (i64::from(max) - used).clamp(0, i64::from(n));
    for _ in 0..taken {
        t.execute("INSERT INTO guard_spends (idp_id, at_ms) VALUES (?1, ?2)", &[&idp_id, &now_ms])?;
    }
    Ok(taken as u32)
}

/// How many of the `max` slots the window of `window_ms` ending at `now_ms` has free.
pub fn free(c: &dyn Sql, idp_id: i64, max: u32, window_ms: i64, now_ms: i64) -> StoreResult<u32> {
    let used: i64 = c.query_one("SELECT count(*) FROM guard_spends WHERE idp_id = ?1 AND at_ms > ?2", &[&idp_id, &(now_ms - window_ms)])?.get(0)?;
    Ok((i64::from(max) - used).max(0) as u32)
}
