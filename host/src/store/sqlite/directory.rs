//! Reads of the directory for the application (users, groups, the change feed) and the
//! feed's retention. The feed itself is written by triggers (migration 12), inside the
//! transaction of whatever changed the directory, so it cannot miss a write path.

use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use super::db::json_column;
use super::filter_sql::directory_sql;
use crate::model::{Change, ChangeKind, DirGroup, DirPage, DirRef, DirUser, Feed, Timestamp};
use crate::scim::list::ListQuery;
use crate::scim::schema::ResourceKind;
use crate::store::StoreResult;

/// The newest change position handed out (0 before the first change). AUTOINCREMENT keeps
/// it in `sqlite_sequence` even after the rows are purged.
fn head(c: &Connection) -> StoreResult<i64> {
    Ok(c.prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'changes'")?.query_row([], |r| r.get(0)).optional()?.unwrap_or(0))
}

/// Changes up to this position were purged.
fn floor(c: &Connection) -> StoreResult<i64> {
    Ok(c.prepare_cached("SELECT value FROM counters WHERE name = 'changes_floor'")?.query_row([], |r| r.get(0)).optional()?.unwrap_or(0))
}

const USER_COLUMNS: &str = "r.id, r.uid, r.user_name, r.active, r.attributes, r.created, r.modified";

fn user_row(r: &Row<'_>) -> rusqlite::Result<(i64, DirUser)> {
    let attrs: String = r.get(4)?;
    Ok((
        r.get(0)?,
        DirUser {
            id: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
            user_name: r.get(2)?,
            active: r.get(3)?,
            attributes: json_column(4, &attrs)?,
            groups: Vec::new(),
            created: r.get(5)?,
            modified: r.get(6)?,
        },
    ))
}

fn groups_of(c: &Connection, entry_id: i64) -> StoreResult<Vec<DirRef>> {
    let mut st = c.prepare_cached(
        "SELECT g.uid, g.name FROM app_memberships m JOIN app_groups g ON g.id = m.group_id WHERE m.entry_id = ?1 GROUP BY g.id ORDER BY g.name_fold",
    )?;
    let rows = st.query_map([entry_id], |r| Ok(DirRef { id: r.get::<_, Option<String>>(0)?.unwrap_or_default(), name: r.get(1)? }))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn members_of(c: &Connection, group_id: i64) -> StoreResult<Vec<DirRef>> {
    let mut st = c.prepare_cached(
        "SELECT e.uid, e.user_name FROM app_memberships m JOIN entries e ON e.id = m.entry_id
         WHERE m.group_id = ?1 AND e.deleted_at IS NULL GROUP BY e.id ORDER BY e.user_name_fold",
    )?;
    let rows = st.query_map([group_id], |r| Ok(DirRef { id: r.get::<_, Option<String>>(0)?.unwrap_or_default(), name: r.get(1)? }))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn users(c: &Connection, tenant_id: i64, q: &ListQuery) -> StoreResult<DirPage<DirUser>> {
    let cursor = head(c)?;
    let sql = directory_sql(ResourceKind::User, tenant_id, q);
    let (where_, order) = (&sql.where_, &sql.order);
    let total: i64 = c.query_row(&format!("SELECT count(*) FROM entries r WHERE {where_}"), rusqlite::params_from_iter(sql.params.iter()), |r| r.get(0))?;
    let mut items = Vec::new();
    if q.count > 0 && (q.start_index as i64) <= total {
        let page = format!("SELECT {USER_COLUMNS} FROM entries r WHERE {where_} ORDER BY {order} LIMIT {} OFFSET {}", q.count, q.start_index - 1);
        let mut st = c.prepare_cached(&page)?;
        let with_groups = q.projection.wants("groups");
        for row in st.query_map(rusqlite::params_from_iter(sql.params.iter()), user_row)? {
            let (id, mut u) = row?;
            if with_groups {
                u.groups = groups_of(c, id)?;
            }
            items.push(u);
        }
    }
    Ok(DirPage { total: total as usize, items, cursor })
}

pub fn user(c: &Connection, tenant_id: i64, uid: &str) -> StoreResult<Option<DirUser>> {
    let found = c
        .prepare_cached(&format!("SELECT {USER_COLUMNS} FROM entries r WHERE r.tenant_id = ?1 AND r.uid = ?2 AND r.deleted_at IS NULL"))?
        .query_row(params![tenant_id, uid], user_row)
        .optional()?;
    found
        .map(|(id, mut u)| {
            u.groups = groups_of(c, id)?;
            Ok(u)
        })
        .transpose()
}

fn group_row(r: &Row<'_>) -> rusqlite::Result<(i64, DirGroup)> {
    Ok((r.get(0)?, DirGroup { id: r.get::<_, Option<String>>(1)?.unwrap_or_default(), name: r.get(2)?, created: r.get(3)?, members: None }))
}

pub fn groups(c: &Connection, tenant_id: i64, q: &ListQuery) -> StoreResult<DirPage<DirGroup>> {
    let cursor = head(c)?;
    let sql = directory_sql(ResourceKind::Group, tenant_id, q);
    let (where_, order) = (&sql.where_, &sql.order);
    let total: i64 = c.query_row(&format!("SELECT count(*) FROM app_groups r WHERE {where_}"), rusqlite::params_from_iter(sql.params.iter()), |r| r.get(0))?;
    let mut items = Vec::new();
    if q.count > 0 && (q.start_index as i64) <= total {
        let page = format!("SELECT r.id, r.uid, r.name, r.created FROM app_groups r WHERE {where_} ORDER BY {order} LIMIT {} OFFSET {}", q.count, q.start_index - 1);
        let mut st = c.prepare_cached(&page)?;
        let with_members = q.projection.wants("members");
        for row in st.query_map(rusqlite::params_from_iter(sql.params.iter()), group_row)? {
            let (id, mut g) = row?;
            if with_members {
                g.members = Some(members_of(c, id)?);
            }
            items.push(g);
        }
    }
    Ok(DirPage { total: total as usize, items, cursor })
}

pub fn group(c: &Connection, tenant_id: i64, uid: &str, with_members: bool) -> StoreResult<Option<DirGroup>> {
    let found = c
        .prepare_cached("SELECT r.id, r.uid, r.name, r.created FROM app_groups r WHERE r.tenant_id = ?1 AND r.uid = ?2")?
        .query_row(params![tenant_id, uid], group_row)
        .optional()?;
    found
        .map(|(id, mut g)| {
            if with_members {
                g.members = Some(members_of(c, id)?);
            }
            Ok(g)
        })
        .transpose()
}

pub fn changes(c: &Connection, tenant_id: i64, since: i64, limit: usize) -> StoreResult<Feed> {
    let oldest = floor(c)?;
    if since < oldest {
        return Ok(Feed::Expired { oldest });
    }
    let mut st = c.prepare_cached(
        "SELECT seq, at, kind, entry_uid, user_name, active, attributes, group_uid, group_name FROM changes
         WHERE tenant_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?;
    let rows = st.query_map(params![tenant_id, since, limit as i64 + 1], |r| {
        let kind: String = r.get(2)?;
        let kind = ChangeKind::parse(&kind).ok_or_else(|| rusqlite::Error::InvalidColumnType(2, kind, rusqlite::types::Type::Text))?;
        let user = match (r.get::<_, Option<String>>(3)?, r.get::<_, Option<String>>(4)?) {
            (Some(id), Some(name)) => Some(DirRef { id, name }),
            _ => None,
        };
        let state = match (r.get::<_, Option<bool>>(5)?, r.get::<_, Option<String>>(6)?) {
            (Some(active), Some(attrs)) if kind != ChangeKind::UserDeleted => Some((active, json_column(6, &attrs)?)),
            _ => None,
        };
        let group = match (r.get::<_, Option<String>>(7)?, r.get::<_, Option<String>>(8)?) {
            (Some(id), Some(name)) => Some(DirRef { id, name }),
            _ => None,
        };
        Ok(Change { seq: r.get(0)?, at: r.get(1)?, kind, user, state, group })
    })?;
    let mut changes: Vec<Change> = rows.collect::<Result<_, _>>()?;
    let more = changes.len() > limit;
    changes.truncate(limit);
    let next = changes.last().map_or(since, |ch| ch.seq);
    Ok(Feed::Changes { changes, next, more })
}

/// The newest position, for a reader that wants to follow from now on.
pub fn cursor(c: &Connection) -> StoreResult<i64> {
    head(c)
}

/// Drops changes recorded before `before` and remembers how far the feed was cut, so a
/// cursor from before the cut is told so instead of silently missing changes.
///
/// Positions are handed out in time order (one writer, stamped at insert), so the cut is
/// found by walking from the oldest row to the first one recorded at or after `before`: it
/// reads what it is about to delete, and needs no index on the time (which would cost every
/// directory write). A clock stepped back can leave a few rows past retention until a later
/// purge; it never drops one inside it.
pub fn purge_changes(t: &Transaction<'_>, before: &Timestamp) -> StoreResult<usize> {
    let first_kept: Option<i64> = t.prepare_cached("SELECT seq FROM changes WHERE at >= ?1 ORDER BY seq LIMIT 1")?.query_row([before], |r| r.get(0)).optional()?;
    let through: Option<i64> = match first_kept {
        Some(seq) => t.prepare_cached("SELECT max(seq) FROM changes WHERE seq < ?1")?.query_row([seq], |r| r.get(0))?,
        None => t.prepare_cached("SELECT max(seq) FROM changes")?.query_row([], |r| r.get(0))?,
    };
    let Some(through) = through else { return Ok(0) };
    let n = t.prepare_cached("DELETE FROM changes WHERE seq <= ?1")?.execute([through])?;
    t.prepare_cached("INSERT INTO counters (name, value) VALUES ('changes_floor', ?1) ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)")?
        .execute([through])?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    /// The feed triggers on a bare schema: every directory write path ends up in `changes`
    /// through them, so their rules are checked here, statement by statement.
    #[test]
    fn triggers_record_what_the_application_can_see() {
        let mut c = Connection::open_in_memory().unwrap();
        c.execute_batch("PRAGMA foreign_keys=ON").unwrap();
        super::super::migrations::migrate(&mut c).unwrap();
        let kinds = |c: &Connection, since: i64| -> Vec<String> {
            match changes(c, 1, since, 100).unwrap() {
                Feed::Changes { changes, .. } => changes.iter().map(|ch| format!("{:?}", ch.kind)).collect(),
                Feed::Expired { .. } => panic!("expired"),
            }
        };
        c.execute_batch(
            "INSERT INTO tenants (id, name, created) VALUES (1, 'acme', 'x'), (2, 'other', 'x');
             INSERT INTO entries (id, tenant_id, user_name, user_name_fold, active, attributes, created, modified, uid)
                 VALUES (1, 1, 'jdoe', 'jdoe', 1, '{\"title\":\"Dev\"}', 'x', 'x', 'u1');
             INSERT INTO entries (id, tenant_id, user_name, user_name_fold, active, attributes, created, modified, uid)
                 VALUES (2, 2, 'other', 'other', 1, '{}', 'x', 'x', 'u2');
             INSERT INTO app_groups (id, tenant_id, name, name_fold, created, uid) VALUES (1, 1, 'dev', 'dev', 'x', 'g1');",
        )
        .unwrap();
        assert_eq!(kinds(&c, 0), ["UserCreated", "GroupCreated"], "another tenant's entry is not in this feed");
        let mark = head(&c).unwrap();
        c.execute_batch(
            "INSERT INTO app_memberships VALUES (1, 1, 'g:1');
             INSERT INTO app_memberships VALUES (1, 1, 'rule:1'); -- a second owner: no news
             DELETE FROM app_memberships WHERE owner = 'g:1';      -- one owner left: no news
             UPDATE entries SET modified = 'y' WHERE id = 1;        -- nothing visible changed
             UPDATE entries SET attributes = '{\"title\":\"Lead\"}' WHERE id = 1;
             DELETE FROM app_memberships WHERE owner = 'rule:1';",
        )
        .unwrap();
        assert_eq!(kinds(&c, mark), ["MembershipAdded", "UserUpdated", "MembershipRemoved"]);
        let mark = head(&c).unwrap();
        c.execute_batch(
            "INSERT INTO app_memberships VALUES (1, 1, 'g:1');
             UPDATE entries SET active = 0, deleted_at = 'x' WHERE id = 1;   -- soft delete
             DELETE FROM app_memberships WHERE entry_id = 1;                 -- stripped: hidden
             UPDATE entries SET attributes = '{}' WHERE id = 1;              -- scrubbed: hidden
             UPDATE entries SET deleted_at = NULL, active = 1 WHERE id = 1;  -- restored
             INSERT INTO app_memberships VALUES (1, 1, 'g:1');
             DELETE FROM entries WHERE id = 1;                              -- memberships cascade silently",
        )
        .unwrap();
        assert_eq!(kinds(&c, mark), ["MembershipAdded", "UserDeleted", "UserCreated", "MembershipAdded", "UserDeleted"]);
        let Feed::Changes { changes: all, next, more } = changes(&c, 1, 0, 3).unwrap() else { panic!() };
        assert_eq!((all.len(), more), (3, true));
        assert_eq!(next, all[2].seq);
        assert_eq!(all[0].state, Some((true, serde_json::json!({"title": "Dev"}))), "a user event carries the state it left");
    }

    #[test]
    fn a_purge_cuts_at_the_first_change_inside_retention_in_position_order() {
        let mut c = Connection::open_in_memory().unwrap();
        super::super::migrations::migrate(&mut c).unwrap();
        // Positions 1..4 stamped 01, 02, 05, then 03 (the clock stepped back).
        for at in ["2026-01-01", "2026-01-02", "2026-01-05", "2026-01-03"] {
            c.execute("INSERT INTO changes (tenant_id, at, kind) VALUES (1, ?1, 'group.created')", [at]).unwrap();
        }
        let t = c.transaction().unwrap();
        assert_eq!(purge_changes(&t, &Timestamp::from_stored("2026-01-04".into())).unwrap(), 2, "1 and 2 go; 3 is inside retention, and so everything after it stays");
        let left: Vec<i64> = t.prepare("SELECT seq FROM changes ORDER BY seq").unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
        assert_eq!(left, [3, 4]);
        assert_eq!(purge_changes(&t, &Timestamp::from_stored("2026-01-04".into())).unwrap(), 0, "nothing before the first change inside retention is left");
        assert_eq!(purge_changes(&t, &Timestamp::from_stored("2026-02-01".into())).unwrap(), 2);
        t.commit().unwrap();
        assert!(matches!(changes(&c, 1, 3, 10).unwrap(), Feed::Expired { oldest: 4 }));
    }

    #[test]
    fn a_purged_cursor_is_expired_and_positions_are_never_reused() {
        let mut c = Connection::open_in_memory().unwrap();
        super::super::migrations::migrate(&mut c).unwrap();
        c.execute_batch("INSERT INTO tenants (id, name, created) VALUES (1, 'acme', 'x');").unwrap();
        for i in 0..3 {
            c.execute(&format!("INSERT INTO app_groups (tenant_id, name, name_fold, created, uid) VALUES (1, 'g{i}', 'g{i}', 'x', 'u{i}')"), []).unwrap();
        }
        let t = c.transaction().unwrap();
        assert_eq!(purge_changes(&t, &Timestamp::from_stored("9999".into())).unwrap(), 3);
        t.commit().unwrap();
        assert!(matches!(changes(&c, 1, 0, 10).unwrap(), Feed::Expired { oldest: 3 }));
        assert!(matches!(changes(&c, 1, 3, 10).unwrap(), Feed::Changes { ref changes, next: 3, more: false } if changes.is_empty()));
        c.execute("INSERT INTO app_groups (tenant_id, name, name_fold, created, uid) VALUES (1, 'g9', 'g9', 'x', 'u9')", []).unwrap();
        let Feed::Changes { changes: after, .. } = changes(&c, 1, 3, 10).unwrap() else { panic!() };
        assert_eq!(after.iter().map(|c| c.seq).collect::<Vec<_>>(), [4]);
    }
}
