//! An IdP connection's chain: ordered plugin entries; each hook's output feeds the next
//! entry implementing that hook. A chain is immutable once loaded, so swapping one for
//! another is a pointer swap and a request never sees a mix.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::PluginError;
use super::bindings::exports::mapwright::plugin::deprovision as dep;
use super::bindings::exports::mapwright::plugin::groups::{IdpGroup, Memberships as MembershipsWit};
use super::bindings::mapwright::plugin::types as wit;
use super::instance::Entry;
use super::runtime::{LoadedPlugin, MAX_MEMORY, Runtime};
use crate::mapping::{
    BoxFuture, Decisions, GroupInput, IdentityMapping, MapContext, MappingError, MappingPipeline, Memberships, Operation, PipelineRegistry, Trigger, default_action, identity_entry,
    identity_entry_with, identity_groups,
};
use crate::model::{Decision, DeprovisionAction, EntryWrite, IdpConnection, Limits, MatchPolicy};
use crate::scim::resource::json_text;

/// Where a resource is shaped for, and what it is (the `shape` export's arguments).
pub use super::bindings::shaping::exports::mapwright::plugin::shape::{ResourceType as ShapeKind, Target as ShapeTarget};

/// Where a chain entry's component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    /// A first-party plugin compiled into the server (`builtin:username`).
    Builtin(String),
    /// A component file.
    File(PathBuf),
    /// A plugin already in the store (`sha256:<hash>`), resolved by the rules service.
    Stored(String),
}

impl PluginSource {
    /// `builtin:<name>`, or a path (relative to `base`).
    pub fn parse(s: &str, base: &Path) -> PluginSource {
        if let Some(n) = s.strip_prefix("builtin:") {
            return PluginSource::Builtin(n.to_string());
        }
        if let Some(h) = s.strip_prefix("sha256:") {
            return PluginSource::Stored(h.to_ascii_lowercase());
        }
        PluginSource::File(base.join(s))
    }

    /// The component's bytes (builtin or read from its file).
    pub fn bytes(&self) -> Result<Vec<u8>, PluginError> {
        match self {
            PluginSource::Builtin(n) => super::builtin::get(n).map(<[u8]>::to_vec).ok_or_else(|| {
                PluginError::Invalid(format!("no builtin plugin '{n}' (builtin: {})", super::builtin::names().collect::<Vec<_>>().join(", ")))
            }),
            PluginSource::File(p) => std::fs::read(p).map_err(|e| PluginError::Invalid(format!("reading {}: {e}", p.display()))),
            PluginSource::Stored(h) => Err(PluginError::Invalid(format!("sha256:{h} names a stored plugin; only a server's store can resolve it"))),
        }
    }
}

/// One entry as configured: which plugin, its JSON configuration, its limits.
#[derive(Debug, Clone)]
pub struct EntrySpec {
    /// The component.
    pub plugin: PluginSource,
    /// Its configuration.
    pub config: Value,
    /// Its limits.
    pub limits: Limits,
}

/// An IdP connection's loaded chain: entries in order, each hook's output feeding the next.
pub struct Chain {
    entries: Vec<Entry>,
    matching: MatchPolicy,
    /// The stored chain version this chain was built from (none for an ad-hoc chain).
    version: Option<i64>,
}

fn check_limits(l: &Limits) -> Result<(), PluginError> {
    if l.memory_bytes == 0 || l.memory_bytes > MAX_MEMORY || l.cpu_ms == 0 || l.cpu_ms > 10_000 || l.output_bytes == 0 {
        return Err(PluginError::Invalid(format!(
            "limits out of range: memory 1..={MAX_MEMORY} bytes, cpu 1..=10000 ms, output > 0 (got {l:?})"
        )));
    }
    Ok(())
}

impl Chain {
    /// Loads every entry: compiles (or reuses) the component, validates the configuration
    /// with the plugin. Any failure refuses the whole chain.
    pub async fn load(runtime: &Arc<Runtime>, specs: &[EntrySpec]) -> Result<Chain, PluginError> {
        let mut loaded = Vec::with_capacity(specs.len());
        for s in specs {
            check_limits(&s.limits)?;
            loaded.push((runtime.load(&s.plugin.bytes()?).await?, s.config.clone(), s.limits));
        }
        Chain::build(runtime, loaded).await
    }

    /// Builds a chain of plugins already loaded: validates each entry's limits and
    /// configuration (the plugin's `validate-config`). Any failure refuses the whole chain.
    pub async fn build(runtime: &Arc<Runtime>, entries: Vec<(Arc<LoadedPlugin>, Value, Limits)>) -> Result<Chain, PluginError> {
        Chain::build_indexed(runtime, entries).await.map_err(|(_, e)| e)
    }

    /// [`Chain::build`], saying which entry (from 0) failed: an editor shows the error there.
    pub async fn build_indexed(runtime: &Arc<Runtime>, entries: Vec<(Arc<LoadedPlugin>, Value, Limits)>) -> Result<Chain, (usize, PluginError)> {
        let mut out = Vec::with_capacity(entries.len());
        let lane = super::instance::Lane::new();
        for (i, (plugin, config, limits)) in entries.into_iter().enumerate() {
            check_limits(&limits).map_err(|e| (i, e))?;
            out.push(Entry::new(runtime.clone(), plugin, config.to_string(), limits, lane.clone()).await.map_err(|e| (i, e))?);
        }
        Ok(Chain { entries: out, matching: MatchPolicy::Conflict, version: None })
    }

    /// Records which stored chain version this is.
    pub fn with_version(mut self, number: i64) -> Chain {
        self.version = Some(number);
        self
    }

    /// The plugins of the chain, in order.
    pub fn plugins(&self) -> impl Iterator<Item = &Arc<LoadedPlugin>> {
        self.entries.iter().map(|e| &e.plugin)
    }

    /// Each entry's plugin name and the most linear memory one of its instances has held
    /// (bytes), in chain order: what an instance of it costs.
    pub fn peak_memory(&self) -> Vec<(&str, usize)> {
        self.entries.iter().map(|e| (e.plugin.name.as_str(), e.peak_memory())).collect()
    }

    /// Sets what a create does when the directory already has the user.
    pub fn with_matching(mut self, matching: MatchPolicy) -> Chain {
        self.matching = matching;
        self
    }

    /// Runs the memberships hook of every entry that has it, each refining the deltas.
    async fn run_memberships(&self, wctx: &wit::Context, user_json: &str, is_new: bool, add: Vec<String>, remove: Vec<String>, decisions: &mut Decisions) -> Result<(Vec<String>, Vec<String>), MappingError> {
        let mut m = MembershipsWit { add, remove, provenance: None };
        for e in self.entries.iter().filter(|e| e.plugin.hooks.groups) {
            m = e.user_memberships(wctx, user_json, is_new, m).await?;
            record(decisions, m.provenance.take().map(|p| Decision::new(e.plugin.name.clone(), p.rule, p.reason)));
        }
        Ok((m.add, m.remove))
    }

    /// Whether every entry shapes deliveries: a target's shape chain holds only such plugins.
    pub fn check_shapes(&self) -> Result<(), PluginError> {
        match self.entries.iter().find(|e| !e.plugin.hooks.shape) {
            Some(e) => Err(PluginError::Invalid(format!(
                "plugin {} does not shape deliveries (it implements: {}); a target's shape chain takes plugins built with contract 0.1.2 or later that list Hook::Shape",
                e.plugin.name,
                e.plugin.hooks.list().iter().map(|h| h.as_str()).collect::<Vec<_>>().join(", ")
            ))),
            None => Ok(()),
        }
    }

    /// Runs the shape hook of every entry in order over `resource`: what the target receives,
    /// and why it differs from `resource`.
    pub async fn shape(&self, target: &ShapeTarget, kind: ShapeKind, resource: Value) -> Result<(Value, Vec<Decision>), PluginError> {
        let mut r = resource;
        let mut why = Vec::new();
        for e in self.entries.iter().filter(|e| e.plugin.hooks.shape) {
            let (next, d) = e.shape(target, kind, &json_text(&r)).await?;
            r = next;
            why.extend(d);
        }
        Ok((r, why))
    }

    /// How many entries the chain has.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the chain has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn wit_context(ctx: &MapContext<'_>) -> wit::Context {
    wit::Context {
        tenant: ctx.idp.tenant.clone(),
        idp: ctx.idp.name.clone(),
        idp_kind: ctx.idp.kind.as_str().to_string(),
        operation: match ctx.operation {
            Operation::Create => wit::Operation::Create,
            Operation::Replace => wit::Operation::Replace,
            Operation::Patch => wit::Operation::Patch,
            Operation::Delete => wit::Operation::Delete,
            Operation::Reapply => wit::Operation::Reapply,
        },
    }
}

impl From<PluginError> for MappingError {
    fn from(e: PluginError) -> Self {
        match e {
            PluginError::Rejected { plugin, rule, reason } => MappingError::Rejected { rule: format!("{plugin}/{rule}"), reason },
            PluginError::Fault { plugin, reason } | PluginError::Config { plugin, reason } => MappingError::Fault { rule: plugin, reason },
            PluginError::Invalid(reason) => MappingError::Fault { rule: "plugin".into(), reason },
            PluginError::Suspended { plugin, retry_after } => {
                MappingError::Unavailable { rule: plugin, reason: super::instance::suspension(retry_after), retry_after }
            }
        }
    }
}

fn record(out: &mut Decisions, d: Option<Decision>) {
    out.extend(d);
}

impl MappingPipeline for Chain {
    fn map_user<'a>(&'a self, ctx: MapContext<'a>, user: &'a Value) -> BoxFuture<'a, Result<(EntryWrite, Decisions), MappingError>> {
        Box::pin(async move {
            // An attributes hook replaces the entry's attributes: no need to copy the user's.
            let mut entry = if self.entries.iter().any(|e| e.plugin.hooks.attributes) { identity_entry_with(user, Value::Null)? } else { identity_entry(user)? };
            let mut decisions = Decisions::new();
            let wctx = wit_context(&ctx);
            let user_json = json_text(user);
            let current = ctx.current.map(json_text);
            for e in self.entries.iter().filter(|e| e.plugin.hooks.username) {
                // An entry that offers candidates proposes its first to the next one; a later
                // entry that decides a single name replaces them.
                if e.offers_candidates {
                    let (names, p) = e.username_candidates(&wctx, &user_json, &entry.user_name, current.as_deref()).await?;
                    if let Some(first) = names.first() {
                        entry.user_name = first.clone();
                    }
                    entry.user_name_candidates = names;
                    record(&mut decisions, p);
                    continue;
                }
                let (name, p) = e.username(&wctx, &user_json, &entry.user_name, current.as_deref()).await?;
                if name != entry.user_name {
                    entry.user_name_candidates.clear();
                }
                entry.user_name = name;
                record(&mut decisions, p);
            }
            let mut attrs: Option<Value> = None;
            for e in self.entries.iter().filter(|e| e.plugin.hooks.attributes) {
                let proposed = attrs.as_ref().map(json_text).unwrap_or_else(|| user_json.clone());
                let (a, p) = e.attributes(&wctx, &user_json, &proposed, current.as_deref()).await?;
                attrs = Some(a);
                record(&mut decisions, p);
            }
            if let Some(a) = attrs {
                entry.attributes = a;
            }
            let (grant, revoke) = self.run_memberships(&wctx, &user_json, ctx.operation == Operation::Create, Vec::new(), Vec::new(), &mut decisions).await?;
            entry.grant = grant;
            entry.revoke = revoke;
            Ok((entry, decisions))
        })
    }

    fn map_group<'a>(&'a self, ctx: MapContext<'a>, group: GroupInput<'a>) -> BoxFuture<'a, Result<(Vec<String>, Decisions), MappingError>> {
        Box::pin(async move {
            let mut groups = identity_groups(group.body);
            let mut decisions = Decisions::new();
            let wctx = wit_context(&ctx);
            let g = IdpGroup {
                id: group.id.to_string(),
                display_name: group.body.get("displayName").and_then(Value::as_str).unwrap_or_default().to_string(),
                external_id: group.body.get("externalId").and_then(Value::as_str).map(str::to_string),
            };
            for e in self.entries.iter().filter(|e| e.plugin.hooks.groups) {
                let (out, p) = e.map_group(&wctx, &g, &groups).await?;
                groups = out;
                record(&mut decisions, p);
            }
            Ok((groups, decisions))
        })
    }

    fn deprovision<'a>(&'a self, ctx: MapContext<'a>, user: &'a Value, trigger: Trigger) -> BoxFuture<'a, Result<(DeprovisionAction, Decisions), MappingError>> {
        Box::pin(async move {
            let mut action = action_to_wit(default_action(trigger));
            let mut decisions = Decisions::new();
            let wctx = wit_context(&ctx);
            let user_json = json_text(user);
            let t = match trigger {
                Trigger::Deactivated => dep::Trigger::Deactivated,
                Trigger::Deleted => dep::Trigger::Deleted,
            };
            for e in self.entries.iter().filter(|e| e.plugin.hooks.deprovision) {
                let (a, p) = e.deprovision(&wctx, &user_json, t, action).await?;
                action = a;
                record(&mut decisions, p);
            }
            Ok((action_from_wit(action), decisions))
        })
    }

    fn matching(&self) -> MatchPolicy {
        self.matching.clone()
    }

    fn version(&self) -> Option<i64> {
        self.version
    }

    fn uses_current(&self) -> bool {
        self.entries.iter().any(|e| e.plugin.hooks.username || e.plugin.hooks.attributes)
    }

    fn has_membership_rules(&self) -> bool {
        self.entries.iter().any(|e| e.plugin.hooks.groups)
    }

    fn has_scope_rules(&self) -> bool {
        self.entries.iter().any(|e| e.scopes)
    }

    fn scope<'a>(&'a self, ctx: MapContext<'a>, user: &'a Value, groups: &'a [String]) -> BoxFuture<'a, Result<(bool, Decisions), MappingError>> {
        Box::pin(async move {
            let mut in_scope = true;
            let mut decisions = Decisions::new();
            let (wctx, user_json) = (wit_context(&ctx), json_text(user));
            for e in self.entries.iter().filter(|e| e.scopes) {
                let (s, p) = e.in_scope(&wctx, &user_json, groups, in_scope).await?;
                in_scope = s;
                record(&mut decisions, p);
            }
            Ok((in_scope, decisions))
        })
    }

    fn memberships<'a>(&'a self, ctx: MapContext<'a>, user: &'a Value, is_new: bool, add: Vec<String>, remove: Vec<String>) -> BoxFuture<'a, Result<Memberships, MappingError>> {
        Box::pin(async move {
            let mut decisions = Decisions::new();
            let (a, r) = self.run_memberships(&wit_context(&ctx), &json_text(user), is_new, add, remove, &mut decisions).await?;
            Ok((a, r, decisions))
        })
    }

    fn reactivate<'a>(&'a self, ctx: MapContext<'a>, user: &'a Value) -> BoxFuture<'a, Result<(bool, Decisions), MappingError>> {
        Box::pin(async move {
            let mut restore = true;
            let mut decisions = Decisions::new();
            let wctx = wit_context(&ctx);
            let user_json = json_text(user);
            for e in self.entries.iter().filter(|e| e.plugin.hooks.deprovision) {
                let (r, p) = e.reactivate(&wctx, &user_json, restore).await?;
                restore = r;
                record(&mut decisions, p);
            }
            Ok((restore, decisions))
        })
    }
}

fn action_to_wit(a: DeprovisionAction) -> dep::Action {
    match a {
        DeprovisionAction::Disable => dep::Action::Disable,
        DeprovisionAction::Delete { retention_days } => dep::Action::Delete(retention_days),
        DeprovisionAction::StripGroups => dep::Action::StripGroups,
        DeprovisionAction::Keep => dep::Action::Keep,
    }
}

fn action_from_wit(a: dep::Action) -> DeprovisionAction {
    match a {
        dep::Action::Disable => DeprovisionAction::Disable,
        dep::Action::Delete(retention_days) => DeprovisionAction::Delete { retention_days },
        dep::Action::StripGroups => DeprovisionAction::StripGroups,
        dep::Action::Keep => DeprovisionAction::Keep,
    }
}

/// A connection whose active rules could not be loaded when the server started: every
/// mapping fails (500, naming the reason) rather than silently mapping without the rules.
pub struct Unavailable {
    /// The version that failed to load.
    pub version: i64,
    /// Why.
    pub reason: String,
}

impl Unavailable {
    fn fail<T>(&self) -> Result<T, MappingError> {
        Err(MappingError::Fault { rule: format!("chain version {}", self.version), reason: format!("could not be loaded: {}", self.reason) })
    }
}

impl MappingPipeline for Unavailable {
    fn map_user<'a>(&'a self, _: MapContext<'a>, _: &'a Value) -> BoxFuture<'a, Result<(EntryWrite, Decisions), MappingError>> {
        Box::pin(async move { self.fail() })
    }
    fn map_group<'a>(&'a self, _: MapContext<'a>, _: GroupInput<'a>) -> BoxFuture<'a, Result<(Vec<String>, Decisions), MappingError>> {
        Box::pin(async move { self.fail() })
    }
    fn deprovision<'a>(&'a self, _: MapContext<'a>, _: &'a Value, _: Trigger) -> BoxFuture<'a, Result<(DeprovisionAction, Decisions), MappingError>> {
        Box::pin(async move { self.fail() })
    }
    fn reactivate<'a>(&'a self, _: MapContext<'a>, _: &'a Value) -> BoxFuture<'a, Result<(bool, Decisions), MappingError>> {
        Box::pin(async move { self.fail() })
    }
    fn version(&self) -> Option<i64> {
        Some(self.version)
    }
    fn unavailable(&self) -> Option<&str> {
        Some(&self.reason)
    }
    fn has_membership_rules(&self) -> bool {
        true
    }
    fn memberships<'a>(&'a self, _: MapContext<'a>, _: &'a Value, _: bool, _: Vec<String>, _: Vec<String>) -> BoxFuture<'a, Result<Memberships, MappingError>> {
        Box::pin(async move { self.fail() })
    }
    fn has_scope_rules(&self) -> bool {
        true
    }
    fn scope<'a>(&'a self, _: MapContext<'a>, _: &'a Value, _: &'a [String]) -> BoxFuture<'a, Result<(bool, Decisions), MappingError>> {
        Box::pin(async move { self.fail() })
    }
}

/// The pipeline of every IdP connection: its chain if it has one, else the identity mapping.
///
/// The map is replaced as a whole on every change (copy on write): a request takes one
/// pipeline with [`PipelineRegistry::pipeline_for`] and keeps it to the end, so a swap never
/// shows it a mix, and the old chain's instances go when its last request finishes.
#[derive(Default)]
pub struct ChainRegistry {
    chains: arc_swap::ArcSwap<HashMap<i64, Arc<dyn MappingPipeline>>>,
    /// Candidate versions run beside the active ones, without writing.
    shadows: arc_swap::ArcSwap<HashMap<i64, Arc<Chain>>>,
    identity: Arc<IdentityMapping>,
}

impl ChainRegistry {
    /// Installs (or replaces) a connection's chain.
    pub fn insert(&self, idp_id: i64, chain: Chain) {
        self.set(idp_id, Arc::new(chain));
    }

    /// Installs any pipeline for a connection (a chain, or [`Unavailable`]).
    pub fn set(&self, idp_id: i64, pipeline: Arc<dyn MappingPipeline>) {
        self.chains.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.insert(idp_id, pipeline.clone());
            m
        });
    }

    /// Makes a connection map identically again.
    pub fn remove(&self, idp_id: i64) {
        self.chains.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.remove(&idp_id);
            m
        });
    }

    /// Whether the connection has a pipeline other than the identity mapping.
    pub fn has(&self, idp_id: i64) -> bool {
        self.chains.load().contains_key(&idp_id)
    }

    /// The chain version a connection runs now (`None`: identity or an unversioned chain).
    pub fn version_of(&self, idp_id: i64) -> Option<i64> {
        self.chains.load().get(&idp_id).and_then(|c| c.version())
    }

    /// Why a connection's active rules could not be loaded, if so.
    pub fn unavailable(&self, idp_id: i64) -> Option<String> {
        self.chains.load().get(&idp_id).and_then(|c| c.unavailable().map(str::to_string))
    }

    /// Runs `chain` beside a connection's active rules (`None`: stop).
    pub fn set_shadow(&self, idp_id: i64, chain: Option<Chain>) {
        let chain = chain.map(Arc::new);
        self.shadows.rcu(|m| {
            let mut m = HashMap::clone(m);
            match &chain {
                Some(c) => m.insert(idp_id, c.clone()),
                None => m.remove(&idp_id),
            };
            m
        });
    }

    /// The shadow versions running now, by connection.
    pub fn shadow_versions(&self) -> HashMap<i64, Option<i64>> {
        self.shadows.load().iter().map(|(k, c)| (*k, c.version)).collect()
    }
}

impl PipelineRegistry for ChainRegistry {
    fn pipeline_for(&self, idp: &IdpConnection) -> Arc<dyn MappingPipeline> {
        match self.chains.load().get(&idp.id) {
            Some(c) => c.clone(),
            None => self.identity.clone(),
        }
    }

    fn shadow_for(&self, idp: &IdpConnection) -> Option<Arc<dyn MappingPipeline>> {
        self.shadows.load().get(&idp.id).map(|c| c.clone() as Arc<dyn MappingPipeline>)
    }
}
