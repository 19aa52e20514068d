//! App groups and memberships. A membership is one row per (app group, entry, [`Owner`]):
//! two owners co-own it and the entry keeps the group while any of them holds it, so a sync
//! of one owner never takes what another granted. Only this file spells owners in SQL.

use crate::model::{IdpConnection, Owner, Timestamp};
use crate::scim::eval::fold;
use crate::store::StoreResult;
use crate::store::sql::{Cell, FromCell, Sql};

impl rusqlite::ToSql for Owner {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::Owned(rusqlite::types::Value::Text(self.to_string())))
    }
}

impl rusqlite::types::FromSql for Owner {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let text = value.as_str()?;
        Owner::parse(text).map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
    }
}

impl FromCell for Owner {
    fn from_cell(cell: Cell) -> Result<Self, String> {
        Owner::parse(&String::from_cell(cell)?).map_err(|e| e.to_string())
    }
}

/// The SQL expression of the [`Owner::IdpGroup`] of a group key expression (`'g:' || pk`).
pub(super) fn idp_group_owner_sql(pk_expr: &str) -> String {
    format!("'{}' || {pk_expr}", Owner::IDP_GROUP_PREFIX)
}

/// The app group of this name (created if missing), with the name it is stored under (the
/// first spelling seen; names compare case-insensitively).
pub(super) fn app_group(t: &dyn Sql, tenant_id: i64, name: &str) -> StoreResult<(i64, String)> {
    let nf = fold(name);
    // Nearly always the group exists: one indexed read on the writer thread.
    if let Some(r) = t.query_opt("SELECT id, name FROM app_groups WHERE tenant_id = ?1 AND name_fold = ?2", &[&tenant_id, &nf])? {
        return Ok((r.get(0)?, r.get(1)?));
    }
    let r = t.query_one(
        "INSERT INTO app_groups (tenant_id, name, name_fold, created, uid) VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
        &[&tenant_id, &name, &nf, &Timestamp::now(), &uuid::Uuid::now_v7().to_string()],
    )?;
    Ok((r.get(0)?, name.to_string()))
}

/// The id of the app group of this name (created if missing).
pub(super) fn app_group_id(t: &dyn Sql, tenant_id: i64, name: &str) -> StoreResult<i64> {
    app_group(t, tenant_id, name).map(|(id, _)| id)
}

/// Grants `owner`'s membership of an app group (nothing if it holds it already).
pub(super) fn grant(t: &dyn Sql, group_id: i64, entry_id: i64, owner: Owner) -> StoreResult<()> {
    t.execute("INSERT INTO app_memberships (group_id, entry_id, owner) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING", &[&group_id, &entry_id, &owner.to_string()])?;
    Ok(())
}

/// Removes one owner's membership(s) of an entry: in one app group, or in all of them.
pub(super) fn revoke(t: &dyn Sql, entry_id: i64, owner: Owner, group: Option<i64>) -> StoreResult<()> {
    t.execute("DELETE FROM app_memberships WHERE entry_id = ?1 AND owner = ?2 AND (CAST(?3 AS BIGINT) IS NULL OR group_id = ?3)", &[&entry_id, &owner.to_string(), &group])?;
    Ok(())
}

/// Removes one owner's membership of the app group of this name, if it holds one.
pub(super) fn revoke_named(t: &dyn Sql, tenant_id: i64, entry_id: i64, owner: Owner, name: &str) -> StoreResult<()> {
    t.execute(
        "DELETE FROM app_memberships WHERE entry_id = ?1 AND owner = ?2
         AND group_id = (SELECT id FROM app_groups WHERE tenant_id = ?3 AND name_fold = ?4)",
        &[&entry_id, &owner.to_string(), &tenant_id, &fold(name)],
    )?;
    Ok(())
}

/// Hands `from`'s membership(s) of an entry (in one app group, or all) to `to`; where `to`
/// holds one already, `from`'s simply goes.
pub(super) fn transfer(t: &dyn Sql, entry_id: i64, from: Owner, to: Owner, group: Option<i64>) -> StoreResult<()> {
    // Only the rows `to` does not hold already (SQLite's UPDATE OR IGNORE, said in SQL both
    // databases speak); the rest go with the revocation.
    t.execute(
        "UPDATE app_memberships SET owner = ?3 WHERE entry_id = ?1 AND owner = ?2 AND (CAST(?4 AS BIGINT) IS NULL OR group_id = ?4)
         AND NOT EXISTS (SELECT 1 FROM app_memberships x WHERE x.entry_id = app_memberships.entry_id AND x.group_id = app_memberships.group_id AND x.owner = ?3)",
        &[&entry_id, &from.to_string(), &to.to_string(), &group],
    )?;
    revoke(t, entry_id, from, group)
}

/// Applies a connection's rule grants and revocations to an entry; revocations touch only
/// memberships those rules granted. Returns the granted groups' stored names.
pub(super) fn rule_grants(t: &dyn Sql, idp: &IdpConnection, entry_id: i64, grant_names: &[String], revoke_names: &[String]) -> StoreResult<Vec<String>> {
    let owner = Owner::Rules(idp.id);
    let mut granted = Vec::with_capacity(grant_names.len());
    for name in grant_names {
        let (g, stored) = app_group(t, idp.tenant_id, name)?;
        grant(t, g, entry_id, owner)?;
        granted.push(stored);
    }
    for name in revoke_names {
        revoke_named(t, idp.tenant_id, entry_id, owner, name)?;
    }
    Ok(granted)
}

/// The entries that hold a membership through `owner` (in one app group, or any).
pub(super) fn entries_of(t: &dyn Sql, owner: Owner, group: Option<i64>) -> StoreResult<Vec<i64>> {
    t.query("SELECT DISTINCT entry_id FROM app_memberships WHERE owner = ?1 AND (CAST(?2 AS BIGINT) IS NULL OR group_id = ?2)", &[&owner.to_string(), &group])?
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Grants every member of an IdP group the app group it now maps to.
pub(super) fn grant_to_members(t: &dyn Sql, group_id: i64, group_pk: i64) -> StoreResult<()> {
    t.execute(
        "INSERT INTO app_memberships (group_id, entry_id, owner)
         SELECT ?1, u.entry_id, ?3 FROM group_members m JOIN users u ON u.pk = m.user_pk
         WHERE m.group_pk = ?2 AND u.entry_id IS NOT NULL AND u.out_of_scope = 0 ON CONFLICT DO NOTHING",
        &[&group_id, &group_pk, &Owner::IdpGroup(group_pk).to_string()],
    )?;
    Ok(())
}

/// Takes from an entry the memberships that an IdP user's groups give it (the user is leaving).
pub(super) fn revoke_idp_groups_of(t: &dyn Sql, entry_id: i64, user_pk: i64) -> StoreResult<()> {
    let owners = idp_group_owner_sql("group_pk");
    t.execute(&format!("DELETE FROM app_memberships WHERE entry_id = ?1 AND owner IN (SELECT {owners} FROM group_members WHERE user_pk = ?2)"), &[&entry_id, &user_pk])?;
    Ok(())
}

/// Gives an entry again the memberships its IdP user's groups give (a reactivation).
pub(super) fn regrant_idp_groups_of(t: &dyn Sql, entry_id: i64, user_pk: i64) -> StoreResult<()> {
    let owner = idp_group_owner_sql("m.group_pk");
    t.execute(
        &format!(
            "INSERT INTO app_memberships (group_id, entry_id, owner)
             SELECT gt.app_group_id, ?1, {owner} FROM group_members m JOIN group_targets gt ON gt.group_pk = m.group_pk WHERE m.user_pk = ?2 ON CONFLICT DO NOTHING"
        ),
        &[&entry_id, &user_pk],
    )?;
    Ok(())
}

/// Every membership of an entry with its owner, ordered (what deprovisioning snapshots).
pub(super) fn of_entry(t: &dyn Sql, entry_id: i64) -> StoreResult<Vec<(i64, Owner)>> {
    t.query("SELECT group_id, owner FROM app_memberships WHERE entry_id = ?1 ORDER BY group_id, owner", &[&entry_id])?
        .iter()
        .map(|r| Ok((r.get(0)?, r.get(1)?)))
        .collect()
}

/// Removes every membership of an entry.
pub(super) fn strip(t: &dyn Sql, entry_id: i64) -> StoreResult<()> {
    t.execute("DELETE FROM app_memberships WHERE entry_id = ?1", &[&entry_id])?;
    Ok(())
}

/// Grants an owner's membership again if the app group still exists (a restored snapshot).
pub(super) fn restore(t: &dyn Sql, group_id: i64, entry_id: i64, owner: Owner) -> StoreResult<()> {
    t.execute(
        "INSERT INTO app_memberships (group_id, entry_id, owner) SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM app_groups WHERE id = ?1) ON CONFLICT DO NOTHING",
        &[&group_id, &entry_id, &owner.to_string()],
    )?;
    Ok(())
}
