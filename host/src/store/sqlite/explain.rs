//! Why a directory entry is what it is: who owns each of its memberships and attributes,
//! which IdP users map to it, and its audit history.

use rusqlite::{Connection, OptionalExtension};
use serde_json::{Map, Value};

use super::{audit, entries};
use crate::model::{AttrOwner, AuditQuery, Explanation, MembershipSource, Owner};
use crate::store::StoreResult;

/// The explanation of a tenant's entry (by userName), if it exists.
pub fn explain(c: &Connection, tenant_id: i64, user_name: &str) -> StoreResult<Option<Explanation>> {
    let Some(id) = entries::id_by_name(c, tenant_id, user_name, false)? else { return Ok(None) };
    let e = entries::by_id(c, id)?;
    let mut st = c.prepare_cached("SELECT ag.name, m.owner FROM app_memberships m JOIN app_groups ag ON ag.id = m.group_id WHERE m.entry_id = ?1 ORDER BY ag.name, m.owner")?;
    let owned: Vec<(String, Owner)> = st.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    let mut memberships = Vec::with_capacity(owned.len());
    for (group, owner) in owned {
        let (idp, via) = match owner {
            Owner::IdpGroup(pk) => c
                .prepare_cached("SELECT i.name, json_extract(g.body, '$.displayName') FROM groups g JOIN idps i ON i.id = g.idp_id WHERE g.pk = ?1")?
                .query_row([pk], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)))
                .optional()?
                .unwrap_or_default(),
            Owner::Rules(idp) => (idp_name(c, idp)?.unwrap_or_default(), None),
            Owner::Local | Owner::Held(_) => (String::new(), None),
        };
        memberships.push(MembershipSource { group, kind: owner.kind(), idp, via });
    }
    let mut st = c.prepare_cached("SELECT i.name, u.id FROM users u JOIN idps i ON i.id = u.idp_id WHERE u.entry_id = ?1 ORDER BY i.name")?;
    let idp_users = st.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    let history = audit::query(c, &AuditQuery { tenant_id, entry: Some(e.user_name.clone()), limit: 1000, ..Default::default() })?;
    let owners: String = c.prepare_cached("SELECT attr_owners FROM entries WHERE id = ?1")?.query_row([id], |r| r.get(0))?;
    let mut attribute_owners: Map<String, Value> = serde_json::from_str(&owners).unwrap_or_default();
    for v in attribute_owners.values_mut() {
        // An IdP connection's id -> its name.
        if let Some(AttrOwner::Idp(idp)) = v.as_str().and_then(AttrOwner::parse) {
            *v = Value::String(idp_name(c, idp)?.unwrap_or_else(|| idp.to_string()));
        }
    }
    Ok(Some(Explanation {
        user_name: e.user_name,
        active: e.active,
        deleted: e.deleted,
        attributes: e.attributes,
        memberships,
        idp_users,
        attribute_owners: Value::Object(attribute_owners),
        history,
    }))
}

fn idp_name(c: &Connection, idp_id: i64) -> StoreResult<Option<String>> {
    Ok(c.prepare_cached("SELECT name FROM idps WHERE id = ?1")?.query_row([idp_id], |r| r.get(0)).optional()?)
}
