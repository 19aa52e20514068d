//! Re-apply: batches of users and groups re-mapped by the current rules, each item in its own
//! savepoint, progress committed with the batch; previews run the same code and roll back.

use serde_json::Value;

use super::{groups, users};
use crate::model::{IdpConnection, OutcomeStatus, ReapplyGroup, ReapplyJob, ReapplyMode, ReapplyOutcome, ReapplyPhase, ReapplyUser, Timestamp};
use crate::store::sql::{Row, Sql};
use crate::store::{StoreError, StoreResult};

fn outcome(kind: &str, id: &str, r: StoreResult<(String, Value)>) -> ReapplyOutcome {
    let (name, status, changes, error) = match r {
        Ok((name, changes)) => {
            let status = if changes.as_object().is_some_and(|o| !o.is_empty()) { OutcomeStatus::Changed } else { OutcomeStatus::Unchanged };
            (name, status, changes, None)
        }
        Err(StoreError::VersionMismatch) => (String::new(), OutcomeStatus::Skipped, Value::Null, Some("the IdP changed it meanwhile; its write applied the current rules".into())),
        Err(e) => (String::new(), OutcomeStatus::Failed, Value::Null, Some(e.to_string())),
    };
    ReapplyOutcome { resource_type: kind.into(), id: id.into(), name, status, changes, error }
}

/// Runs `f` inside its own savepoint: a failing item leaves nothing behind.
fn isolated<T>(t: &dyn Sql, f: impl FnOnce() -> StoreResult<T>) -> StoreResult<StoreResult<T>> {
    t.execute("SAVEPOINT item", &[])?;
    let r = f();
    if r.is_err() {
        t.execute("ROLLBACK TO SAVEPOINT item", &[])?;
    }
    t.execute("RELEASE SAVEPOINT item", &[])?;
    Ok(r)
}

fn progress(t: &dyn Sql, mode: ReapplyMode, out: &[ReapplyOutcome]) -> StoreResult<()> {
    let ReapplyMode::Job { id, cursor, refused } = mode else { return Ok(()) };
    let count = |s: OutcomeStatus| out.iter().filter(|o| o.status == s).count() as i64;
    let n = t.execute(
        "UPDATE reapply_jobs SET cursor = ?2, seen = seen + ?3, changed = changed + ?4, failed = failed + ?5, updated = ?6
         WHERE id = ?1 AND finished IS NULL AND cursor < ?2",
        &[&id, &cursor, &(out.len() as i64 + refused), &count(OutcomeStatus::Changed), &(count(OutcomeStatus::Failed) + refused), &Timestamp::now()],
    )?;
    if n == 0 {
        // Another process resumed the job and went past this batch: this one must not count.
        return Err(StoreError::Conflict("the re-apply job moved on without this batch (another process is running it)".into()));
    }
    Ok(())
}

/// Re-applies a batch of users, each in its own savepoint.
pub fn users(t: &dyn Sql, idp: &IdpConnection, items: &[ReapplyUser], mode: ReapplyMode) -> StoreResult<Vec<ReapplyOutcome>> {
    let mut out = Vec::with_capacity(items.len());
    for it in items {
        let r = isolated(t, || users::reapply(t, idp, &it.id, it.version, &it.entry, &it.matching, &it.audit))?;
        out.push(outcome("User", &it.id, r));
    }
    progress(t, mode, &out)?;
    Ok(out)
}

/// Re-applies a batch of groups, each in its own savepoint.
pub fn groups(t: &dyn Sql, idp: &IdpConnection, items: &[ReapplyGroup], mode: ReapplyMode) -> StoreResult<Vec<ReapplyOutcome>> {
    let mut out = Vec::with_capacity(items.len());
    for it in items {
        let r = isolated(t, || groups::reapply(t, idp, &it.id, &it.targets, it.removal_budget, &it.audit))?;
        out.push(outcome("Group", &it.id, r));
    }
    progress(t, mode, &out)?;
    Ok(out)
}

const COLUMNS: &str = "id, idp_id, chain_version, phase, cursor, seen, changed, failed, total, author, started, updated, finished, error";

fn job_row(r: &Row) -> StoreResult<ReapplyJob> {
    let phase: String = r.get(3)?;
    Ok(ReapplyJob {
        id: r.get(0)?,
        idp_id: r.get(1)?,
        chain_version: r.get(2)?,
        phase: ReapplyPhase::parse(&phase).ok_or_else(|| StoreError::backend(format!("unknown re-apply phase {phase:?}")))?,
        cursor: r.get(4)?,
        seen: r.get(5)?,
        changed: r.get(6)?,
        failed: r.get(7)?,
        total: r.get(8)?,
        author: r.get(9)?,
        started: r.get(10)?,
        updated: r.get(11)?,
        finished: r.get(12)?,
        error: r.get(13)?,
    })
}

/// Starts a job over a connection (refused while another runs).
pub fn start(t: &dyn Sql, idp: &IdpConnection, chain_version: Option<i64>, author: &str) -> StoreResult<ReapplyJob> {
    let total: i64 = t.query_one("SELECT (SELECT count(*) FROM users WHERE idp_id = ?1) + (SELECT count(*) FROM groups WHERE idp_id = ?1)", &[&idp.id])?.get(0)?;
    let ts = Timestamp::now();
    let id: i64 = t
        .query_one(
            "INSERT INTO reapply_jobs (idp_id, chain_version, phase, total, author, started, updated) VALUES (?1, ?2, 'users', ?3, ?4, ?5, ?5) RETURNING id",
            &[&idp.id, &chain_version, &total, &author, &ts],
        )
        .map_err(|e| match e {
            StoreError::Conflict(_) => StoreError::Conflict(format!("a re-apply of {}/{} is already running (resume it, or wait)", idp.tenant, idp.name)),
            other => other,
        })?
        .get(0)?;
    job_row(&t.query_one(&format!("SELECT {COLUMNS} FROM reapply_jobs WHERE id = ?1"), &[&id])?)
}

/// The connection's latest job.
pub fn latest(c: &dyn Sql, idp_id: i64) -> StoreResult<Option<ReapplyJob>> {
    c.query_opt(&format!("SELECT {COLUMNS} FROM reapply_jobs WHERE idp_id = ?1 ORDER BY id DESC LIMIT 1"), &[&idp_id])?.as_ref().map(job_row).transpose()
}

/// Moves a job to its next phase.
pub fn advance(t: &dyn Sql, job: i64, phase: ReapplyPhase, error: Option<&str>) -> StoreResult<ReapplyJob> {
    let now = Timestamp::now();
    let finished = phase.is_final().then(|| now.clone());
    t.execute(
        "UPDATE reapply_jobs SET phase = ?2, cursor = 0, error = ?3, finished = ?4, updated = ?5 WHERE id = ?1 AND finished IS NULL",
        &[&job, &phase.as_str(), &error, &finished, &now],
    )?;
    job_row(&t.query_one(&format!("SELECT {COLUMNS} FROM reapply_jobs WHERE id = ?1"), &[&job])?)
}
