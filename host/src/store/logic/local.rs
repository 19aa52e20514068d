//! Changes made in the application to one directory entry: attributes it owns from then on,
//! and memberships no sync removes. Audited like every other change.

use serde_json::Value;

use super::audit::{self, Subject};
use super::{entries, memberships};
use crate::model::{AttrOwner, AuditInfo, DirectoryEntry, LocalChange, Owner, Timestamp};
use crate::store::sql::Sql;
use crate::store::{StoreError, StoreResult};

/// Applies a local change to a live entry (by userName).
pub fn change(t: &dyn Sql, tenant_id: i64, user_name: &str, c: &LocalChange, by: &str) -> StoreResult<DirectoryEntry> {
    let entry_id = entries::id_by_name(t, tenant_id, user_name, true)?.ok_or_else(|| StoreError::InvalidReference(format!("no directory entry '{user_name}'")))?;
    let before = entries::state(t, entry_id)?;
    if !c.attributes.is_empty() {
        let set: serde_json::Map<String, Value> = c.attributes.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect();
        crate::scim::resource::check_entry_attributes(&Value::Object(set)).map_err(StoreError::InvalidReference)?;
        let (mut attrs, mut owners) = entries::attributes_and_owners(t, entry_id)?;
        for (k, v) in &c.attributes {
            if v.is_null() {
                attrs.remove(k);
                owners.remove(k);
            } else {
                attrs.insert(k.clone(), v.clone());
                owners.insert(k.clone(), Value::String(AttrOwner::Local.to_string()));
            }
        }
        t.execute(
            "UPDATE entries SET attributes = ?2, attr_owners = ?3, modified = ?4 WHERE id = ?1",
            &[&entry_id, &Value::Object(attrs).to_string(), &Value::Object(owners).to_string(), &Timestamp::now()],
        )?;
    }
    for g in &c.add_groups {
        crate::scim::names::check_group_name(g).map_err(StoreError::InvalidReference)?;
        let gid = memberships::app_group_id(t, tenant_id, g)?;
        memberships::grant(t, gid, entry_id, Owner::Local)?;
    }
    for g in &c.remove_groups {
        memberships::revoke_named(t, tenant_id, entry_id, Owner::Local, g)?;
    }
    let after = entries::state(t, entry_id)?;
    let changes = audit::entry_diff(before.as_ref(), after.as_ref());
    let info = AuditInfo { actor: by.to_string(), request_id: String::new(), operation: "local".into(), ..Default::default() };
    let name = after.as_ref().map(|e| e.user_name.clone()).unwrap_or_default();
    let eid = entry_id.to_string();
    audit::record(t, &Subject { tenant_id, idp: None, resource_type: "Entry", resource_id: &eid, entry: Some((entry_id, &name)) }, &info, &changes)?;
    after.ok_or(StoreError::NotFound)
}
