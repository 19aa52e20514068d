//! Reads of the directory for the application (users, groups, the change feed) and the
//! feed's retention. The feed itself is written by triggers (migration 12), inside the
//! transaction of whatever changed the directory, so it cannot miss a write path.
//!
//! Positions: on SQLite one sequence for all tenants (one writer: positions commit in the
//! order they are taken). On PostgreSQL each tenant has its own sequence, a row
//! (`feed_heads`) its trigger updates in the writing transaction: the row lock orders the
//! tenant's writers, so a position commits only after every lower one has, and a follower's
//! cursor can never pass a change still to commit.

use super::filter_sql::directory_sql;
use crate::model::{Change, ChangeKind, DirGroup, DirPage, DirRef, DirUser, Feed, Timestamp};
use crate::scim::list::ListQuery;
use crate::scim::schema::ResourceKind;
use crate::store::sql::{Dialect, Row, Sql, params_of};
use crate::store::{StoreError, StoreResult};

/// The newest change position handed out to the tenant (0 before the first change). It
/// survives a purge (AUTOINCREMENT's `sqlite_sequence`; the head row).
fn head(c: &dyn Sql, tenant_id: i64) -> StoreResult<i64> {
    let found = match c.dialect() {
        Dialect::Sqlite => c.query_opt("SELECT seq FROM sqlite_sequence WHERE name = 'changes'", &[])?,
        Dialect::Postgres => c.query_opt("SELECT seq FROM feed_heads WHERE tenant_id = ?1", &[&tenant_id])?,
    };
    Ok(found.map(|r| r.get(0)).transpose()?.unwrap_or(0))
}

/// The tenant's changes up to this position were purged.
fn floor(c: &dyn Sql, tenant_id: i64) -> StoreResult<i64> {
    let found = match c.dialect() {
        Dialect::Sqlite => c.query_opt("SELECT value FROM counters WHERE name = 'changes_floor'", &[])?,
        Dialect::Postgres => c.query_opt("SELECT floor FROM feed_heads WHERE tenant_id = ?1", &[&tenant_id])?,
    };
    Ok(found.map(|r| r.get(0)).transpose()?.unwrap_or(0))
}

const USER_COLUMNS: &str = "r.id, r.uid, r.user_name, r.active, r.attributes, r.created, r.modified";

fn user_row(r: &Row) -> StoreResult<(i64, DirUser)> {
    Ok((
        r.get(0)?,
        DirUser {
            id: r.get::<Option<String>>(1)?.unwrap_or_default(),
            user_name: r.get(2)?,
            active: r.get(3)?,
            attributes: r.json(4)?,
            groups: Vec::new(),
            created: r.get(5)?,
            modified: r.get(6)?,
        },
    ))
}

fn dir_ref(r: &Row) -> StoreResult<DirRef> {
    Ok(DirRef { id: r.get::<Option<String>>(0)?.unwrap_or_default(), name: r.get(1)? })
}

fn groups_of(c: &dyn Sql, entry_id: i64) -> StoreResult<Vec<DirRef>> {
    c.query(
        "SELECT DISTINCT g.uid, g.name, g.name_fold FROM app_memberships m JOIN app_groups g ON g.id = m.group_id WHERE m.entry_id = ?1 ORDER BY g.name_fold",
        &[&entry_id],
    )?
    .iter()
    .map(dir_ref)
    .collect()
}

fn members_of(c: &dyn Sql, group_id: i64) -> StoreResult<Vec<DirRef>> {
    c.query(
        "SELECT DISTINCT e.uid, e.user_name, e.user_name_fold FROM app_memberships m JOIN entries e ON e.id = m.entry_id
         WHERE m.group_id = ?1 AND e.deleted_at IS NULL ORDER BY e.user_name_fold",
        &[&group_id],
    )?
    .iter()
    .map(dir_ref)
    .collect()
}

pub fn users(c: &dyn Sql, tenant_id: i64, q: &ListQuery) -> StoreResult<DirPage<DirUser>> {
    let cursor = head(c, tenant_id)?;
    let sql = directory_sql(ResourceKind::User, tenant_id, q, c.dialect());
    let (where_, order) = (&sql.where_, &sql.order);
    let params = params_of(&sql.params);
    let total: i64 = c.query_one(&format!("SELECT count(*) FROM entries r WHERE {where_}"), &params)?.get(0)?;
    let mut items = Vec::new();
    if q.count > 0 && (q.start_index as i64) <= total {
        let page = format!("SELECT {USER_COLUMNS} FROM entries r WHERE {where_} ORDER BY {order} LIMIT {} OFFSET {}", q.count, q.start_index - 1);
        let with_groups = q.projection.wants("groups");
        for row in c.query(&page, &params)? {
            let (id, mut u) = user_row(&row)?;
            if with_groups {
                u.groups = groups_of(c, id)?;
            }
            items.push(u);
        }
    }
    Ok(DirPage { total: total as usize, items, cursor })
}

pub fn user(c: &dyn Sql, tenant_id: i64, uid: &str) -> StoreResult<Option<DirUser>> {
    let found = c.query_opt(&format!("SELECT {USER_COLUMNS} FROM entries r WHERE r.tenant_id = ?1 AND r.uid = ?2 AND r.deleted_at IS NULL"), &[&tenant_id, &uid])?;
    found
        .map(|row| {
            let (id, mut u) = user_row(&row)?;
            u.groups = groups_of(c, id)?;
            Ok(u)
        })
        .transpose()
}

fn group_row(r: &Row) -> StoreResult<(i64, DirGroup)> {
    Ok((r.get(0)?, DirGroup { id: r.get::<Option<String>>(1)?.unwrap_or_default(), name: r.get(2)?, created: r.get(3)?, members: None }))
}

pub fn groups(c: &dyn Sql, tenant_id: i64, q: &ListQuery) -> StoreResult<DirPage<DirGroup>> {
    let cursor = head(c, tenant_id)?;
    let sql = directory_sql(ResourceKind::Group, tenant_id, q, c.dialect());
    let (where_, order) = (&sql.where_, &sql.order);
    let params = params_of(&sql.params);
    let total: i64 = c.query_one(&format!("SELECT count(*) FROM app_groups r WHERE {where_}"), &params)?.get(0)?;
    let mut items = Vec::new();
    if q.count > 0 && (q.start_index as i64) <= total {
        let page = format!("SELECT r.id, r.uid, r.name, r.created FROM app_groups r WHERE {where_} ORDER BY {order} LIMIT {} OFFSET {}", q.count, q.start_index - 1);
        let with_members = q.projection.wants("members");
        for row in c.query(&page, &params)? {
            let (id, mut g) = group_row(&row)?;
            if with_members {
                g.members = Some(members_of(c, id)?);
            }
            items.push(g);
        }
    }
    Ok(DirPage { total: total as usize, items, cursor })
}

pub fn group(c: &dyn Sql, tenant_id: i64, uid: &str, with_members: bool) -> StoreResult<Option<DirGroup>> {
    let found = c.query_opt("SELECT r.id, r.uid, r.name, r.created FROM app_groups r WHERE r.tenant_id = ?1 AND r.uid = ?2", &[&tenant_id, &uid])?;
    found
        .map(|row| {
            let (id, mut g) = group_row(&row)?;
            if with_members {
                g.members = Some(members_of(c, id)?);
            }
            Ok(g)
        })
        .transpose()
}

fn change(r: &Row) -> StoreResult<Change> {
    let kind: String = r.get(2)?;
    let kind = ChangeKind::parse(&kind).ok_or_else(|| StoreError::backend(format!("a change of an unknown kind '{kind}'")))?;
    let user = match (r.get::<Option<String>>(3)?, r.get::<Option<String>>(4)?) {
        (Some(id), Some(name)) => Some(DirRef { id, name }),
        _ => None,
    };
    let state = match (r.get::<Option<bool>>(5)?, r.get::<Option<String>>(6)?) {
        (Some(active), Some(_)) if kind != ChangeKind::UserDeleted => Some((active, r.json(6)?)),
        _ => None,
    };
    let group = match (r.get::<Option<String>>(7)?, r.get::<Option<String>>(8)?) {
        (Some(id), Some(name)) => Some(DirRef { id, name }),
        _ => None,
    };
    Ok(Change { seq: r.get(0)?, at: r.get(1)?, kind, user, state, group })
}

pub fn changes(c: &dyn Sql, tenant_id: i64, since: i64, limit: usize) -> StoreResult<Feed> {
    let oldest = floor(c, tenant_id)?;
    if since < oldest {
        return Ok(Feed::Expired { oldest });
    }
    let rows = c.query(
        "SELECT seq, at, kind, entry_uid, user_name, active, attributes, group_uid, group_name FROM changes
         WHERE tenant_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        &[&tenant_id, &since, &(limit as i64 + 1)],
    )?;
    let mut changes: Vec<Change> = rows.iter().map(change).collect::<StoreResult<_>>()?;
    let more = changes.len() > limit;
    changes.truncate(limit);
    let next = changes.last().map_or(since, |ch| ch.seq);
    Ok(Feed::Changes { changes, next, more })
}

/// The tenant's newest position, for a reader that wants to follow from now on.
pub fn cursor(c: &dyn Sql, tenant_id: i64) -> StoreResult<i64> {
    head(c, tenant_id)
}

/// Drops changes recorded before `before` and remembers how far the feed was cut, so a
/// cursor from before the cut is told so instead of silently missing changes.
///
/// Positions are handed out in time order (one writer per sequence, stamped at insert), so
/// the cut is found by walking from the oldest row to the first one recorded at or after
/// `before`: it reads what it is about to delete, and needs no index on the time (which
/// would cost every directory write). A clock stepped back can leave a few rows past
/// retention until a later purge; it never drops one inside it.
pub fn purge_changes(t: &dyn Sql, before: &Timestamp) -> StoreResult<usize> {
    match t.dialect() {
        Dialect::Sqlite => purge_sequence(t, None, before),
        Dialect::Postgres => {
            let mut n = 0;
            for r in t.query("SELECT tenant_id FROM feed_heads ORDER BY tenant_id", &[])? {
                n += purge_sequence(t, Some(r.get(0)?), before)?;
            }
            Ok(n)
        }
    }
}

/// Purges one sequence: all of SQLite's, or one tenant's on PostgreSQL.
fn purge_sequence(t: &dyn Sql, tenant: Option<i64>, before: &Timestamp) -> StoreResult<usize> {
    // `?2 IS NULL OR tenant_id = ?2`: the one statement serves both.
    let first_kept: Option<i64> = t
        .query_opt("SELECT seq FROM changes WHERE at >= ?1 AND (CAST(?2 AS BIGINT) IS NULL OR tenant_id = ?2) ORDER BY seq LIMIT 1", &[before, &tenant])?
        .map(|r| r.get(0))
        .transpose()?;
    let through: Option<i64> = match first_kept {
        Some(seq) => t.query_one("SELECT max(seq) FROM changes WHERE seq < ?1 AND (CAST(?2 AS BIGINT) IS NULL OR tenant_id = ?2)", &[&seq, &tenant])?.get(0)?,
        None => t.query_one("SELECT max(seq) FROM changes WHERE (CAST(?1 AS BIGINT) IS NULL OR tenant_id = ?1)", &[&tenant])?.get(0)?,
    };
    let Some(through) = through else { return Ok(0) };
    let n = t.execute("DELETE FROM changes WHERE seq <= ?1 AND (CAST(?2 AS BIGINT) IS NULL OR tenant_id = ?2)", &[&through, &tenant])?;
    match tenant {
        None => t.execute(
            "INSERT INTO counters (name, value) VALUES ('changes_floor', ?1) ON CONFLICT (name) DO UPDATE SET value = CASE WHEN excluded.value > counters.value THEN excluded.value ELSE counters.value END",
            &[&through],
        )?,
        Some(tenant) => t.execute("UPDATE feed_heads SET floor = CASE WHEN ?2 > floor THEN ?2 ELSE floor END WHERE tenant_id = ?1", &[&tenant, &through])?,
    };
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use rusqlite::Connection;

    /// The feed triggers on a bare schema: every directory write path ends up in `changes`
    /// through them, so their rules are checked here, statement by statement.
    #[test]
    fn triggers_record_what_the_application_can_see() {
        let mut c = Connection::open_in_memory().unwrap();
        c.execute_batch("PRAGMA foreign_keys=ON").unwrap();
        crate::store::sqlite::migrations::migrate(&mut c).unwrap();
        let kinds = |c: &rusqlite::Connection, since: i64| -> Vec<String> {
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
        let mark = head(&c, 1).unwrap();
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
        let mark = head(&c, 1).unwrap();
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
        crate::store::sqlite::migrations::migrate(&mut c).unwrap();
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
        crate::store::sqlite::migrations::migrate(&mut c).unwrap();
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
