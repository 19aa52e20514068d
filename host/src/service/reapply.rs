//! Re-apply and preview: one pass of a connection's rules over everything the IdP has
//! provisioned through it (the stored IdP view), in batches.
//!
//! Both run the same code: map each resource with the pipeline (off the writer thread),
//! then write the batch in one store transaction. A preview's transaction is rolled back, so
//! it reports exactly what a re-apply with the same rules would change, and writes nothing.
//! A re-apply commits each batch with the job's progress: killed half way, it resumes after
//! the last committed batch. Batches are short and interleave with provisioning traffic.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::{Service, store_error};
use crate::mapping::{GroupInput, MapContext, MappingPipeline, Operation, Trigger};
use crate::model::{
    AuditInfo, Decision, DeprovisionAction, IdpConnection, Lifecycle, OutcomeStatus, ReapplyGroup, ReapplyJob, ReapplyMode, ReapplyOutcome, ReapplyPhase, ReapplyUser, StoredGroup, StoredUser,
};
use crate::scim::error::{ScimError, ScimResult};
use crate::scim::schema::ResourceKind;
use crate::store::Store;

/// Resources per batch: one short write transaction each.
pub const DEFAULT_BATCH: usize = 200;

/// Counts of a pass, by kind of change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Users gone through.
    pub users: usize,
    /// Groups gone through.
    pub groups: usize,
    /// Resources changed.
    pub changed: usize,
    /// Resources unchanged.
    pub unchanged: usize,
    /// Resources the IdP changed meanwhile.
    pub skipped: usize,
    /// Resources refused or failed.
    pub failed: usize,
    /// Usernames changed.
    pub usernames_changed: usize,
    /// Username changes refused because another entry has the name.
    pub collisions: usize,
    /// Memberships added.
    pub memberships_added: usize,
    /// Memberships removed.
    pub memberships_removed: usize,
    /// Entries whose attributes changed.
    pub attributes_changed: usize,
    /// Entries deprovisioned.
    pub deprovisioned: usize,
    /// Groups pointed at other app groups.
    pub groups_remapped: usize,
}

impl Summary {
    fn add(&mut self, o: &ReapplyOutcome) {
        match o.resource_type.as_str() {
            "User" => self.users += 1,
            _ => self.groups += 1,
        }
        match o.status {
            OutcomeStatus::Changed => self.changed += 1,
            OutcomeStatus::Unchanged => self.unchanged += 1,
            OutcomeStatus::Skipped => self.skipped += 1,
            OutcomeStatus::Failed => {
                self.failed += 1;
                if o.error.as_deref().is_some_and(|e| e.contains("already has a user named")) {
                    self.collisions += 1;
                }
            }
        }
        let c = &o.changes;
        if c.get("userName").is_some() {
            self.usernames_changed += 1;
        }
        if let Some(g) = c.get("groups") {
            self.memberships_added += g["added"].as_array().map_or(0, Vec::len);
            self.memberships_removed += g["removed"].as_array().map_or(0, Vec::len);
        }
        if c.get("attributes").is_some() {
            self.attributes_changed += 1;
        }
        if c.get("active").is_some_and(|a| a[1] == Value::Bool(false)) || c.get("deleted").is_some_and(|d| d[1] == Value::Bool(true)) {
            self.deprovisioned += 1;
        }
        if c.get("targets").is_some() {
            self.groups_remapped += 1;
        }
    }
}

/// What a pass did (re-apply) or would do (preview): counts, and every resource that changes
/// or fails, in storage order.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// The counts.
    pub summary: Summary,
    /// Every resource that changes or fails.
    pub items: Vec<ReapplyOutcome>,
}

impl Report {
    fn absorb(&mut self, outcomes: Vec<ReapplyOutcome>) {
        for o in outcomes {
            self.summary.add(&o);
            if o.status != OutcomeStatus::Unchanged {
                self.items.push(o);
            }
        }
    }
}

/// One user as a candidate chain would map it now (`Service::try_users`).
#[derive(Debug, Clone, Serialize)]
pub struct TriedUser {
    /// Its id, current name, status (changed, unchanged, failed), changes and error.
    #[serde(flatten)]
    pub outcome: ReapplyOutcome,
    /// The userName the rules give it (none when they failed).
    #[serde(rename = "userName")]
    pub user_name: Option<String>,
    /// Whether its entry would be active.
    pub active: Option<bool>,
    /// The groups the rules grant it.
    pub groups: Vec<String>,
    /// Its attributes as mapped.
    pub attributes: Value,
    /// Every decision behind it, in chain order.
    pub decisions: Vec<Decision>,
}

/// How a pass runs.
#[derive(Debug, Clone)]
pub struct PassOptions {
    /// Resources per batch.
    pub batch: usize,
    /// A pause between batches, to leave the writer to provisioning traffic.
    pub pause: Duration,
    /// `admin:<name>` or `system:schedule`: recorded as the actor of every change.
    pub actor: String,
    /// Whether the connection's guard applies (re-apply); a preview writes nothing and
    /// leaves the guard's window alone.
    pub guarded: bool,
}

impl Default for PassOptions {
    fn default() -> Self {
        PassOptions { batch: DEFAULT_BATCH, pause: Duration::ZERO, actor: "admin".into(), guarded: true }
    }
}

fn refused(kind: &str, id: &str, name: &str, why: String) -> ReapplyOutcome {
    ReapplyOutcome { resource_type: kind.into(), id: id.into(), name: name.into(), status: OutcomeStatus::Failed, changes: Value::Null, error: Some(why) }
}

impl<S: Store> Service<S> {
    fn reapply_audit(pipeline: &dyn MappingPipeline, opts: &PassOptions, operation: &str, request_id: &str, decisions: Vec<Decision>) -> AuditInfo {
        AuditInfo { actor: opts.actor.clone(), request_id: request_id.to_string(), operation: operation.into(), chain_version: pipeline.version(), decisions }
    }

    /// Maps a batch of users as a no-op update would now (scope included): returns the
    /// writes, and the users the rules refused. `operation` names them in the audit.
    pub(super) async fn map_users(
        &self,
        idp: &IdpConnection,
        pipeline: &dyn MappingPipeline,
        users: &[(i64, StoredUser)],
        opts: &PassOptions,
        operation: &str,
        request_id: &str,
    ) -> ScimResult<(Vec<ReapplyUser>, Vec<ReapplyOutcome>)> {
        let (mut writes, mut refusals) = (Vec::new(), Vec::new());
        for (pk, u) in users {
            let id = &u.meta.id;
            let inactive = u.body.get("active").and_then(Value::as_bool) == Some(false);
            // Read when the rules look at it, or when deprovisioning may be decided again.
            let current = match pipeline.uses_current() || inactive || pipeline.has_scope_rules() {
                true => self.store.entry_of_user(idp, id).await.map_err(|e| store_error(ResourceKind::User, id, e))?,
                false => None,
            };
            let name = current.as_ref().map(|e| e.user_name.clone()).unwrap_or_default();
            let current_json = current.as_ref().map(|e| e.to_json());
            let ctx = MapContext { idp, operation: Operation::Reapply, current: current_json.as_ref() };
            let mut why = Vec::new();
            let mut entry = match pipeline.map_user(ctx, &u.body).await {
                Ok((entry, decisions)) => {
                    super::keep_decisions("user", decisions, &mut why);
                    entry
                }
                Err(e) => {
                    refusals.push(refused("User", id, &name, e.to_string()));
                    continue;
                }
            };
            let in_scope = match self.in_scope(pipeline, ctx, id, &u.body, &mut why).await {
                Ok(s) => s,
                Err(e) => {
                    refusals.push(refused("User", id, &name, e.detail));
                    continue;
                }
            };
            entry.out_of_scope = !in_scope;
            if u.out_of_scope && in_scope && !inactive {
                // Coming into the directory: as a reactivation (restore per the rules).
                match pipeline.reactivate(ctx, &u.body).await {
                    Ok((restore, d)) => {
                        super::keep_decisions("reactivate", d, &mut why);
                        entry.lifecycle = Lifecycle::Reactivate { restore };
                    }
                    Err(e) => {
                        refusals.push(refused("User", id, &name, e.to_string()));
                        continue;
                    }
                }
            }
            // A user the IdP deactivated (or the scope rules now keep out) whose entry is
            // still active (deprovisioning then kept it): the rules decide again. Entries
            // already deprovisioned stay as they are.
            let leaving = !u.out_of_scope && !in_scope;
            if (inactive || leaving) && current.as_ref().is_some_and(|e| e.active && !e.deleted) {
                match pipeline.deprovision(ctx, &u.body, Trigger::Deactivated).await {
                    Ok((DeprovisionAction::Keep, d)) => super::keep_decisions("deprovision", d, &mut why),
                    Ok((mut action, d)) => {
                        super::keep_decisions("deprovision", d, &mut why);
                        let go = !opts.guarded || self.guard_deprovision(idp, id, &u.body, &mut action, &mut why).await?;
                        entry.lifecycle = if go { Lifecycle::Deprovision(action) } else { Lifecycle::Held(action) };
                    }
                    Err(e) => {
                        refusals.push(refused("User", id, &name, e.to_string()));
                        continue;
                    }
                }
            }
            let audit = Self::reapply_audit(pipeline, opts, operation, request_id, why);
            writes.push(ReapplyUser { pk: *pk, id: id.clone(), version: u.meta.version, entry, matching: pipeline.matching(), audit });
        }
        Ok((writes, refusals))
    }

    async fn map_groups(
        &self,
        idp: &IdpConnection,
        pipeline: &dyn MappingPipeline,
        groups: &[(i64, StoredGroup)],
        opts: &PassOptions,
        request_id: &str,
    ) -> (Vec<ReapplyGroup>, Vec<ReapplyOutcome>) {
        let (mut writes, mut refusals) = (Vec::new(), Vec::new());
        for (pk, g) in groups {
            let ctx = MapContext { idp, operation: Operation::Reapply, current: None };
            let name = g.body.get("displayName").and_then(Value::as_str).unwrap_or_default();
            match pipeline.map_group(ctx, GroupInput { id: &g.meta.id, body: &g.body }).await {
                Ok((targets, decisions)) => {
                    let mut why = Vec::new();
                    super::keep_decisions("group", decisions, &mut why);
                    let audit = Self::reapply_audit(pipeline, opts, "reapply", request_id, why);
                    let removal_budget = if opts.guarded { guarded_budget(&self.guard, &*self.store, idp.id).await } else { None };
                    writes.push(ReapplyGroup { pk: *pk, id: g.meta.id.clone(), targets, removal_budget, audit });
                }
                Err(e) => refusals.push(refused("Group", &g.meta.id, name, e.to_string())),
            }
        }
        (writes, refusals)
    }

    /// What `pipeline` (a candidate chain, not active) would change if it were applied to
    /// everything the connection has provisioned. Nothing is written.
    pub async fn preview(&self, idp: &IdpConnection, pipeline: &dyn MappingPipeline, opts: &PassOptions) -> ScimResult<Report> {
        let opts = &PassOptions { guarded: false, ..opts.clone() };
        let mut report = Report::default();
        let store_err = |e| store_error(ResourceKind::User, "", e);
        let mut cursor = 0;
        loop {
            let page = self.store.users_after(idp, cursor, opts.batch).await.map_err(store_err)?;
            let Some((last, _)) = page.last() else { break };
            cursor = *last;
            let (writes, refusals) = self.map_users(idp, pipeline, &page, opts, "reapply", "preview").await?;
            report.absorb(self.store.reapply_users(idp, writes, ReapplyMode::Preview).await.map_err(store_err)?);
            report.absorb(refusals);
        }
        cursor = 0;
        loop {
            let page = self.store.groups_after(idp, cursor, opts.batch).await.map_err(store_err)?;
            let Some((last, _)) = page.last() else { break };
            cursor = *last;
            let (writes, refusals) = self.map_groups(idp, pipeline, &page, opts, "preview").await;
            report.absorb(self.store.reapply_groups(idp, writes, ReapplyMode::Preview).await.map_err(store_err)?);
            report.absorb(refusals);
        }
        report.items.sort_by(|a, b| (a.resource_type.as_str(), a.name.as_str()).cmp(&(b.resource_type.as_str(), b.name.as_str())));
        Ok(report)
    }

    /// What `pipeline` makes of `n` of the connection's users, those after storage key `after`
    /// (0: its first ones), written nowhere: for each, what the entry would be, what would
    /// change (as a preview says it), and the rules' decisions. Also the key to continue from.
    /// `None` runs the connection's active rules.
    pub async fn try_users(&self, idp: &IdpConnection, pipeline: Option<&dyn MappingPipeline>, after: i64, n: usize) -> ScimResult<(Vec<TriedUser>, Option<i64>)> {
        let active = self.pipelines.pipeline_for(idp);
        let pipeline = pipeline.unwrap_or(&*active);
        let opts = PassOptions { guarded: false, ..PassOptions::default() };
        let store_err = |e| store_error(ResourceKind::User, "", e);
        let page = self.store.users_after(idp, after, n).await.map_err(store_err)?;
        let next = page.last().map(|(k, _)| *k);
        let (writes, refusals) = self.map_users(idp, pipeline, &page, &opts, "reapply", "try").await?;
        let mut mapped: std::collections::HashMap<String, (crate::model::EntryWrite, Vec<Decision>)> =
            writes.iter().map(|w| (w.id.clone(), (w.entry.clone(), w.audit.decisions.clone()))).collect();
        let mut outcomes = self.store.reapply_users(idp, writes, ReapplyMode::Preview).await.map_err(store_err)?;
        outcomes.extend(refusals);
        // In the connection's order, as listed.
        let order: std::collections::HashMap<&str, usize> = page.iter().enumerate().map(|(i, (_, u))| (u.meta.id.as_str(), i)).collect();
        outcomes.sort_by_key(|o| order.get(o.id.as_str()).copied().unwrap_or(usize::MAX));
        let tried = outcomes
            .into_iter()
            .map(|o| {
                let (entry, decisions) = match mapped.remove(&o.id) {
                    Some((e, d)) => (Some(e), d),
                    None => (None, Vec::new()),
                };
                TriedUser {
                    user_name: entry.as_ref().map(|e| e.user_name.clone()),
                    active: entry.as_ref().map(|e| e.active),
                    groups: entry.as_ref().map(|e| e.grant.clone()).unwrap_or_default(),
                    attributes: entry.map(|e| e.attributes).unwrap_or(Value::Null),
                    decisions,
                    outcome: o,
                }
            })
            .collect();
        Ok((tried, next))
    }

    /// The connection's latest re-apply job, if one has run.
    pub async fn reapply_status(&self, idp: &IdpConnection) -> ScimResult<Option<ReapplyJob>> {
        self.store.reapply_job(idp.id).await.map_err(|e| store_error(ResourceKind::User, "", e))
    }

    /// Starts a re-apply of the connection's active rules, or resumes its unfinished one.
    pub async fn start_or_resume_reapply(&self, idp: &IdpConnection, actor: &str, resume: bool) -> ScimResult<ReapplyJob> {
        let err = |e| store_error(ResourceKind::User, "", e);
        let version = self.pipelines.pipeline_for(idp).version();
        match self.store.reapply_job(idp.id).await.map_err(err)? {
            Some(j) if j.finished.is_none() && resume => {
                if j.chain_version != version {
                    return Err(ScimError::new(409, None, format!("job {} was started with chain version {:?}, the connection now runs {version:?}: start a new one", j.id, j.chain_version)));
                }
                Ok(j)
            }
            Some(j) if j.finished.is_none() => Err(ScimError::new(409, None, format!("re-apply job {} of {}/{} is unfinished (last progress {}): resume it", j.id, idp.tenant, idp.name, j.updated))),
            _ if resume => Err(ScimError::new(409, None, format!("{}/{} has no unfinished re-apply job", idp.tenant, idp.name))),
            _ => self.store.start_reapply(idp, version, actor).await.map_err(err),
        }
    }

    /// A job runs with one chain version: if another becomes active, it is ended (failed,
    /// with the reason) so that a new one can start with the new rules.
    async fn check_rules(&self, idp: &IdpConnection, job: &ReapplyJob) -> ScimResult<()> {
        let err = |e| store_error(ResourceKind::User, "", e);
        let active = self.store.active_chains().await.map_err(err)?.into_iter().find(|v| v.idp_id == idp.id).map(|v| v.number);
        if active == job.chain_version {
            return Ok(());
        }
        let why = format!("the active chain version changed from {:?} to {active:?}", job.chain_version);
        self.store.advance_reapply(job.id, ReapplyPhase::Failed, Some(why.clone())).await.map_err(err)?;
        Err(ScimError::new(409, None, format!("re-apply job {} stopped: {why}; start a new one", job.id)))
    }

    /// Runs a re-apply job to the end with the connection's active rules, batch by batch;
    /// `progress` is told after each committed batch. Stops (the job stays resumable) if the
    /// connection's active chain version changes under it.
    pub async fn run_reapply(&self, idp: &IdpConnection, job: ReapplyJob, opts: &PassOptions, progress: &mut (dyn FnMut(&ReapplyJob, &Report) + Send)) -> ScimResult<Report> {
        let err = |e| store_error(ResourceKind::User, "", e);
        let pipeline = self.pipelines.pipeline_for(idp);
        if pipeline.version() != job.chain_version {
            // Ended, not left unfinished: a job nobody can resume would stop the schedule.
            let why = format!("the active chain version changed from {:?} to {:?} before it ran", job.chain_version, pipeline.version());
            self.store.advance_reapply(job.id, ReapplyPhase::Failed, Some(why.clone())).await.map_err(err)?;
            return Err(ScimError::new(409, None, format!("re-apply job {} stopped: {why}; start a new one", job.id)));
        }
        let request_id = format!("reapply-{}", job.id);
        let opts = PassOptions { actor: job.author.clone(), ..opts.clone() };
        let mut report = Report::default();
        let mut job = job;
        if job.phase == ReapplyPhase::Users {
            loop {
                self.check_rules(idp, &job).await?;
                let page = self.store.users_after(idp, job.cursor, opts.batch).await.map_err(err)?;
                let Some((last, _)) = page.last() else { break };
                let cursor = *last;
                let (writes, refusals) = self.map_users(idp, &*pipeline, &page, &opts, "reapply", &request_id).await?;
                let mode = ReapplyMode::Job { id: job.id, cursor, refused: refusals.len() as i64 };
                report.absorb(self.store.reapply_users(idp, writes, mode).await.map_err(err)?);
                report.absorb(refusals);
                job = self.store.reapply_job(idp.id).await.map_err(err)?.ok_or_else(|| ScimError::internal("the re-apply job vanished"))?;
                progress(&job, &report);
                tokio::time::sleep(opts.pause).await;
            }
            job = self.store.advance_reapply(job.id, ReapplyPhase::Groups, None).await.map_err(err)?;
        }
        if job.phase == ReapplyPhase::Groups {
            loop {
                self.check_rules(idp, &job).await?;
                let page = self.store.groups_after(idp, job.cursor, opts.batch).await.map_err(err)?;
                let Some((last, _)) = page.last() else { break };
                let cursor = *last;
                let (writes, refusals) = self.map_groups(idp, &*pipeline, &page, &opts, &request_id).await;
                let mode = ReapplyMode::Job { id: job.id, cursor, refused: refusals.len() as i64 };
                let outcomes = self.store.reapply_groups(idp, writes, mode).await.map_err(err)?;
                let revoked: u64 = outcomes.iter().filter_map(|o| o.changes.get("revoked").and_then(Value::as_u64)).sum();
                super::spend_guard(&self.guard, &*self.store, idp.id, revoked as u32).await;
                report.absorb(outcomes);
                report.absorb(refusals);
                job = self.store.reapply_job(idp.id).await.map_err(err)?.ok_or_else(|| ScimError::internal("the re-apply job vanished"))?;
                progress(&job, &report);
                tokio::time::sleep(opts.pause).await;
            }
            job = self.store.advance_reapply(job.id, ReapplyPhase::Done, None).await.map_err(err)?;
            progress(&job, &report);
        }
        Ok(report)
    }
}

impl<S: Store> Service<S> {
    /// Re-applies a connection's rules every `every`, as `system:schedule`: waits until the
    /// last finished run is that old, resumes a run a crash left unfinished, then runs.
    pub fn schedule_reapply(self: std::sync::Arc<Self>, idp: IdpConnection, every: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let opts = PassOptions { pause: Duration::from_millis(10), actor: "system:schedule".into(), ..Default::default() };
            // One replica runs a connection's schedule; a run longer than the lease may meet
            // another replica's (re-applying is idempotent: the same rules, the same result).
            let mut lease = super::lease::Lease::new(format!("reapply:{}", idp.id), every.max(Duration::from_secs(60)));
            loop {
                if !lease.hold(&*self.store).await {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    continue;
                }
                let last = self.store.reapply_job(idp.id).await.ok().flatten();
                let active = self.pipelines.pipeline_for(&idp).version();
                let (resume, wait) = match &last {
                    // A run a crash left unfinished under other rules is ended; a new one starts.
                    Some(j) if j.finished.is_none() && j.chain_version != active => {
                        let why = format!("the active chain version changed from {:?} to {active:?}", j.chain_version);
                        if let Err(e) = self.store.advance_reapply(j.id, ReapplyPhase::Failed, Some(why)).await {
                            tracing::warn!(error = %e, "ending a re-apply job run under other rules failed");
                        }
                        (false, Duration::ZERO)
                    }
                    Some(j) if j.finished.is_none() => (true, Duration::ZERO),
                    Some(j) => (false, every.saturating_sub(j.started.elapsed())),
                    None => (false, Duration::ZERO),
                };
                tokio::time::sleep(wait).await;
                let run = async {
                    let job = self.start_or_resume_reapply(&idp, &opts.actor, resume).await?;
                    self.run_reapply(&idp, job, &opts, &mut |_, _| {}).await
                };
                match run.await {
                    Ok(r) => tracing::info!(tenant = %idp.tenant, idp = %idp.name, changed = r.summary.changed, failed = r.summary.failed, "scheduled re-apply finished"),
                    Err(e) => {
                        tracing::warn!(tenant = %idp.tenant, idp = %idp.name, error = %e.detail, "scheduled re-apply did not run");
                        tokio::time::sleep(every.min(Duration::from_secs(60))).await;
                    }
                }
            }
        })
    }
}

/// The guard's budget for a guarded re-apply's membership removals; none when the window
/// cannot be read (fail closed: nothing removed rather than past the cap).
async fn guarded_budget<S: Store>(guard: &super::guard::Guard, store: &S, idp_id: i64) -> Option<u32> {
    match guard.remaining(store, idp_id).await {
        Ok(budget) => budget,
        Err(e) => {
            tracing::warn!(idp_id, error = %e, "reading the guard's window failed; removing no memberships");
            Some(0)
        }
    }
}
