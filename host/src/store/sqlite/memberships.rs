//! App groups and memberships. A membership is one row per (app group, entry, [`Owner`]):
//! two owners co-own it and the entry keeps the group while any of them holds it, so a sync
//! of one owner never takes what another granted. Only this file spells owners in SQL.

use rusqlite::{OptionalExtension, Transaction, params};

use crate::model::{IdpConnection, Owner, Timestamp};
use crate::scim::eval::fold;
use crate::store::StoreResult;

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

/// The SQL expression of the [`Owner::IdpGroup`] of a group key expression (`'g:' || pk`).
pub(super) fn idp_group_owner_sql(pk_expr: &str) -> String {
    format!("'{}' || {pk_expr}", Owner::IDP_GROUP_PREFIX)
}

/// The app group of this name (created if missing), with the name it is stored under (the
/// first spelling seen; names compare case-insensitively).
pub(super) fn app_group(t: &Transaction<'_>, tenant_id: i64, name: &str) -> StoreResult<(i64, String)> {
    let nf = fold(name);
    // Nearly always the group exists: one indexed read on the writer thread.
    let mut find = t.prepare_cached("SELECT id, name FROM app_groups WHERE tenant_id = ?1 AND name_fold = ?2")?;
    if let Some(found) = find.query_row(params![tenant_id, nf], |r| Ok((r.get(0)?, r.get(1)?))).optional()? {
        return Ok(found);
    }
    t.prepare_cached("INSERT INTO app_groups (tenant_id, name, name_fold, created, uid) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![tenant_id, name, nf, Timestamp::now(), uuid::Uuid::now_v7().to_string()])?;
    Ok((t.last_insert_rowid(), name.to_string()))
}

/// The id of the app group of this name (created if missing).
pub(super) fn app_group_id(t: &Transaction<'_>, tenant_id: i64, name: &str) -> StoreResult<i64> {
    app_group(t, tenant_id, name).map(|(id, _)| id)
}

/// Grants `owner`'s membership of an app group (nothing if it holds it already).
pub(super) fn grant(t: &Transaction<'_>, group_id: i64, entry_id: i64, owner: Owner) -> StoreResult<()> {
    t.prepare_cached("INSERT OR IGNORE INTO app_memberships (group_id, entry_id, owner) VALUES (?1, ?2, ?3)")?.execute(params![group_id, entry_id, owner])?;
    Ok(())
}

/// Removes one owner's membership(s) of an entry: in one app group, or in all of them.
pub(super) fn revoke(t: &Transaction<'_>, entry_id: i64, owner: Owner, group: Option<i64>) -> StoreResult<()> {
    t.prepare_cached("DELETE FROM app_memberships WHERE entry_id = ?1 AND owner = ?2 AND (?3 IS NULL OR group_id = ?3)")?.execute(params![entry_id, owner, group])?;
    Ok(())
}

/// Removes one owner's membership of the app group of this name, if it holds one.
pub(super) fn revoke_named(t: &Transaction<'_>, tenant_id: i64, entry_id: i64, owner: Owner, name: &str) -> StoreResult<()> {
    t.prepare_cached(
        "DELETE FROM app_memberships WHERE entry_id = ?1 AND owner = ?2
         AND group_id = (SELECT id FROM app_groups WHERE tenant_id = ?3 AND name_fold = ?4)",
    )?
    .execute(params![entry_id, owner, tenant_id, fold(name)])?;
    Ok(())
}

/// Hands `from`'s membership(s) of an entry (in one app group, or all) to `to`; where `to`
/// holds one already, `from`'s simply goes.
pub(super) fn transfer(t: &Transaction<'_>, entry_id: i64, from: Owner, to: Owner, group: Option<i64>) -> StoreResult<()> {
    t.prepare_cached("UPDATE OR IGNORE app_memberships SET owner = ?3 WHERE entry_id = ?1 AND owner = ?2 AND (?4 IS NULL OR group_id = ?4)")?
        .execute(params![entry_id, from, to, group])?;
    revoke(t, entry_id, from, group)
}

/// Applies a connection's rule grants and revocations to an entry; revocations touch only
/// memberships those rules granted. Returns the granted groups' stored names.
pub(super) fn rule_grants(t: &Transaction<'_>, idp: &IdpConnection, entry_id: i64, grant_names: &[String], revoke_names: &[String]) -> StoreResult<Vec<String>> {
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
pub(super) fn entries_of(t: &Transaction<'_>, owner: Owner, group: Option<i64>) -> StoreResult<Vec<i64>> {
    let mut st = t.prepare_cached("SELECT DISTINCT entry_id FROM app_memberships WHERE owner = ?1 AND (?2 IS NULL OR group_id = ?2)")?;
    let rows = st.query_map(params![owner, group], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Grants every member of an IdP group the app group it now maps to.
pub(super) fn grant_to_members(t: &Transaction<'_>, group_id: i64, group_pk: i64) -> StoreResult<()> {
    t.prepare_cached(
        "INSERT OR IGNORE INTO app_memberships (group_id, entry_id, owner)
         SELECT ?1, u.entry_id, ?3 FROM group_members m JOIN users u ON u.pk = m.user_pk
         WHERE m.group_pk = ?2 AND u.entry_id IS NOT NULL AND u.out_of_scope = 0",
    )?
    .execute(params![group_id, group_pk, Owner::IdpGroup(group_pk)])?;
    Ok(())
}

/// Takes from an entry the memberships that an IdP user's groups give it (the user is leaving).
pub(super) fn revoke_idp_groups_of(t: &Transaction<'_>, entry_id: i64, user_pk: i64) -> StoreResult<()> {
    let owners = idp_group_owner_sql("group_pk");
    t.prepare_cached(&format!("DELETE FROM app_memberships WHERE entry_id = ?1 AND owner IN (SELECT {owners} FROM group_members WHERE user_pk = ?2)"))?
        .execute(params![entry_id, user_pk])?;
    Ok(())
}

/// Gives an entry again the memberships its IdP user's groups give (a reactivation).
pub(super) fn regrant_idp_groups_of(t: &Transaction<'_>, entry_id: i64, user_pk: i64) -> StoreResult<()> {
    let owner = idp_group_owner_sql("m.group_pk");
    t.prepare_cached(&format!(
        "INSERT OR IGNORE INTO app_memberships (group_id, entry_id, owner)
         SELECT gt.app_group_id, ?1, {owner} FROM group_members m JOIN group_targets gt ON gt.group_pk = m.group_pk WHERE m.user_pk = ?2"
    ))?
    .execute(params![entry_id, user_pk])?;
    Ok(())
}

/// Every membership of an entry with its owner, ordered (what deprovisioning snapshots).
pub(super) fn of_entry(t: &Transaction<'_>, entry_id: i64) -> StoreResult<Vec<(i64, Owner)>> {
    let mut st = t.prepare_cached("SELECT group_id, owner FROM app_memberships WHERE entry_id = ?1 ORDER BY group_id, owner")?;
    let rows = st.query_map([entry_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Removes every membership of an entry.
pub(super) fn strip(t: &Transaction<'_>, entry_id: i64) -> StoreResult<()> {
    t.prepare_cached("DELETE FROM app_memberships WHERE entry_id = ?1")?.execute([entry_id])?;
    Ok(())
}

/// Grants an owner's membership again if the app group still exists (a restored snapshot).
pub(super) fn restore(t: &Transaction<'_>, group_id: i64, entry_id: i64, owner: Owner) -> StoreResult<()> {
    t.prepare_cached("INSERT OR IGNORE INTO app_memberships (group_id, entry_id, owner) SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM app_groups WHERE id = ?1)")?
        .execute(params![group_id, entry_id, owner])?;
    Ok(())
}
