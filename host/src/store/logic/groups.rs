//! Groups: the IdP view (`groups`, `group_members`) and the app groups and memberships they
//! map to. Member changes are deltas: no operation here loads or rewrites members it does not
//! change, except those whose meaning is "all members" (remove all, replace the list).

use std::collections::HashSet;

use serde_json::Value;

use super::audit::{self, Subject};
use super::filter_sql::list_sql;
use super::held::{self, Removal};
use super::memberships;
use crate::model::{AuditInfo, GroupUpdate, GroupWrite, IdpConnection, Member, MemberRule, MemberRules, Owner, Page, SkippedMember, StoredGroup, Timestamp, UnknownMembers};
use crate::scim::eval::fold;
use crate::scim::list::ListQuery;
use crate::scim::patch::MemberOp;
use crate::scim::resource::Meta;
use crate::scim::schema::ResourceKind;
use crate::store::sql::{Row, Sql, params_of};
use crate::store::{StoreError, StoreResult};

const COLUMNS: &str = "r.pk, r.id, r.body, r.created, r.modified, r.version";

fn row(r: &Row) -> StoreResult<(i64, StoredGroup)> {
    let body = r.json(2)?;
    Ok((
        r.get(0)?,
        StoredGroup {
            meta: Meta { id: r.get(1)?, created: r.get(3)?, last_modified: r.get(4)?, version: r.get(5)? },
            body,
            members: None,
            skipped: Vec::new(),
            moved: Vec::new(),
        },
    ))
}

fn members_of(c: &dyn Sql, group_pk: i64) -> StoreResult<Vec<Member>> {
    c.query("SELECT u.id FROM group_members m JOIN users u ON u.pk = m.user_pk WHERE m.group_pk = ?1 ORDER BY u.pk", &[&group_pk])?
        .iter()
        .map(|r| Ok(Member { value: r.get(0)?, display: None }))
        .collect()
}

/// One group of a connection.
pub fn get(c: &dyn Sql, idp_id: i64, id: &str, with_members: bool) -> StoreResult<StoredGroup> {
    let (pk, mut g) = row(&c.query_one(&format!("SELECT {COLUMNS} FROM groups r WHERE r.id = ?1 AND r.idp_id = ?2"), &[&id, &idp_id])?)?;
    if with_members {
        g.members = Some(members_of(c, pk)?);
    }
    Ok(g)
}

/// A filtered, sorted page of a connection's groups.
pub fn list(c: &dyn Sql, idp_id: i64, q: &ListQuery) -> StoreResult<Page<StoredGroup>> {
    let sql = list_sql(ResourceKind::Group, idp_id, q, c.dialect());
    let (where_, order) = (&sql.where_, &sql.order);
    let params = params_of(&sql.params);
    let total: i64 = c.query_one(&format!("SELECT count(*) FROM groups r WHERE {where_}"), &params)?.get(0)?;
    let mut items = Vec::new();
    if q.count > 0 && (q.start_index as i64) <= total {
        let page_sql = format!("SELECT {COLUMNS} FROM groups r WHERE {where_} ORDER BY {order} LIMIT {} OFFSET {}", q.count, q.start_index - 1);
        let with_members = q.projection.wants("members");
        for r in c.query(&page_sql, &params)? {
            let (pk, mut g) = row(&r)?;
            if with_members {
                g.members = Some(members_of(c, pk)?);
            }
            items.push(g);
        }
    }
    Ok(Page { total: total as usize, items })
}

fn owner(group_pk: i64) -> Owner {
    Owner::IdpGroup(group_pk)
}

fn targets_of(t: &dyn Sql, group_pk: i64) -> StoreResult<Vec<i64>> {
    t.query("SELECT app_group_id FROM group_targets WHERE group_pk = ?1", &[&group_pk])?.iter().map(|r| r.get(0)).collect()
}

/// Memberships a write takes away, collected first and revoked together (or held by the
/// guard) at the end.
type Revokes = Vec<Removal>;

/// Points the IdP group at the app groups `names`, moving the memberships it owns.
fn retarget(t: &dyn Sql, tenant_id: i64, group_pk: i64, names: &[String], revokes: &mut Revokes) -> StoreResult<()> {
    let mut wanted = Vec::new();
    for n in names {
        wanted.push(memberships::app_group_id(t, tenant_id, n)?);
    }
    let have = targets_of(t, group_pk)?;
    let own = owner(group_pk);
    for gone in have.iter().filter(|g| !wanted.contains(g)) {
        t.execute("DELETE FROM group_targets WHERE group_pk = ?1 AND app_group_id = ?2", &[&group_pk, gone])?;
        revokes.extend(memberships::entries_of(t, own, Some(*gone))?.into_iter().map(|e| (e, Some(*gone))));
    }
    for new in wanted.iter().filter(|g| !have.contains(g)) {
        t.execute("INSERT INTO group_targets (group_pk, app_group_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING", &[&group_pk, new])?;
        memberships::grant_to_members(t, *new, group_pk)?;
    }
    Ok(())
}

/// A member as the store handles it: SCIM id, user row, and the directory entry its
/// memberships go to (`None` while the scope rules keep it out of the directory).
struct M {
    id: String,
    pk: i64,
    entry: Option<i64>,
}

/// The entry an IdP group's memberships go to: none for a user out of scope.
fn member_entry(entry: Option<i64>, out_of_scope: bool) -> Option<i64> {
    entry.filter(|_| !out_of_scope)
}

/// What resolving member ids does with one the connection does not have.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unknown {
    /// Nothing: removing a member that is not there is done.
    Ignore,
    /// Per the connection's policy: refuse the write, or skip the member and record why.
    Policy,
}

/// Resolves member ids within the IdP connection; members it does not have are refused or
/// recorded in `skipped`, per `unknown` and the connection's policy.
fn resolve_members(t: &dyn Sql, idp: &IdpConnection, ids: &[String], unknown: Unknown, skipped: &mut Vec<SkippedMember>) -> StoreResult<Vec<M>> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let found = t.query_opt("SELECT pk, entry_id, out_of_scope FROM users WHERE id = ?1 AND idp_id = ?2", &[id, &idp.id])?;
        match found.map(|r| Ok::<_, StoreError>((r.get(0)?, r.get::<Option<i64>>(1)?, r.get::<bool>(2)?))).transpose()? {
            Some((pk, entry, out_of_scope)) => out.push(M { id: id.clone(), pk, entry: member_entry(entry, out_of_scope) }),
            None if unknown == Unknown::Ignore => {}
            None if idp.settings.unknown_members == UnknownMembers::Reject => {
                return Err(StoreError::InvalidReference(format!("member '{id}' is not a user provisioned by this IdP connection")));
            }
            None => skipped.push(SkippedMember { id: id.clone(), reason: why_unknown(t, idp, id)? }),
        }
    }
    Ok(out)
}

/// Why a member id is not one of the connection's users, as far as the store can tell.
fn why_unknown(t: &dyn Sql, idp: &IdpConnection, id: &str) -> StoreResult<String> {
    if t.query_opt("SELECT idp_id FROM users WHERE id = ?1", &[&id])?.is_some() {
        return Ok("a user of another IdP connection".into());
    }
    let held = t.query_opt("SELECT 1 FROM held_ops WHERE idp_id = ?1 AND resource_id = ?2 AND kind = 'delete' AND status = 'held' LIMIT 1", &[&idp.id, &id])?.is_some();
    Ok(if held { "its deletion is held by the guard".into() } else { "not a user of this connection (deleted, or never provisioned)".into() })
}

/// Remembers the members a write skipped (replacing what was recorded for them), for the
/// drift report; forgets those the group no longer names.
fn record_skipped(t: &dyn Sql, group_pk: i64, skipped: &[SkippedMember]) -> StoreResult<()> {
    let at = Timestamp::now();
    for m in skipped {
        t.execute(
            "INSERT INTO skipped_members (group_pk, member_id, reason, at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (group_pk, member_id) DO UPDATE SET reason = excluded.reason, at = excluded.at",
            &[&group_pk, &m.id, &m.reason, &at],
        )?;
    }
    Ok(())
}

fn forget_skipped(t: &dyn Sql, group_pk: i64, ids: Option<&[String]>) -> StoreResult<()> {
    match ids {
        None => {
            t.execute("DELETE FROM skipped_members WHERE group_pk = ?1", &[&group_pk])?;
        }
        Some(ids) => {
            for id in ids {
                t.execute("DELETE FROM skipped_members WHERE group_pk = ?1 AND member_id = ?2", &[&group_pk, id])?;
            }
        }
    }
    Ok(())
}

fn current_members(t: &dyn Sql, group_pk: i64) -> StoreResult<Vec<M>> {
    t.query("SELECT u.id, m.user_pk, u.entry_id, u.out_of_scope FROM group_members m JOIN users u ON u.pk = m.user_pk WHERE m.group_pk = ?1", &[&group_pk])?
        .iter()
        .map(|r| Ok(M { id: r.get(0)?, pk: r.get(1)?, entry: member_entry(r.get(2)?, r.get(3)?) }))
        .collect()
}

/// The group's targets: (app group id, folded name).
fn targets_named(t: &dyn Sql, group_pk: i64) -> StoreResult<Vec<(i64, String)>> {
    t.query("SELECT g.id, g.name_fold FROM group_targets gt JOIN app_groups g ON g.id = gt.app_group_id WHERE gt.group_pk = ?1", &[&group_pk])?
        .iter()
        .map(|r| Ok((r.get(0)?, r.get(1)?)))
        .collect()
}

fn named(list: &[String], fold_name: &str) -> bool {
    list.iter().any(|n| fold(n) == fold_name)
}

/// The members a write actually added and removed (SCIM ids), for the audit record.
#[derive(Default)]
struct Delta {
    added: Vec<String>,
    removed: Vec<String>,
    /// Members it named that the connection does not have, skipped per its policy.
    skipped: Vec<SkippedMember>,
    /// Memberships this group's write takes away, revoked together at the end (or held).
    revokes: Revokes,
}

fn add_members(t: &dyn Sql, idp: &IdpConnection, group_pk: i64, targets: &[(i64, String)], members: &[M], rules: &MemberRules, delta: &mut Delta) -> StoreResult<()> {
    let own = owner(group_pk);
    let none = MemberRule::default();
    for m in members {
        if t.execute("INSERT INTO group_members (group_pk, user_pk) VALUES (?1, ?2) ON CONFLICT DO NOTHING", &[&group_pk, &m.pk])? == 1 {
            delta.added.push(m.id.clone());
            // Out of scope: the IdP view records the membership; the directory has no entry.
            let Some(entry) = m.entry else { continue };
            // Removed then added again in one request: the membership stays.
            delta.revokes.retain(|(e, g)| *e != entry || g.is_some());
            let rule = rules.get(&m.id).unwrap_or(&none);
            for (g, name) in targets {
                if !named(&rule.skip, name) {
                    memberships::grant(t, *g, entry, own)?;
                }
            }
            memberships::rule_grants(t, idp, entry, &rule.grant, &rule.revoke)?;
        }
    }
    Ok(())
}

fn remove_members(t: &dyn Sql, idp: &IdpConnection, group_pk: i64, targets: &[(i64, String)], members: &[M], rules: &MemberRules, delta: &mut Delta) -> StoreResult<()> {
    let rule_owner = Owner::Rules(idp.id);
    for m in members {
        if t.execute("DELETE FROM group_members WHERE group_pk = ?1 AND user_pk = ?2", &[&group_pk, &m.pk])? == 1 {
            delta.removed.push(m.id.clone());
            let Some(entry) = m.entry else { continue };
            if let Some(rule) = rules.get(&m.id) {
                // Kept memberships change owner: the rules hold them from now on.
                for (g, _) in targets.iter().filter(|(_, n)| named(&rule.keep, n)) {
                    memberships::grant(t, *g, entry, rule_owner)?;
                }
                memberships::rule_grants(t, idp, entry, &rule.grant, &rule.revoke)?;
            }
            delta.revokes.push((entry, None));
        }
    }
    Ok(())
}

fn apply_member_ops(t: &dyn Sql, idp: &IdpConnection, group_pk: i64, ops: &[MemberOp], rules: &MemberRules, delta: &mut Delta) -> StoreResult<()> {
    let targets = targets_named(t, group_pk)?;
    let mut i = 0;
    while i < ops.len() {
        match (&ops[i], ops.get(i + 1)) {
            // "Replace the member list" becomes the delta against the current list.
            (MemberOp::RemoveAll, Some(MemberOp::Add(ids))) => {
                forget_skipped(t, group_pk, None)?;
                let wanted = resolve_members(t, idp, ids, Unknown::Policy, &mut delta.skipped)?;
                let wanted_pks: HashSet<i64> = wanted.iter().map(|m| m.pk).collect();
                let have = current_members(t, group_pk)?;
                let have_pks: HashSet<i64> = have.iter().map(|m| m.pk).collect();
                let gone: Vec<M> = have.into_iter().filter(|m| !wanted_pks.contains(&m.pk)).collect();
                let new: Vec<M> = wanted.into_iter().filter(|m| !have_pks.contains(&m.pk)).collect();
                remove_members(t, idp, group_pk, &targets, &gone, rules, delta)?;
                add_members(t, idp, group_pk, &targets, &new, rules, delta)?;
                i += 2;
                continue;
            }
            (MemberOp::RemoveAll, _) if !rules.is_empty() => {
                forget_skipped(t, group_pk, None)?;
                let all = current_members(t, group_pk)?;
                remove_members(t, idp, group_pk, &targets, &all, rules, delta)?;
            }
            (MemberOp::RemoveAll, _) => {
                forget_skipped(t, group_pk, None)?;
                let ids = t.query("SELECT u.id FROM group_members m JOIN users u ON u.pk = m.user_pk WHERE m.group_pk = ?1", &[&group_pk])?;
                delta.removed.extend(ids.iter().map(|r| r.get::<String>(0)).collect::<StoreResult<Vec<_>>>()?);
                delta.revokes.extend(memberships::entries_of(t, owner(group_pk), None)?.into_iter().map(|e| (e, None)));
                t.execute("DELETE FROM group_members WHERE group_pk = ?1", &[&group_pk])?;
            }
            (MemberOp::Add(ids), _) => {
                let members = resolve_members(t, idp, ids, Unknown::Policy, &mut delta.skipped)?;
                add_members(t, idp, group_pk, &targets, &members, rules, delta)?;
            }
            (MemberOp::Remove(ids), _) => {
                forget_skipped(t, group_pk, Some(ids))?;
                let members = resolve_members(t, idp, ids, Unknown::Ignore, &mut delta.skipped)?;
                remove_members(t, idp, group_pk, &targets, &members, rules, delta)?;
            }
        }
        i += 1;
    }
    record_skipped(t, group_pk, &delta.skipped)
}

/// The app groups an IdP group maps to now (names).
pub fn target_names(c: &dyn Sql, idp_id: i64, id: &str) -> StoreResult<Vec<String>> {
    c.query(
        "SELECT g.name FROM groups r JOIN group_targets gt ON gt.group_pk = r.pk JOIN app_groups g ON g.id = gt.app_group_id
         WHERE r.id = ?1 AND r.idp_id = ?2 ORDER BY g.name",
        &[&id, &idp_id],
    )?
    .iter()
    .map(|r| r.get(0))
    .collect()
}

fn index(body: &Value) -> (String, Option<String>) {
    let dn = body.get("displayName").and_then(Value::as_str).unwrap_or_default();
    (fold(dn), body.get("externalId").and_then(Value::as_str).map(str::to_string))
}

/// Revokes the memberships a write takes from entries, or, past the guard's budget, holds
/// them all for an admin (the IdP view already says they are gone). Returns how many
/// entries lost a membership now, and the held operation if any.
fn settle_revokes(t: &dyn Sql, idp: &IdpConnection, group_pk: i64, group_id: &str, revokes: &mut Revokes, budget: Option<u32>, request_id: &str) -> StoreResult<(u32, Option<i64>)> {
    revokes.sort_unstable();
    revokes.dedup();
    let mut entries: Vec<i64> = revokes.iter().map(|(e, _)| *e).collect();
    entries.dedup();
    if entries.is_empty() {
        return Ok((0, None));
    }
    let own = owner(group_pk);
    if budget.is_some_and(|b| entries.len() > b as usize) {
        let name: String = t.query_one("SELECT COALESCE(json_extract(body, '$.displayName'), '') FROM groups WHERE pk = ?1", &[&group_pk])?.get(0)?;
        let held_id = held::hold_removals(t, idp, group_id, &name, own, revokes, request_id)?;
        // The held memberships change owner to the held operation: no later write of this IdP
        // group (nor of a new group that reuses its storage key) can take them or count them
        // as its own; the decision settles them.
        for (e, g) in revokes.iter() {
            memberships::transfer(t, *e, own, Owner::Held(held_id), *g)?;
        }
        return Ok((0, Some(held_id)));
    }
    for (e, g) in revokes.iter() {
        memberships::revoke(t, *e, own, *g)?;
    }
    Ok((entries.len() as u32, None))
}

/// The audit changes of a group write: targets before/after, members added and removed.
fn group_changes(before: Option<(&Value, Vec<String>)>, after: Option<(&Value, Vec<String>)>, delta: Delta) -> Value {
    let mut c = serde_json::json!({ "idp": audit::changed_names(before.as_ref().map(|b| b.0), after.as_ref().map(|a| a.0)) });
    let (bt, at) = (before.map(|b| b.1).unwrap_or_default(), after.map(|a| a.1).unwrap_or_default());
    if bt != at {
        c["targets"] = serde_json::json!([bt, at]);
    }
    if !delta.added.is_empty() || !delta.removed.is_empty() || !delta.skipped.is_empty() {
        c["members"] = serde_json::json!({"added": delta.added, "removed": delta.removed});
    }
    if !delta.skipped.is_empty() {
        // Named one by one up to a bound: a list of thousands of stale ids is counted.
        let shown: Vec<Value> = delta.skipped.iter().take(SKIPPED_SHOWN).map(|m| serde_json::json!({"id": m.id, "reason": m.reason})).collect();
        c["members"]["skipped"] = Value::Array(shown);
        c["members"]["skipped_count"] = delta.skipped.len().into();
    }
    c
}

/// Skipped members an audit record names one by one.
const SKIPPED_SHOWN: usize = 100;

/// Creates an IdP group with its members and targets.
pub fn create(t: &dyn Sql, idp: &IdpConnection, w: &GroupWrite, members: &[String], rules: &MemberRules, info: &AuditInfo) -> StoreResult<StoredGroup> {
    let (dn, ext) = index(&w.body);
    let ts = Timestamp::now();
    // Time-ordered (UUIDv7): new ids land at the end of the id indexes instead of on a
    // random page each, which keeps the writer's pages per commit down. Still opaque.
    let id = uuid::Uuid::now_v7().to_string();
    let pk: i64 = t
        .query_one(
            "INSERT INTO groups (idp_id, id, display_name_fold, external_id, body, created, modified, version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 1) RETURNING pk",
            &[&idp.id, &id, &dn, &ext, &w.body.to_string(), &ts],
        )?
        .get(0)?;
    let mut delta = Delta::default();
    retarget(t, idp.tenant_id, pk, &w.targets, &mut delta.revokes)?;
    if !members.is_empty() {
        apply_member_ops(t, idp, pk, &[MemberOp::Add(members.to_vec())], rules, &mut delta)?;
    }
    settle_revokes(t, idp, pk, &id, &mut delta.revokes, None, &info.request_id)?;
    let targets = target_names(t, idp.id, &id)?;
    let skipped = delta.skipped.clone();
    let moved = delta.added.clone();
    audit::record(t, &Subject::group(idp, &id), info, &group_changes(None, Some((&w.body, targets)), delta))?;
    Ok(StoredGroup { meta: Meta { id, created: ts.to_string(), last_modified: ts.into_string(), version: 1 }, body: w.body.clone(), members: None, skipped, moved })
}

/// Updates an IdP group still at the expected version: attributes, targets, member deltas.
pub fn update(t: &dyn Sql, idp: &IdpConnection, id: &str, u: &GroupUpdate, info: &AuditInfo) -> StoreResult<(StoredGroup, u32)> {
    let (expected_version, w, ops, rules) = (u.expected_version, u.attributes.as_ref(), &u.members, &u.rules);
    let r = t.query_one("SELECT pk, version FROM groups WHERE id = ?1 AND idp_id = ?2", &[&id, &idp.id])?;
    let (pk, version): (i64, i64) = (r.get(0)?, r.get(1)?);
    if version != expected_version {
        return Err(StoreError::VersionMismatch);
    }
    let ts = Timestamp::now();
    let before_targets = target_names(t, idp.id, id)?;
    let before_body: Option<Value> = match w {
        Some(_) => t.query_opt("SELECT body FROM groups WHERE pk = ?1", &[&pk])?.and_then(|r| r.get::<String>(0).ok()).and_then(|b| serde_json::from_str(&b).ok()),
        None => None,
    };
    let mut delta = Delta::default();
    if let Some(w) = w {
        let (dn, ext) = index(&w.body);
        t.execute("UPDATE groups SET display_name_fold = ?2, external_id = ?3, body = ?4 WHERE pk = ?1", &[&pk, &dn, &ext, &w.body.to_string()])?;
        retarget(t, idp.tenant_id, pk, &w.targets, &mut delta.revokes)?;
    }
    apply_member_ops(t, idp, pk, ops, rules, &mut delta)?;
    let (revoked, held) = settle_revokes(t, idp, pk, id, &mut delta.revokes, u.removal_budget, &info.request_id)?;
    t.execute("UPDATE groups SET version = version + 1, modified = ?2 WHERE pk = ?1", &[&pk, &ts])?;
    let after_targets = target_names(t, idp.id, id)?;
    let skipped = delta.skipped.clone();
    let moved: Vec<String> = delta.added.iter().chain(&delta.removed).cloned().collect();
    let mut changes = match (w, &before_body) {
        (Some(w), Some(b)) => group_changes(Some((b, before_targets)), Some((&w.body, after_targets)), delta),
        _ => group_changes(Some((&Value::Null, before_targets)), Some((&Value::Null, after_targets)), delta),
    };
    if let Some(h) = held {
        changes["held"] = serde_json::json!(h);
    }
    audit::record(t, &Subject::group(idp, id), info, &changes)?;
    let (_, mut g) = row(&t.query_one(&format!("SELECT {COLUMNS} FROM groups r WHERE r.pk = ?1"), &[&pk])?)?;
    g.skipped = skipped;
    g.moved = moved;
    Ok((g, revoked))
}

/// Re-applies the rules to one IdP group: points it at `targets`, moving the memberships it
/// owns. Returns what changed (and records it if anything did).
pub fn reapply(t: &dyn Sql, idp: &IdpConnection, id: &str, targets: &[String], budget: Option<u32>, info: &AuditInfo) -> StoreResult<(String, Value)> {
    let r = t.query_one("SELECT pk, json_extract(body, '$.displayName') FROM groups WHERE id = ?1 AND idp_id = ?2", &[&id, &idp.id])?;
    let (pk, name): (i64, String) = (r.get(0)?, r.get::<Option<String>>(1)?.unwrap_or_default());
    let before = target_names(t, idp.id, id)?;
    let mut revokes = Revokes::new();
    retarget(t, idp.tenant_id, pk, targets, &mut revokes)?;
    let (revoked, held) = settle_revokes(t, idp, pk, id, &mut revokes, budget, &info.request_id)?;
    let after = target_names(t, idp.id, id)?;
    if before == after {
        return Ok((name, serde_json::json!({})));
    }
    let members: i64 = t.query_one("SELECT count(*) FROM group_members WHERE group_pk = ?1", &[&pk])?.get(0)?;
    let mut changes = serde_json::json!({"targets": [before, after], "members_affected": members, "revoked": revoked});
    if let Some(h) = held {
        changes["held"] = serde_json::json!(h);
    }
    audit::record(t, &Subject::group(idp, id), info, &changes)?;
    Ok((name, changes))
}

/// The IdP groups of a connection after `after_pk`, in storage order.
pub fn page_after(c: &dyn Sql, idp_id: i64, after_pk: i64, limit: usize) -> StoreResult<Vec<(i64, StoredGroup)>> {
    c.query(&format!("SELECT {COLUMNS} FROM groups r WHERE r.idp_id = ?1 AND r.pk > ?2 ORDER BY r.pk LIMIT ?3"), &[&idp_id, &after_pk, &(limit as i64)])?.iter().map(row).collect()
}

/// Deletes an IdP group; the memberships it gave go (or, past the budget, are held).
pub fn delete(t: &dyn Sql, idp: &IdpConnection, id: &str, expected_version: Option<i64>, removal_budget: Option<u32>, info: &AuditInfo) -> StoreResult<u32> {
    let r = t.query_one("SELECT pk, version FROM groups WHERE id = ?1 AND idp_id = ?2", &[&id, &idp.id])?;
    let (pk, version): (i64, i64) = (r.get(0)?, r.get(1)?);
    if expected_version.is_some_and(|v| v != version) {
        return Err(StoreError::VersionMismatch);
    }
    let targets = target_names(t, idp.id, id)?;
    let members: i64 = t.query_one("SELECT count(*) FROM group_members WHERE group_pk = ?1", &[&pk])?.get(0)?;
    let mut revokes: Revokes = memberships::entries_of(t, owner(pk), None)?.into_iter().map(|e| (e, None)).collect();
    // Held memberships outlive the group row: their owner names it until an admin decides.
    let (revoked, held) = settle_revokes(t, idp, pk, id, &mut revokes, removal_budget, &info.request_id)?;
    let mut changes = serde_json::json!({"targets": [targets, []], "members": {"removed_count": members}});
    if let Some(h) = held {
        changes["held"] = serde_json::json!(h);
    }
    audit::record(t, &Subject::group(idp, id), info, &changes)?;
    t.execute("DELETE FROM groups WHERE pk = ?1", &[&pk])?;
    Ok(revoked)
}
