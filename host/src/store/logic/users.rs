//! IdP users (`users`, `user_emails`), each written together with the directory entry it maps
//! to, its rule grants, its lifecycle change and its audit record.

use std::sync::Arc;

use serde_json::Value;

use super::audit::{self, Subject};
use super::filter_sql::list_sql;
use super::{entries, held, lifecycle, memberships};
use crate::model::{AttrOwner, AuditInfo, DeprovisionAction, DirectoryEntry, EntryWrite, HeldKind, IdpConnection, Lifecycle, MatchPolicy, Member, Page, StoredUser, Timestamp, UserBefore, UserWrite};
use crate::scim::eval::fold;
use crate::scim::list::ListQuery;
use crate::scim::resource::{Meta, json_text};
use crate::scim::schema::ResourceKind;
use crate::store::sql::{Assignments, Row, Sql, params_of};
use crate::store::{StoreError, StoreResult};

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

/// What a user write stores that follows from the request alone (its indexed columns, its
/// body as text, what it changes of the IdP's view), worked out on the caller's thread before
/// the write is queued: the writer thread, which every write waits for, then does only the
/// database's part.
pub struct Prepared {
    ix: Index,
    /// The userName folded, as the uniqueness index holds it.
    user_name_fold: String,
    text: String,
    /// The user's emails differ from the ones before (the email index is rewritten).
    emails_changed: bool,
    /// The names of the IdP attributes that changed, as the audit records them.
    idp_changes: Value,
}

impl Prepared {
    /// `w` as written over `before` (`None`: a create).
    pub fn new(w: &UserWrite, before: Option<&Value>) -> Prepared {
        let ix = index(&w.body);
        let emails_changed = before.is_none_or(|b| index(b).emails != ix.emails);
        let idp_changes = before.map(|b| serde_json::json!(audit::changed_names(Some(b), Some(&w.body)))).unwrap_or(Value::Null);
        Prepared { user_name_fold: fold(&ix.user_name), ix, text: json_text(&w.body), emails_changed, idp_changes }
    }
}

const COLUMNS: &str = "r.pk, r.id, r.body, r.created, r.modified, r.version, r.out_of_scope";

fn row(r: &Row) -> StoreResult<(i64, StoredUser)> {
    Ok((
        r.get(0)?,
        StoredUser {
            meta: Meta { id: r.get(1)?, created: r.get(3)?, last_modified: r.get(4)?, version: r.get(5)? },
            body: Arc::new(r.json(2)?),
            groups: None,
            out_of_scope: r.get(6)?,
        },
    ))
}

fn groups_of(c: &dyn Sql, user_pk: i64) -> StoreResult<Vec<Member>> {
    c.query(
        "SELECT g.id, json_extract(g.body, '$.displayName') FROM group_members m JOIN groups g ON g.pk = m.group_pk
         WHERE m.user_pk = ?1 ORDER BY g.pk",
        &[&user_pk],
    )?
    .iter()
    .map(|r| Ok(Member { value: r.get(0)?, display: r.get(1)? }))
    .collect()
}

/// One user of a connection.
pub fn get(c: &dyn Sql, idp_id: i64, id: &str, with_groups: bool) -> StoreResult<StoredUser> {
    let (pk, mut u) = row(&c.query_one(&format!("SELECT {COLUMNS} FROM users r WHERE r.id = ?1 AND r.idp_id = ?2"), &[&id, &idp_id])?)?;
    if with_groups {
        u.groups = Some(groups_of(c, pk)?);
    }
    Ok(u)
}

/// A filtered, sorted page of a connection's users.
pub fn list(c: &dyn Sql, idp_id: i64, q: &ListQuery) -> StoreResult<Page<StoredUser>> {
    let sql = list_sql(ResourceKind::User, idp_id, q, c.dialect());
    let (where_, order) = (&sql.where_, &sql.order);
    let params = params_of(&sql.params);
    let total: i64 = c.query_one(&format!("SELECT count(*) FROM users r WHERE {where_}"), &params)?.get(0)?;
    let mut items = Vec::new();
    if q.count > 0 && (q.start_index as i64) <= total {
        let page_sql = format!("SELECT {COLUMNS} FROM users r WHERE {where_} ORDER BY {order} LIMIT {} OFFSET {}", q.count, q.start_index - 1);
        let with_groups = q.projection.wants("groups");
        for r in c.query(&page_sql, &params)? {
            let (pk, mut u) = row(&r)?;
            if with_groups {
                u.groups = Some(groups_of(c, pk)?);
            }
            items.push(u);
        }
    }
    Ok(Page { total: total as usize, items })
}

fn taken_in_idp(t: &dyn Sql, idp_id: i64, user_name_fold: &str, except_pk: Option<i64>) -> StoreResult<bool> {
    let pk: Option<i64> = t.query_opt("SELECT pk FROM users WHERE idp_id = ?1 AND user_name_fold = ?2", &[&idp_id, &user_name_fold])?.map(|r| r.get(0)).transpose()?;
    Ok(pk.is_some_and(|p| Some(p) != except_pk))
}

fn write_emails(t: &dyn Sql, pk: i64, emails: &[String]) -> StoreResult<()> {
    t.execute("DELETE FROM user_emails WHERE user_pk = ?1", &[&pk])?;
    for e in emails {
        t.execute("INSERT INTO user_emails (value_fold, user_pk) VALUES (?1, ?2) ON CONFLICT DO NOTHING", &[e, &pk])?;
    }
    Ok(())
}

/// The attribute owner an IdP connection's writes record.
fn writer(idp: &IdpConnection) -> AttrOwner {
    AttrOwner::Idp(idp.id)
}

/// The entry a user coming into the directory joins, and how.
struct Joined {
    entry_id: i64,
    /// The entry as it was, if it existed.
    before: Option<DirectoryEntry>,
    /// An entry a deletion left, taken back.
    vacant: Option<lifecycle::Vacant>,
    /// The rules' grants (for a new entry's audit record without reading it back).
    granted: Vec<String>,
}

/// Finds or makes the entry a user coming into the directory joins: one a deletion of its
/// connection left (taken back), an existing one by the matching policy, or a new one.
fn join_entry(t: &dyn Sql, idp: &IdpConnection, w: &UserWrite, emails: &[String], ts: &Timestamp) -> StoreResult<Joined> {
    // An entry with this name that no IdP user maps to any more: the connection whose user
    // deletion left it takes it back (re-creating a user it deleted, the deletion held or
    // soft); another connection only by its matching policy.
    let vacant = lifecycle::vacant(t, idp.tenant_id, &fold(&w.entry.user_name))?.filter(|v| {
        v.left_by == Some(idp.id) || matches!(&w.matching, MatchPolicy::Adopt { verified_domains } if entries::domain_verified(&w.entry.user_name, emails, verified_domains))
    });
    if vacant.as_ref().is_some_and(|v| v.deprovisioned) && w.reactivate.is_none() {
        return Err(StoreError::NeedsReactivation);
    }
    let adopted = match (&vacant, &w.matching) {
        (Some(v), _) => Some(v.id),
        (None, MatchPolicy::Adopt { verified_domains }) => entries::find_match(t, idp.tenant_id, &w.entry.user_name, emails, verified_domains)?,
        (None, MatchPolicy::Conflict) => None,
    };
    let before = adopted.map(|id| entries::state(t, id)).transpose()?.flatten();
    let entry_id = match adopted {
        // The IdP user joins an entry that exists already (created by another IdP, by hand or
        // by SSO, or left by a deletion); the entry keeps its username and takes this write's
        // state.
        Some(id) => {
            entries::adopt(t, id, writer(idp), &w.entry, ts)?;
            tracing::info!(entry = id, "adopted an existing directory entry");
            id
        }
        None => entries::insert(t, idp.tenant_id, &w.entry, writer(idp), ts)?,
    };
    let granted = memberships::rule_grants(t, idp, entry_id, &w.entry.grant, &w.entry.revoke)?;
    Ok(Joined { entry_id, before, vacant, granted })
}

/// Completes a join once the user row points at the entry: takes back a vacant entry.
/// Returns what the audit says of it, and the entry as it is now.
fn settle_join(t: &dyn Sql, idp: &IdpConnection, j: Joined, user_pk: i64, w: &UserWrite, ts: &Timestamp) -> StoreResult<(Value, Option<DirectoryEntry>)> {
    let restore = w.reactivate.unwrap_or(true);
    let taken_back = match &j.vacant {
        Some(v) => {
            let superseded = lifecycle::take_back(t, v, user_pk, restore, ts)?;
            let by = if v.left_by == Some(idp.id) { "the connection that deleted its user" } else { "the matching policy" };
            tracing::info!(entry = v.id, from = v.how, "a user took back an entry left by a deletion");
            Some(serde_json::json!({"from": v.how, "by": by, "superseded": superseded, "restored": v.deprovisioned.then_some(restore)}))
        }
        None => None,
    };
    // A new entry is exactly what was just written: no need to read it back (the common
    // create costs the writer no extra reads); an adopted one is read.
    let after = match &j.before {
        Some(_) => entries::state(t, j.entry_id)?,
        None => Some(DirectoryEntry {
            user_name: w.entry.user_name.clone(),
            active: w.entry.active,
            attributes: w.entry.attributes.clone(),
            // A new entry's only memberships are the rules' grants.
            groups: {
                let mut g = j.granted;
                g.sort();
                g.dedup();
                g
            },
            deleted: false,
            purge_after: None,
        }),
    };
    let mut changes = audit::entry_diff(j.before.as_ref(), after.as_ref());
    match taken_back {
        Some(tb) => changes["taken_back"] = tb,
        None if j.before.is_some() => changes["adopted"] = Value::Bool(true),
        None => {}
    }
    Ok((changes, after))
}

/// The write with its username chosen among the rules' candidates (Entra's
/// `SelectUniqueValue`): the first no other entry of the tenant has, in this transaction (so
/// two writes can never choose the same). The entry's own name, if among them, is kept; an
/// entry this connection's deletion left (which it takes back) counts as free. Returns the
/// write to apply and, when candidates were offered, what the audit says of the choice.
fn choose_name(t: &dyn Sql, idp: &IdpConnection, entry_id: Option<i64>, w: &UserWrite) -> StoreResult<Option<(UserWrite, Value)>> {
    let offered = &w.entry.user_name_candidates;
    if offered.len() < 2 {
        return Ok(None);
    }
    let free = |name: &str| -> StoreResult<bool> {
        Ok(match entries::id_by_name(t, idp.tenant_id, name, false)? {
            None => true,
            Some(id) if Some(id) == entry_id => true,
            Some(_) => lifecycle::vacant(t, idp.tenant_id, &fold(name))?.is_some_and(|v| v.left_by == Some(idp.id)),
        })
    };
    // A user keeps a name it has among them: a rename only when the rules no longer offer it.
    let own = match entry_id {
        Some(id) => entries::state(t, id)?.map(|e| fold(&e.user_name)),
        None => None,
    };
    if let Some(kept) = offered.iter().find(|n| own.as_deref() == Some(fold(n).as_str())) {
        let mut w = w.clone();
        w.entry.user_name = kept.clone();
        return Ok(Some((w, serde_json::json!({"offered": offered, "chosen": kept, "kept": true}))));
    }
    let mut taken = Vec::new();
    let mut chosen = None;
    for name in offered {
        if free(name)? {
            chosen = Some(name.clone());
            break;
        }
        taken.push(name.clone());
    }
    let Some(chosen) = chosen else {
        return Err(StoreError::Conflict(format!("the directory already has a user for every username the rules offered ({})", offered.join(", "))));
    };
    let mut w = w.clone();
    w.entry.user_name = chosen.clone();
    Ok(Some((w, serde_json::json!({"offered": offered, "chosen": chosen, "taken": taken}))))
}

/// Creates an IdP user and its entry (or joins an existing entry, per the matching policy);
/// a user the scope rules keep out is stored in the IdP view only.
pub fn create(t: &dyn Sql, idp: &IdpConnection, w: &UserWrite, prep: &Prepared, info: &AuditInfo) -> StoreResult<StoredUser> {
    let ix = &prep.ix;
    let uf = &prep.user_name_fold;
    if taken_in_idp(t, idp.id, uf, None)? {
        return Err(StoreError::Conflict(format!("a user with userName '{}' already exists for this IdP connection", ix.user_name)));
    }
    let ts = Timestamp::now();
    let chosen = if w.entry.out_of_scope { None } else { choose_name(t, idp, None, w)? };
    let (w, name_note) = match &chosen {
        Some((w, note)) => (w, Some(note.clone())),
        None => (w, None),
    };
    let joined = if w.entry.out_of_scope { None } else { Some(join_entry(t, idp, w, &ix.emails, &ts)?) };
    let entry_id = joined.as_ref().map(|j| j.entry_id);
    // Time-ordered (UUIDv7): new ids land at the end of the id indexes instead of on a
    // random page each, which keeps the writer's pages per commit down. Still opaque.
    let id = uuid::Uuid::now_v7().to_string();
    let pk: i64 = t
        .query_one(
            "INSERT INTO users (idp_id, id, entry_id, user_name_fold, external_id, display_name_fold, active, body, created, modified, version, out_of_scope)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, 1, ?10) RETURNING pk",
            &[&idp.id, &id, &entry_id, uf, &ix.external_id, &ix.display_name, &ix.active, &prep.text, &ts, &w.entry.out_of_scope],
        )?
        .get(0)?;
    write_emails(t, pk, &ix.emails)?;
    match joined {
        Some(j) => {
            let entry_id = j.entry_id;
            let (mut changes, after) = settle_join(t, idp, j, pk, w, &ts)?;
            if let Some(note) = name_note {
                changes["user_name_candidates"] = note;
            }
            let name = after.as_ref().map(|e| e.user_name.as_str()).unwrap_or_default();
            audit::record(t, &Subject::user(idp, &id, Some((entry_id, name))), info, &changes)?;
        }
        None => audit::record(t, &Subject::user(idp, &id, None), info, &serde_json::json!({"scope": "out"}))?,
    }
    Ok(StoredUser {
        meta: Meta { id, created: ts.to_string(), last_modified: ts.into_string(), version: 1 },
        body: w.body.clone(),
        groups: Some(Vec::new()),
        out_of_scope: w.entry.out_of_scope,
    })
}

/// An IdP user as a write finds it.
struct Current {
    /// Its storage key.
    pk: i64,
    /// Its entry: none while it is out of scope and never had one.
    entry: Option<i64>,
    /// The scope rules keep it out.
    out: bool,
}

/// An IdP user as it is, checked at `expected_version`.
fn current(t: &dyn Sql, idp_id: i64, id: &str, expected_version: Option<i64>) -> StoreResult<Current> {
    let r = t.query_one("SELECT pk, entry_id, version, out_of_scope FROM users WHERE id = ?1 AND idp_id = ?2", &[&id, &idp_id])?;
    let (pk, entry, version, out): (i64, Option<i64>, i64, bool) = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
    if expected_version.is_some_and(|v| v != version) {
        return Err(StoreError::VersionMismatch);
    }
    Ok(Current { pk, entry, out })
}

/// Applies what the rules decided to a user's entry, for an update or a re-apply. Scope
/// decides the shape of it: in scope, the entry is written (made first, or joined, when the
/// user comes into the directory); out of scope, an entry it has only takes the lifecycle
/// change (leaving scope deprovisions it, per the rules) and is not written. Returns the
/// entry with its name after the change, the audit changes and the held operation if the
/// guard held one.
fn apply_entry(t: &dyn Sql, idp: &IdpConnection, id: &str, cur: &Current, w: &UserWrite, request_id: &str, ts: &Timestamp) -> StoreResult<(Named, Value, Option<i64>)> {
    let (pk, entry, was_out) = (cur.pk, cur.entry, cur.out);
    let chosen = if w.entry.out_of_scope { None } else { choose_name(t, idp, entry, w)? };
    let (w, name_note) = match &chosen {
        Some((w, note)) => (w, Some(note.clone())),
        None => (w, None),
    };
    let e = &w.entry;
    let (named, mut changes) = match (entry, e.out_of_scope) {
        (None, true) => (None, serde_json::json!({})),
        (None, false) => {
            // Into the directory: its entry appears, with the memberships its IdP groups give.
            let ix = index(&w.body);
            let j = join_entry(t, idp, w, &ix.emails, ts)?;
            let entry_id = j.entry_id;
            t.execute("UPDATE users SET entry_id = ?2 WHERE pk = ?1", &[&pk, &entry_id])?;
            let (changes, _) = settle_join(t, idp, j, pk, w, ts)?;
            memberships::regrant_idp_groups_of(t, entry_id, pk)?;
            (entry_name(t, Some(entry_id))?, changes)
        }
        (Some(entry_id), out) => {
            let found = entries::found(t, entry_id)?;
            let mut written = None;
            if !out {
                let f = found.as_ref().ok_or(StoreError::NotFound)?;
                written = Some(entries::write(t, entry_id, writer(idp), e, ts, f)?);
                memberships::rule_grants(t, idp, entry_id, &e.grant, &e.revoke)?;
            }
            lifecycle::apply(t, pk, entry_id, e.lifecycle, ts)?;
            if was_out && !out {
                // Back in scope: what its IdP groups give comes back too.
                memberships::regrant_idp_groups_of(t, entry_id, pk)?;
            }
            // Deprovisioning and reactivation may change the attributes the write left.
            let after = match (written, e.lifecycle) {
                (Some(attributes), Lifecycle::Unchanged | Lifecycle::Held(_)) => entries::state_after(t, entry_id, attributes)?,
                _ => entries::state(t, entry_id)?,
            };
            let before = found.map(|f| f.entry);
            let changes = audit::entry_diff(before.as_ref(), after.as_ref());
            (Some((entry_id, after.map(|a| a.user_name).unwrap_or_default())), changes)
        }
    };
    if was_out != e.out_of_scope {
        changes["scope"] = Value::from(if e.out_of_scope { "left" } else { "entered" });
    }
    if let Some(note) = name_note
        && changes.get("user_name").is_some()
    {
        changes["user_name_candidates"] = note;
    }
    if was_out != e.out_of_scope {
        t.execute("UPDATE users SET out_of_scope = ?2 WHERE pk = ?1", &[&pk, &e.out_of_scope])?;
    }
    let held = match (e.lifecycle, named.as_ref().map(|(e, _)| *e)) {
        (Lifecycle::Held(a), Some(entry_id)) => Some(held::hold(t, idp, HeldKind::Deactivate, id, entry_id, a, request_id)?),
        _ => None,
    };
    if let Some(h) = held {
        changes["held"] = serde_json::json!(h);
    }
    Ok((named, changes, held))
}

/// An entry's storage key and userName, when the user has one.
type Named = Option<(i64, String)>;

fn entry_name(t: &dyn Sql, entry_id: Option<i64>) -> StoreResult<Named> {
    entry_id.map(|e| Ok((e, entries::state(t, e)?.map(|s| s.user_name).unwrap_or_default()))).transpose()
}

/// Replaces an IdP user still as `before` (the same version and scope), and rewrites its
/// entry. An update is most of an IdP's traffic: the row is read once, without its body (the
/// caller has it, and it changes only with the version), and what did not change is not
/// written again (the email index, the scope flag) nor checked again (a userName kept is
/// still free).
pub fn update(t: &dyn Sql, idp: &IdpConnection, id: &str, before: &UserBefore, w: &UserWrite, prep: &Prepared, info: &AuditInfo) -> StoreResult<StoredUser> {
    let r = t.query_one(
        "SELECT pk, entry_id, version, out_of_scope, user_name_fold, created, external_id, display_name_fold, active FROM users WHERE id = ?1 AND idp_id = ?2",
        &[&id, &idp.id],
    )?;
    let (pk, entry, version, out): (i64, Option<i64>, i64, bool) = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
    if version != before.version || out != before.out_of_scope {
        return Err(StoreError::VersionMismatch);
    }
    let (fold_before, created): (String, String) = (r.get(4)?, r.get(5)?);
    let (external_before, display_before, active_before): (Option<String>, Option<String>, bool) = (r.get(6)?, r.get(7)?, r.get(8)?);
    let cur = Current { pk, entry, out };
    let ix = &prep.ix;
    let uf = &prep.user_name_fold;
    if *uf != fold_before && taken_in_idp(t, idp.id, uf, Some(pk))? {
        return Err(StoreError::Conflict(format!("a user with userName '{}' already exists for this IdP connection", ix.user_name)));
    }
    let ts = Timestamp::now();
    let (named, mut changes, _) = apply_entry(t, idp, id, &cur, w, &info.request_id, &ts)?;
    // The indexed columns only when they change: each one named is an index entry rewritten.
    let mut set = Assignments::new(&[&pk]);
    set.column_if(*uf != fold_before, "user_name_fold", uf);
    set.column_if(ix.external_id != external_before, "external_id", &ix.external_id);
    set.column_if(ix.display_name != display_before, "display_name_fold", &ix.display_name);
    set.column_if(ix.active != active_before, "active", &ix.active);
    set.column("body", &prep.text);
    set.column("modified", &ts);
    set.expression("version = version + 1");
    t.execute(&format!("UPDATE users SET {} WHERE pk = ?1", set.list()), set.params())?;
    // The index is a function of the body's emails: the same emails, the same rows.
    if prep.emails_changed {
        write_emails(t, pk, &ix.emails)?;
    }
    changes["idp"] = prep.idp_changes.clone();
    audit::record(t, &Subject::user(idp, id, named.as_ref().map(|(e, n)| (*e, n.as_str()))), info, &changes)?;
    Ok(StoredUser {
        meta: Meta { id: id.to_string(), created, last_modified: ts.into_string(), version: version + 1 },
        body: w.body.clone(),
        groups: Some(groups_of(t, pk)?),
        out_of_scope: w.entry.out_of_scope,
    })
}

/// Re-applies the rules to one IdP user: only its directory entry changes (the IdP view, its
/// version and ETag stay as the IdP left them; its scope may change). Returns the entry's
/// name before and what changed; records the change if anything did.
pub fn reapply(t: &dyn Sql, idp: &IdpConnection, id: &str, expected_version: i64, e: &EntryWrite, matching: &MatchPolicy, info: &AuditInfo) -> StoreResult<(String, Value)> {
    let cur = current(t, idp.id, id, Some(expected_version))?;
    let pk = cur.pk;
    let name = entry_name(t, cur.entry)?.map(|(_, n)| n).unwrap_or_else(|| e.user_name.clone());
    let body: Value = t.query_one("SELECT body FROM users WHERE pk = ?1", &[&pk])?.get::<String>(0).map(|b| serde_json::from_str(&b).unwrap_or(Value::Null))?;
    // Entering the directory on a re-apply joins entries as a create would.
    let restore = match e.lifecycle {
        Lifecycle::Reactivate { restore } => restore,
        _ => true,
    };
    let w = UserWrite { body: Arc::new(body), entry: e.clone(), matching: matching.clone(), reactivate: Some(restore) };
    let ts = Timestamp::now();
    let (named, changes, _) = apply_entry(t, idp, id, &cur, &w, &info.request_id, &ts)?;
    if changes.as_object().is_some_and(|o| !o.is_empty()) {
        audit::record(t, &Subject::user(idp, id, named.as_ref().map(|(e, n)| (*e, n.as_str()))), info, &changes)?;
    }
    Ok((name, changes))
}

/// The IdP users of a connection after `after_pk`, in storage order (a resumable cursor).
pub fn page_after(c: &dyn Sql, idp_id: i64, after_pk: i64, limit: usize) -> StoreResult<Vec<(i64, StoredUser)>> {
    c.query(&format!("SELECT {COLUMNS} FROM users r WHERE r.idp_id = ?1 AND r.pk > ?2 ORDER BY r.pk LIMIT ?3"), &[&idp_id, &after_pk, &(limit as i64)])?.iter().map(row).collect()
}

/// Deletes an IdP user; its entry is deprovisioned with `action`, or (`held`) kept until an
/// admin decides.
pub fn delete(t: &dyn Sql, idp: &IdpConnection, id: &str, expected_version: Option<i64>, action: DeprovisionAction, held: bool, info: &AuditInfo) -> StoreResult<()> {
    let Current { pk, entry, .. } = current(t, idp.id, id, expected_version)?;
    let Some(entry_id) = entry else {
        // Out of scope, never in the directory: only the IdP's view has it.
        delete_groups_member(t, pk)?;
        t.execute("DELETE FROM users WHERE pk = ?1", &[&pk])?;
        return audit::record(t, &Subject::user(idp, id, None), info, &serde_json::json!({"scope": "out"}));
    };
    // An entry that left scope was deprovisioned then; the deletion applies to it as usual.
    let before = entries::state(t, entry_id)?;
    let hold_id = if held { Some(held::hold(t, idp, HeldKind::Delete, id, entry_id, action, &info.request_id)?) } else { None };
    // A held deletion removes the IdP's user and leaves the entry as it is for now.
    delete_user_row(t, idp.id, pk, entry_id, if held { DeprovisionAction::Keep } else { action })?;
    let after = entries::state(t, entry_id)?;
    let name = before.as_ref().map(|e| e.user_name.as_str()).unwrap_or_default();
    let mut changes = audit::entry_diff(before.as_ref(), after.as_ref());
    if let Some(h) = hold_id {
        changes["held"] = serde_json::json!(h);
    }
    audit::record(t, &Subject::user(idp, id, Some((entry_id, name))), info, &changes)
}

/// The groups of a user that goes lose a member: their versions change.
fn delete_groups_member(t: &dyn Sql, pk: i64) -> StoreResult<()> {
    t.execute("UPDATE groups SET version = version + 1, modified = ?2 WHERE pk IN (SELECT group_pk FROM group_members WHERE user_pk = ?1)", &[&pk, &Timestamp::now()])?;
    Ok(())
}

fn delete_user_row(t: &dyn Sql, idp_id: i64, pk: i64, entry_id: i64, action: DeprovisionAction) -> StoreResult<()> {
    let ts = Timestamp::now();
    delete_groups_member(t, pk)?;
    memberships::revoke_idp_groups_of(t, entry_id, pk)?;
    t.execute("DELETE FROM users WHERE pk = ?1", &[&pk])?;
    let shared = t.query_opt("SELECT 1 FROM users WHERE entry_id = ?1 LIMIT 1", &[&entry_id])?.is_some();
    if shared {
        // Another IdP user still maps to this entry: it stays as it is.
        return Ok(());
    }
    match action {
        DeprovisionAction::Delete { retention_days: 0 } => {
            t.execute("DELETE FROM entries WHERE id = ?1", &[&entry_id])?;
        }
        a => {
            lifecycle::deprovision(t, entry_id, a, &ts)?;
            lifecycle::left_by(t, entry_id, idp_id)?;
        }
    }
    Ok(())
}

