//! Destructive operations the guard held: recording them, listing them, and superseding them
//! when the IdP undoes them first. An admin's decision is in `approvals`.

use crate::model::{DeprovisionAction, HeldKind, HeldOp, HeldStatus, IdpConnection, Owner, Timestamp};
use crate::store::sql::{Row, Sql};
use crate::store::{StoreError, StoreResult};

/// Records a user's deactivation or deletion held for an admin; returns its id.
pub(super) fn hold(t: &dyn Sql, idp: &IdpConnection, kind: HeldKind, resource_id: &str, entry_id: i64, action: DeprovisionAction, request_id: &str) -> StoreResult<i64> {
    let name: String = t.query_one("SELECT user_name FROM entries WHERE id = ?1", &[&entry_id])?.get(0)?;
    let action = serde_json::to_string(&action).map_err(|e| StoreError::Backend(Box::new(e)))?;
    t.query_one(
        "INSERT INTO held_ops (tenant_id, idp_id, idp_name, kind, resource_id, entry_id, user_name, action, request_id, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) RETURNING id",
        &[&idp.tenant_id, &idp.id, &idp.name, &kind.as_str(), &resource_id, &entry_id, &name, &action, &request_id, &Timestamp::now()],
    )?
    .get(0)
}

/// A membership a group write takes away: (entry, app group; `None` for every app group
/// the IdP group gives).
pub(super) type Removal = (i64, Option<i64>);

/// Records the membership removals of one IdP group's write, held for an admin; returns its
/// id. The memberships themselves are handed to the held operation by the caller.
pub(super) fn hold_removals(t: &dyn Sql, idp: &IdpConnection, group_id: &str, group_name: &str, owner: Owner, removals: &[Removal], request_id: &str) -> StoreResult<i64> {
    let entries = removals.iter().map(|(e, _)| e).collect::<std::collections::BTreeSet<_>>().len();
    // Stored as (entry, owner, group) triples: what an approval removes.
    let owner = owner.to_string();
    let held: Vec<(i64, &str, Option<i64>)> = removals.iter().map(|(e, g)| (*e, owner.as_str(), *g)).collect();
    t.query_one(
        "INSERT INTO held_ops (tenant_id, idp_id, idp_name, kind, resource_id, entry_id, user_name, action, request_id, at, memberships)
         VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, 'null', ?7, ?8, ?9) RETURNING id",
        &[
            &idp.tenant_id,
            &idp.id,
            &idp.name,
            &HeldKind::RemoveMembers.as_str(),
            &group_id,
            &format!("{entries} members of '{group_name}'"),
            &request_id,
            &Timestamp::now(),
            &serde_json::json!(held).to_string(),
        ],
    )?
    .get(0)
}

/// What was held for an entry is moot once the IdP brings the user back.
pub(super) fn supersede(t: &dyn Sql, entry_id: i64, ts: &Timestamp) -> StoreResult<()> {
    t.execute("UPDATE held_ops SET status = ?3, decided_at = ?2 WHERE entry_id = ?1 AND status = ?4", &[&entry_id, ts, &HeldStatus::Superseded.as_str(), &HeldStatus::Held.as_str()])?;
    Ok(())
}

const HELD_COLUMNS: &str = "id, idp_name, kind, resource_id, user_name, action, request_id, at, status, decided_by, decided_at";

fn held_row(r: &Row) -> StoreResult<HeldOp> {
    let unknown = |i: usize, what: String| StoreError::backend(format!("column {i}: unknown held operation {what}"));
    let kind: String = r.get(2)?;
    let status: String = r.get(8)?;
    Ok(HeldOp {
        id: r.get(0)?,
        idp: r.get(1)?,
        kind: HeldKind::parse(&kind).ok_or_else(|| unknown(2, kind))?,
        resource_id: r.get(3)?,
        user_name: r.get(4)?,
        action: r.json::<Option<DeprovisionAction>>(5)?,
        request_id: r.get(6)?,
        at: r.get(7)?,
        status: HeldStatus::parse(&status).ok_or_else(|| unknown(8, status))?,
        decided_by: r.get(9)?,
        decided_at: r.get(10)?,
    })
}

/// One held operation of a tenant.
pub(super) fn get(c: &dyn Sql, tenant_id: i64, id: i64) -> StoreResult<HeldOp> {
    held_row(&c.query_one(&format!("SELECT {HELD_COLUMNS} FROM held_ops WHERE tenant_id = ?1 AND id = ?2"), &[&tenant_id, &id])?)
}

/// The entry a held operation concerns and, for membership removals, what it removes.
pub(super) fn target(t: &dyn Sql, id: i64) -> StoreResult<(i64, Option<String>)> {
    let r = t.query_one("SELECT entry_id, memberships FROM held_ops WHERE id = ?1", &[&id])?;
    Ok((r.get(0)?, r.get(1)?))
}

/// Records an admin's decision.
pub(super) fn decided(t: &dyn Sql, id: i64, status: HeldStatus, by: &str, ts: &Timestamp) -> StoreResult<()> {
    t.execute("UPDATE held_ops SET status = ?2, decided_by = ?3, decided_at = ?4 WHERE id = ?1", &[&id, &status.as_str(), &by, ts])?;
    Ok(())
}

/// A tenant's held operations (all, or of one status), newest first.
pub fn list(c: &dyn Sql, tenant_id: i64, status: Option<HeldStatus>) -> StoreResult<Vec<HeldOp>> {
    let sql = format!("SELECT {HELD_COLUMNS} FROM held_ops WHERE tenant_id = ?1 AND (CAST(?2 AS TEXT) IS NULL OR status = ?2) ORDER BY id DESC");
    c.query(&sql, &[&tenant_id, &status.map(HeldStatus::as_str)])?.iter().map(held_row).collect()
}
