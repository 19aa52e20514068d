//! What happens to an entry when its IdP user goes or comes back: deprovisioning (with a
//! snapshot of its memberships), reactivation, and the purge of soft-deleted entries.

use rusqlite::{Transaction, params};

use super::audit::{self, Subject};
use super::{held, memberships};
use crate::model::{AuditInfo, DeprovisionAction, Lifecycle, Owner, Timestamp};
use crate::store::{StoreError, StoreResult};

/// Applies the lifecycle change a user write carries to its entry.
pub(super) fn apply(t: &Transaction<'_>, user_pk: i64, entry_id: i64, lifecycle: Lifecycle, ts: &Timestamp) -> StoreResult<()> {
    match lifecycle {
        Lifecycle::Unchanged | Lifecycle::Held(_) => {}
        Lifecycle::Deprovision(a) => {
            // An entry shared with another IdP's active user stays as it is.
            let shared: bool = t
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM users WHERE entry_id = ?1 AND pk <> ?2 AND active = 1)")?
                .query_row(params![entry_id, user_pk], |r| r.get(0))?;
            if shared {
                t.prepare_cached("UPDATE entries SET active = 1 WHERE id = ?1")?.execute([entry_id])?;
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

/// Applies a deprovisioning action to an entry, snapshotting its memberships first.
pub(super) fn deprovision(t: &Transaction<'_>, entry_id: i64, action: DeprovisionAction, now: &Timestamp) -> StoreResult<()> {
    // Stored as [[app group id, owner], ...]: what a reactivation may restore.
    let rows: Vec<(i64, String)> = memberships::of_entry(t, entry_id)?.into_iter().map(|(g, o)| (g, o.to_string())).collect();
    let snapshot = serde_json::json!({ "memberships": rows }).to_string();
    match action {
        DeprovisionAction::Keep => {
            t.prepare_cached("UPDATE entries SET active = 1 WHERE id = ?1")?.execute([entry_id])?;
        }
        DeprovisionAction::Disable => {
            t.prepare_cached("UPDATE entries SET active = 0, snapshot = ?2 WHERE id = ?1")?.execute(params![entry_id, snapshot])?;
        }
        // As the contract says: the entry stays active, only its memberships go.
        DeprovisionAction::StripGroups => {
            t.prepare_cached("UPDATE entries SET active = 1, snapshot = ?2 WHERE id = ?1")?.execute(params![entry_id, snapshot])?;
            memberships::strip(t, entry_id)?;
        }
        DeprovisionAction::Delete { retention_days } => {
            t.prepare_cached("UPDATE entries SET active = 0, deleted_at = ?2, purge_after = ?3, snapshot = ?4 WHERE id = ?1")?
                .execute(params![entry_id, now, now.plus_days(retention_days), snapshot])?;
            memberships::strip(t, entry_id)?;
        }
    }
    Ok(())
}

/// Brings a deprovisioned entry back: memberships the IdP's groups give are re-derived from
/// the IdP view; with `restore`, the other snapshotted ones (rule grants) come back too.
fn reactivate(t: &Transaction<'_>, entry_id: i64, user_pk: i64, restore: bool) -> StoreResult<()> {
    let snapshot: Option<String> = t.prepare_cached("SELECT snapshot FROM entries WHERE id = ?1")?.query_row([entry_id], |r| r.get(0))?;
    t.prepare_cached("UPDATE entries SET deleted_at = NULL, purge_after = NULL, snapshot = NULL WHERE id = ?1")?.execute([entry_id])?;
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
pub fn purge_expired(t: &Transaction<'_>, now: &Timestamp) -> StoreResult<usize> {
    // Each purged entry gets its record, by the server itself.
    let due: Vec<(i64, i64, String)> = t
        .prepare_cached("SELECT id, tenant_id, user_name FROM entries WHERE purge_after IS NOT NULL AND purge_after <= ?1")?
        .query_map([now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let info = AuditInfo { actor: "system:retention".into(), operation: "purge".into(), ..Default::default() };
    for (id, tenant_id, name) in &due {
        let sid = id.to_string();
        let subject = Subject { tenant_id: *tenant_id, idp: None, resource_type: "Entry", resource_id: &sid, entry: Some((*id, name)) };
        audit::record(t, &subject, &info, &serde_json::json!({"purged": true}))?;
    }
    let gone = t
        .prepare_cached("DELETE FROM entries WHERE purge_after IS NOT NULL AND purge_after <= ?1 AND NOT EXISTS (SELECT 1 FROM users u WHERE u.entry_id = entries.id)")?
        .execute([now])?;
    let scrubbed = t
        .prepare_cached("UPDATE entries SET attributes = '{}', snapshot = NULL, purge_after = NULL WHERE purge_after IS NOT NULL AND purge_after <= ?1")?
        .execute([now])?;
    Ok(gone + scrubbed)
}
