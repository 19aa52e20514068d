//! Users: the IdP view (`users`, `user_emails`) and the directory entry (`entries`) together.

use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use serde_json::Value;

use super::filter_sql::list_sql;
use super::audit::{self, Subject};
use super::now;
use crate::scim::eval::fold;
use crate::scim::list::ListQuery;
use crate::scim::resource::{Meta, json_text};
use crate::scim::schema::ResourceKind;
use crate::store::*;

/// The indexed fields of a canonical user body.
struct Index {
    user_name: String,
    external_id: Option<String>,
    display_name: Option<String>,
    active: bool,
    emails: Vec<String>,
}

fn index(body: &Value) -> Index {
    let s = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    let mut emails: Vec<String> = body
        .get("emails")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|e| e.get("value").and_then(Value::as_str)).map(fold).collect())
        .unwrap_or_default();
    emails.sort();
    emails.dedup();
    Index {
        user_name: s("userName").unwrap_or_default(),
        external_id: s("externalId"),
        display_name: s("displayName").map(|d| fold(&d)),
        active: body.get("active").and_then(Value::as_bool).unwrap_or(true),
        emails,
    }
}

/// The indexed fields as the store writes them (userName, externalId, folded displayName,
/// active, folded emails), for tests that build rows by hand.
#[cfg(test)]
pub(super) fn index_for_tests(body: &Value) -> (String, Option<String>, Option<String>, bool, Vec<String>) {
    let ix = index(body);
    (ix.user_name, ix.external_id, ix.display_name, ix.active, ix.emails)
}

const COLUMNS: &str = "r.pk, r.id, r.body, r.created, r.modified, r.version";

fn row(r: &Row<'_>) -> rusqlite::Result<(i64, StoredUser)> {
    let body: String = r.get(2)?;
    let body = serde_json::from_str(&body).map_err(|e| rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e)))?;
    Ok((
        r.get(0)?,
        StoredUser {
            meta: Meta { id: r.get(1)?, created: r.get(3)?, last_modified: r.get(4)?, version: r.get(5)? },
            body,
            groups: None,
        },
    ))
}

fn groups_of(c: &Connection, user_pk: i64) -> StoreResult<Vec<Member>> {
    let mut st = c.prepare_cached(
        "SELECT g.id, json_extract(g.body, '$.displayName') FROM group_members m JOIN groups g ON g.pk = m.group_pk
         WHERE m.user_pk = ?1 ORDER BY g.pk",
    )?;
    let rows = st.query_map([user_pk], |r| Ok(Member { value: r.get(0)?, display: r.get(1)? }))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn get(c: &Connection, idp_id: i64, id: &str, with_groups: bool) -> StoreResult<StoredUser> {
    let mut st = c.prepare_cached(&format!("SELECT {COLUMNS} FROM users r WHERE r.id = ?1 AND r.idp_id = ?2"))?;
    let (pk, mut u) = st.query_row(params![id, idp_id], row)?;
    if with_groups {
        u.groups = Some(groups_of(c, pk)?);
    }
    Ok(u)
}

pub fn list(c: &Connection, idp_id: i64, q: &ListQuery) -> StoreResult<Page<StoredUser>> {
    let sql = list_sql(ResourceKind::User, idp_id, q);
    let (where_, order) = (&sql.where_, &sql.order);
    let total: i64 = c.query_row(&format!("SELECT count(*) FROM users r WHERE {where_}"), rusqlite::params_from_iter(sql.params.iter()), |r| r.get(0))?;
    let mut items = Vec::new();
    if q.count > 0 && (q.start_index as i64) <= total {
        let page_sql = format!("SELECT {COLUMNS} FROM users r WHERE {where_} ORDER BY {order} LIMIT {} OFFSET {}", q.count, q.start_index - 1);
        let mut st = c.prepare_cached(&page_sql)?;
        let rows = st.query_map(rusqlite::params_from_iter(sql.params.iter()), row)?;
        let with_groups = q.projection.wants("groups");
        for r in rows {
            let (pk, mut u) = r?;
            if with_groups {
                u.groups = Some(groups_of(c, pk)?);
            }
            items.push(u);
        }
    }
    Ok(Page { total: total as usize, items })
}

fn taken_in_idp(t: &Transaction<'_>, idp_id: i64, user_name_fold: &str, except_pk: Option<i64>) -> StoreResult<bool> {
    let mut st = t.prepare_cached("SELECT pk FROM users WHERE idp_id = ?1 AND user_name_fold = ?2")?;
    let pk: Option<i64> = st.query_row(params![idp_id, user_name_fold], |r| r.get(0)).optional()?;
    Ok(pk.is_some_and(|p| Some(p) != except_pk))
}

fn directory_conflict(e: rusqlite::Error, user_name: &str) -> StoreError {
    match StoreError::from(e) {
        StoreError::Conflict(_) => StoreError::Conflict(format!(
            "the directory already has a user named '{user_name}' (usernames are unique case-insensitively within a tenant)"
        )),
        other => other,
    }
}

fn write_emails(t: &Transaction<'_>, pk: i64, emails: &[String]) -> StoreResult<()> {
    t.prepare_cached("DELETE FROM user_emails WHERE user_pk = ?1")?.execute([pk])?;
    let mut st = t.prepare_cached("INSERT OR IGNORE INTO user_emails (value_fold, user_pk) VALUES (?1, ?2)")?;
    for e in emails {
        st.execute(params![e, pk])?;
    }
    Ok(())
}

pub fn create(t: &Transaction<'_>, idp: &IdpConnection, w: &UserWrite, info: &AuditInfo) -> StoreResult<StoredUser> {
    let ix = index(&w.body);
    let uf = fold(&ix.user_name);
    if taken_in_idp(t, idp.id, &uf, None)? {
        return Err(StoreError::Conflict(format!("a user with userName '{}' already exists for this IdP connection", ix.user_name)));
    }
    let ts = now();
    let attrs = json_text(&w.entry.attributes);
    let adopted = match &w.matching {
        MatchPolicy::Adopt { verified_domains } => find_match(t, idp.tenant_id, &w.entry.user_name, &ix.emails, verified_domains)?,
        MatchPolicy::Conflict => None,
    };
    let before = adopted.map(|id| audit::entry_state(t, id)).transpose()?.flatten();
    let entry_id = match adopted {
        // The IdP user joins an entry that exists already (created by another IdP, by hand or
        // by SSO); the entry keeps its username and takes this write's state.
        Some(id) => {
            let (merged, owners) = merge_attributes(t, id, &idp_owner(idp), &w.entry.attributes)?;
            t.prepare_cached("UPDATE entries SET active = ?2, attributes = ?3, modified = ?4, attr_owners = ?5 WHERE id = ?1")?.execute(params![id, w.entry.active, merged, ts, owners])?;
            tracing::info!(entry = id, "adopted an existing directory entry");
            id
        }
        None => {
            t.prepare_cached(
                "INSERT INTO entries (tenant_id, user_name, user_name_fold, active, attributes, created, modified, attr_owners, uid) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8)",
            )?
            .execute(params![idp.tenant_id, w.entry.user_name, fold(&w.entry.user_name), w.entry.active, attrs, ts, owners_of(&w.entry.attributes, &idp_owner(idp)), uuid::Uuid::now_v7().to_string()])
            .map_err(|e| directory_conflict(e, &w.entry.user_name))?;
            t.last_insert_rowid()
        }
    };
    let granted = rule_groups(t, idp, entry_id, &w.entry)?;
    // Time-ordered (UUIDv7): new ids land at the end of the id indexes instead of on a
    // random page each, which keeps the writer's pages per commit down. Still opaque.
    let id = uuid::Uuid::now_v7().to_string();
    t.prepare_cached(
        "INSERT INTO users (idp_id, id, entry_id, user_name_fold, external_id, display_name_fold, active, body, created, modified, version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, 1)",
    )?
    .execute(params![idp.id, id, entry_id, uf, ix.external_id, ix.display_name, ix.active, json_text(&w.body), ts])?;
    let pk = t.last_insert_rowid();
    write_emails(t, pk, &ix.emails)?;
    // A new entry is exactly what was just written: no need to read it back (the common
    // create costs the writer no extra reads); an adopted one is read.
    let after = match adopted {
        Some(_) => audit::entry_state(t, entry_id)?,
        None => Some(DirectoryEntry {
            user_name: w.entry.user_name.clone(),
            active: w.entry.active,
            attributes: w.entry.attributes.clone(),
            // A new entry's only memberships are the rules' grants.
            groups: {
                let mut g = granted;
                g.sort();
                g.dedup();
                g
            },
            deleted: false,
            purge_after: None,
        }),
    };
    let mut changes = audit::entry_diff(before.as_ref(), after.as_ref());
    if adopted.is_some() {
        changes["adopted"] = Value::Bool(true);
    }
    let name = after.as_ref().map(|e| e.user_name.as_str()).unwrap_or_default();
    audit::record(t, &Subject::user(idp, &id, Some((entry_id, name))), info, &changes)?;
    Ok(StoredUser {
        meta: Meta { id, created: ts.clone(), last_modified: ts, version: 1 },
        body: w.body.clone(),
        groups: Some(Vec::new()),
    })
}

fn domain_of(address: &str) -> Option<String> {
    address.rsplit_once('@').map(|(_, d)| d.to_lowercase())
}

fn verified(domain: Option<String>, verified_domains: &[String]) -> bool {
    verified_domains.is_empty() || domain.is_some_and(|d| verified_domains.contains(&d))
}

/// The live entry an adopting create joins: the tenant's entry with the mapped username, else
/// the entry of another IdP user of the tenant with one of the user's emails, each only if
/// the matched address's domain is verified.
fn find_match(t: &Transaction<'_>, tenant_id: i64, user_name: &str, emails: &[String], verified_domains: &[String]) -> StoreResult<Option<i64>> {
    let by_name: Option<i64> = t
        .prepare_cached("SELECT id FROM entries WHERE tenant_id = ?1 AND user_name_fold = ?2 AND deleted_at IS NULL")?
        .query_row(params![tenant_id, fold(user_name)], |r| r.get(0))
        .optional()?;
    if let Some(id) = by_name {
        let domain = domain_of(user_name).or_else(|| emails.first().and_then(|e| domain_of(e)));
        return Ok(verified(domain, verified_domains).then_some(id));
    }
    let mut st = t.prepare_cached(
        "SELECT u.entry_id FROM user_emails e JOIN users u ON u.pk = e.user_pk JOIN idps i ON i.id = u.idp_id
         JOIN entries en ON en.id = u.entry_id
         WHERE e.value_fold = ?1 AND i.tenant_id = ?2 AND en.deleted_at IS NULL LIMIT 1",
    )?;
    for email in emails {
        if let Some(id) = st.query_row(params![email, tenant_id], |r| r.get::<_, i64>(0)).optional()?
            && verified(domain_of(email), verified_domains)
        {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// Applies the rules' grants and revocations; revocations touch only rule-owned memberships.
fn rule_groups(t: &Transaction<'_>, idp: &IdpConnection, entry_id: i64, e: &EntryWrite) -> StoreResult<Vec<String>> {
    rule_grants(t, idp, entry_id, &e.grant, &e.revoke)
}

/// Applies rule grants and revocations; returns the granted groups' stored names.
pub(super) fn rule_grants(t: &Transaction<'_>, idp: &IdpConnection, entry_id: i64, grant: &[String], revoke: &[String]) -> StoreResult<Vec<String>> {
    let owner = format!("rule:{}", idp.id);
    let mut granted = Vec::with_capacity(grant.len());
    for name in grant {
        let (g, stored) = super::groups::app_group_named(t, idp.tenant_id, name)?;
        t.prepare_cached("INSERT OR IGNORE INTO app_memberships (group_id, entry_id, owner) VALUES (?1, ?2, ?3)")?.execute(params![g, entry_id, owner])?;
        granted.push(stored);
    }
    for name in revoke {
        t.prepare_cached(
            "DELETE FROM app_memberships WHERE entry_id = ?1 AND owner = ?2
             AND group_id = (SELECT id FROM app_groups WHERE tenant_id = ?3 AND name_fold = ?4)",
        )?
        .execute(params![entry_id, owner, idp.tenant_id, fold(name)])?;
    }
    Ok(granted)
}

/// Writes an entry's name, attributes and (when the write decides it) active flag. A write to
/// a user the IdP keeps deactivated leaves the flag as deprovisioning set it: a `keep`
/// decision stays active through later updates.
fn write_entry(t: &Transaction<'_>, entry_id: i64, writer: &str, e: &EntryWrite, ts: &str) -> StoreResult<()> {
    let decides_active = e.active || matches!(e.lifecycle, Lifecycle::Deprovision(_) | Lifecycle::Reactivate { .. });
    let (attrs, owners) = merge_attributes(t, entry_id, writer, &e.attributes)?;
    t.prepare_cached(
        "UPDATE entries SET user_name = ?2, user_name_fold = ?3, active = CASE WHEN ?7 THEN ?4 ELSE active END, attributes = ?5, modified = ?6, attr_owners = ?8 WHERE id = ?1",
    )?
    .execute(params![entry_id, e.user_name, fold(&e.user_name), e.active, attrs, ts, decides_active, owners])
    .map_err(|err| directory_conflict(err, &e.user_name))?;
    Ok(())
}

/// Every attribute of a new entry owned by its writer.
fn owners_of(attrs: &Value, writer: &str) -> String {
    let owners: serde_json::Map<String, Value> = attrs.as_object().map(|o| o.keys().map(|k| (k.clone(), Value::String(writer.to_string()))).collect()).unwrap_or_default();
    json_text(&Value::Object(owners))
}

/// The owner an IdP connection's writes record on the attributes they set.
pub(super) fn idp_owner(idp: &IdpConnection) -> String {
    format!("idp:{}", idp.id)
}

/// An entry's attributes after `writer` sets `new`, and their owners: the writer replaces the
/// attributes it owns (or that nobody owns) and takes the ones it sets; attributes another
/// IdP or the application (`local`) owns stay as they are, so one source never wipes what
/// another set. Returns (attributes, owners) as JSON text.
fn merge_attributes(t: &Transaction<'_>, entry_id: i64, writer: &str, new: &Value) -> StoreResult<(String, String)> {
    let (cur, owners): (String, String) = t.prepare_cached("SELECT attributes, attr_owners FROM entries WHERE id = ?1")?.query_row([entry_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let parse = |s: &str| serde_json::from_str::<serde_json::Map<String, Value>>(s).unwrap_or_default();
    let (mut attrs, mut owners) = (parse(&cur), parse(&owners));
    let empty = serde_json::Map::new();
    let new = new.as_object().unwrap_or(&empty);
    let mine = |o: Option<&Value>| o.is_none_or(|o| o.as_str() == Some(writer));
    attrs.retain(|k, _| new.contains_key(k) || !mine(owners.get(k)));
    owners.retain(|k, _| attrs.contains_key(k));
    for (k, v) in new {
        if owners.get(k).and_then(Value::as_str) == Some("local") {
            continue;
        }
        attrs.insert(k.clone(), v.clone());
        owners.insert(k.clone(), Value::String(writer.to_string()));
    }
    Ok((json_text(&Value::Object(attrs)), json_text(&Value::Object(owners))))
}

fn current(t: &Transaction<'_>, idp_id: i64, id: &str, expected_version: Option<i64>) -> StoreResult<(i64, i64)> {
    let mut st = t.prepare_cached("SELECT pk, entry_id, version FROM users WHERE id = ?1 AND idp_id = ?2")?;
    let (pk, entry_id, version): (i64, i64, i64) = st.query_row(params![id, idp_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    if expected_version.is_some_and(|v| v != version) {
        return Err(StoreError::VersionMismatch);
    }
    Ok((pk, entry_id))
}

pub fn update(t: &Transaction<'_>, idp: &IdpConnection, id: &str, expected_version: i64, w: &UserWrite, info: &AuditInfo) -> StoreResult<StoredUser> {
    let (pk, entry_id) = current(t, idp.id, id, Some(expected_version))?;
    let before = audit::entry_state(t, entry_id)?;
    let before_body: Option<String> = t.prepare_cached("SELECT body FROM users WHERE pk = ?1")?.query_row([pk], |r| r.get(0)).optional()?;
    let ix = index(&w.body);
    let uf = fold(&ix.user_name);
    if taken_in_idp(t, idp.id, &uf, Some(pk))? {
        return Err(StoreError::Conflict(format!("a user with userName '{}' already exists for this IdP connection", ix.user_name)));
    }
    let ts = now();
    write_entry(t, entry_id, &idp_owner(idp), &w.entry, &ts)?;
    rule_groups(t, idp, entry_id, &w.entry)?;
    apply_lifecycle(t, pk, entry_id, w.entry.lifecycle, &ts)?;
    let held = match w.entry.lifecycle {
        Lifecycle::Held(a) => Some(super::held::hold(t, idp, "deactivate", id, entry_id, a, &info.request_id)?),
        _ => None,
    };
    t.prepare_cached(
        "UPDATE users SET user_name_fold = ?2, external_id = ?3, display_name_fold = ?4, active = ?5, body = ?6, modified = ?7,
         version = version + 1 WHERE pk = ?1",
    )?
    .execute(params![pk, uf, ix.external_id, ix.display_name, ix.active, json_text(&w.body), ts])?;
    write_emails(t, pk, &ix.emails)?;
    let after = audit::entry_state(t, entry_id)?;
    let mut changes = audit::entry_diff(before.as_ref(), after.as_ref());
    let before_body: Option<Value> = before_body.and_then(|b| serde_json::from_str(&b).ok());
    changes["idp"] = serde_json::json!(audit::changed_names(before_body.as_ref(), Some(&w.body)));
    if let Some(h) = held {
        changes["held"] = serde_json::json!(h);
    }
    let name = after.as_ref().map(|e| e.user_name.as_str()).unwrap_or_default();
    audit::record(t, &Subject::user(idp, id, Some((entry_id, name))), info, &changes)?;
    let (_, mut u) = t.prepare_cached(&format!("SELECT {COLUMNS} FROM users r WHERE r.pk = ?1"))?.query_row([pk], row)?;
    u.groups = Some(groups_of(t, pk)?);
    Ok(u)
}

fn apply_lifecycle(t: &Transaction<'_>, user_pk: i64, entry_id: i64, lifecycle: Lifecycle, ts: &str) -> StoreResult<()> {
    match lifecycle {
        Lifecycle::Unchanged => {}
        Lifecycle::Deprovision(a) => {
            // An entry shared with another IdP's active user stays as it is.
            let shared: bool = t
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM users WHERE entry_id = ?1 AND pk <> ?2 AND active = 1)")?
                .query_row(params![entry_id, user_pk], |r| r.get(0))?;
            if shared {
                t.prepare_cached("UPDATE entries SET active = 1 WHERE id = ?1")?.execute([entry_id])?;
            } else {
                deprovision_entry(t, entry_id, a, ts)?;
            }
        }
        Lifecycle::Reactivate { restore } => {
            // What was held for this user is moot once the IdP brings it back.
            t.prepare_cached("UPDATE held_ops SET status = 'superseded', decided_at = ?2 WHERE entry_id = ?1 AND status = 'held'")?.execute(params![entry_id, ts])?;
            reactivate_entry(t, entry_id, user_pk, restore)?
        }
        Lifecycle::Held(_) => {}
    }
    Ok(())
}

/// Removes one owner's membership(s) of an entry: in one app group, or in all of them.
pub(super) fn revoke_membership(t: &Transaction<'_>, entry: i64, owner: &str, group: Option<i64>) -> StoreResult<()> {
    t.prepare_cached("DELETE FROM app_memberships WHERE entry_id = ?1 AND owner = ?2 AND (?3 IS NULL OR group_id = ?3)")?.execute(params![entry, owner, group])?;
    Ok(())
}

/// Re-applies the rules to one IdP user: only its directory entry changes (the IdP view, its
/// version and ETag stay as the IdP left them). Returns the entry's name before and what
/// changed; records the change if anything did.
pub fn reapply(t: &Transaction<'_>, idp: &IdpConnection, id: &str, expected_version: i64, e: &EntryWrite, info: &AuditInfo) -> StoreResult<(String, Value)> {
    let (pk, entry_id) = current(t, idp.id, id, Some(expected_version))?;
    let before = audit::entry_state(t, entry_id)?;
    let ts = now();
    write_entry(t, entry_id, &idp_owner(idp), e, &ts)?;
    rule_groups(t, idp, entry_id, e)?;
    apply_lifecycle(t, pk, entry_id, e.lifecycle, &ts)?;
    let after = audit::entry_state(t, entry_id)?;
    let changes = audit::entry_diff(before.as_ref(), after.as_ref());
    let name = before.map(|b| b.user_name).unwrap_or_default();
    if changes.as_object().is_some_and(|o| !o.is_empty()) {
        let now_name = after.as_ref().map(|a| a.user_name.as_str()).unwrap_or(&name);
        audit::record(t, &Subject::user(idp, id, Some((entry_id, now_name))), info, &changes)?;
    }
    Ok((name, changes))
}

/// The IdP users of a connection after `after_pk`, in storage order (a resumable cursor).
pub fn page_after(c: &Connection, idp_id: i64, after_pk: i64, limit: usize) -> StoreResult<Vec<(i64, StoredUser)>> {
    let mut st = c.prepare_cached(&format!("SELECT {COLUMNS} FROM users r WHERE r.idp_id = ?1 AND r.pk > ?2 ORDER BY r.pk LIMIT ?3"))?;
    let rows = st.query_map(params![idp_id, after_pk, limit as i64], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn delete(t: &Transaction<'_>, idp: &IdpConnection, id: &str, expected_version: Option<i64>, action: DeprovisionAction, held: bool, info: &AuditInfo) -> StoreResult<()> {
    let (pk, entry_id) = current(t, idp.id, id, expected_version)?;
    let before = audit::entry_state(t, entry_id)?;
    let hold_id = if held { Some(super::held::hold(t, idp, "delete", id, entry_id, action, &info.request_id)?) } else { None };
    // A held deletion removes the IdP's user and leaves the entry as it is for now.
    delete_user_row(t, pk, entry_id, if held { DeprovisionAction::Keep } else { action })?;
    let after = audit::entry_state(t, entry_id)?;
    let name = before.as_ref().map(|e| e.user_name.as_str()).unwrap_or_default();
    let mut changes = audit::entry_diff(before.as_ref(), after.as_ref());
    if let Some(h) = hold_id {
        changes["held"] = serde_json::json!(h);
    }
    audit::record(t, &Subject::user(idp, id, Some((entry_id, name))), info, &changes)
}

fn delete_user_row(t: &Transaction<'_>, pk: i64, entry_id: i64, action: DeprovisionAction) -> StoreResult<()> {
    let ts = now();
    // The user's groups lose a member: their versions change.
    t.prepare_cached("UPDATE groups SET version = version + 1, modified = ?2 WHERE pk IN (SELECT group_pk FROM group_members WHERE user_pk = ?1)")?
        .execute(params![pk, ts])?;
    t.prepare_cached(
        "DELETE FROM app_memberships WHERE entry_id = ?1 AND owner IN (SELECT 'g:' || group_pk FROM group_members WHERE user_pk = ?2)",
    )?
    .execute(params![entry_id, pk])?;
    t.prepare_cached("DELETE FROM users WHERE pk = ?1")?.execute([pk])?;
    let shared: bool = t.prepare_cached("SELECT EXISTS (SELECT 1 FROM users WHERE entry_id = ?1)")?.query_row([entry_id], |r| r.get(0))?;
    if shared {
        // Another IdP user still maps to this entry: it stays as it is.
        return Ok(());
    }
    match action {
        DeprovisionAction::Delete { retention_days: 0 } => {
            t.prepare_cached("DELETE FROM entries WHERE id = ?1")?.execute([entry_id])?;
        }
        a => deprovision_entry(t, entry_id, a, &ts)?,
    }
    Ok(())
}

/// Applies a deprovisioning action to an entry, snapshotting its memberships first.
pub(super) fn deprovision_entry(t: &Transaction<'_>, entry_id: i64, action: DeprovisionAction, now: &str) -> StoreResult<()> {
    let snapshot = {
        let mut st = t.prepare_cached("SELECT group_id, owner FROM app_memberships WHERE entry_id = ?1 ORDER BY group_id, owner")?;
        let rows: Vec<(i64, String)> = st.query_map([entry_id], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
        serde_json::json!({ "memberships": rows }).to_string()
    };
    let strip = |t: &Transaction<'_>| -> StoreResult<()> {
        t.prepare_cached("DELETE FROM app_memberships WHERE entry_id = ?1")?.execute([entry_id])?;
        Ok(())
    };
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
            strip(t)?;
        }
        DeprovisionAction::Delete { retention_days } => {
            let purge = chrono::DateTime::parse_from_rfc3339(now)
                .map(|n| (n + chrono::Duration::days(i64::from(retention_days))).with_timezone(&chrono::Utc).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
                .unwrap_or_else(|_| now.to_string());
            t.prepare_cached("UPDATE entries SET active = 0, deleted_at = ?2, purge_after = ?3, snapshot = ?4 WHERE id = ?1")?
                .execute(params![entry_id, now, purge, snapshot])?;
            strip(t)?;
        }
    }
    Ok(())
}

/// Brings a deprovisioned entry back: memberships the IdP's groups give are re-derived from
/// the IdP view; with `restore`, the other snapshotted ones (rule grants) come back too.
fn reactivate_entry(t: &Transaction<'_>, entry_id: i64, user_pk: i64, restore: bool) -> StoreResult<()> {
    let snapshot: Option<String> = t.prepare_cached("SELECT snapshot FROM entries WHERE id = ?1")?.query_row([entry_id], |r| r.get(0))?;
    t.prepare_cached("UPDATE entries SET deleted_at = NULL, purge_after = NULL, snapshot = NULL WHERE id = ?1")?.execute([entry_id])?;
    t.prepare_cached(
        "INSERT OR IGNORE INTO app_memberships (group_id, entry_id, owner)
         SELECT gt.app_group_id, ?1, 'g:' || m.group_pk FROM group_members m JOIN group_targets gt ON gt.group_pk = m.group_pk WHERE m.user_pk = ?2",
    )?
    .execute(params![entry_id, user_pk])?;
    if restore && let Some(snap) = snapshot {
        let v: serde_json::Value = serde_json::from_str(&snap).map_err(|e| StoreError::Backend(format!("bad snapshot: {e}")))?;
        let mut ins = t.prepare_cached(
            "INSERT OR IGNORE INTO app_memberships (group_id, entry_id, owner) SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM app_groups WHERE id = ?1)",
        )?;
        for m in v["memberships"].as_array().into_iter().flatten() {
            if let (Some(g), Some(owner)) = (m[0].as_i64(), m[1].as_str())
                && !owner.starts_with("g:")
            {
                ins.execute(params![g, entry_id, owner])?;
            }
        }
    }
    Ok(())
}

/// Purges soft-deleted entries past their retention. An entry an IdP user still points at
/// (deactivated, not deleted, in the IdP) is scrubbed to a tombstone instead.
pub fn purge_expired(t: &Transaction<'_>, now: &str) -> StoreResult<usize> {
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

pub fn directory_entry(c: &Connection, tenant_id: i64, user_name: &str) -> StoreResult<Option<DirectoryEntry>> {
    let id: Option<i64> = c
        .prepare_cached("SELECT id FROM entries WHERE tenant_id = ?1 AND user_name_fold = ?2")?
        .query_row(params![tenant_id, fold(user_name)], |r| r.get(0))
        .optional()?;
    id.map(|id| entry_by_id(c, id)).transpose()
}

pub fn entry_of_user(c: &Connection, idp_id: i64, id: &str) -> StoreResult<Option<DirectoryEntry>> {
    let entry: Option<i64> = c.prepare_cached("SELECT entry_id FROM users WHERE id = ?1 AND idp_id = ?2")?.query_row(params![id, idp_id], |r| r.get(0)).optional()?;
    entry.map(|e| entry_by_id(c, e)).transpose()
}

/// The app groups an entry belongs to (names, sorted).
fn entry_groups(c: &Connection, id: i64) -> StoreResult<Vec<String>> {
    let mut st = c.prepare_cached(
        "SELECT DISTINCT g.name FROM app_memberships m JOIN app_groups g ON g.id = m.group_id WHERE m.entry_id = ?1 ORDER BY g.name",
    )?;
    let groups = st.query_map([id], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(groups)
}

pub(super) fn entry_by_id(c: &Connection, id: i64) -> StoreResult<DirectoryEntry> {
    let (user_name, active, attrs, deleted, purge_after) = c
        .prepare_cached("SELECT user_name, active, attributes, deleted_at IS NOT NULL, purge_after FROM entries WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?, r.get::<_, String>(2)?, r.get::<_, bool>(3)?, r.get::<_, Option<String>>(4)?)))?;
    let groups = entry_groups(c, id)?;
    Ok(DirectoryEntry {
        user_name,
        active,
        attributes: serde_json::from_str(&attrs).map_err(|e| StoreError::Backend(e.to_string()))?,
        groups,
        deleted,
        purge_after,
    })
}

/// A change made in the application: local attributes and local memberships, audited.
pub fn local_change(t: &Transaction<'_>, tenant_id: i64, user_name: &str, c: &LocalChange, by: &str) -> StoreResult<DirectoryEntry> {
    let entry_id: i64 = t
        .prepare_cached("SELECT id FROM entries WHERE tenant_id = ?1 AND user_name_fold = ?2 AND deleted_at IS NULL")?
        .query_row(params![tenant_id, fold(user_name)], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::InvalidReference(format!("no directory entry '{user_name}'")))?;
    let before = audit::entry_state(t, entry_id)?;
    if !c.attributes.is_empty() {
        crate::scim::resource::check_entry_attributes(&Value::Object(c.attributes.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect()))
            .map_err(StoreError::InvalidReference)?;
        let (cur, owners): (String, String) = t.prepare_cached("SELECT attributes, attr_owners FROM entries WHERE id = ?1")?.query_row([entry_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let parse = |s: &str| serde_json::from_str::<serde_json::Map<String, Value>>(s).unwrap_or_default();
        let (mut attrs, mut owners) = (parse(&cur), parse(&owners));
        for (k, v) in &c.attributes {
            if v.is_null() {
                attrs.remove(k);
                owners.remove(k);
            } else {
                attrs.insert(k.clone(), v.clone());
                owners.insert(k.clone(), Value::String("local".into()));
            }
        }
        t.prepare_cached("UPDATE entries SET attributes = ?2, attr_owners = ?3, modified = ?4 WHERE id = ?1")?
            .execute(params![entry_id, Value::Object(attrs).to_string(), Value::Object(owners).to_string(), now()])?;
    }
    for g in &c.add_groups {
        if g.trim().is_empty() || g.len() > 256 || g.chars().any(char::is_control) {
            return Err(StoreError::InvalidReference(format!("group name {g:?} is not 1-256 printable characters")));
        }
        let gid = super::groups::app_group(t, tenant_id, g)?;
        t.prepare_cached("INSERT OR IGNORE INTO app_memberships (group_id, entry_id, owner) VALUES (?1, ?2, 'local')")?.execute(params![gid, entry_id])?;
    }
    for g in &c.remove_groups {
        t.prepare_cached("DELETE FROM app_memberships WHERE entry_id = ?1 AND owner = 'local' AND group_id = (SELECT id FROM app_groups WHERE tenant_id = ?2 AND name_fold = ?3)")?
            .execute(params![entry_id, tenant_id, fold(g)])?;
    }
    let after = audit::entry_state(t, entry_id)?;
    let changes = audit::entry_diff(before.as_ref(), after.as_ref());
    let info = AuditInfo { actor: by.to_string(), request_id: String::new(), operation: "local".into(), ..Default::default() };
    let name = after.as_ref().map(|e| e.user_name.clone()).unwrap_or_default();
    let eid = entry_id.to_string();
    audit::record(t, &Subject { tenant_id, idp: None, resource_type: "Entry", resource_id: &eid, entry: Some((entry_id, &name)) }, &info, &changes)?;
    after.ok_or(StoreError::NotFound)
}
