//! PostgreSQL's versioned migrations, tracked in `mapwright_schema`. Append only, as
//! SQLite's: never edit one that has shipped. The first is SQLite's schema at its migration
//! 18 (PostgreSQL support began there); later ones follow SQLite's changes one for one.

use postgres::IsolationLevel;

use crate::store::sql::Sql as _;
use crate::store::sql::postgres::PgConn;
use crate::store::{StoreError, StoreResult};

const MIGRATIONS: &[&str] = &[include_str!("schema.sql"), include_str!("m2_guard_leases.sql")];

/// The advisory lock migrating processes take, so that replicas starting together migrate
/// once (the number is arbitrary and only has to be Mapwright's own).
const MIGRATION_LOCK: i64 = 0x6d61_7077_7269_6768;

/// Brings the schema up to date; returns the version it is at.
pub(super) fn migrate(c: &mut PgConn) -> StoreResult<usize> {
    c.execute("SELECT pg_advisory_lock(?1)", &[&MIGRATION_LOCK])?;
    let out = apply(c);
    let unlocked = c.execute("SELECT pg_advisory_unlock(?1)", &[&MIGRATION_LOCK]);
    let version = out?;
    unlocked?;
    Ok(version)
}

/// The schema version the database is at (0: empty).
pub(super) fn version(c: &mut PgConn) -> StoreResult<usize> {
    let exists: bool = c.query_one("SELECT to_regclass('mapwright_schema') IS NOT NULL", &[])?.get(0)?;
    if !exists {
        return Ok(0);
    }
    let v: i64 = c.query_one("SELECT COALESCE(max(version), 0) FROM mapwright_schema", &[])?.get(0)?;
    Ok(v as usize)
}

/// Refuses a schema other than the one this build knows: older (`mapwright migrate` first)
/// or newer (upgrade this replica).
pub(super) fn check(c: &mut PgConn) -> StoreResult<usize> {
    let current = version(c)?;
    let known = MIGRATIONS.len();
    match current.cmp(&known) {
        std::cmp::Ordering::Equal => Ok(current),
        std::cmp::Ordering::Less => Err(StoreError::backend(format!(
            "the database is at schema version {current}, this build needs {known}: run `mapwright migrate` (or set [store] auto_migrate)"
        ))),
        std::cmp::Ordering::Greater => Err(StoreError::backend(format!(
            "the database is at schema version {current}, newer than this build knows ({known}); upgrade mapwright"
        ))),
    }
}

fn apply(c: &mut PgConn) -> StoreResult<usize> {
    c.execute("CREATE TABLE IF NOT EXISTS mapwright_schema (version BIGINT NOT NULL, applied TEXT NOT NULL)", &[])?;
    let current: i64 = c.query_one("SELECT COALESCE(max(version), 0) FROM mapwright_schema", &[])?.get(0)?;
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(StoreError::backend(format!("the database is at schema version {current}, newer than this build knows ({known}); upgrade mapwright")));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i as i64 + 1;
        // DDL is transactional in PostgreSQL: a migration applies whole or not at all.
        c.transaction(IsolationLevel::ReadCommitted, false, true, |t| {
            t.batch(sql)?;
            t.execute("INSERT INTO mapwright_schema (version, applied) VALUES (?1, ?2)", &[&version, &crate::model::Timestamp::now()])?;
            Ok(())
        })?;
        tracing::info!(version, "applied PostgreSQL migration");
    }
    Ok(MIGRATIONS.len())
}
