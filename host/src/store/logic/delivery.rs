//! Delivery targets, what they were sent (the map of directory ids to theirs), and the events
//! they did not take.

use serde_json::Value;

use crate::model::{DeadLetter, DeadState, Mapped, NewDeadLetter, NewTarget, Origin, Progress, Target, TargetChange, TargetKind, Timestamp};
use crate::store::sql::{Row, Sql};
use crate::store::{StoreError, StoreResult};

const COLUMNS: &str = "d.id, d.tenant_id, t.name, d.name, d.kind, d.url, d.settings, d.paused, d.cursor, d.needs_sync, d.created, d.last_success, d.last_error_at, d.last_error, d.delivered, d.parked, d.shape_version";

fn row(r: &Row) -> StoreResult<Target> {
    let kind: String = r.get(4)?;
    let error = match (r.get::<Option<Timestamp>>(12)?, r.get::<Option<String>>(13)?) {
        (Some(at), Some(e)) => Some((at, e)),
        _ => None,
    };
    Ok(Target {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        tenant: r.get(2)?,
        name: r.get(3)?,
        kind: TargetKind::parse(&kind).ok_or_else(|| StoreError::backend(format!("unknown target kind {kind:?}")))?,
        url: r.get(5)?,
        settings: r.json(6)?,
        paused: r.get(7)?,
        cursor: r.get(8)?,
        needs_sync: r.get(9)?,
        created: r.get(10)?,
        last_success: r.get(11)?,
        last_error: error,
        delivered: r.get(14)?,
        parked: r.get(15)?,
        shape_version: r.get(16)?,
    })
}

pub(super) fn bump_epoch(t: &dyn Sql) -> StoreResult<()> {
    t.execute("UPDATE counters SET value = value + 1 WHERE name = 'delivery_epoch'", &[])?;
    Ok(())
}

pub(super) fn text(v: &impl serde::Serialize) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(Box::new(e)))
}

/// Adds a target; it starts at the feed's head, with a reconciliation due.
pub fn add(t: &dyn Sql, tenant_id: i64, new: &NewTarget) -> StoreResult<Target> {
    // The feed's head: a new target starts with what comes next.
    let head = super::directory::cursor(t, tenant_id)?;
    let id: i64 = t
        .query_one(
            "INSERT INTO delivery_targets (tenant_id, name, kind, url, settings, credential, cursor, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id",
            &[&tenant_id, &new.name, &new.kind.as_str(), &new.url, &text(&new.settings)?, &new.credential, &head, &Timestamp::now()],
        )
        .map_err(|e| match e {
            StoreError::Conflict(_) => StoreError::Conflict(format!("the tenant already has a delivery target named '{}'", new.name)),
            other => other,
        })?
        .get(0)?;
    bump_epoch(t)?;
    get(t, id)?.ok_or(StoreError::NotFound)
}

/// A target by id.
pub fn get(c: &dyn Sql, id: i64) -> StoreResult<Option<Target>> {
    c.query_opt(&format!("SELECT {COLUMNS} FROM delivery_targets d JOIN tenants t ON t.id = d.tenant_id WHERE d.id = ?1"), &[&id])?.as_ref().map(row).transpose()
}

/// The targets of one tenant, or of all, by tenant and name.
pub fn list(c: &dyn Sql, tenant_id: Option<i64>) -> StoreResult<Vec<Target>> {
    let sql = format!("SELECT {COLUMNS} FROM delivery_targets d JOIN tenants t ON t.id = d.tenant_id WHERE CAST(?1 AS BIGINT) IS NULL OR d.tenant_id = ?1 ORDER BY t.name, d.name");
    c.query(&sql, &[&tenant_id])?.iter().map(row).collect()
}

/// A target's sealed credential.
pub fn credential(c: &dyn Sql, id: i64) -> StoreResult<Vec<u8>> {
    c.query_one("SELECT credential FROM delivery_targets WHERE id = ?1", &[&id])?.get(0)
}

/// Replaces a target's sealed credential.
pub fn set_credential(t: &dyn Sql, id: i64, credential: &[u8]) -> StoreResult<()> {
    if t.execute("UPDATE delivery_targets SET credential = ?2 WHERE id = ?1", &[&id, &credential])? == 0 {
        return Err(StoreError::NotFound);
    }
    bump_epoch(t)
}

/// Pauses, resumes, asks for or marks done a reconciliation, changes settings.
pub fn update(t: &dyn Sql, id: i64, change: &TargetChange) -> StoreResult<Target> {
    let settings = change.settings.as_ref().map(text).transpose()?;
    let n = t.execute(
        "UPDATE delivery_targets SET paused = COALESCE(?2, paused), needs_sync = COALESCE(?3, needs_sync),
         cursor = CASE WHEN CAST(?4 AS BIGINT) IS NOT NULL AND ?4 > cursor THEN ?4 ELSE cursor END, settings = COALESCE(?5, settings) WHERE id = ?1",
        &[&id, &change.paused, &change.needs_sync, &change.synced_at, &settings],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    // A worker marking its own reconciliation done is no news to the workers.
    if change.paused.is_some() || change.settings.is_some() || change.needs_sync == Some(true) {
        bump_epoch(t)?;
    }
    get(t, id)?.ok_or(StoreError::NotFound)
}

/// Removes a target, its map and its dead letters.
pub fn remove(t: &dyn Sql, id: i64) -> StoreResult<()> {
    if t.execute("DELETE FROM delivery_targets WHERE id = ?1", &[&id])? == 0 {
        return Err(StoreError::NotFound);
    }
    bump_epoch(t)
}

/// A counter every change to targets moves: workers reload when it does.
pub fn epoch(c: &dyn Sql) -> StoreResult<i64> {
    Ok(c.query_opt("SELECT value FROM counters WHERE name = 'delivery_epoch'", &[])?.map(|r| r.get(0)).transpose()?.unwrap_or(0))
}

/// Records a worker's progress: the cursor (never backwards), counts, last success or error.
pub fn progress(t: &dyn Sql, id: i64, p: &Progress) -> StoreResult<()> {
    let now = Timestamp::now();
    let success = (p.delivered > 0 && p.error.is_none()).then(|| now.clone());
    t.execute(
        "UPDATE delivery_targets SET cursor = CASE WHEN ?2 > cursor THEN ?2 ELSE cursor END, delivered = delivered + ?3, last_success = COALESCE(?4, last_success),
         last_error = CASE WHEN CAST(?5 AS TEXT) IS NOT NULL THEN ?5 WHEN CAST(?4 AS TEXT) IS NOT NULL THEN NULL ELSE last_error END,
         last_error_at = CASE WHEN ?5 IS NOT NULL THEN ?6 WHEN ?4 IS NOT NULL THEN NULL ELSE last_error_at END WHERE id = ?1",
        &[&id, &p.cursor, &p.delivered, &success, &p.error, &now],
    )?;
    Ok(())
}

fn mapped_row(resource: &'static str) -> impl Fn(&Row) -> StoreResult<Mapped> {
    move |r| {
        let origin: String = r.get(2)?;
        Ok(Mapped {
            resource,
            uid: r.get(0)?,
            remote_id: r.get(1)?,
            origin: Origin::parse(&origin).unwrap_or(Origin::Adopted),
            sent: r.json(3)?,
        })
    }
}

fn resource_name(resource: &str) -> &'static str {
    if resource == "Group" { "Group" } else { "User" }
}

/// What a target's copy of one directory resource is.
pub fn mapped(c: &dyn Sql, target_id: i64, resource: &str, uid: &str) -> StoreResult<Option<Mapped>> {
    let res = resource_name(resource);
    c.query_opt("SELECT uid, remote_id, origin, sent FROM delivery_map WHERE target_id = ?1 AND resource = ?2 AND uid = ?3", &[&target_id, &res, &uid])?
        .as_ref()
        .map(mapped_row(res))
        .transpose()
}

/// Every resource of one type a target has from Mapwright.
pub fn all_mapped(c: &dyn Sql, target_id: i64, resource: &str) -> StoreResult<Vec<Mapped>> {
    let res = resource_name(resource);
    c.query("SELECT uid, remote_id, origin, sent FROM delivery_map WHERE target_id = ?1 AND resource = ?2 ORDER BY uid", &[&target_id, &res])?
        .iter()
        .map(mapped_row(res))
        .collect()
}

/// Records (or updates) what a target has of a directory resource.
pub fn map(t: &dyn Sql, target_id: i64, m: &Mapped) -> StoreResult<()> {
    t.execute(
        "INSERT INTO delivery_map (target_id, resource, uid, remote_id, origin, sent) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (target_id, resource, uid) DO UPDATE SET remote_id = excluded.remote_id, origin = excluded.origin, sent = excluded.sent",
        &[&target_id, &m.resource, &m.uid, &m.remote_id, &m.origin.as_str(), &Value::to_string(&m.sent)],
    )?;
    Ok(())
}

/// Forgets a target's copy of a directory resource.
pub fn unmap(t: &dyn Sql, target_id: i64, resource: &str, uid: &str) -> StoreResult<()> {
    t.execute("DELETE FROM delivery_map WHERE target_id = ?1 AND resource = ?2 AND uid = ?3", &[&target_id, &resource_name(resource), &uid])?;
    Ok(())
}

/// Parks (or holds back) events, and moves the cursor past them, in one transaction: an event
/// is either delivered, or in the dead letters, never neither.
pub fn park(t: &dyn Sql, target_id: i64, letters: &[NewDeadLetter], cursor: i64) -> StoreResult<()> {
    let now = Timestamp::now();
    let mut parked = 0;
    for l in letters {
        t.execute(
            "INSERT INTO delivery_dead (target_id, seq, resource, event, state, attempts, answer, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            &[&target_id, &l.seq, &l.resource, &l.event.to_string(), &l.state.as_str(), &l.attempts, &l.answer, &now],
        )?;
        parked += i64::from(l.state == DeadState::Parked);
    }
    t.execute("UPDATE delivery_targets SET cursor = CASE WHEN ?2 > cursor THEN ?2 ELSE cursor END, parked = parked + ?3 WHERE id = ?1", &[&target_id, &cursor, &parked])?;
    Ok(())
}

const DEAD_COLUMNS: &str = "id, target_id, seq, resource, event, state, attempts, answer, at, decided_by, decided_at";

fn dead_row(r: &Row) -> StoreResult<DeadLetter> {
    let state: String = r.get(5)?;
    let decided = match (r.get::<Option<String>>(9)?, r.get::<Option<Timestamp>>(10)?) {
        (Some(by), Some(at)) => Some((by, at)),
        _ => None,
    };
    Ok(DeadLetter {
        id: r.get(0)?,
        target_id: r.get(1)?,
        seq: r.get(2)?,
        resource: r.get(3)?,
        event: r.json(4)?,
        state: DeadState::parse(&state).ok_or_else(|| StoreError::backend(format!("unknown dead-letter state {state:?}")))?,
        attempts: r.get(6)?,
        answer: r.get(7)?,
        at: r.get(8)?,
        decided,
    })
}

/// A target's dead letters, oldest first: the open ones (parked, held, retrying), or all.
pub fn dead_letters(c: &dyn Sql, target_id: i64, open_only: bool) -> StoreResult<Vec<DeadLetter>> {
    let sql = if open_only {
        format!("SELECT {DEAD_COLUMNS} FROM delivery_dead WHERE target_id = ?1 AND state IN ('parked', 'held', 'retry') ORDER BY id")
    } else {
        format!("SELECT {DEAD_COLUMNS} FROM delivery_dead WHERE target_id = ?1 ORDER BY id")
    };
    c.query(&sql, &[&target_id])?.iter().map(dead_row).collect()
}

/// An admin's decision on parked events (`ids`, or every parked one): another try, or give
/// them up. Returns the letters it changed.
pub fn decide(t: &dyn Sql, target_id: i64, ids: Option<&[i64]>, decision: DeadState, by: &str) -> StoreResult<Vec<DeadLetter>> {
    if !matches!(decision, DeadState::Retry | DeadState::Skipped) {
        return Err(StoreError::InvalidReference("a dead letter is retried or skipped".into()));
    }
    let parked: Vec<DeadLetter> = dead_letters(t, target_id, true)?.into_iter().filter(|d| d.state == DeadState::Parked).collect();
    let chosen: Vec<DeadLetter> = match ids {
        None => parked,
        Some(ids) => {
            if let Some(missing) = ids.iter().find(|id| !parked.iter().any(|d| d.id == **id)) {
                return Err(StoreError::InvalidReference(format!("no parked event {missing} for this target (see `target show`)")));
            }
            parked.into_iter().filter(|d| ids.contains(&d.id)).collect()
        }
    };
    let now = Timestamp::now();
    for d in &chosen {
        t.execute("UPDATE delivery_dead SET state = ?2, decided_by = ?3, decided_at = ?4 WHERE id = ?1", &[&d.id, &decision.as_str(), &by, &now])?;
    }
    bump_epoch(t)?;
    chosen.iter().map(|d| Ok(DeadLetter { state: decision, decided: Some((by.to_string(), now.clone())), ..d.clone() })).collect()
}

/// A worker's outcome for a dead letter it tried again (or released after a skip).
pub fn settle(t: &dyn Sql, id: i64, state: DeadState, attempts: u32, answer: Option<&str>) -> StoreResult<()> {
    t.execute("UPDATE delivery_dead SET state = ?2, attempts = ?3, answer = COALESCE(?4, answer) WHERE id = ?1", &[&id, &state.as_str(), &attempts, &answer])?;
    Ok(())
}
