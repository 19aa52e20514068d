//! Calling one chain entry: instance reuse, limits, trap handling, output bounds.

use std::sync::Arc;

use super::PluginError;
use super::bindings::exports::mapwright::plugin::{deprovision, groups};
use super::bindings::mapwright::plugin::types as wit;
use super::bindings::candidates::exports::mapwright::plugin::username_candidates as candidates;
use super::bindings::scoping::exports::mapwright::plugin::scope;
use super::bindings::shaping::exports::mapwright::plugin::shape;
use super::idle::IdleList;
use super::runtime::{IDLE_TTL, Instance, LoadedPlugin, Runtime, arm};
use crate::model::{Decision, Limits};
use crate::scim::names::{check_group_name, check_user_name};

/// Calls a plugin export on a pooled instance: the instance goes back to the pool after a
/// normal return, and is discarded after a trap (which becomes a `Fault` naming the reason).
macro_rules! call_plugin {
    ($self:ident, $hook:expr, |$inst:ident| $call:expr) => {{
        // One lane per connection: refused while suspended, else wait for a permit before
        // any plugin code runs.
        if let Some(retry_after) = $self.lane.suspended() {
            return Err($self.suspended(retry_after));
        }
        let _lane = $self.lane.permits.acquire().await.map_err(|_| $self.closed())?;
        // Calls that queued while the breaker opened are refused too.
        if let Some(retry_after) = $self.lane.suspended() {
            return Err($self.suspended(retry_after));
        }
        let started = std::time::Instant::now();
        let cpu = crate::metrics::CallCpu::start();
        let mut $inst = $self.instance().await?;
        arm(&mut $inst.store, &$self.limits);
        let result = $call.await;
        let (outcome, seconds) = match &result {
            Ok(Ok(_)) => ("ok", started.elapsed().as_secs_f64()),
            Ok(Err(_)) => ("rejected", started.elapsed().as_secs_f64()),
            Err(_) => ("fault", started.elapsed().as_secs_f64()),
        };
        // The share of its CPU budget (epoch ticks) the call used: how close a plugin runs
        // to its limit, before it reaches it.
        let budget = $self.limits.cpu_ms.max(1);
        let used = budget.saturating_sub($inst.store.data().ticks_left) as f64 / budget as f64;
        $self.metrics($hook).observe(outcome, seconds, used, cpu.stop());
        $self.lane.record(match &result {
            Ok(_) => Some(false),
            Err(trap) => $self.is_cpu_fault(&$inst, trap).then_some(true),
        });
        match result {
            Ok(r) => {
                $self.put_back($inst);
                r.map_err(|e| $self.rejected(e))?
            }
            Err(trap) => return Err($self.fault(&$inst, &trap)),
        }
    }};
}

/// Idle instances kept per chain entry: enough for the concurrency of one connection.
const IDLE_PER_ENTRY: usize = 4;

/// What one connection's plugins may take of the server, shared by the entries of its chain.
///
/// - At most (cores − 1) of its plugin calls run at once. Plugin code runs on the request
///   workers (yielding at each epoch tick), so without a bound a connection whose plugin loops
///   could hold every core until its CPU budgets ran out, and every other tenant would wait
///   behind it. A chain call takes microseconds, so one permit still carries tens of
///   thousands of users a second.
/// - After [`TRIP_AFTER`] calls in a row that ran out of CPU time, its calls are refused
///   for [`SUSPEND_FOR`] without running (503 with Retry-After: IdPs retry), so a plugin that
///   loops on some input stops burning a core per request. The next call after the pause
///   runs; one more CPU fault suspends again at once, a success closes the breaker.
pub struct Lane {
    permits: tokio::sync::Semaphore,
    breaker: std::sync::Mutex<Breaker>,
}

#[derive(Default)]
struct Breaker {
    /// CPU faults since the last call that finished in time.
    faults: usize,
    suspended_until: Option<std::time::Instant>,
}

/// CPU faults in a row that suspend a connection's plugin calls.
pub const TRIP_AFTER: usize = 3;

/// Why a suspended connection's request is refused (the one wording, for every layer).
pub fn suspension(retry_after: u64) -> String {
    format!("suspended for {retry_after} s after exceeding its CPU time limit {TRIP_AFTER} times in a row")
}
/// How long a suspension lasts.
pub const SUSPEND_FOR: std::time::Duration = std::time::Duration::from_secs(10);

impl Lane {
    /// One chain's lane, shared by its entries.
    pub fn new() -> Arc<Lane> {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        Lane::with_permits(cores.saturating_sub(1).max(1))
    }

    /// A lane of `n` permits.
    pub fn with_permits(n: usize) -> Arc<Lane> {
        Arc::new(Lane { permits: tokio::sync::Semaphore::new(n), breaker: Default::default() })
    }

    /// Seconds left of a suspension, if the connection's rules are suspended.
    fn suspended(&self) -> Option<u64> {
        let b = self.breaker.lock().ok()?;
        let left = b.suspended_until?.checked_duration_since(std::time::Instant::now())?;
        // Rounded up: "Retry-After: 0" would invite an immediate retry.
        Some(left.as_millis().div_ceil(1000).max(1) as u64)
    }

    /// Records how a call ended: `Some(true)` ran out of CPU time, `Some(false)` finished in
    /// time, `None` neither (another kind of fault says nothing about CPU).
    fn record(&self, cpu_fault: Option<bool>) {
        let Ok(mut b) = self.breaker.lock() else { return };
        match cpu_fault {
            Some(true) => {
                b.faults += 1;
                if b.faults >= TRIP_AFTER {
                    b.suspended_until = Some(std::time::Instant::now() + SUSPEND_FOR);
                }
            }
            Some(false) => *b = Breaker::default(),
            None => {}
        }
    }
}

/// One chain entry: a plugin, its configuration, its limits and its idle instances.
pub struct Entry {
    /// The plugin.
    pub plugin: Arc<LoadedPlugin>,
    /// Its configuration for this entry (JSON text, as the contract passes it).
    pub config: String,
    /// Its limits for this entry.
    pub limits: Limits,
    runtime: Arc<Runtime>,
    idle: IdleList<Instance>,
    /// Shared by the entries of one chain (one IdP connection): how many of its plugin
    /// calls may run at once. See [`Lane`].
    lane: Arc<Lane>,
    /// Per call, resolved on first use.
    metrics: [std::sync::OnceLock<crate::metrics::PluginHookMetrics>; Call::ALL.len()],
    /// Its configuration decides scope (asked of the plugin when the entry is made).
    pub scopes: bool,
    /// Its configuration offers usernames as candidates (asked when the entry is made).
    pub offers_candidates: bool,
    /// The most linear memory one of its instances has held (bytes), seen when instances
    /// come back from a call.
    peak_memory: std::sync::atomic::AtomicUsize,
    /// When its last call ended (milliseconds on [`clock_ms`]; [`NEVER`] before the first).
    last_call: std::sync::atomic::AtomicU64,
}

/// `last_call` of an entry not called yet: validating its configuration at activation is
/// not traffic, and an instance kept from it held pool room that busy connections needed.
const NEVER: u64 = u64::MAX;

/// Whether an instance is worth keeping idle after a call that ended at `now`, the entry's
/// previous one having ended at `previous`: only if calls come closer together than an idle
/// instance lives.
fn worth_keeping(previous: u64, now: u64) -> bool {
    previous != NEVER && now.saturating_sub(previous) < IDLE_TTL.as_millis() as u64
}

/// Milliseconds since the first call of this function in the process: a clock that fits an
/// atomic.
fn clock_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed().as_millis() as u64
}

/// The exports a chain entry calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `username.decide`
    Username,
    /// `groups.map-group`
    MapGroup,
    /// `groups.user-memberships`
    UserMemberships,
    /// `attributes.map-attributes`
    Attributes,
    /// `deprovision.on-deprovision`
    Deprovision,
    /// `deprovision.on-reactivate`
    Reactivate,
    /// `shape.shape`
    Shape,
    /// `scope.user-in-scope`
    Scope,
}

impl Call {
    /// Every call, in the order of [`Entry`]'s metrics.
    pub const ALL: [Call; 8] = [Call::Username, Call::MapGroup, Call::UserMemberships, Call::Attributes, Call::Deprovision, Call::Reactivate, Call::Shape, Call::Scope];

    /// The name in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Call::Username => "username",
            Call::MapGroup => "map-group",
            Call::UserMemberships => "user-memberships",
            Call::Attributes => "attributes",
            Call::Deprovision => "deprovision",
            Call::Reactivate => "reactivate",
            Call::Shape => "shape",
            Call::Scope => "scope",
        }
    }
}

/// A plugin's reason, as the decision it records.
fn decision(plugin: &str, p: Option<wit::Provenance>) -> Option<Decision> {
    p.map(|p| Decision::new(plugin, p.rule, p.reason))
}

impl Entry {
    /// Creates the entry and validates its configuration with the plugin (once, at load).
    pub async fn new(runtime: Arc<Runtime>, plugin: Arc<LoadedPlugin>, config: String, limits: Limits, lane: Arc<Lane>) -> Result<Entry, PluginError> {
        let idle = runtime.idle.list(IDLE_PER_ENTRY);
        let mut e = Entry { plugin, config, limits, runtime, idle, lane, metrics: Default::default(), scopes: false, offers_candidates: false, peak_memory: Default::default(), last_call: NEVER.into() };
        let mut inst = e.instance().await?;
        let r = inst.rules.mapwright_plugin_meta().call_validate_config(&mut inst.store, &e.config).await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => return Err(PluginError::Config { plugin: e.plugin.name.clone(), reason }),
            Err(trap) => return Err(e.fault(&inst, &trap)),
        }
        if let Some(s) = &inst.scope {
            arm(&mut inst.store, &e.limits);
            match s.mapwright_plugin_scope().call_scopes(&mut inst.store, &e.config).await {
                Ok(scopes) => e.scopes = scopes,
                Err(trap) => return Err(e.fault(&inst, &trap)),
            }
        }
        if let Some(c) = &inst.candidates {
            arm(&mut inst.store, &e.limits);
            match c.mapwright_plugin_username_candidates().call_offers(&mut inst.store, &e.config).await {
                Ok(offers) => e.offers_candidates = offers,
                Err(trap) => return Err(e.fault(&inst, &trap)),
            }
        }
        e.put_back(inst);
        e.self_test().await?;
        Ok(e)
    }

    /// Runs the plugin's own examples with this entry's configuration, on an instance of its
    /// own (discarded after), if the plugin has a self-test.
    async fn self_test(&self) -> Result<(), PluginError> {
        let code = self.runtime.code(&self.plugin).await?;
        let Some(pre) = &code.self_test else { return Ok(()) };
        let mut store = self.runtime.new_store(&self.limits);
        arm(&mut store, &self.limits);
        let fault = |reason: String| PluginError::Fault { plugin: self.plugin.name.clone(), reason };
        let st = pre.instantiate_async(&mut store).await.map_err(|e| fault(format!("self-test instantiation failed: {e:#}")))?;
        match st.mapwright_plugin_self_test().call_run(&mut store, &self.config).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(PluginError::Config { plugin: self.plugin.name.clone(), reason }),
            Err(trap) => Err(fault(format!("self-test trapped: {}", trap.root_cause()))),
        }
    }

    async fn instance(&self) -> Result<Instance, PluginError> {
        // An instance whose code was evicted meanwhile is dropped, not reused: it would keep
        // that code in memory.
        while let Some(inst) = self.idle.take() {
            if !inst.code.is_evicted() {
                self.runtime.touch(&inst);
                return Ok(inst);
            }
        }
        self.runtime.instantiate(&self.plugin, &self.limits).await
    }

    fn metrics(&self, call: Call) -> &crate::metrics::PluginHookMetrics {
        self.metrics[call as usize].get_or_init(|| crate::metrics::get().plugin_hook(&self.plugin.name, call.as_str()))
    }

    /// The most linear memory one of this entry's instances has held after a call, in bytes.
    pub fn peak_memory(&self) -> usize {
        self.peak_memory.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn put_back(&self, inst: Instance) {
        self.peak_memory.fetch_max(inst.store.data().limits.memory_bytes(), std::sync::atomic::Ordering::Relaxed);
        // An idle instance pays only if the entry is called again before it expires: kept when
        // this call came within that time of the previous one. An entry called once in a while
        // (most of many tenants') would otherwise fill the bounded pool with instances that
        // expire unused, and the busy connections' instances would find no room.
        let now = clock_ms();
        let previous = self.last_call.swap(now, std::sync::atomic::Ordering::Relaxed);
        if worth_keeping(previous, now) && !self.limits.fresh_instance_per_call && !inst.code.is_evicted() {
            let bytes = inst.store.data().limits.memory_bytes();
            self.idle.put(inst, bytes);
        }
    }

    /// A trap: the instance is discarded (never reused) and the reason named.
    fn fault(&self, inst: &Instance, trap: &wasmtime::Error) -> PluginError {
        let text = format!("{trap:#}");
        let stderr = inst.store.data().stderr();
        let (kind, reason) = if self.is_cpu_fault(inst, trap) {
            ("cpu", format!("exceeded its CPU time limit of {} ms", self.limits.cpu_ms))
        } else if inst.store.data().limits.memory_refused() {
            ("memory", format!("exceeded its memory limit of {} bytes", self.limits.memory_bytes))
        } else if text.contains("stack overflow") || trap.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::StackOverflow) {
            ("stack", "overflowed its stack".to_string())
        } else if !stderr.is_empty() {
            // A Rust panic prints "thread … panicked at file:line:col:", the message, and a
            // backtrace hint: keep the first two.
            let text: Vec<&str> = stderr.lines().filter(|l| !l.starts_with("note:") && !l.trim().is_empty()).take(4).collect();
            ("trap", format!("trapped: {}", text.join(" ")))
        } else {
            ("trap", format!("trapped: {}", trap.root_cause()))
        };
        crate::metrics::get().plugin_fault(&self.plugin.name, kind);
        tracing::warn!(plugin = %self.plugin.name, hash = %self.plugin.hash, %reason, "plugin call failed");
        PluginError::Fault { plugin: self.plugin.name.clone(), reason }
    }

    /// Whether the call ran out of CPU time: the budget callback says so on the store.
    fn is_cpu_fault(&self, inst: &Instance, trap: &wasmtime::Error) -> bool {
        inst.store.data().cpu_exhausted || trap.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt)
    }

    fn suspended(&self, retry_after: u64) -> PluginError {
        crate::metrics::get().plugin_fault(&self.plugin.name, "suspended");
        PluginError::Suspended { plugin: self.plugin.name.clone(), retry_after }
    }

    fn closed(&self) -> PluginError {
        PluginError::Fault { plugin: self.plugin.name.clone(), reason: "the chain was unloaded".into() }
    }

    fn rejected(&self, r: wit::Rejection) -> PluginError {
        PluginError::Rejected { plugin: self.plugin.name.clone(), rule: r.rule, reason: r.reason }
    }

    fn invalid_output(&self, why: String) -> PluginError {
        crate::metrics::get().plugin_fault(&self.plugin.name, "invalid_output");
        tracing::warn!(plugin = %self.plugin.name, reason = %why, "plugin returned invalid output");
        PluginError::Fault { plugin: self.plugin.name.clone(), reason: format!("returned invalid output: {why}") }
    }

    /// The username hook.
    pub async fn username(&self, ctx: &wit::Context, user: &str, proposed: &str, current: Option<&str>) -> Result<(String, Option<Decision>), PluginError> {
        let out = call_plugin!(self, Call::Username, |inst| inst.rules.mapwright_plugin_username().call_decide(&mut inst.store, ctx, &self.config, user, proposed, current));
        check_user_name(&out.user_name).map_err(|why| self.invalid_output(why))?;
        Ok((out.user_name, decision(&self.plugin.name, out.provenance)))
    }

    /// The username hook of an entry that offers candidates: the names in order (at least one,
    /// each a valid username).
    pub async fn username_candidates(&self, ctx: &wit::Context, user: &str, proposed: &str, current: Option<&str>) -> Result<(Vec<String>, Option<Decision>), PluginError> {
        let out = call_plugin!(self, Call::Username, |inst| async {
            match &inst.candidates {
                Some(c) => c.mapwright_plugin_username_candidates().call_decide(&mut inst.store, ctx, &self.config, user, proposed, current).await,
                None => Ok(Ok(candidates::Decision { candidates: vec![proposed.to_string()], provenance: None })),
            }
        });
        if out.candidates.is_empty() || out.candidates.len() > 100 {
            return Err(self.invalid_output(format!("{} username candidates (give 1 to 100)", out.candidates.len())));
        }
        for name in &out.candidates {
            check_user_name(name).map_err(|why| self.invalid_output(why))?;
        }
        Ok((out.candidates, decision(&self.plugin.name, out.provenance)))
    }

    /// The group-mapping hook.
    pub async fn map_group(&self, ctx: &wit::Context, group: &groups::IdpGroup, proposed: &[String]) -> Result<(Vec<String>, Option<Decision>), PluginError> {
        let out = call_plugin!(self, Call::MapGroup, |inst| inst.rules.mapwright_plugin_groups().call_map_group(&mut inst.store, ctx, &self.config, group, proposed));
        self.check_groups(&out.groups)?;
        Ok((out.groups, decision(&self.plugin.name, out.provenance)))
    }

    /// The memberships hook.
    pub async fn user_memberships(&self, ctx: &wit::Context, user: &str, is_new: bool, proposed: groups::Memberships) -> Result<groups::Memberships, PluginError> {
        let out = call_plugin!(self, Call::UserMemberships, |inst| inst.rules.mapwright_plugin_groups().call_user_memberships(&mut inst.store, ctx, &self.config, user, is_new, &proposed));
        self.check_groups(&out.add)?;
        self.check_groups(&out.remove)?;
        Ok(out)
    }

    /// The attributes hook.
    pub async fn attributes(&self, ctx: &wit::Context, user: &str, proposed: &str, current: Option<&str>) -> Result<(serde_json::Value, Option<Decision>), PluginError> {
        let out = call_plugin!(self, Call::Attributes, |inst| inst.rules.mapwright_plugin_attributes().call_map_attributes(&mut inst.store, ctx, &self.config, user, proposed, current));
        if out.attributes.len() > self.limits.output_bytes {
            return Err(self.invalid_output(format!("{} bytes of attributes exceed the limit of {}", out.attributes.len(), self.limits.output_bytes)));
        }
        let v: serde_json::Value = serde_json::from_str(&out.attributes).map_err(|e| self.invalid_output(format!("attributes are not valid JSON: {e}")))?;
        if !v.is_object() {
            return Err(self.invalid_output("attributes are not a JSON object".into()));
        }
        crate::scim::resource::check_entry_attributes(&v).map_err(|why| self.invalid_output(format!("attributes do not match the schema: {why}")))?;
        Ok((v, decision(&self.plugin.name, out.provenance)))
    }

    /// The deprovisioning hook.
    pub async fn deprovision(&self, ctx: &wit::Context, user: &str, trigger: deprovision::Trigger, proposed: deprovision::Action) -> Result<(deprovision::Action, Option<Decision>), PluginError> {
        let out = call_plugin!(self, Call::Deprovision, |inst| inst.rules.mapwright_plugin_deprovision().call_on_deprovision(&mut inst.store, ctx, &self.config, user, trigger, proposed));
        if let deprovision::Action::Delete(days) = out.action
            && days > 36_500
        {
            return Err(self.invalid_output(format!("a retention of {days} days is more than 100 years")));
        }
        Ok((out.action, decision(&self.plugin.name, out.provenance)))
    }

    /// The reactivation hook.
    pub async fn reactivate(&self, ctx: &wit::Context, user: &str, proposed: bool) -> Result<(bool, Option<Decision>), PluginError> {
        let out = call_plugin!(self, Call::Reactivate, |inst| inst.rules.mapwright_plugin_deprovision().call_on_reactivate(&mut inst.store, ctx, &self.config, user, proposed));
        Ok((out.restore, decision(&self.plugin.name, out.provenance)))
    }

    /// The scope hook: whether the user is provisioned at all.
    pub async fn in_scope(&self, ctx: &wit::Context, user: &str, groups: &[String], proposed: bool) -> Result<(bool, Option<Decision>), PluginError> {
        let out = call_plugin!(self, Call::Scope, |inst| async {
            match &inst.scope {
                Some(s) => s.mapwright_plugin_scope().call_user_in_scope(&mut inst.store, ctx, &self.config, user, groups, proposed).await,
                // Only entries whose plugin says it scopes are asked.
                None => Ok(Ok(scope::Decision { in_scope: proposed, provenance: None })),
            }
        });
        Ok((out.in_scope, decision(&self.plugin.name, out.provenance)))
    }

    /// The shaping hook: what a delivery target receives of a resource. The output must be a
    /// JSON object within the entry's output limit.
    pub async fn shape(&self, target: &shape::Target, kind: shape::ResourceType, resource: &str) -> Result<(serde_json::Value, Vec<Decision>), PluginError> {
        let out = call_plugin!(self, Call::Shape, |inst| async {
            match &inst.shape {
                Some(s) => s.mapwright_plugin_shape().call_shape(&mut inst.store, target, &self.config, kind, resource).await,
                // Only a plugin that says it shapes is put in a shape chain.
                None => Ok(Ok(shape::Shaped { resource: resource.to_string(), provenance: Vec::new() })),
            }
        });
        if out.resource.len() > self.limits.output_bytes {
            return Err(self.invalid_output(format!("{} bytes of resource exceed the limit of {}", out.resource.len(), self.limits.output_bytes)));
        }
        let v: serde_json::Value = serde_json::from_str(&out.resource).map_err(|e| self.invalid_output(format!("the resource is not valid JSON: {e}")))?;
        if !v.is_object() {
            return Err(self.invalid_output("the resource is not a JSON object".into()));
        }
        if out.provenance.len() > 1000 {
            return Err(self.invalid_output(format!("{} reasons exceed the limit of 1000", out.provenance.len())));
        }
        let decisions = out.provenance.into_iter().map(|p| Decision::new(self.plugin.name.clone(), p.rule, p.reason)).collect();
        Ok((v, decisions))
    }

    fn check_groups(&self, groups: &[String]) -> Result<(), PluginError> {
        let total: usize = groups.iter().map(String::len).sum();
        if groups.len() > 1000 || total > self.limits.output_bytes {
            return Err(self.invalid_output(format!("{} groups ({total} bytes) exceed the limits", groups.len())));
        }
        groups.iter().try_for_each(|g| check_group_name(g)).map_err(|why| self.invalid_output(why))
    }
}


#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    async fn username_entry(lane: Arc<Lane>) -> Entry {
        let runtime = Arc::new(Runtime::new().unwrap());
        let plugin = runtime.load(crate::plugins::builtin::get("username").unwrap()).await.unwrap();
        Entry::new(runtime, plugin, r#"{"source": "email", "local_part": true}"#.into(), Limits::default(), lane).await.unwrap()
    }

    fn ctx() -> wit::Context {
        wit::Context { tenant: "t".into(), idp: "i".into(), idp_kind: "generic".into(), operation: wit::Operation::Create }
    }

    const USER: &str = r#"{"userName": "Jane.Doe@acme.com", "emails": [{"value": "Jane.Doe@acme.com", "primary": true}]}"#;

    #[tokio::test]
    async fn idle_instances_expire_and_fresh_ones_are_made_after() {
        let e = username_entry(Lane::new()).await;
        e.username(&ctx(), USER, "Jane.Doe@acme.com", None).await.unwrap();
        assert_eq!(e.idle.len(), 1, "reused after the call");
        // Younger than the time to live: kept.
        e.runtime.idle.sweep(std::time::Duration::from_secs(3600));
        assert_eq!(e.idle.len(), 1);
        e.runtime.idle.sweep(std::time::Duration::ZERO);
        assert_eq!(e.idle.len(), 0, "expired");
        let (name, _) = e.username(&ctx(), USER, "Jane.Doe@acme.com", None).await.unwrap();
        assert_eq!(name, "Jane.Doe");
    }

    #[tokio::test]
    async fn an_entry_knows_the_memory_its_instances_hold() {
        let e = username_entry(Lane::new()).await;
        e.username(&ctx(), USER, "x", None).await.unwrap();
        let held = e.peak_memory();
        // A Rust plugin starts with a few 64 KiB pages (its stack, data and heap), far under
        // the default limit.
        assert!(held >= 64 << 10 && held < Limits::default().memory_bytes, "{held}");
    }

    #[tokio::test]
    async fn a_connection_runs_no_more_plugin_calls_at_once_than_its_lane_allows() {
        let lane = Lane::with_permits(1);
        let e = username_entry(lane.clone()).await;
        let held = lane.permits.acquire().await.unwrap();
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(200), e.username(&ctx(), USER, "x", None)).await;
        assert!(waiting.is_err(), "the call ran while the only lane was taken");
        drop(held);
        assert!(e.username(&ctx(), USER, "x", None).await.is_ok());
    }

    /// The builtin username plugin with a custom section appended: the same code under
    /// another content hash.
    fn username_copy() -> Vec<u8> {
        let mut bytes = crate::plugins::builtin::get("username").unwrap().to_vec();
        // A custom section (id 0) of 5 bytes: a 4-byte name "copy".
        bytes.extend_from_slice(&[0, 5, 4, b'c', b'o', b'p', b'y']);
        bytes
    }

    struct Sources;
    impl crate::plugins::runtime::PluginSources for Sources {
        fn bytes<'a>(&'a self, hash: &'a str) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<u8>, String>> + Send + 'a>> {
            let original = crate::plugins::builtin::get("username").unwrap().to_vec();
            let found = [original, username_copy()].into_iter().find(|b| crate::plugins::runtime::content_hash(b) == hash);
            Box::pin(async move { found.ok_or_else(|| "not stored".to_string()) })
        }
    }

    #[tokio::test]
    async fn code_beyond_the_budget_is_evicted_with_its_idle_instances_and_loads_again() {
        let dir = tempfile::tempdir().unwrap();
        // How much code one copy of the plugin is.
        let one = {
            let r = Runtime::new().unwrap();
            r.load(crate::plugins::builtin::get("username").unwrap()).await.unwrap();
            let held = r.resident_bytes();
            r.shutdown();
            held
        };
        assert!(one > 100_000, "{one}");
        // Room for one of the two copies.
        let runtime = Arc::new(Runtime::new().unwrap().with_disk_cache(dir.path().to_path_buf()).with_budgets(one + one / 2, 1 << 30));
        runtime.set_sources(Arc::new(Sources));
        let config = r#"{"source": "email", "local_part": true}"#;
        let a = Entry::new(runtime.clone(), runtime.load(crate::plugins::builtin::get("username").unwrap()).await.unwrap(), config.into(), Limits::default(), Lane::new()).await.unwrap();
        assert_eq!((a.idle.len(), runtime.resident_bytes()), (0, one), "validating the configuration keeps no instance");
        assert_eq!(a.username(&ctx(), USER, "x", None).await.unwrap().0, "Jane.Doe");
        assert_eq!(a.idle.len(), 1, "a call soon after activation does");
        let b = Entry::new(runtime.clone(), runtime.load(&username_copy()).await.unwrap(), config.into(), Limits::default(), Lane::new()).await.unwrap();
        assert_ne!(a.plugin.hash, b.plugin.hash);
        assert_eq!(runtime.resident_bytes(), one, "the first copy's code was evicted");
        assert_eq!((a.idle.len(), b.idle.len()), (0, 0), "and its idle instance with it");
        // Each call loads its code again (from the artifact) and evicts the other's.
        for round in 0..3 {
            for (e, other) in [(&a, &b), (&b, &a)] {
                let (name, _) = e.username(&ctx(), USER, "x", None).await.unwrap();
                assert_eq!(name, "Jane.Doe", "round {round}");
                assert_eq!((e.idle.len(), other.idle.len(), runtime.resident_bytes()), (1, 0, one));
            }
        }
        // Artifacts gone (a cleaned cache directory): compiled again from the stored bytes.
        for f in std::fs::read_dir(dir.path()).unwrap() {
            std::fs::remove_file(f.unwrap().path()).unwrap();
        }
        assert_eq!(a.username(&ctx(), USER, "x", None).await.unwrap().0, "Jane.Doe");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "its artifact written again");
        runtime.shutdown();
    }

    #[tokio::test]
    async fn a_call_in_progress_keeps_its_code_though_evicted_and_its_instance_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = Arc::new(Runtime::new().unwrap().with_disk_cache(dir.path().to_path_buf()).with_budgets(1, 1 << 30));
        let config = r#"{"source": "email", "local_part": true}"#;
        let a = Entry::new(runtime.clone(), runtime.load(crate::plugins::builtin::get("username").unwrap()).await.unwrap(), config.into(), Limits::default(), Lane::new()).await.unwrap();
        let inst = a.instance().await.unwrap();
        // Another plugin's load evicts the code the instance runs.
        runtime.load(&username_copy()).await.unwrap();
        assert!(inst.code.is_evicted());
        let mut inst = inst;
        arm(&mut inst.store, &a.limits);
        let out = inst.rules.mapwright_plugin_username().call_decide(&mut inst.store, &ctx(), &a.config, USER, "x", None).await.unwrap().unwrap();
        assert_eq!(out.user_name, "Jane.Doe", "the evicted code still runs the call it is in");
        a.put_back(inst);
        assert_eq!(a.idle.len(), 0, "not kept idle once evicted");
        runtime.shutdown();
    }

    #[test]
    fn only_entries_called_within_the_idle_time_keep_instances() {
        let ttl = IDLE_TTL.as_millis() as u64;
        assert!(worth_keeping(1_000, 1_000));
        assert!(worth_keeping(1_000, 1_000 + ttl - 1));
        assert!(!worth_keeping(1_000, 1_000 + ttl), "the instance would have expired before this call");
        assert!(worth_keeping(5_000, 1_000), "calls ending out of order (concurrent ones) are close");
        assert!(!worth_keeping(NEVER, 1_000), "the first call keeps nothing: it may be the only one");
    }

    #[test]
    fn the_breaker_opens_after_cpu_faults_in_a_row_and_closes_on_a_success() {
        let lane = Lane::with_permits(1);
        for _ in 0..TRIP_AFTER - 1 {
            lane.record(Some(true));
        }
        // A fault of another kind neither counts nor resets.
        lane.record(None);
        assert_eq!(lane.suspended(), None);
        lane.record(Some(true));
        assert_eq!(lane.suspended(), Some(SUSPEND_FOR.as_secs()));
        lane.record(Some(false));
        assert_eq!(lane.suspended(), None);
        // Faults separated by a success never trip it.
        for _ in 0..10 {
            lane.record(Some(true));
            lane.record(Some(false));
        }
        assert_eq!(lane.suspended(), None);
    }
}
