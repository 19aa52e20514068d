//! Destructive operations the guard held: recording them, listing them, and an admin's
//! decision (applied, or the entry kept), each decision audited.

use rusqlite::{Connection, Row, Transaction, params};

use super::audit::{self, Subject};
use super::now;
use super::users::{deprovision_entry, revoke_membership};
use crate::store::*;

/// Records a destructive operation held for an admin; returns its id.
pub(super) fn hold(t: &Transaction<'_>, idp: &IdpConnection, kind: &str, resource_id: &str, entry_id: i64, action: DeprovisionAction, request_id: &str) -> StoreResult<i64> {
    let name: String = t.prepare_cached("SELECT user_name FROM entries WHERE id = ?1")?.query_row([entry_id], |r| r.get(0))?;
    let action = serde_json::to_string(&action).map_err(|e| StoreError::Backend(e.to_string()))?;
    t.prepare_cached(
        "INSERT INTO held_ops (tenant_id, idp_id, idp_name, kind, resource_id, entry_id, user_name, action, request_id, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![idp.tenant_id, idp.id, idp.name, kind, resource_id, entry_id, name, action, request_id, now()])?;
    Ok(t.last_insert_rowid())
}

const HELD_COLUMNS: &str = "id, idp_name, kind, resource_id, user_name, action, request_id, at, status, decided_by, decided_at";

fn held_row(r: &Row<'_>) -> rusqlite::Result<HeldOp> {
    let action: String = r.get(5)?;
    Ok(HeldOp {
        id: r.get(0)?,
        idp: r.get(1)?,
        kind: r.get(2)?,
        resource_id: r.get(3)?,
        user_name: r.get(4)?,
        action: serde_json::from_str::<Option<DeprovisionAction>>(&action).map_err(|e| rusqlite::Error::FromSqlConversionFailure(5, rusqlite::types::Type::Text, Box::new(e)))?,
        request_id: r.get(6)?,
        at: r.get(7)?,
        status: r.get(8)?,
        decided_by: r.get(9)?,
        decided_at: r.get(10)?,
    })
}

/// Approves (removes the listed memberships) or rejects held membership removals.
fn decide_held_removals(t: &Transaction<'_>, tenant_id: i64, op: &HeldOp, memberships: &str, approve: bool, by: &str) -> StoreResult<HeldOp> {
    let pairs: Vec<(i64, String, Option<i64>)> = serde_json::from_str(memberships).map_err(|e| StoreError::Backend(format!("held memberships: {e}")))?;
    let ts = now();
    let status = if approve { "approved" } else { "rejected" };
    let mut names = Vec::new();
    let held_owner = format!("held:{}", op.id);
    for (entry, _, group) in &pairs {
        let before = audit::entry_state(t, *entry)?;
        if approve {
            revoke_membership(t, *entry, &held_owner, *group)?;
        } else {
            // Kept against the IdP's removal: the admin's decision, so the application owns it.
            t.prepare_cached("UPDATE OR IGNORE app_memberships SET owner = 'local' WHERE entry_id = ?1 AND owner = ?2 AND (?3 IS NULL OR group_id = ?3)")?
                .execute(params![entry, held_owner, group])?;
            revoke_membership(t, *entry, &held_owner, *group)?;
        }
        let after = audit::entry_state(t, *entry)?;
        let Some(b) = before else { continue };
        names.push(b.user_name.clone());
        let mut changes = audit::entry_diff(Some(&b), after.as_ref());
        changes["held"] = serde_json::json!({"id": op.id, "decision": status});
        let info = AuditInfo { actor: by.to_string(), request_id: format!("held-{}", op.id), operation: format!("{status}-remove-members"), ..Default::default() };
        let subject = Subject { tenant_id, idp: None, resource_type: "Group", resource_id: &op.resource_id, entry: Some((*entry, &b.user_name)) };
        audit::record(t, &subject, &info, &changes)?;
    }
    t.prepare_cached("UPDATE held_ops SET status = ?2, decided_by = ?3, decided_at = ?4 WHERE id = ?1")?.execute(params![op.id, status, by, ts])?;
    Ok(t.prepare_cached(&format!("SELECT {HELD_COLUMNS} FROM held_ops WHERE id = ?1"))?.query_row([op.id], held_row)?)
}

pub fn held_ops(c: &Connection, tenant_id: i64, status: Option<&str>) -> StoreResult<Vec<HeldOp>> {
    let mut st = c.prepare_cached(&format!("SELECT {HELD_COLUMNS} FROM held_ops WHERE tenant_id = ?1 AND (?2 IS NULL OR status = ?2) ORDER BY id DESC"))?;
    let rows = st.query_map(params![tenant_id, status], held_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Applies (approve) or drops (reject) a held operation, with its audit record.
pub fn decide_held(t: &Transaction<'_>, tenant_id: i64, id: i64, approve: bool, by: &str) -> StoreResult<HeldOp> {
    let op = t
        .prepare_cached(&format!("SELECT {HELD_COLUMNS} FROM held_ops WHERE tenant_id = ?1 AND id = ?2"))?
        .query_row(params![tenant_id, id], held_row)
        .map_err(|e| match StoreError::from(e) {
            StoreError::NotFound => StoreError::InvalidReference(format!("no held operation {id}")),
            other => other,
        })?;
    if op.status != "held" {
        return Err(StoreError::Conflict(format!("held operation {id} is already {}", op.status)));
    }
    let (entry_id, memberships): (i64, Option<String>) = t.prepare_cached("SELECT entry_id, memberships FROM held_ops WHERE id = ?1")?.query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    if op.kind == "remove-members" {
        return decide_held_removals(t, tenant_id, &op, memberships.as_deref().unwrap_or("[]"), approve, by);
    }
    let before = audit::entry_state(t, entry_id)?;
    let ts = now();
    if approve && before.is_some() {
        // Still shared with an active IdP user of another connection: that user keeps it.
        let shared: bool = t
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM users WHERE entry_id = ?1 AND active = 1)")?
            .query_row([entry_id], |r| r.get(0))?;
        if !shared {
            let orphan: bool = t.prepare_cached("SELECT NOT EXISTS (SELECT 1 FROM users WHERE entry_id = ?1)")?.query_row([entry_id], |r| r.get(0))?;
            match op.action.unwrap_or(DeprovisionAction::Keep) {
                DeprovisionAction::Delete { retention_days: 0 } if orphan => {
                    t.prepare_cached("DELETE FROM entries WHERE id = ?1")?.execute([entry_id])?;
                }
                DeprovisionAction::Keep => {}
                a => deprovision_entry(t, entry_id, a, &ts)?,
            }
        }
    }
    let status = if approve { "approved" } else { "rejected" };
    t.prepare_cached("UPDATE held_ops SET status = ?2, decided_by = ?3, decided_at = ?4 WHERE id = ?1")?.execute(params![id, status, by, ts])?;
    let after = audit::entry_state(t, entry_id)?;
    let mut changes = audit::entry_diff(before.as_ref(), after.as_ref());
    changes["held"] = serde_json::json!({"id": id, "decision": status});
    let info = AuditInfo { actor: by.to_string(), request_id: format!("held-{id}"), operation: format!("{status}-{}", op.kind), ..Default::default() };
    let subject = Subject { tenant_id, idp: None, resource_type: "User", resource_id: &op.resource_id, entry: Some((entry_id, &op.user_name)) };
    audit::record(t, &subject, &info, &changes)?;
    Ok(t.prepare_cached(&format!("SELECT {HELD_COLUMNS} FROM held_ops WHERE id = ?1"))?.query_row([id], held_row)?)
}

