//! An admin's decision on a held operation: approved, it is applied; rejected, the entry keeps
//! what the IdP tried to take. Each decision is audited per entry.

use super::audit::{self, Subject};
use super::{entries, held, lifecycle, memberships};
use crate::model::{AuditInfo, DeprovisionAction, HeldKind, HeldOp, HeldStatus, Owner, Timestamp};
use crate::store::sql::Sql;
use crate::store::{StoreError, StoreResult};

/// Applies (approve) or drops (reject) a held operation, with its audit records.
pub fn decide(t: &dyn Sql, tenant_id: i64, id: i64, approve: bool, by: &str) -> StoreResult<HeldOp> {
    let op = held::get(t, tenant_id, id).map_err(|e| match e {
        StoreError::NotFound => StoreError::InvalidReference(format!("no held operation {id}")),
        other => other,
    })?;
    if op.status != HeldStatus::Held {
        return Err(StoreError::Conflict(format!("held operation {id} is already {}", op.status.as_str())));
    }
    let (entry_id, removals) = held::target(t, id)?;
    let status = if approve { HeldStatus::Approved } else { HeldStatus::Rejected };
    if op.kind == HeldKind::RemoveMembers {
        decide_removals(t, tenant_id, &op, removals.as_deref().unwrap_or("[]"), status, by)?;
        return held::get(t, tenant_id, id);
    }
    let before = entries::state(t, entry_id)?;
    let ts = Timestamp::now();
    if approve && before.is_some() {
        // Still shared with an active IdP user of another connection: that user keeps it.
        let shared: bool = t.query_one("SELECT EXISTS (SELECT 1 FROM users WHERE entry_id = ?1 AND active = 1)", &[&entry_id])?.get(0)?;
        if !shared {
            let orphan: bool = t.query_one("SELECT NOT EXISTS (SELECT 1 FROM users WHERE entry_id = ?1)", &[&entry_id])?.get(0)?;
            match op.action.unwrap_or(DeprovisionAction::Keep) {
                DeprovisionAction::Delete { retention_days: 0 } if orphan => {
                    t.execute("DELETE FROM entries WHERE id = ?1", &[&entry_id])?;
                }
                DeprovisionAction::Keep => {}
                a => lifecycle::deprovision(t, entry_id, a, &ts)?,
            }
        }
    }
    held::decided(t, id, status, by, &ts)?;
    let after = entries::state(t, entry_id)?;
    let mut changes = audit::entry_diff(before.as_ref(), after.as_ref());
    changes["held"] = serde_json::json!({"id": id, "decision": status.as_str()});
    let info = AuditInfo { actor: by.to_string(), request_id: format!("held-{id}"), operation: format!("{}-{}", status.as_str(), op.kind.as_str()), ..Default::default() };
    let subject = Subject { tenant_id, idp: None, resource_type: "User", resource_id: &op.resource_id, entry: Some((entry_id, &op.user_name)) };
    audit::record(t, &subject, &info, &changes)?;
    held::get(t, tenant_id, id)
}

/// Approves (removes the listed memberships) or rejects held membership removals.
fn decide_removals(t: &dyn Sql, tenant_id: i64, op: &HeldOp, removals: &str, status: HeldStatus, by: &str) -> StoreResult<()> {
    let pairs: Vec<(i64, String, Option<i64>)> = serde_json::from_str(removals).map_err(|e| StoreError::Backend(Box::new(e)))?;
    let ts = Timestamp::now();
    let held_owner = Owner::Held(op.id);
    for (entry, _, group) in &pairs {
        let before = entries::state(t, *entry)?;
        if status == HeldStatus::Approved {
            memberships::revoke(t, *entry, held_owner, *group)?;
        } else {
            // Kept against the IdP's removal: the admin's decision, so the application owns it.
            memberships::transfer(t, *entry, held_owner, Owner::Local, *group)?;
        }
        let after = entries::state(t, *entry)?;
        let Some(b) = before else { continue };
        let mut changes = audit::entry_diff(Some(&b), after.as_ref());
        changes["held"] = serde_json::json!({"id": op.id, "decision": status.as_str()});
        let info = AuditInfo { actor: by.to_string(), request_id: format!("held-{}", op.id), operation: format!("{}-remove-members", status.as_str()), ..Default::default() };
        let subject = Subject { tenant_id, idp: None, resource_type: "Group", resource_id: &op.resource_id, entry: Some((*entry, &b.user_name)) };
        audit::record(t, &subject, &info, &changes)?;
    }
    held::decided(t, op.id, status, by, &ts)
}
