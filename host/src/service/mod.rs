//! Provisioning operations, one per SCIM request: validate and normalise the input, run the
//! mapping pipeline, and write the IdP view and the directory in one store transaction.
//!
//! Writes that start from the current state (PATCH, PUT) take it (as this process last read
//! or wrote it, [`current`], else read), compute the new state off the writer thread (mapping
//! can be expensive), then write with a version and scope check; a concurrent change makes
//! the write retry from a fresh read instead of losing an update.

pub mod admin;
pub mod chain_file;
pub mod delivery;
pub mod dialect;
pub mod directory;
pub mod examples;
pub mod guard;
pub mod lease;
mod current;
mod locks;
pub mod reapply;
pub mod rules;
mod shadow;
pub mod signin;

use std::sync::Arc;

use serde_json::Value;

use crate::mapping::{Decisions, GroupInput, MapContext, MappingError, MappingPipeline, Operation, PipelineRegistry, Trigger};
use crate::model::{AuditInfo, Decision, DeprovisionAction, EntryWrite, GroupUpdate, GroupWrite, IdpConnection, Lifecycle, MemberRule, MemberRules, Page, ReapplyMode, StoredGroup, StoredUser, UserBefore, UserWrite};
use crate::scim::error::{ScimError, ScimResult};
use crate::scim::list::{ListQuery, Projection};
use crate::scim::patch::{self, MemberOp};
use crate::scim::resource::canonicalize;
use crate::scim::schema::ResourceKind;
use crate::service::dialect::Dialect;
use crate::store::{Store, StoreError};

/// Logs a hook's decisions (debug) and keeps them for the change's audit record.
fn keep_decisions(what: &str, decisions: Decisions, into: &mut Vec<Decision>) {
    for d in decisions {
        tracing::debug!(what, plugin = %d.plugin, rule = %d.rule, reason = %d.reason, "rule decision");
        into.push(d);
    }
}

/// One request as the service sees it: the IdP connection it comes from, its request id
/// (recorded with every change it makes), and, once a write has picked its rules, the chain
/// version that decided (for the response and the audit trail).
pub struct Call<'a> {
    /// The connection the request comes through.
    pub idp: &'a IdpConnection,
    /// Its request id.
    pub request_id: &'a str,
    rules: std::sync::OnceLock<i64>,
}

impl<'a> Call<'a> {
    /// A request of `idp`.
    pub fn new(idp: &'a IdpConnection, request_id: &'a str) -> Call<'a> {
        Call { idp, request_id, rules: std::sync::OnceLock::new() }
    }

    /// The chain version the request's mapping ran with, if it ran a versioned chain.
    pub fn rules_version(&self) -> Option<i64> {
        self.rules.get().copied()
    }

    /// The audit record of a change this call makes with these decisions.
    fn audit(&self, op: Operation, decisions: Vec<Decision>) -> AuditInfo {
        AuditInfo {
            actor: format!("idp:{}/{}", self.idp.tenant, self.idp.name),
            request_id: self.request_id.to_string(),
            operation: op.as_str().to_string(),
            chain_version: self.rules_version(),
            decisions,
        }
    }
}

/// How often a write retries after losing a race with a concurrent write to the same resource.
/// In one process the per-resource lock makes such races rare; replicas on one database race
/// for real (one contender per replica, each with a queue behind its lock), so the bound is
/// generous and every retry first waits a moment, at random, so that the racers part.
const MAX_RETRIES: usize = 32;

/// The pause before retry `attempt` (1-based) of a write that lost a race: up to `attempt`
/// milliseconds (at most 5), at random.
async fn after_lost_race(attempt: usize) {
    let mut byte = [0u8; 1];
    let roll = getrandom::fill(&mut byte).map(|()| u64::from(byte[0])).unwrap_or(0);
    let cap = attempt.min(5) as u64;
    tokio::time::sleep(std::time::Duration::from_millis(roll % (cap + 1))).await;
}

/// The provisioning service: one operation per SCIM request, over a store and the connections' rules.
pub struct Service<S: Store> {
    store: Arc<S>,
    pipelines: Arc<dyn PipelineRegistry>,
    locks: locks::KeyedLocks,
    guard: Arc<guard::Guard>,
    current: current::CurrentUsers,
}

impl From<MappingError> for ScimError {
    fn from(e: MappingError) -> Self {
        match e {
            MappingError::Rejected { .. } => ScimError::invalid_value(e.to_string()),
            MappingError::Fault { .. } => ScimError::internal(e.to_string()),
            MappingError::Unavailable { retry_after, .. } => ScimError::unavailable(e.to_string(), retry_after),
        }
    }
}

/// Counts and logs the members a group write skipped (they are in its audit record too).
fn note_skipped(idp: &IdpConnection, g: &StoredGroup) {
    if g.skipped.is_empty() {
        return;
    }
    crate::metrics::get().skipped_members(&idp.tenant, &idp.name, g.skipped.len());
    let first = &g.skipped[0];
    tracing::info!(tenant = %idp.tenant, idp = %idp.name, group = %g.meta.id, skipped = g.skipped.len(), first = %first.id, reason = %first.reason, "group write skipped members this connection does not have");
}

fn store_error(kind: ResourceKind, id: &str, e: StoreError) -> ScimError {
    match e {
        StoreError::NotFound => ScimError::not_found(format!("{} '{id}' not found", kind.name())),
        StoreError::Conflict(m) => ScimError::uniqueness(m),
        StoreError::VersionMismatch => ScimError::precondition_failed(),
        StoreError::InvalidReference(m) => ScimError::invalid_value(m),
        e @ (StoreError::Backend(_) | StoreError::NeedsReactivation) => {
            tracing::error!(error = %e, "store failure");
            ScimError::internal("the directory store failed; the request was not applied")
        }
    }
}

/// An `If-Match` precondition: the weak ETags a client accepts, or `*`.
#[derive(Debug, Clone, Default)]
pub struct Precondition(Option<String>);

impl Precondition {
    /// The precondition of an `If-Match` header, if any.
    pub fn new(if_match: Option<&str>) -> Precondition {
        Precondition(if_match.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()))
    }
    fn is_set(&self) -> bool {
        self.0.is_some()
    }
    fn check(&self, version: i64) -> ScimResult<()> {
        let Some(h) = &self.0 else { return Ok(()) };
        let ok = h.split(',').map(str::trim).any(|t| {
            t == "*" || t.trim_start_matches("W/").trim_matches('"') == version.to_string()
        });
        if ok { Ok(()) } else { Err(ScimError::precondition_failed()) }
    }
}

/// Counts destructive operations that went ahead. They are done: a failure to count them is
/// logged, not the request's failure.
pub(crate) async fn spend_guard<S: Store>(guard: &guard::Guard, store: &S, idp_id: i64, n: u32) {
    if let Err(e) = guard.spend(store, idp_id, n).await {
        tracing::warn!(idp_id, n, error = %e, "counting destructive operations in the guard's window failed");
    }
}

impl<S: Store> Service<S> {
    /// The service over `store`, each connection mapped by its pipeline in `pipelines`.
    pub fn new(store: Arc<S>, pipelines: Arc<dyn PipelineRegistry>) -> Self {
        Service { store, pipelines, locks: Default::default(), guard: Default::default(), current: current::CurrentUsers::new(0) }
    }

    /// Lets updates start from the users this process last read or wrote, within about
    /// `bytes` of memory (`service::current`). Only where no other process writes the store.
    pub fn with_remembered_users(mut self, bytes: usize) -> Self {
        self.current = current::CurrentUsers::new(bytes);
        self
    }

    /// Sets the connections' guards (without one, every connection has the default cap).
    pub fn with_guard(mut self, guard: Arc<guard::Guard>) -> Self {
        self.guard = guard;
        self
    }

    /// Asks the guard about deprovisioning an IdP user: `Ok(true)` to go ahead, `Ok(false)`
    /// to hold it; a protected principal turns the action into `Keep`.
    async fn guard_deprovision(&self, idp: &IdpConnection, id: &str, body: &Value, action: &mut DeprovisionAction, why: &mut Vec<Decision>) -> ScimResult<bool> {
        if *action == DeprovisionAction::Keep {
            return Ok(true);
        }
        let entry = self.store.entry_of_user(idp, id).await.map_err(|e| store_error(ResourceKind::User, id, e))?;
        let idp_name = body.get("userName").and_then(Value::as_str).unwrap_or_default();
        let names: Vec<&str> = entry.as_ref().map(|e| e.user_name.as_str()).into_iter().chain([idp_name]).collect();
        let verdict = self.guard.check(&*self.store, idp.id, &names).await.map_err(|e| store_error(ResourceKind::User, id, e))?;
        Ok(match verdict {
            guard::Verdict::Allow => true,
            guard::Verdict::Protected(pattern) => {
                tracing::warn!(idp = %idp.name, user = id, %pattern, "protected principal: deprovisioning refused");
                why.push(Decision::new("guard", "protected", format!("matches protected pattern {pattern}; the entry is kept")));
                *action = DeprovisionAction::Keep;
                true
            }
            guard::Verdict::Hold { max, window_secs } => {
                tracing::warn!(idp = %idp.name, user = id, max, window_secs, "guard threshold reached: destructive operation held for an admin");
                why.push(Decision::new("guard", "threshold", format!("more than {max} destructive operations in {window_secs} s; held for an admin")));
                false
            }
        })
    }

    /// The rules of the call's connection, taken once per request: a chain swapped while the
    /// request runs does not affect it.
    fn pipeline(&self, call: &Call<'_>) -> Arc<dyn MappingPipeline> {
        let p = self.pipelines.pipeline_for(call.idp);
        if let Some(v) = p.version() {
            let _ = call.rules.set(v);
        }
        p
    }

    async fn user_write(&self, pipeline: &dyn MappingPipeline, call: &Call<'_>, op: Operation, body: Value, current: Option<&Value>, why: &mut Vec<Decision>) -> ScimResult<UserWrite> {
        let ctx = MapContext { idp: call.idp, operation: op, current };
        let (entry, decisions) = pipeline.map_user(ctx, &body).await?;
        keep_decisions("user", decisions, why);
        shadow::user(self, call, op, pipeline.version(), &body, current, &entry);
        Ok(UserWrite { body: Arc::new(body), entry, matching: pipeline.matching(), reactivate: None })
    }

    async fn group_write(&self, pipeline: &dyn MappingPipeline, call: &Call<'_>, op: Operation, id: &str, body: Value, why: &mut Vec<Decision>) -> ScimResult<GroupWrite> {
        let ctx = MapContext { idp: call.idp, operation: op, current: None };
        let (targets, decisions) = pipeline.map_group(ctx, GroupInput { id, body: &body }).await?;
        keep_decisions("group", decisions, why);
        shadow::group(self, call, op, pipeline.version(), id, &body, &targets);
        Ok(GroupWrite { body, targets })
    }

    /// Whether the connection's scope rules keep the user in the directory, as a member of
    /// the IdP groups it has now (none for a user not stored yet). Without scope rules it is.
    async fn in_scope(&self, pipeline: &dyn MappingPipeline, ctx: MapContext<'_>, id: &str, body: &Value, why: &mut Vec<Decision>) -> ScimResult<bool> {
        if !pipeline.has_scope_rules() {
            return Ok(true);
        }
        let groups: Vec<String> = match id {
            "" => Vec::new(),
            id => self.store.get_user(ctx.idp, id, true).await.map_err(|e| store_error(ResourceKind::User, id, e))?.groups.unwrap_or_default().into_iter().filter_map(|m| m.display).collect(),
        };
        let (in_scope, decisions) = pipeline.scope(ctx, body, &groups).await?;
        keep_decisions("scope", decisions, why);
        Ok(in_scope)
    }

    /// Decides scope again for users a group write added or removed: IdPs send a user before
    /// its memberships, so group-based scope is decided when the membership comes. Users whose
    /// scope changes enter (their entry appears) or leave (deprovisioned per the rules, under
    /// the guard) the directory; the others are re-mapped to no effect.
    async fn rescope(&self, call: &Call<'_>, pipeline: &dyn MappingPipeline, ids: &[String]) -> ScimResult<()> {
        if ids.is_empty() || !pipeline.has_scope_rules() {
            return Ok(());
        }
        let idp = call.idp;
        let opts = reapply::PassOptions { actor: format!("idp:{}/{}", idp.tenant, idp.name), ..Default::default() };
        for chunk in ids.chunks(opts.batch.max(1)) {
            let mut users = Vec::with_capacity(chunk.len());
            for id in chunk {
                match self.store.get_user(idp, id, false).await {
                    Ok(u) => users.push((0, u)),
                    Err(StoreError::NotFound) => {}
                    Err(e) => return Err(store_error(ResourceKind::User, id, e)),
                }
            }
            let (writes, refused) = self.map_users(idp, pipeline, &users, &opts, "scope", call.request_id).await?;
            for r in refused.iter().chain(&self.store.reapply_users(idp, writes, ReapplyMode::Commit).await.map_err(|e| store_error(ResourceKind::User, "", e))?) {
                if let Some(e) = &r.error {
                    tracing::warn!(tenant = %idp.tenant, idp = %idp.name, user = %r.id, error = %e, "deciding scope after a group change failed");
                }
            }
        }
        Ok(())
    }

    /// Deactivation and reactivation are decided by the connection's deprovisioning rules. A
    /// user is live when the IdP has it active and the scope rules keep it in: leaving scope
    /// deprovisions like a deactivation, coming in reactivates.
    async fn lifecycle(&self, pipeline: &dyn MappingPipeline, idp: &IdpConnection, op: Operation, live: (bool, bool), after: &Value, why: &mut Vec<Decision>) -> ScimResult<Lifecycle> {
        let ctx = MapContext { idp, operation: op, current: None };
        Ok(match live {
            (true, false) => {
                let (action, decisions) = pipeline.deprovision(ctx, after, Trigger::Deactivated).await?;
                keep_decisions("deprovision", decisions, why);
                Lifecycle::Deprovision(action)
            }
            (false, true) => {
                let (restore, decisions) = pipeline.reactivate(ctx, after).await?;
                keep_decisions("reactivate", decisions, why);
                Lifecycle::Reactivate { restore }
            }
            _ => Lifecycle::Unchanged,
        })
    }

    /// What `pipeline` (a connection's active rules, or a candidate) would make of one IdP
    /// user payload, as a new user, written nowhere: the "try a rule" of the console.
    pub async fn dry_run_user(&self, idp: &IdpConnection, pipeline: Option<&dyn MappingPipeline>, input: &Value) -> ScimResult<(EntryWrite, Vec<Decision>)> {
        let body = canonicalize(ResourceKind::User, input)?;
        let active;
        let pipeline = match pipeline {
            Some(p) => p,
            None => {
                active = self.pipelines.pipeline_for(idp);
                &*active
            }
        };
        let ctx = MapContext { idp, operation: Operation::Create, current: None };
        let (entry, decisions) = pipeline.map_user(ctx, &body).await?;
        let mut why = Vec::new();
        keep_decisions("user", decisions, &mut why);
        Ok((entry, why))
    }

    // -- Users ----------------------------------------------------------------------------

    /// POST /Users
    pub async fn create_user(&self, call: &Call<'_>, input: &Value) -> ScimResult<StoredUser> {
        let idp = call.idp;
        let coming = self.store.write_coming();
        let body = canonicalize(ResourceKind::User, input)?;
        let pipeline = self.pipeline(call);
        let mut why = Vec::new();
        let mut w = self.user_write(&*pipeline, call, Operation::Create, body, None, &mut why).await?;
        let ctx = MapContext { idp, operation: Operation::Create, current: None };
        w.entry.out_of_scope = !self.in_scope(&*pipeline, ctx, "", &w.body, &mut why).await?;
        drop(coming);
        let u = match self.store.create_user(idp, w.clone(), call.audit(Operation::Create, why.clone())).await {
            // The create takes back an entry a deletion deprovisioned: the rules decide what
            // its reactivation restores (asked only then), and it is written again.
            Err(StoreError::NeedsReactivation) => {
                let ctx = MapContext { idp, operation: Operation::Create, current: None };
                let (restore, decisions) = pipeline.reactivate(ctx, &w.body).await?;
                keep_decisions("reactivate", decisions, &mut why);
                w.reactivate = Some(restore);
                self.store.create_user(idp, w, call.audit(Operation::Create, why)).await.map_err(|e| store_error(ResourceKind::User, "", e))
            }
            r => r.map_err(|e| store_error(ResourceKind::User, "", e)),
        }?;
        self.current.put(idp.id, &u.meta.id, Arc::new(UserBefore::from(&u)));
        Ok(u)
    }

    /// GET /Users/{id}
    pub async fn get_user(&self, idp: &IdpConnection, id: &str, p: &Projection) -> ScimResult<StoredUser> {
        let u = self.store.get_user(idp, id, p.wants("groups")).await.map_err(|e| store_error(ResourceKind::User, id, e))?;
        // IdPs read a user before they update it (Okta's GET then PUT).
        self.current.put(idp.id, id, Arc::new(UserBefore::from(&u)));
        Ok(u)
    }

    /// GET /Users with a filter, sorting and paging.
    pub async fn list_users(&self, idp: &IdpConnection, q: &ListQuery) -> ScimResult<Page<StoredUser>> {
        self.store.list_users(idp, q).await.map_err(|e| store_error(ResourceKind::User, "", e))
    }

    /// The user as an update starts from: remembered (unless `If-Match` asks, which is
    /// compared with the stored version), else read.
    async fn user_before(&self, idp: &IdpConnection, id: &str, pre: &Precondition, remembered: bool) -> ScimResult<(Arc<UserBefore>, bool)> {
        if remembered
            && !pre.is_set()
            && let Some(u) = self.current.get(idp.id, id)
        {
            crate::metrics::get().remembered_user(false);
            return Ok((u, true));
        }
        let cur = self.store.get_user(idp, id, false).await.map_err(|e| store_error(ResourceKind::User, id, e))?;
        pre.check(cur.meta.version)?;
        Ok((Arc::new(UserBefore::from(&cur)), false))
    }

    /// Read, change, write with a version and scope check; retried from a fresh read when a
    /// concurrent write wins (or what was remembered of the user is stale). `change` returns
    /// the user's canonical body after the change.
    async fn modify_user<F>(&self, call: &Call<'_>, id: &str, pre: &Precondition, op: Operation, change: F) -> ScimResult<StoredUser>
    where
        F: Fn(&Value) -> ScimResult<Value>,
    {
        let idp = call.idp;
        let pipeline = self.pipeline(call);
        let _guard = self.locks.lock(idp.id, id).await;
        let mut remembered = true;
        let mut attempt = 0;
        while attempt < MAX_RETRIES {
            let coming = self.store.write_coming();
            let (cur, from_memory) = self.user_before(idp, id, pre, remembered).await?;
            let body = change(&cur.body)?;
            // Rules see the directory entry as it is before this change (read only if they look).
            let entry = match pipeline.uses_current() {
                true => self.store.entry_of_user(idp, id).await.map_err(|e| store_error(ResourceKind::User, id, e))?.map(|e| e.to_json()),
                false => None,
            };
            let mut why = Vec::new();
            let mut w = self.user_write(&*pipeline, call, op, body, entry.as_ref(), &mut why).await?;
            let ctx = MapContext { idp, operation: op, current: None };
            w.entry.out_of_scope = !self.in_scope(&*pipeline, ctx, id, &w.body, &mut why).await?;
            let active = |v: &Value| v.get("active").and_then(Value::as_bool).unwrap_or(true);
            let live = (!cur.out_of_scope && active(&cur.body), !w.entry.out_of_scope && active(&w.body));
            w.entry.lifecycle = self.lifecycle(&*pipeline, idp, op, live, &w.body, &mut why).await?;
            if let Lifecycle::Reactivate { restore } = w.entry.lifecycle {
                w.reactivate = Some(restore);
            }
            if let Lifecycle::Deprovision(mut action) = w.entry.lifecycle {
                let go = self.guard_deprovision(idp, id, &w.body, &mut action, &mut why).await?;
                w.entry.lifecycle = if go { Lifecycle::Deprovision(action) } else { Lifecycle::Held(action) };
            }
            drop(coming);
            match self.store.update_user(idp, id, cur, w, call.audit(op, why)).await {
                Ok(u) => {
                    self.current.put(idp.id, id, Arc::new(UserBefore::from(&u)));
                    return Ok(u);
                }
                // What was remembered is stale (changed or deleted elsewhere): read it.
                Err(StoreError::VersionMismatch | StoreError::NotFound) if from_memory => {
                    crate::metrics::get().remembered_user(true);
                    self.current.forget(idp.id, id);
                    remembered = false;
                }
                // A concurrent write won: start again from what it left (an `If-Match` is
                // checked against that, and fails if the version moved).
                Err(StoreError::VersionMismatch) => {
                    attempt += 1;
                    after_lost_race(attempt).await;
                }
                Err(e) => {
                    self.current.forget(idp.id, id);
                    return Err(store_error(ResourceKind::User, id, e));
                }
            }
        }
        Err(ScimError::new(409, None, "the resource is being changed concurrently; retry"))
    }

    /// PUT /Users/{id}
    pub async fn replace_user(&self, call: &Call<'_>, id: &str, input: &Value, pre: &Precondition) -> ScimResult<StoredUser> {
        // Canonical once, up front: a bad body fails before any read.
        let body = canonicalize(ResourceKind::User, input)?;
        self.modify_user(call, id, pre, Operation::Replace, |_| Ok(body.clone())).await
    }

    /// PATCH /Users/{id}
    pub async fn patch_user(&self, call: &Call<'_>, id: &str, input: &Value, pre: &Precondition) -> ScimResult<StoredUser> {
        let ops = patch::parse_and_resolve(ResourceKind::User, input)?;
        self.modify_user(call, id, pre, Operation::Patch, |cur| canonicalize(ResourceKind::User, &patch::apply(cur, &ops)?)).await
    }

    /// DELETE /Users/{id}: the rules and the guard decide what happens to the entry.
    pub async fn delete_user(&self, call: &Call<'_>, id: &str, pre: &Precondition) -> ScimResult<()> {
        let idp = call.idp;
        let pipeline = self.pipeline(call);
        let _guard = self.locks.lock(idp.id, id).await;
        // The rules see the user being deleted to decide what happens to its entry.
        let cur = self.store.get_user(idp, id, false).await.map_err(|e| store_error(ResourceKind::User, id, e))?;
        pre.check(cur.meta.version)?;
        let ctx = MapContext { idp, operation: Operation::Delete, current: None };
        let (mut action, decisions) = pipeline.deprovision(ctx, &cur.body, Trigger::Deleted).await?;
        let mut why = Vec::new();
        keep_decisions("deprovision", decisions, &mut why);
        let go = self.guard_deprovision(idp, id, &cur.body, &mut action, &mut why).await?;
        let expected = pre.is_set().then_some(cur.meta.version);
        self.current.forget(idp.id, id);
        self.store.delete_user(idp, id, expected, action, !go, call.audit(Operation::Delete, why)).await.map_err(|e| store_error(ResourceKind::User, id, e))
    }

    // -- Groups ---------------------------------------------------------------------------

    /// Splits a canonical group body into its attributes and its member ids.
    fn split_group(input: &Value) -> ScimResult<(Value, Option<Vec<String>>)> {
        let mut body = canonicalize(ResourceKind::Group, input)?;
        let members = match body.as_object_mut().and_then(|o| o.remove("members")) {
            None => {
                // `canonicalize` drops an empty list; an explicit `"members": []` still means "none".
                let explicit_empty = input.as_object().is_some_and(|o| o.iter().any(|(k, v)| k.eq_ignore_ascii_case("members") && v.as_array().is_some_and(Vec::is_empty)));
                if explicit_empty { Some(Vec::new()) } else { None }
            }
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|m| m.get("value").and_then(Value::as_str).map(str::to_string).ok_or_else(|| ScimError::invalid_value("each member needs a 'value'")))
                    .collect::<ScimResult<_>>()?,
            ),
            Some(_) => return Err(ScimError::invalid_value("'members' must be an array")),
        };
        Ok((body, members))
    }

    /// POST /Groups
    pub async fn create_group(&self, call: &Call<'_>, input: &Value) -> ScimResult<StoredGroup> {
        let idp = call.idp;
        let (body, members) = Self::split_group(input)?;
        let pipeline = self.pipeline(call);
        // The group has no id before it is stored; rules see an empty one on create.
        let mut why = Vec::new();
        let w = self.group_write(&*pipeline, call, Operation::Create, "", body, &mut why).await?;
        let members = members.unwrap_or_default();
        let ops = [MemberOp::Add(members.clone())];
        let rules = self.member_rules(&*pipeline, idp, None, &w.targets, &ops, &mut why).await?;
        let g = self.store.create_group(idp, w, members, rules, call.audit(Operation::Create, why)).await.map_err(|e| store_error(ResourceKind::Group, "", e))?;
        note_skipped(idp, &g);
        self.rescope(call, &*pipeline, &g.moved).await?;
        Ok(g)
    }

    /// GET /Groups/{id}
    pub async fn get_group(&self, idp: &IdpConnection, id: &str, p: &Projection) -> ScimResult<StoredGroup> {
        self.store.get_group(idp, id, p.wants("members")).await.map_err(|e| store_error(ResourceKind::Group, id, e))
    }

    /// GET /Groups with a filter, sorting and paging.
    pub async fn list_groups(&self, idp: &IdpConnection, q: &ListQuery) -> ScimResult<Page<StoredGroup>> {
        self.store.list_groups(idp, q).await.map_err(|e| store_error(ResourceKind::Group, "", e))
    }

    async fn modify_group<F>(&self, call: &Call<'_>, id: &str, pre: &Precondition, op: Operation, change: F) -> ScimResult<StoredGroup>
    where
        F: Fn(&Value) -> ScimResult<(Option<Value>, Vec<MemberOp>)>,
    {
        let idp = call.idp;
        let pipeline = self.pipeline(call);
        let _guard = self.locks.lock(idp.id, id).await;
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                after_lost_race(attempt).await;
            }
            let cur = self.store.get_group(idp, id, false).await.map_err(|e| store_error(ResourceKind::Group, id, e))?;
            pre.check(cur.meta.version)?;
            let (body, members) = change(&cur.body)?;
            let mut why = Vec::new();
            let w = match body {
                Some(b) if b != cur.body => Some(self.group_write(&*pipeline, call, op, id, canonicalize(ResourceKind::Group, &b)?, &mut why).await?),
                _ => None,
            };
            let rules = if members.is_empty() || !pipeline.has_membership_rules() {
                MemberRules::new()
            } else {
                let targets = match &w {
                    Some(w) => w.targets.clone(),
                    None => self.store.group_targets(idp, id).await.map_err(|e| store_error(ResourceKind::Group, id, e))?,
                };
                self.member_rules(&*pipeline, idp, Some(id), &targets, &members, &mut why).await?
            };
            let budget = self.guard.remaining(&*self.store, idp.id).await.map_err(|e| store_error(ResourceKind::Group, id, e))?;
            let update = GroupUpdate { expected_version: cur.meta.version, attributes: w, members, rules, removal_budget: budget };
            match self.store.update_group(idp, id, update, call.audit(op, why)).await {
                Err(StoreError::VersionMismatch) if !pre.is_set() => continue,
                r => {
                    let (g, removed) = r.map_err(|e| store_error(ResourceKind::Group, id, e))?;
                    spend_guard(&self.guard, &*self.store, idp.id, removed).await;
                    note_skipped(idp, &g);
                    self.rescope(call, &*pipeline, &g.moved).await?;
                    return Ok(g);
                }
            }
        }
        Err(ScimError::new(409, None, "the resource is being changed concurrently; retry"))
    }

    /// Asks the connection's membership rules about every user a group change adds or
    /// removes (deltas only: a full list is diffed against the current members first).
    async fn member_rules(&self, pipeline: &dyn MappingPipeline, idp: &IdpConnection, group: Option<&str>, targets: &[String], ops: &[MemberOp], why: &mut Vec<Decision>) -> ScimResult<MemberRules> {
        let mut rules = MemberRules::new();
        if !pipeline.has_membership_rules() || targets.is_empty() {
            return Ok(rules);
        }
        let current = || async {
            match group {
                None => Ok(Vec::new()),
                Some(id) => self
                    .store
                    .get_group(idp, id, true)
                    .await
                    .map(|g| g.members.unwrap_or_default().into_iter().map(|m| m.value).collect::<Vec<_>>())
                    .map_err(|e| store_error(ResourceKind::Group, id, e)),
            }
        };
        let (mut added, mut removed): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
        let mut i = 0;
        while i < ops.len() {
            match (&ops[i], ops.get(i + 1)) {
                (MemberOp::RemoveAll, Some(MemberOp::Add(ids))) => {
                    let have = current().await?;
                    added.extend(ids.iter().filter(|x| !have.contains(x)).cloned());
                    removed.extend(have.into_iter().filter(|x| !ids.contains(x)));
                    i += 2;
                    continue;
                }
                (MemberOp::RemoveAll, _) => removed.extend(current().await?),
                (MemberOp::Add(ids), _) => added.extend(ids.iter().cloned()),
                (MemberOp::Remove(ids), _) => removed.extend(ids.iter().cloned()),
            }
            i += 1;
        }
        let ctx = MapContext { idp, operation: Operation::Patch, current: None };
        for (uid, is_add) in added.iter().map(|u| (u, true)).chain(removed.iter().map(|u| (u, false))) {
            // Unknown members are the store's to refuse (adds) or ignore (removals).
            let Ok(user) = self.store.get_user(idp, uid, false).await else { continue };
            let (add_in, remove_in) = if is_add { (targets.to_vec(), Vec::new()) } else { (Vec::new(), targets.to_vec()) };
            let (add, remove, decisions) = pipeline.memberships(ctx, &user.body, false, add_in, remove_in).await?;
            keep_decisions("memberships", decisions, why);
            let has = |list: &[String], n: &String| list.iter().any(|x| x.eq_ignore_ascii_case(n));
            let rule = MemberRule {
                skip: if is_add { targets.iter().filter(|t| !has(&add, t)).cloned().collect() } else { Vec::new() },
                keep: if is_add { Vec::new() } else { targets.iter().filter(|t| !has(&remove, t)).cloned().collect() },
                grant: add.iter().filter(|a| !has(targets, a)).cloned().collect(),
                revoke: remove.iter().filter(|r| !has(targets, r)).cloned().collect(),
            };
            if rule != MemberRule::default() {
                rules.insert(uid.clone(), rule);
            }
        }
        Ok(rules)
    }

    /// PUT /Groups/{id}
    pub async fn replace_group(&self, call: &Call<'_>, id: &str, input: &Value, pre: &Precondition) -> ScimResult<StoredGroup> {
        let (body, members) = Self::split_group(input)?;
        let dialect = Dialect::for_kind(call.idp.kind);
        // A full member list becomes "replace": the store turns it into the delta.
        let ops = match members {
            Some(ids) => vec![MemberOp::RemoveAll, MemberOp::Add(ids)],
            None if dialect.put_without_members_keeps_members => vec![],
            None => vec![MemberOp::RemoveAll],
        };
        self.modify_group(call, id, pre, Operation::Replace, |_| Ok((Some(body.clone()), ops.clone()))).await
    }

    /// PATCH /Groups/{id}
    pub async fn patch_group(&self, call: &Call<'_>, id: &str, input: &Value, pre: &Precondition) -> ScimResult<StoredGroup> {
        let ops = patch::parse_and_resolve(ResourceKind::Group, input)?;
        let (attr_ops, member_ops) = patch::split_members(ops)?;
        self.modify_group(call, id, pre, Operation::Patch, |cur| {
            let body = if attr_ops.is_empty() { None } else { Some(patch::apply(cur, &attr_ops)?) };
            Ok((body, member_ops.clone()))
        })
        .await
    }

    /// DELETE /Groups/{id}
    pub async fn delete_group(&self, call: &Call<'_>, id: &str, pre: &Precondition) -> ScimResult<()> {
        let idp = call.idp;
        let expected = match pre.is_set() {
            true => {
                let cur = self.store.get_group(idp, id, false).await.map_err(|e| store_error(ResourceKind::Group, id, e))?;
                pre.check(cur.meta.version)?;
                Some(cur.meta.version)
            }
            false => None,
        };
        let budget = self.guard.remaining(&*self.store, idp.id).await.map_err(|e| store_error(ResourceKind::Group, id, e))?;
        let removed = self.store.delete_group(idp, id, expected, budget, call.audit(Operation::Delete, Vec::new())).await.map_err(|e| store_error(ResourceKind::Group, id, e))?;
        spend_guard(&self.guard, &*self.store, idp.id, removed).await;
        Ok(())
    }
}
