//! The audit trail: written by every change in the change's own transaction (so there is
//! never a change without its record), and read back by `mapwright audit`.

use serde_json::{Map, Value, json};

use crate::store::sql::{Row, Sql};
use crate::model::{AuditInfo, AuditQuery, AuditRecord, DirectoryEntry, IdpConnection, Timestamp};
use crate::scim::eval::fold;
use crate::scim::resource::json_text;
use crate::store::{StoreError, StoreResult};

/// Before/after of the fields that differ between two states of an entry.
pub(super) fn entry_diff(before: Option<&DirectoryEntry>, after: Option<&DirectoryEntry>) -> Value {
    let mut out = Map::new();
    let field = |out: &mut Map<String, Value>, name: &str, b: Value, a: Value| {
        if b != a {
            out.insert(name.to_string(), json!([b, a]));
        }
    };
    field(&mut out, "userName", json!(before.map(|e| &e.user_name)), json!(after.map(|e| &e.user_name)));
    field(&mut out, "active", json!(before.map(|e| e.active)), json!(after.map(|e| e.active)));
    field(&mut out, "deleted", json!(before.map(|e| e.deleted)), json!(after.map(|e| e.deleted)));
    let null = Value::Null;
    let changed = crate::scim::resource::object_diff(before.map_or(&null, |e| &e.attributes), after.map_or(&null, |e| &e.attributes));
    if !changed.is_empty() {
        out.insert("attributes".into(), Value::Object(changed));
    }
    let groups = |e: Option<&DirectoryEntry>| e.map(|e| e.groups.clone()).unwrap_or_default();
    let (bg, ag) = (groups(before), groups(after));
    let added: Vec<&String> = ag.iter().filter(|g| !bg.contains(g)).collect();
    let removed: Vec<&String> = bg.iter().filter(|g| !ag.contains(g)).collect();
    if !added.is_empty() || !removed.is_empty() {
        out.insert("groups".into(), json!({"added": added, "removed": removed}));
    }
    Value::Object(out)
}

/// The top-level attributes of an IdP resource that a write changed (names only: the
/// values are the IdP's record, kept in the IdP view, not copied into the trail).
pub(super) fn changed_names(before: Option<&Value>, after: Option<&Value>) -> Vec<String> {
    let empty = Map::new();
    let (b, a) = (before.and_then(Value::as_object).unwrap_or(&empty), after.and_then(Value::as_object).unwrap_or(&empty));
    let mut names: Vec<String> = b.keys().chain(a.keys()).filter(|k| b.get(*k) != a.get(*k)).cloned().collect();
    names.sort();
    names.dedup();
    names
}

impl<'a> Subject<'a> {
    pub fn user(idp: &'a IdpConnection, id: &'a str, entry: Option<(i64, &'a str)>) -> Subject<'a> {
        Subject { tenant_id: idp.tenant_id, idp: Some(idp), resource_type: "User", resource_id: id, entry }
    }
    pub fn group(idp: &'a IdpConnection, id: &'a str) -> Subject<'a> {
        Subject { tenant_id: idp.tenant_id, idp: Some(idp), resource_type: "Group", resource_id: id, entry: None }
    }
}

/// Where a record is written: the resource it concerns and, for users, the entry.
pub(super) struct Subject<'a> {
    pub tenant_id: i64,
    /// The connection the change came through (none for the server's own changes).
    pub idp: Option<&'a IdpConnection>,
    pub resource_type: &'static str,
    pub resource_id: &'a str,
    pub entry: Option<(i64, &'a str)>,
}

pub(super) fn record(t: &dyn Sql, s: &Subject<'_>, info: &AuditInfo, changes: &Value) -> StoreResult<()> {
    let decisions = serde_json::to_string(&info.decisions).map_err(|e| StoreError::Backend(Box::new(e)))?;
    t.execute(
        "INSERT INTO audit (tenant_id, idp_id, idp_name, actor, request_id, operation, resource_type, resource_id, entry_id, entry_user_name,
         chain_version, decisions, changes, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        &[
            &s.tenant_id,
            &s.idp.map(|i| i.id),
            &s.idp.map(|i| i.name.as_str()),
            &info.actor,
            &info.request_id,
            &info.operation,
            &s.resource_type,
            &s.resource_id,
            &s.entry.map(|e| e.0),
            &s.entry.map(|e| e.1),
            &info.chain_version,
            &decisions,
            &json_text(changes),
            &Timestamp::now(),
        ],
    )?;
    Ok(())
}

const COLUMNS: &str = "a.id, a.at, t.name, a.idp_name, a.actor, a.request_id, a.operation, a.resource_type, a.resource_id, a.entry_user_name, a.chain_version, a.decisions, a.changes";

fn row(r: &Row) -> StoreResult<AuditRecord> {
    Ok(AuditRecord {
        id: r.get(0)?,
        at: r.get(1)?,
        tenant: r.get(2)?,
        idp: r.get(3)?,
        actor: r.get(4)?,
        request_id: r.get(5)?,
        operation: r.get(6)?,
        resource_type: r.get(7)?,
        resource_id: r.get(8)?,
        entry: r.get(9)?,
        chain_version: r.get(10)?,
        decisions: r.json(11)?,
        changes: r.json(12)?,
    })
}

/// Audit records matching `q`, newest first.
pub fn query(c: &dyn Sql, q: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
    // (entry id, records not older than): an entry's id may be reused by SQLite after a
    // purge, so a live entry's history starts when it was created.
    let (entry_id, entry_since): (Option<i64>, Option<Timestamp>) = match &q.entry {
        None => (None, None),
        Some(name) => {
            let live: Option<(i64, Timestamp)> = match c.query_opt("SELECT id, created FROM entries WHERE tenant_id = ?1 AND user_name_fold = ?2", &[&q.tenant_id, &fold(name)])? {
                Some(r) => Some((r.get(0)?, r.get(1)?)),
                None => None,
            };
            // An entry that no longer exists is found by the last name it was recorded under.
            match live {
                Some((id, created)) => (Some(id), Some(created)),
                None => {
                    let last = c.query_opt("SELECT entry_id FROM audit WHERE tenant_id = ?1 AND lower(entry_user_name) = lower(?2) ORDER BY id DESC LIMIT 1", &[&q.tenant_id, name])?;
                    let id: Option<i64> = match last {
                        Some(r) => r.get(0)?,
                        None => None,
                    };
                    (id.or(Some(-1)), None)
                }
            }
        }
    };
    let limit = if q.limit == 0 { 100 } else { q.limit.min(10_000) } as i64;
    let sql = format!(
        "SELECT {COLUMNS} FROM audit a JOIN tenants t ON t.id = a.tenant_id
         WHERE a.tenant_id = ?1 AND (CAST(?2 AS BIGINT) IS NULL OR a.idp_id = ?2) AND (CAST(?3 AS TEXT) IS NULL OR a.resource_id = ?3) AND (CAST(?4 AS BIGINT) IS NULL OR a.entry_id = ?4)
         AND (CAST(?5 AS TEXT) IS NULL OR a.at >= ?5) AND (CAST(?6 AS TEXT) IS NULL OR a.at <= ?6) AND (CAST(?7 AS BIGINT) IS NULL OR a.id < ?7) AND (CAST(?9 AS TEXT) IS NULL OR a.at >= ?9)
         ORDER BY a.id DESC LIMIT ?8"
    );
    c.query(&sql, &[&q.tenant_id, &q.idp_id, &q.resource_id, &entry_id, &q.since, &q.until, &q.before_id, &limit, &entry_since])?.iter().map(row).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entry(name: &str, active: bool, title: Option<&str>, groups: &[&str]) -> DirectoryEntry {
        DirectoryEntry {
            user_name: name.into(),
            active,
            attributes: match title {
                Some(t) => json!({"title": t, "userName": name}),
                None => json!({"userName": name}),
            },
            groups: groups.iter().map(|g| g.to_string()).collect(),
            deleted: false,
            purge_after: None,
        }
    }

    #[test]
    fn diffs_name_only_what_changed() {
        let a = entry("jdoe", true, Some("Dev"), &["app-users", "dev"]);
        let b = entry("jdoe", false, Some("Lead"), &["app-users", "leads"]);
        let d = entry_diff(Some(&a), Some(&b));
        assert_eq!(d["active"], json!([true, false]));
        assert_eq!(d["attributes"], json!({"title": ["Dev", "Lead"]}));
        assert_eq!(d["groups"], json!({"added": ["leads"], "removed": ["dev"]}));
        assert!(d.get("userName").is_none());
        let created = entry_diff(None, Some(&a));
        assert_eq!(created["userName"], json!([null, "jdoe"]));
        assert_eq!(entry_diff(Some(&a), Some(&a)), json!({}));
    }

    #[test]
    fn idp_view_changes_are_attribute_names() {
        let b = json!({"userName": "a", "title": "x", "phone": "1"});
        let a = json!({"userName": "a", "title": "y", "nickName": "n"});
        assert_eq!(changed_names(Some(&b), Some(&a)), vec!["nickName", "phone", "title"]);
    }
}
