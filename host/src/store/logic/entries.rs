//! Directory entries: reading one, creating and rewriting one with its attributes' owners,
//! and finding the entry a create should adopt.

use serde_json::{Map, Value};

use crate::model::{AttrOwner, DirectoryEntry, EntryWrite, Lifecycle, Timestamp};
use crate::scim::eval::fold;
use crate::scim::resource::json_text;
use crate::store::sql::{Assignments, Sql};
use crate::store::{StoreError, StoreResult};

/// An entry by id (it must exist).
pub(super) fn by_id(c: &dyn Sql, id: i64) -> StoreResult<DirectoryEntry> {
    let r = c.query_one("SELECT user_name, active, attributes, deleted_at IS NOT NULL, purge_after FROM entries WHERE id = ?1", &[&id])?;
    Ok(DirectoryEntry { user_name: r.get(0)?, active: r.get(1)?, attributes: r.json(2)?, groups: groups(c, id)?, deleted: r.get(3)?, purge_after: r.get::<Option<Timestamp>>(4)? })
}

/// An entry by id, if it exists: the state the audit trail records before and after a change.
pub(super) fn state(c: &dyn Sql, id: i64) -> StoreResult<Option<DirectoryEntry>> {
    Ok(found(c, id)?.map(|f| f.entry))
}

/// An entry as a rewrite finds it: its state (what the audit records as before) and who owns
/// its attributes (what the rewrite merges under), read once.
pub(super) struct Found {
    pub entry: DirectoryEntry,
    /// As stored (JSON text): parsed only by a rewrite, not by readers of the state.
    owners: String,
}

/// An entry by id with its attributes' owners, if it exists.
pub(super) fn found(c: &dyn Sql, id: i64) -> StoreResult<Option<Found>> {
    let Some(r) = c.query_opt("SELECT user_name, active, attributes, deleted_at IS NOT NULL, purge_after, attr_owners FROM entries WHERE id = ?1", &[&id])? else {
        return Ok(None);
    };
    let entry = DirectoryEntry { user_name: r.get(0)?, active: r.get(1)?, attributes: r.json(2)?, groups: groups(c, id)?, deleted: r.get(3)?, purge_after: r.get::<Option<Timestamp>>(4)? };
    Ok(Some(Found { entry, owners: r.get(5)? }))
}

/// An entry's state after a rewrite that left its attributes as `attributes` (and nothing
/// since changed them): the rest is read, the attributes are not parsed again.
pub(super) fn state_after(c: &dyn Sql, id: i64, attributes: Value) -> StoreResult<Option<DirectoryEntry>> {
    let Some(r) = c.query_opt("SELECT user_name, active, deleted_at IS NOT NULL, purge_after FROM entries WHERE id = ?1", &[&id])? else {
        return Ok(None);
    };
    Ok(Some(DirectoryEntry { user_name: r.get(0)?, active: r.get(1)?, attributes, groups: groups(c, id)?, deleted: r.get(2)?, purge_after: r.get::<Option<Timestamp>>(3)? }))
}

/// The id of a tenant's entry by userName (soft-deleted ones too, unless `live_only`).
pub(super) fn id_by_name(c: &dyn Sql, tenant_id: i64, user_name: &str, live_only: bool) -> StoreResult<Option<i64>> {
    let sql = if live_only {
        "SELECT id FROM entries WHERE tenant_id = ?1 AND user_name_fold = ?2 AND deleted_at IS NULL"
    } else {
        "SELECT id FROM entries WHERE tenant_id = ?1 AND user_name_fold = ?2"
    };
    c.query_opt(sql, &[&tenant_id, &fold(user_name)])?.map(|r| r.get(0)).transpose()
}

/// A tenant's entry by userName.
pub fn by_name(c: &dyn Sql, tenant_id: i64, user_name: &str) -> StoreResult<Option<DirectoryEntry>> {
    id_by_name(c, tenant_id, user_name, false)?.map(|id| by_id(c, id)).transpose()
}

/// The entry an IdP user maps to.
pub fn of_user(c: &dyn Sql, idp_id: i64, id: &str) -> StoreResult<Option<DirectoryEntry>> {
    // None: no such user, or one out of scope that has no entry.
    let entry: Option<i64> = match c.query_opt("SELECT entry_id FROM users WHERE id = ?1 AND idp_id = ?2", &[&id, &idp_id])? {
        Some(r) => r.get(0)?,
        None => None,
    };
    entry.map(|e| by_id(c, e)).transpose()
}

/// The directory id of the entry an IdP user maps to.
pub fn uid_of_user(c: &dyn Sql, idp_id: i64, id: &str) -> StoreResult<Option<String>> {
    c.query_opt("SELECT e.uid FROM users u JOIN entries e ON e.id = u.entry_id WHERE u.id = ?1 AND u.idp_id = ?2", &[&id, &idp_id])?.map(|r| r.get(0)).transpose()
}

/// The app groups an entry belongs to (names, sorted).
fn groups(c: &dyn Sql, id: i64) -> StoreResult<Vec<String>> {
    c.query("SELECT DISTINCT g.name FROM app_memberships m JOIN app_groups g ON g.id = m.group_id WHERE m.entry_id = ?1 ORDER BY g.name", &[&id])?.iter().map(|r| r.get(0)).collect()
}

/// A uniqueness failure of the directory, said as such.
fn conflict(e: StoreError, user_name: &str) -> StoreError {
    match e {
        StoreError::Conflict(_) => StoreError::Conflict(format!(
            "the directory already has a user named '{user_name}' (usernames are unique case-insensitively within a tenant)"
        )),
        other => other,
    }
}

/// Creates an entry with every attribute owned by `writer`; returns its id.
pub(super) fn insert(t: &dyn Sql, tenant_id: i64, e: &EntryWrite, writer: AttrOwner, ts: &Timestamp) -> StoreResult<i64> {
    t.query_one(
        "INSERT INTO entries (tenant_id, user_name, user_name_fold, active, attributes, created, modified, attr_owners, uid) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8) RETURNING id",
        &[&tenant_id, &e.user_name, &fold(&e.user_name), &e.active, &json_text(&e.attributes), ts, &owners_of(&e.attributes, writer), &uuid::Uuid::now_v7().to_string()],
    )
    .map_err(|err| conflict(err, &e.user_name))?
    .get(0)
}

/// An existing entry joined by another IdP user: it keeps its username and takes the
/// write's state, under the attribute owners' rules.
pub(super) fn adopt(t: &dyn Sql, entry_id: i64, writer: AttrOwner, e: &EntryWrite, ts: &Timestamp) -> StoreResult<()> {
    let (merged, owners) = merge_attributes(t, entry_id, writer, &e.attributes)?;
    t.execute("UPDATE entries SET active = ?2, attributes = ?3, modified = ?4, attr_owners = ?5 WHERE id = ?1", &[&entry_id, &e.active, &merged, ts, &owners])?;
    Ok(())
}

/// Writes an entry's name, attributes and (when the write decides it) active flag over the
/// entry as it was `found`; returns its attributes now. A write to a user the IdP keeps
/// deactivated leaves the flag as deprovisioning set it: a `keep` decision stays active
/// through later updates.
pub(super) fn write(t: &dyn Sql, entry_id: i64, writer: AttrOwner, e: &EntryWrite, ts: &Timestamp, found: &Found) -> StoreResult<Value> {
    let decides_active = e.active || matches!(e.lifecycle, Lifecycle::Deprovision(_) | Lifecycle::Reactivate { .. });
    let current = found.entry.attributes.as_object().cloned().unwrap_or_default();
    let (attrs, owners) = merge(current, parse_map(&found.owners), writer, &e.attributes);
    let (attrs, owners) = (Value::Object(attrs), json_text(&Value::Object(owners)));
    let text = json_text(&attrs);
    // The name (and its unique index) only when it changes; the flag only when this write decides it.
    let renamed = e.user_name != found.entry.user_name;
    let name_fold = if renamed { fold(&e.user_name) } else { String::new() };
    let mut set = Assignments::new(&[&entry_id]);
    set.column_if(renamed, "user_name", &e.user_name);
    set.column_if(renamed, "user_name_fold", &name_fold);
    set.column_if(decides_active, "active", &e.active);
    set.column("attributes", &text);
    set.column("modified", ts);
    set.column("attr_owners", &owners);
    t.execute(&format!("UPDATE entries SET {} WHERE id = ?1", set.list()), set.params()).map_err(|err| conflict(err, &e.user_name))?;
    Ok(attrs)
}

/// Every attribute of a new entry owned by its writer.
fn owners_of(attrs: &Value, writer: AttrOwner) -> String {
    let owners: Map<String, Value> = attrs.as_object().map(|o| o.keys().map(|k| (k.clone(), Value::String(writer.to_string()))).collect()).unwrap_or_default();
    json_text(&Value::Object(owners))
}

fn parse_map(s: &str) -> Map<String, Value> {
    serde_json::from_str(s).unwrap_or_default()
}

/// An entry's attributes and their owners, as stored.
pub(super) fn attributes_and_owners(t: &dyn Sql, entry_id: i64) -> StoreResult<(Map<String, Value>, Map<String, Value>)> {
    let r = t.query_one("SELECT attributes, attr_owners FROM entries WHERE id = ?1", &[&entry_id])?;
    let (cur, owners): (String, String) = (r.get(0)?, r.get(1)?);
    Ok((parse_map(&cur), parse_map(&owners)))
}

/// An entry's attributes after `writer` sets `new`, and their owners, as JSON text (see [`merge`]).
fn merge_attributes(t: &dyn Sql, entry_id: i64, writer: AttrOwner, new: &Value) -> StoreResult<(String, String)> {
    let (attrs, owners) = attributes_and_owners(t, entry_id)?;
    let (attrs, owners) = merge(attrs, owners, writer, new);
    Ok((json_text(&Value::Object(attrs)), json_text(&Value::Object(owners))))
}

/// Attributes `attrs` owned as `owners` after `writer` sets `new`, and their owners: the
/// writer replaces the attributes it owns (or that nobody owns) and takes the ones it sets;
/// attributes another IdP or the application (`local`) owns stay as they are, so one source
/// never wipes what another set.
fn merge(mut attrs: Map<String, Value>, mut owners: Map<String, Value>, writer: AttrOwner, new: &Value) -> (Map<String, Value>, Map<String, Value>) {
    let empty = Map::new();
    let new = new.as_object().unwrap_or(&empty);
    let (writer, local) = (writer.to_string(), AttrOwner::Local.to_string());
    let mine = |o: Option<&Value>| o.is_none_or(|o| o.as_str() == Some(writer.as_str()));
    attrs.retain(|k, _| new.contains_key(k) || !mine(owners.get(k)));
    owners.retain(|k, _| attrs.contains_key(k));
    for (k, v) in new {
        if owners.get(k).and_then(Value::as_str) == Some(local.as_str()) {
            continue;
        }
        attrs.insert(k.clone(), v.clone());
        owners.insert(k.clone(), Value::String(writer.clone()));
    }
    (attrs, owners)
}

fn domain_of(address: &str) -> Option<String> {
    address.rsplit_once('@').map(|(_, d)| d.to_lowercase())
}

fn verified(domain: Option<String>, verified_domains: &[String]) -> bool {
    verified_domains.is_empty() || domain.is_some_and(|d| verified_domains.contains(&d))
}

/// Whether the matching policy's verified domains allow matching a user by this name and
/// these addresses (the username's domain, else the first address's).
pub(super) fn domain_verified(user_name: &str, emails: &[String], verified_domains: &[String]) -> bool {
    verified(domain_of(user_name).or_else(|| emails.first().and_then(|e| domain_of(e))), verified_domains)
}

/// The live entry an adopting create joins: the tenant's entry with the mapped username, else
/// the entry of another IdP user of the tenant with one of the user's emails, each only if
/// the matched address's domain is verified.
pub(super) fn find_match(t: &dyn Sql, tenant_id: i64, user_name: &str, emails: &[String], verified_domains: &[String]) -> StoreResult<Option<i64>> {
    if let Some(id) = id_by_name(t, tenant_id, user_name, true)? {
        let domain = domain_of(user_name).or_else(|| emails.first().and_then(|e| domain_of(e)));
        return Ok(verified(domain, verified_domains).then_some(id));
    }
    let sql = "SELECT u.entry_id FROM user_emails e JOIN users u ON u.pk = e.user_pk JOIN idps i ON i.id = u.idp_id
         JOIN entries en ON en.id = u.entry_id
         WHERE e.value_fold = ?1 AND i.tenant_id = ?2 AND en.deleted_at IS NULL LIMIT 1";
    for email in emails {
        if let Some(r) = t.query_opt(sql, &[email, &tenant_id])?
            && verified(domain_of(email), verified_domains)
        {
            return Ok(Some(r.get(0)?));
        }
    }
    Ok(None)
}
