//! Destructive operations the guard held: recording them, listing them, and superseding them
//! when the IdP undoes them first. An admin's decision is in `approvals`.

use rusqlite::{Connection, Row, Transaction, params};

use crate::model::{DeprovisionAction, HeldKind, HeldOp, HeldStatus, IdpConnection, Owner, Timestamp};
use crate::store::{StoreError, StoreResult};

/// Records a user's deactivation or deletion held for an admin; returns its id.
pub(super) fn hold(t: &Transaction<'_>, idp: &IdpConnection, kind: HeldKind, resource_id: &str, entry_id: i64, action: DeprovisionAction, request_id: &str) -> StoreResult<i64> {
    let name: String = t.prepare_cached("SELECT user_name FROM entries WHERE id = ?1")?.query_row([entry_id], |r| r.get(0))?;
    let action = serde_json::to_string(&action).map_err(|e| StoreError::Backend(Box::new(e)))?;
    t.prepare_cached(
        "INSERT INTO held_ops (tenant_id, idp_id, idp_name, kind, resource_id, entry_id, user_name, action, request_id, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![idp.tenant_id, idp.id, idp.name, kind.as_str(), resource_id, entry_id, name, action, request_id, Timestamp::now()])?;
    Ok(t.last_insert_rowid())
}

/// A membership a group write takes away: (entry, app group; `None` for every app group
/// the IdP group gives).
pub(super) type Removal = (i64, Option<i64>);

/// Records the membership removals of one IdP group's write, held for an admin; returns its
/// id. The memberships themselves are handed to the held operation by the caller.
pub(super) fn hold_removals(t: &Transaction<'_>, idp: &IdpConnection, group_id: &str, group_name: &str, owner: Owner, removals: &[Removal], request_id: &str) -> StoreResult<i64> {
    let entries = removals.iter().map(|(e, _)| e).collect::<std::collections::BTreeSet<_>>().len();
    // Stored as (entry, owner, group) triples: what an approval removes.
    let owner = owner.to_string();
    let held: Vec<(i64, &str, Option<i64>)> = removals.iter().map(|(e, g)| (*e, owner.as_str(), *g)).collect();
    t.prepare_cached(
        "INSERT INTO held_ops (tenant_id, idp_id, idp_name, kind, resource_id, entry_id, user_name, action, request_id, at, memberships)
         VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, 'null', ?7, ?8, ?9)",
    )?
    .execute(params![
        idp.tenant_id,
        idp.id,
        idp.name,
        HeldKind::RemoveMembers.as_str(),
        group_id,
        format!("{entries} members of '{group_name}'"),
        request_id,
        Timestamp::now(),
        serde_json::json!(held).to_string()
    ])?;
    Ok(t.last_insert_rowid())
}

/// What was held for an entry is moot once the IdP brings the user back.
pub(super) fn supersede(t: &Transaction<'_>, entry_id: i64, ts: &Timestamp) -> StoreResult<()> {
    t.prepare_cached("UPDATE held_ops SET status = ?3, decided_at = ?2 WHERE entry_id = ?1 AND status = ?4")?
        .execute(params![entry_id, ts, HeldStatus::Superseded.as_str(), HeldStatus::Held.as_str()])?;
    Ok(())
}

const HELD_COLUMNS: &str = "id, idp_name, kind, resource_id, user_name, action, request_id, at, status, decided_by, decided_at";

fn held_row(r: &Row<'_>) -> rusqlite::Result<HeldOp> {
    let action: String = r.get(5)?;
    let unknown = |i: usize, what: String| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, format!("unknown held operation {what}").into());
    let kind: String = r.get(2)?;
    let status: String = r.get(8)?;
    Ok(HeldOp {
        id: r.get(0)?,
        idp: r.get(1)?,
        kind: HeldKind::parse(&kind).ok_or_else(|| unknown(2, kind))?,
        resource_id: r.get(3)?,
        user_name: r.get(4)?,
        action: super::db::json_column::<Option<DeprovisionAction>>(5, &action)?,
        request_id: r.get(6)?,
        at: r.get(7)?,
        status: HeldStatus::parse(&status).ok_or_else(|| unknown(8, status))?,
        decided_by: r.get(9)?,
        decided_at: r.get(10)?,
    })
}

/// One held operation of a tenant.
pub(super) fn get(c: &Connection, tenant_id: i64, id: i64) -> StoreResult<HeldOp> {
    Ok(c.prepare_cached(&format!("SELECT {HELD_COLUMNS} FROM held_ops WHERE tenant_id = ?1 AND id = ?2"))?.query_row(params![tenant_id, id], held_row)?)
}

/// The entry a held operation concerns and, for membership removals, what it removes.
pub(super) fn target(t: &Transaction<'_>, id: i64) -> StoreResult<(i64, Option<String>)> {
    Ok(t.prepare_cached("SELECT entry_id, memberships FROM held_ops WHERE id = ?1")?.query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))?)
}

/// Records an admin's decision.
pub(super) fn decided(t: &Transaction<'_>, id: i64, status: HeldStatus, by: &str, ts: &Timestamp) -> StoreResult<()> {
    t.prepare_cached("UPDATE held_ops SET status = ?2, decided_by = ?3, decided_at = ?4 WHERE id = ?1")?.execute(params![id, status.as_str(), by, ts])?;
    Ok(())
}

/// A tenant's held operations (all, or of one status), newest first.
pub fn list(c: &Connection, tenant_id: i64, status: Option<HeldStatus>) -> StoreResult<Vec<HeldOp>> {
    let mut st = c.prepare_cached(&format!("SELECT {HELD_COLUMNS} FROM held_ops WHERE tenant_id = ?1 AND (?2 IS NULL OR status = ?2) ORDER BY id DESC"))?;
    let rows = st.query_map(params![tenant_id, status.map(HeldStatus::as_str)], held_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}
