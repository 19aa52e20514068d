//! What happens to an entry when its IdP user goes or comes back: deprovisioning (with a
//! snapshot of its memberships), reactivation, and the purge of soft-deleted entries.

use super::audit::{self, Subject};
use super::{held, memberships};
use crate::model::{AuditInfo, DeprovisionAction, Lifecycle, Owner, Timestamp};
use crate::store::sql::Sql;
use crate::store::{StoreError, StoreResult};

/// Applies the lifecycle change a user write carries to its entry.
pub(super) fn apply(t: &dyn Sql, user_pk: i64, entry_id: i64, lifecycle: Lifecycle, ts: &Timestamp) -> StoreResult<()> {
    match lifecycle {
        Lifecycle::Unchanged | Lifecycle::Held(_) => {}
        Lifecycle::Deprovision(a) => {
            // An entry shared with another IdP's active user stays as it is.
            let shared: bool = t.query_one("SELECT EXISTS (SELECT 1 FROM users WHERE entry_id = ?1 AND pk <> ?2 AND active = 1)", &[&entry_id, &user_pk])?.get(0)?;
            if shared {
                t.execute("UPDATE entries SET active = 1 WHERE id = ?1", &[&entry_id])?;
            } else {
                deprovision(t, entry_id, a, ts)?;
            }
        }
        Lifecycle::Reactivate { restore } => {
            held::supersede(t, entry_id, ts)?;
            reactivate(t, entry_id, user_pk, restore)?
        }
    }
    Ok(())
}

/// An entry no IdP user maps to any more, which a create of the same name may take back.
pub(super) struct Vacant {
    /// The entry.
    pub id: i64,
    /// The connection whose user deletion left it, if known.
    pub left_by: Option<i64>,
    /// Deprovisioned (soft-deleted, disabled or stripped): taking it back is a reactivation.
    pub deprovisioned: bool,
    /// What left it there, for the audit record.
    pub how: &'static str,
}

/// The tenant's entry named `user_name` that no IdP user maps to, if there is one.
pub(super) fn vacant(t: &dyn Sql, tenant_id: i64, user_name_fold: &str) -> StoreResult<Option<Vacant>> {
    let row: Option<(i64, Option<i64>, bool, bool, bool)> = match t.query_opt(
        "SELECT e.id, e.left_by, e.deleted_at IS NOT NULL, e.active = 0 OR e.snapshot IS NOT NULL,
         EXISTS (SELECT 1 FROM held_ops h WHERE h.entry_id = e.id AND h.kind = 'delete' AND h.status = 'held')
         FROM entries e WHERE e.tenant_id = ?1 AND e.user_name_fold = ?2 AND NOT EXISTS (SELECT 1 FROM users u WHERE u.entry_id = e.id)",
        &[&tenant_id, &user_name_fold],
    )? {
        Some(r) => Some((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        None => None,
    };
    Ok(row.map(|(id, left_by, deleted, deactivated, held)| Vacant {
        id,
        left_by,
        deprovisioned: deleted || deactivated,
        how: match (held, deleted, deactivated) {
            (true, _, _) => "a held deletion",
            (_, true, _) => "a soft deletion",
            (_, _, true) => "a deletion that deprovisioned it",
            _ => "a deletion that kept it",
        },
    }))
}

/// Records which connection's user deletion left an entry without IdP users.
pub(super) fn left_by(t: &dyn Sql, entry_id: i64, idp_id: i64) -> StoreResult<()> {
    t.execute("UPDATE entries SET left_by = ?2 WHERE id = ?1", &[&entry_id, &idp_id])?;
    Ok(())
}

/// Takes a vacant entry back for a new IdP user (`user_pk`): what was held for it is
/// superseded, a deprovisioned entry is reactivated (`restore` per the rules), and it is no
/// longer vacant. Returns the held operations superseded.
pub(super) fn take_back(t: &dyn Sql, v: &Vacant, user_pk: i64, restore: bool, ts: &Timestamp) -> StoreResult<Vec<i64>> {
    let superseded: Vec<i64> = t.query("SELECT id FROM held_ops WHERE entry_id = ?1 AND status = 'held' ORDER BY id", &[&v.id])?.iter().map(|r| r.get(0)).collect::<Result<_, _>>()?;
    held::supersede(t, v.id, ts)?;
    if v.deprovisioned {
        reactivate(t, v.id, user_pk, restore)?;
    }
    t.execute("UPDATE entries SET left_by = NULL WHERE id = ?1", &[&v.id])?;
    Ok(superseded)
}

/// Applies a deprovisioning action to an entry, snapshotting its memberships first.
pub(super) fn deprovision(t: &dyn Sql, entry_id: i64, action: DeprovisionAction, now: &Timestamp) -> StoreResult<()> {
    // Stored as [[app group id, owner], ...]: what a reactivation may restore.
    let rows: Vec<(i64, String)> = memberships::of_entry(t, entry_id)?.into_iter().map(|(g, o)| (g, o.to_string())).collect();
    let snapshot = serde_json::json!({ "memberships": rows }).to_string();
    match action {
        DeprovisionAction::Keep => {
            t.execute("UPDATE entries SET active = 1 WHERE id = ?1", &[&entry_id])?;
        }
        DeprovisionAction::Disable => {
            t.execute("UPDATE entries SET active = 0, snapshot = ?2 WHERE id = ?1", &[&entry_id, &snapshot])?;
        }
        // As the contract says: the entry stays active, only its memberships go.
        DeprovisionAction::StripGroups => {
            t.execute("UPDATE entries SET active = 1, snapshot = ?2 WHERE id = ?1", &[&entry_id, &snapshot])?;
            memberships::strip(t, entry_id)?;
        }
        DeprovisionAction::Delete { retention_days } => {
            t.execute("UPDATE entries SET active = 0, deleted_at = ?2, purge_after = ?3, snapshot = ?4 WHERE id = ?1", &[&entry_id, now, &now.plus_days(retention_days), &snapshot])?;
            memberships::strip(t, entry_id)?;
        }
    }
    Ok(())
}

/// Brings a deprovisioned entry back: memberships the IdP's groups give are re-derived from
/// the IdP view; with `restore`, the other snapshotted ones (rule grants) come back too.
fn reactivate(t: &dyn Sql, entry_id: i64, user_pk: i64, restore: bool) -> StoreResult<()> {
    let snapshot: Option<String> = t.query_one("SELECT snapshot FROM entries WHERE id = ?1", &[&entry_id])?.get(0)?;
    t.execute("UPDATE entries SET deleted_at = NULL, purge_after = NULL, snapshot = NULL WHERE id = ?1", &[&entry_id])?;
    memberships::regrant_idp_groups_of(t, entry_id, user_pk)?;
    if restore && let Some(snap) = snapshot {
        let v: serde_json::Value = serde_json::from_str(&snap).map_err(|e| StoreError::Backend(Box::new(e)))?;
        for m in v["memberships"].as_array().into_iter().flatten() {
            // IdP group memberships were re-derived above from what the groups say now.
            if let (Some(g), Some(Ok(owner))) = (m[0].as_i64(), m[1].as_str().map(Owner::parse))
                && !matches!(owner, Owner::IdpGroup(_))
            {
                memberships::restore(t, g, entry_id, owner)?;
            }
        }
    }
    Ok(())
}

/// Purges soft-deleted entries past their retention. An entry an IdP user still points at
/// (deactivated, not deleted, in the IdP) is scrubbed to a tombstone instead.
pub fn purge_expired(t: &dyn Sql, now: &Timestamp) -> StoreResult<usize> {
    // Each purged entry gets its record, by the server itself.
    let due: Vec<(i64, i64, String)> = t
        .query("SELECT id, tenant_id, user_name FROM entries WHERE purge_after IS NOT NULL AND purge_after <= ?1", &[now])?
        .iter()
        .map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .collect::<StoreResult<_>>()?;
    let info = AuditInfo { actor: "system:retention".into(), operation: "purge".into(), ..Default::default() };
    for (id, tenant_id, name) in &due {
        let sid = id.to_string();
        let subject = Subject { tenant_id: *tenant_id, idp: None, resource_type: "Entry", resource_id: &sid, entry: Some((*id, name)) };
        audit::record(t, &subject, &info, &serde_json::json!({"purged": true}))?;
    }
    let gone = t.execute("DELETE FROM entries WHERE purge_after IS NOT NULL AND purge_after <= ?1 AND NOT EXISTS (SELECT 1 FROM users u WHERE u.entry_id = entries.id)", &[now])?;
    let scrubbed = t.execute("UPDATE entries SET attributes = '{}', snapshot = NULL, purge_after = NULL WHERE purge_after IS NOT NULL AND purge_after <= ?1", &[now])?;
    Ok((gone + scrubbed) as usize)
}
