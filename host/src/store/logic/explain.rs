//! Why a directory entry is what it is: who owns each of its memberships and attributes,
//! which IdP users map to it, and its audit history.

use serde_json::{Map, Value};

use super::{audit, entries};
use crate::model::{AttrOwner, AuditQuery, Explanation, MembershipSource, Owner};
use crate::store::StoreResult;
use crate::store::sql::Sql;

/// The explanation of a tenant's entry (by userName), if it exists.
pub fn explain(c: &dyn Sql, tenant_id: i64, user_name: &str) -> StoreResult<Option<Explanation>> {
    let Some(id) = entries::id_by_name(c, tenant_id, user_name, false)? else { return Ok(None) };
    let e = entries::by_id(c, id)?;
    let owned: Vec<(String, Owner)> = c
        .query("SELECT ag.name, m.owner FROM app_memberships m JOIN app_groups ag ON ag.id = m.group_id WHERE m.entry_id = ?1 ORDER BY ag.name, m.owner", &[&id])?
        .iter()
        .map(|r| Ok((r.get(0)?, r.get(1)?)))
        .collect::<StoreResult<_>>()?;
    let mut memberships = Vec::with_capacity(owned.len());
    for (group, owner) in owned {
        let (idp, via) = match owner {
            Owner::IdpGroup(pk) => match c.query_opt("SELECT i.name, json_extract(g.body, '$.displayName') FROM groups g JOIN idps i ON i.id = g.idp_id WHERE g.pk = ?1", &[&pk])? {
                Some(r) => (r.get::<String>(0)?, r.get::<Option<String>>(1)?),
                None => Default::default(),
            },
            Owner::Rules(idp) => (idp_name(c, idp)?.unwrap_or_default(), None),
            Owner::Local | Owner::Held(_) => (String::new(), None),
        };
        memberships.push(MembershipSource { group, kind: owner.kind(), idp, via });
    }
    let idp_users = c
        .query("SELECT i.name, u.id FROM users u JOIN idps i ON i.id = u.idp_id WHERE u.entry_id = ?1 ORDER BY i.name", &[&id])?
        .iter()
        .map(|r| Ok((r.get(0)?, r.get(1)?)))
        .collect::<StoreResult<_>>()?;
    let history = audit::query(c, &AuditQuery { tenant_id, entry: Some(e.user_name.clone()), limit: 1000, ..Default::default() })?;
    let owners: String = c.query_one("SELECT attr_owners FROM entries WHERE id = ?1", &[&id])?.get(0)?;
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

fn idp_name(c: &dyn Sql, idp_id: i64) -> StoreResult<Option<String>> {
    c.query_opt("SELECT name FROM idps WHERE id = ?1", &[&idp_id])?.map(|r| r.get(0)).transpose()
}
