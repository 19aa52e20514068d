//! The drift report: where the directory no longer matches what one connection's IdP says.
//! Read-only; one snapshot.

use super::memberships::idp_group_owner_sql;
use crate::model::{DriftEntry, DriftMembership, DriftReport, DriftSkipped, IdpConnection, Owner};
use crate::store::StoreResult;
use crate::store::sql::{Row, Sql};

fn entry(row: &Row) -> StoreResult<DriftEntry> {
    Ok(DriftEntry { user_name: row.get(0)?, detail: row.get(1)? })
}

/// The drift report of one connection.
pub fn report(c: &dyn Sql, idp: &IdpConnection) -> StoreResult<DriftReport> {
    let untouched = c
        .query(
            "SELECT e.user_name, CASE WHEN EXISTS (SELECT 1 FROM users u WHERE u.entry_id = e.id) THEN 'other-connection' ELSE 'orphan' END
             FROM entries e WHERE e.tenant_id = ?1 AND e.deleted_at IS NULL
             AND NOT EXISTS (SELECT 1 FROM users u WHERE u.entry_id = e.id AND u.idp_id = ?2) ORDER BY e.user_name_fold",
            &[&idp.tenant_id, &idp.id],
        )?
        .iter()
        .map(entry)
        .collect::<StoreResult<_>>()?;
    let missing_memberships = c
        .query(
            "SELECT ag.name, e.user_name, json_extract(g.body, '$.displayName')
             FROM groups g JOIN group_targets gt ON gt.group_pk = g.pk JOIN app_groups ag ON ag.id = gt.app_group_id
             JOIN group_members m ON m.group_pk = g.pk JOIN users u ON u.pk = m.user_pk JOIN entries e ON e.id = u.entry_id
             WHERE g.idp_id = ?1 AND e.deleted_at IS NULL AND e.active = 1
             AND NOT EXISTS (SELECT 1 FROM app_memberships am WHERE am.group_id = ag.id AND am.entry_id = e.id)
             ORDER BY ag.name, e.user_name_fold",
            &[&idp.id],
        )?
        .iter()
        .map(|row| {
            let via: Option<String> = row.get(2)?;
            Ok(DriftMembership { group: row.get(0)?, user_name: row.get(1)?, detail: format!("IdP group '{}'", via.unwrap_or_default()) })
        })
        .collect::<StoreResult<_>>()?;
    let group_owner = idp_group_owner_sql("g.pk");
    let owners = c.dialect().distinct_list("am.owner");
    let extra: Vec<(String, String, String)> = c
        .query(
            &format!(
                "SELECT ag.name, e.user_name, {owners}
                 FROM app_groups ag JOIN app_memberships am ON am.group_id = ag.id JOIN entries e ON e.id = am.entry_id
                 WHERE ag.id IN (SELECT gt.app_group_id FROM group_targets gt JOIN groups g ON g.pk = gt.group_pk WHERE g.idp_id = ?1)
                 AND NOT EXISTS (SELECT 1 FROM app_memberships own JOIN groups g ON own.owner = {group_owner}
                                 WHERE own.group_id = ag.id AND own.entry_id = e.id AND g.idp_id = ?1)
                 GROUP BY ag.id, e.id ORDER BY ag.name, e.user_name_fold"
            ),
            &[&idp.id],
        )?
        .iter()
        .map(|row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .collect::<StoreResult<_>>()?;
    let extra_memberships = extra.into_iter().map(|(group, user_name, owners)| DriftMembership { group, user_name, detail: describe_owners(c, &owners) }).collect();
    let names = c.dialect().distinct_list("ag.name");
    let inactive_with_groups = c
        .query(
            &format!(
                "SELECT e.user_name, {names} FROM users u JOIN entries e ON e.id = u.entry_id
                 JOIN app_memberships am ON am.entry_id = e.id JOIN app_groups ag ON ag.id = am.group_id
                 WHERE u.idp_id = ?1 AND u.active = 0 GROUP BY e.id ORDER BY e.user_name_fold"
            ),
            &[&idp.id],
        )?
        .iter()
        .map(entry)
        .collect::<StoreResult<_>>()?;
    let skipped_members = c
        .query(
            "SELECT g.id, COALESCE(json_extract(g.body, '$.displayName'), ''), s.member_id, s.reason, s.at
             FROM skipped_members s JOIN groups g ON g.pk = s.group_pk WHERE g.idp_id = ?1 ORDER BY g.display_name_fold, s.member_id",
            &[&idp.id],
        )?
        .iter()
        .map(|row| Ok(DriftSkipped { group_id: row.get(0)?, group: row.get(1)?, member: row.get(2)?, reason: row.get(3)?, at: row.get(4)? }))
        .collect::<StoreResult<_>>()?;
    Ok(DriftReport { untouched, missing_memberships, extra_memberships, inactive_with_groups, skipped_members })
}

/// `g:12,rule:3` -> `IdP okta group 'Dev', rules of entra`.
fn describe_owners(c: &dyn Sql, owners: &str) -> String {
    let group = |pk: i64| -> Option<String> {
        let r = c.query_opt("SELECT i.name, json_extract(g.body, '$.displayName') FROM groups g JOIN idps i ON i.id = g.idp_id WHERE g.pk = ?1", &[&pk]).ok()??;
        Some(format!("IdP {} group '{}'", r.get::<String>(0).ok()?, r.get::<Option<String>>(1).ok()?.unwrap_or_default()))
    };
    let rules = |id: i64| -> Option<String> {
        let r = c.query_opt("SELECT name FROM idps WHERE id = ?1", &[&id]).ok()??;
        r.get::<String>(0).ok().map(|n| format!("rules of {n}"))
    };
    owners
        .split(',')
        .map(|o| match Owner::parse(o) {
            Ok(Owner::IdpGroup(pk)) => group(pk).unwrap_or_else(|| o.to_string()),
            Ok(Owner::Rules(id)) => rules(id).unwrap_or_else(|| o.to_string()),
            _ => o.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
