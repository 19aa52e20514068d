//! The plugin engine: one per server, compiling each component once per content hash.
//!
//! Isolation: every chain entry of every IdP connection has its own instances (never shared
//! between tenants or connections); an instance is reused only by the entry that created it
//! and is discarded after any trap. Linear memory is bounded per instance, CPU per call.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

use super::PluginError;
use super::bindings::HostRules as Rules;
use super::bindings::candidates::Candidates;
use super::bindings::scoping::Scoping;
use super::bindings::shaping::Shaping;
use super::bindings::mapwright::plugin::types::Hook as WitHook;
use super::idle::IdlePool;
use super::resident::{Compiled, Resident};
use super::sandbox::SandboxState;
use super::ticker::Ticker;
use crate::model::{Hook, Limits};

/// Instances the pooling allocator can hold at once (busy and idle).
pub const MAX_INSTANCES: u32 = 1000;
/// The largest linear memory any plugin may have; per-tenant limits are at most this.
pub const MAX_MEMORY: usize = 64 << 20;
/// The epoch tick: the unit of the CPU limit and how often a running plugin yields.
pub const TICK: Duration = Duration::from_millis(1);

/// Idle instances kept across the server: bounded so that busy calls always find room in the
/// pooling allocator (`MAX_INSTANCES`); their memory is bounded apart (an idle instance keeps
/// the guest memory it touched: about 1 MiB for a Rust plugin, 11-13 MiB for a JavaScript or
/// Python one), by a share of the plugin memory budget.
const IDLE_MAX: usize = 256;

/// Without a budget (one-shot commands): 256 idle instances of 64 MiB at most.
const IDLE_MAX_BYTES: usize = IDLE_MAX * MAX_MEMORY;

/// An idle instance unused this long is dropped (its memory returns to the system).
pub(crate) const IDLE_TTL: Duration = Duration::from_secs(30);

/// Which hooks a plugin implements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Hooks {
    pub username: bool,
    pub groups: bool,
    pub attributes: bool,
    pub deprovision: bool,
    /// Shapes what delivery targets receive (the optional `shape` export, when the plugin
    /// says it does).
    pub shape: bool,
    /// May decide whether users are in scope (the optional `scope` export; each chain entry
    /// asks whether its configuration does).
    pub scope: bool,
}

impl Hooks {
    /// Whether `hook` is among them.
    pub fn has(self, hook: Hook) -> bool {
        match hook {
            Hook::Username => self.username,
            Hook::Groups => self.groups,
            Hook::Attributes => self.attributes,
            Hook::Deprovision => self.deprovision,
            Hook::Shape => self.shape,
            Hook::Scope => self.scope,
        }
    }

    /// The hooks, in contract order.
    pub fn list(self) -> Vec<Hook> {
        Hook::ALL.into_iter().filter(|h| self.has(*h)).collect()
    }
}

/// One instance of a plugin, in a store of its own.
pub(crate) struct Instance {
    pub(crate) store: Store<SandboxState>,
    pub(crate) rules: Rules,
    /// The `shape` export of the same instance, if the plugin has it.
    pub(crate) shape: Option<Shaping>,
    /// The `scope` export of the same instance, if the plugin has it.
    pub(crate) scope: Option<Scoping>,
    /// The `username-candidates` export of the same instance, if the plugin has it.
    pub(crate) candidates: Option<Candidates>,
    /// The code it runs: held while the instance lives, even if evicted meanwhile.
    pub(crate) code: Arc<Compiled>,
}

/// A described plugin: what it is, known for as long as the runtime lives. Its compiled code
/// is held apart, under the runtime's memory budget (see [`super::resident`]).
pub struct LoadedPlugin {
    /// SHA-256 of the component bytes.
    pub hash: String,
    /// The name it gives itself.
    pub name: String,
    /// The version it gives itself.
    pub version: String,
    /// The hooks it implements.
    pub hooks: Hooks,
    /// The component's exported interfaces, e.g. `mapwright:plugin/username@0.1.0`.
    pub exports: Vec<String>,
    /// The component's size in bytes.
    pub size: usize,
}

impl LoadedPlugin {
    /// The contract version the plugin was built against (from its exports).
    pub fn contract(&self) -> Option<&str> {
        self.exports.iter().find_map(|e| e.strip_prefix("mapwright:plugin/meta@"))
    }

    /// The record the store keeps of it.
    pub fn record(&self) -> crate::model::PluginRecord {
        crate::model::PluginRecord {
            hash: self.hash.clone(),
            name: self.name.clone(),
            version: self.version.clone(),
            contract: self.contract().unwrap_or("unknown").to_string(),
            hooks: self.hooks.list(),
            size: self.size,
            uploaded: crate::model::Timestamp::default(),
        }
    }
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin").field("name", &self.name).field("version", &self.version).field("hash", &self.hash).field("hooks", &self.hooks).finish()
    }
}

/// The plugin engine of a server (or of one CLI command).
pub struct Runtime {
    pub(crate) engine: Engine,
    linker: Linker<SandboxState>,
    /// Every plugin described so far, by content hash (small; never forgotten).
    cache: Mutex<HashMap<String, Arc<LoadedPlugin>>>,
    /// Their compiled code, under the memory budget.
    resident: Resident,
    /// Where compiled artifacts persist between runs (`<sha256>-<engine hash>.cwasm`).
    disk_cache: Option<std::path::PathBuf>,
    /// Where a plugin's bytes are found again when its code was evicted and its artifact is
    /// gone.
    sources: OnceLock<Arc<dyn PluginSources>>,
    ticker: Ticker,
    /// Every chain entry's idle instances.
    pub(crate) idle: IdlePool<Instance>,
}

impl Runtime {
    /// Stops the epoch ticker and the idle-instance sweeper and waits for them, so no thread
    /// touches the engine while the process exits.
    pub fn shutdown(&self) {
        self.idle.shutdown();
        self.ticker.stop();
    }

    /// A new instance of `plugin` with `limits`, its CPU budget not yet armed.
    pub(crate) async fn instantiate(&self, plugin: &LoadedPlugin, limits: &Limits) -> Result<Instance, PluginError> {
        let code = self.code(plugin).await?;
        let mut store = self.new_store(limits);
        arm(&mut store, limits);
        let fault = |e: wasmtime::Error| PluginError::Fault { plugin: plugin.name.clone(), reason: format!("instantiation failed: {e:#}") };
        let instance = code.pre.instantiate_async(&mut store).await.map_err(fault)?;
        let rules = code.indices.load(&mut store, &instance).map_err(fault)?;
        let shape = code.shaping.as_ref().map(|i| i.load(&mut store, &instance)).transpose().map_err(fault)?;
        let scope = code.scoping.as_ref().map(|i| i.load(&mut store, &instance)).transpose().map_err(fault)?;
        let candidates = code.candidates.as_ref().map(|i| i.load(&mut store, &instance)).transpose().map_err(fault)?;
        Ok(Instance { store, rules, shape, scope, candidates, code })
    }

    /// Marks an instance's code as used now (its reuse keeps the plugin resident).
    pub(crate) fn touch(&self, inst: &Instance) {
        self.resident.touch(&inst.code);
    }

    /// The compiled code of a described plugin: held, or loaded again from its artifact on
    /// disk (or compiled again from its stored bytes when the artifact is missing or damaged:
    /// logged and counted). Loading may evict other plugins' code.
    pub(crate) async fn code(&self, plugin: &LoadedPlugin) -> Result<Arc<Compiled>, PluginError> {
        let started = std::time::Instant::now();
        let (code, evicted) = self.resident.get_or_load(&plugin.hash, self.reload(plugin)).await?;
        if let Some(evicted) = evicted {
            crate::metrics::get().plugin_cold_load(started.elapsed().as_secs_f64());
            self.forget(evicted);
        }
        Ok(code)
    }

    /// After an eviction: counts it and drops the idle instances that still hold the code
    /// (those in a call finish on it and are dropped after).
    fn forget(&self, evicted: Vec<Arc<Compiled>>) {
        if evicted.is_empty() {
            return;
        }
        crate::metrics::get().plugin_evicted(evicted.len());
        // Only this list holds the code unless some instance does.
        if evicted.iter().any(|c| Arc::strong_count(c) > 1) {
            self.idle.retain(|i| !i.code.is_evicted());
        }
    }

    /// Loads the code of a plugin described before (its code evicted since, or never held by
    /// this process).
    async fn reload(&self, plugin: &LoadedPlugin) -> Result<Compiled, PluginError> {
        let (engine, artifact) = (self.engine.clone(), self.artifact_path(&plugin.hash));
        let from_disk = match artifact.clone() {
            Some(path) => tokio::task::spawn_blocking(move || Runtime::load_artifact(&engine, &path)).await.map_err(|e| PluginError::Invalid(format!("loading: {e}")))?,
            None => None,
        };
        let component = match from_disk {
            Some(c) => c,
            None => {
                let sources = self.sources.get().ok_or_else(|| PluginError::Fault { plugin: plugin.name.clone(), reason: format!("its compiled code sha256:{} is not held and no artifact or source is at hand", plugin.hash) })?;
                let bytes = sources.bytes(&plugin.hash).await.map_err(|reason| PluginError::Fault { plugin: plugin.name.clone(), reason })?;
                if content_hash(&bytes) != plugin.hash {
                    return Err(PluginError::Fault { plugin: plugin.name.clone(), reason: format!("the stored bytes of sha256:{} no longer match their hash", plugin.hash) });
                }
                tracing::warn!(plugin = %plugin.name, hash = %plugin.hash, "a plugin's compiled artifact was missing: compiling it again from its stored bytes");
                let engine = self.engine.clone();
                tokio::task::spawn_blocking(move || Runtime::compile_and_persist(&engine, &bytes, artifact.as_deref(), CompiledFrom::MissingArtifact))
                    .await
                    .map_err(|e| PluginError::Invalid(format!("compiling: {e}")))??
            }
        };
        self.prepare(&component)
    }

    /// Links a compiled component against the sandbox and binds its exports.
    fn prepare(&self, component: &Component) -> Result<Compiled, PluginError> {
        let pre = self.linker.instantiate_pre(component).map_err(|e| PluginError::Invalid(format!("the component imports something the sandbox does not grant: {e:#}")))?;
        Compiled::new(component, pre)
    }

    /// Bytes of compiled code held now (what the budget bounds).
    pub fn resident_bytes(&self) -> usize {
        self.resident.held()
    }

    /// A store for one plugin instance: its sandbox, memory limiter and CPU budget callback,
    /// and a token that keeps the epoch ticker running while the store lives.
    pub(crate) fn new_store(&self, limits: &Limits) -> Store<SandboxState> {
        let mut store = Store::new(&self.engine, SandboxState::new(limits, self.ticker.ticking()));
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_callback(budget);
        store
    }
}

/// Where a compiled plugin came from (counted: `mapwright_plugin_compiles_total{from}`).
#[derive(Debug, Clone, Copy)]
enum CompiledFrom {
    /// Its bytes, compiled now.
    Source,
    /// The artifact a previous run left on disk, loaded without compiling.
    Artifact,
    /// An artifact on disk that would not load: discarded (the plugin is compiled again).
    DamagedArtifact,
    /// Code evicted from memory whose artifact was gone: compiled again from its stored bytes.
    MissingArtifact,
}

impl CompiledFrom {
    /// Counts it in the metrics.
    fn count(self) {
        crate::metrics::get().plugin_compiled(match self {
            CompiledFrom::Source => "source",
            CompiledFrom::Artifact => "artifact",
            CompiledFrom::DamagedArtifact => "damaged_artifact",
            CompiledFrom::MissingArtifact => "missing_artifact",
        });
    }
}

/// The SHA-256 of a component, hex: its identity in the store and the caches.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The address space each memory slot reserves: 4 GiB and a 32 MiB guard, although a memory
/// never grows past MAX_MEMORY. Then no 32-bit address can leave the reservation and the
/// compiled code needs no bounds check on its loads and stores; reserving only MAX_MEMORY made
/// the chain's calls about 30% slower (load bench, --hooks-only). The pool reserves ~8 TiB of
/// virtual address space this way, none of it committed.
const FAST: (u64, u64) = (4 << 30, 32 << 20);
/// Where that much address space is not to be had (`ulimit -v`, a 39-bit address space): slots
/// of MAX_MEMORY with a small guard, and bounds checks in the code (~130 GiB for the pool).
const COMPACT: (u64, u64) = (MAX_MEMORY as u64, 64 << 10);

fn engine_config((reservation, guard): (u64, u64)) -> Config {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(MAX_INSTANCES)
        .total_core_instances(MAX_INSTANCES * 4)
        .total_memories(MAX_INSTANCES * 2)
        .total_tables(MAX_INSTANCES * 2)
        .max_memory_size(MAX_MEMORY);
    let mut config = Config::new();
    config
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .epoch_interruption(true)
        .memory_init_cow(true)
        .memory_reservation(reservation)
        .memory_guard_size(guard)
        .memory_reservation_for_growth(0)
        .max_wasm_stack(512 << 10);
    if std::env::var_os("MAPWRIGHT_PLUGIN_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    config
}

impl Runtime {
    /// An engine with the sandbox linked and the epoch ticker started.
    pub fn new() -> Result<Runtime, PluginError> {
        let engine = match Engine::new(&engine_config(FAST)) {
            Ok(engine) => engine,
            Err(e) => {
                tracing::warn!(error = %e, "cannot reserve 4 GiB of address space per plugin memory (is `ulimit -v` set?): plugin code runs with bounds checks, about 30% slower");
                Engine::new(&engine_config(COMPACT)).map_err(|e| PluginError::Invalid(format!("creating the plugin engine (its instance pool reserves ~130 GiB of address space: is `ulimit -v` set?): {e}")))?
            }
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| PluginError::Invalid(format!("linking WASI: {e}")))?;
        // A store is alive for as long as no idle instance has expired: park after a second
        // without any.
        let ticker = Ticker::start(engine.clone(), TICK, 1000).map_err(|e| PluginError::Invalid(format!("starting the epoch ticker: {e}")))?;
        Ok(Runtime {
            engine,
            linker,
            cache: Mutex::new(HashMap::new()),
            resident: Resident::new(usize::MAX),
            disk_cache: None,
            sources: OnceLock::new(),
            ticker,
            idle: IdlePool::new(IDLE_MAX, IDLE_MAX_BYTES, IDLE_TTL),
        })
    }

    /// Persists compiled components under `dir`, so a restart does not compile them again
    /// and evicted code loads again in milliseconds.
    pub fn with_disk_cache(mut self, dir: std::path::PathBuf) -> Runtime {
        self.disk_cache = Some(dir);
        self
    }

    /// Keeps plugins within `bytes` of memory: two thirds for compiled code (the least
    /// recently used evicted), a third for idle instances' guest memory. The default holds
    /// every compiled plugin (one-shot commands).
    pub fn with_memory_budget(self, bytes: usize) -> Runtime {
        let code = bytes / 3 * 2;
        self.with_budgets(code, bytes - code)
    }

    /// At most `code` bytes of compiled code and `idle` bytes of idle instances.
    pub(crate) fn with_budgets(mut self, code: usize, idle: usize) -> Runtime {
        self.resident = Resident::new(code);
        self.idle.shutdown();
        self.idle = IdlePool::new(IDLE_MAX, idle, IDLE_TTL);
        self
    }

    /// Where evicted plugins' bytes are found when their artifact is gone (the first one set
    /// stays).
    pub fn set_sources(&self, sources: Arc<dyn PluginSources>) {
        let _ = self.sources.set(sources);
    }

    /// The artifact path of a component: keyed by its content and by everything about this
    /// engine that makes an artifact loadable (version, configuration, CPU features).
    fn artifact_path(&self, hash: &str) -> Option<std::path::PathBuf> {
        use std::hash::{Hash, Hasher};
        let dir = self.disk_cache.as_ref()?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        Some(dir.join(format!("{hash}-{:016x}.cwasm", h.finish())))
    }

    /// Compiles `bytes`, or loads the artifact a previous run compiled from the same bytes;
    /// counts which it did (and a damaged artifact discarded).
    fn compile(engine: &Engine, bytes: &[u8], artifact: Option<&std::path::Path>) -> Result<Component, PluginError> {
        match artifact.and_then(|path| Runtime::load_artifact(engine, path)) {
            Some(c) => Ok(c),
            None => Runtime::compile_and_persist(engine, bytes, artifact, CompiledFrom::Source),
        }
    }

    /// The artifact at `path`, if there is one and it loads (counted); a damaged one is
    /// removed (counted too).
    fn load_artifact(engine: &Engine, path: &std::path::Path) -> Option<Component> {
        {
            let serialized = std::fs::read(path).ok()?;
            // Read into memory rather than mapping the file: a mapped artifact that anyone
            // truncates or rewrites in place would crash the server (SIGBUS) on next use.
            // SAFETY: wasmtime requires bytes this engine configuration produced and nobody
            // altered. We only read files this server wrote (below, write-then-rename) into its
            // own data directory, named by the source's SHA-256 and the engine's compatibility
            // hash; wasmtime also checks the header and refuses a mismatch.
            #[allow(unsafe_code)]
            let loaded = unsafe { Component::deserialize(engine, &serialized) };
            match loaded {
                Ok(c) => {
                    CompiledFrom::Artifact.count();
                    Some(c)
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring an unusable compiled plugin artifact");
                    CompiledFrom::DamagedArtifact.count();
                    let _ = std::fs::remove_file(path);
                    None
                }
            }
        }
    }

    /// Compiles `bytes` (counted as `from`) and writes the artifact to `artifact`.
    fn compile_and_persist(engine: &Engine, bytes: &[u8], artifact: Option<&std::path::Path>, from: CompiledFrom) -> Result<Component, PluginError> {
        let component = Component::new(engine, bytes).map_err(|e| PluginError::Invalid(format!("not a valid component: {e:#}")))?;
        from.count();
        if let Some(path) = artifact
            && let Ok(serialized) = component.serialize()
        {
            // Write then rename: a crash never leaves a half-written artifact under the name.
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            let written = path.parent().map(std::fs::create_dir_all).transpose().and_then(|_| std::fs::write(&tmp, serialized)).and_then(|_| std::fs::rename(&tmp, path));
            if let Err(e) = written {
                tracing::warn!(path = %path.display(), error = %e, "could not persist a compiled plugin");
                let _ = std::fs::remove_file(&tmp);
            }
        }
        Ok(component)
    }

    /// The plugin with this content hash, if this runtime has loaded it already.
    pub fn cached(&self, hash: &str) -> Option<Arc<LoadedPlugin>> {
        self.cache.lock().ok().and_then(|c| c.get(hash).cloned())
    }

    /// Compiles (or takes from the cache) a component, checks that it implements the
    /// contract, and asks it which hooks it implements. Compilation takes ~100 ms: callers
    /// run this off the request path.
    pub async fn load(&self, bytes: &[u8]) -> Result<Arc<LoadedPlugin>, PluginError> {
        let hash = content_hash(bytes);
        if let Some(p) = self.cache.lock().ok().and_then(|c| c.get(&hash).cloned()) {
            return Ok(p);
        }
        let component = {
            let (engine, bytes, artifact) = (self.engine.clone(), bytes.to_vec(), self.artifact_path(&hash));
            tokio::task::spawn_blocking(move || Runtime::compile(&engine, &bytes, artifact.as_deref()))
                .await
                .map_err(|e| PluginError::Invalid(format!("compiling: {e}")))??
        };
        let exports: Vec<String> = component.component_type().exports(&self.engine).map(|(name, _)| name.to_string()).collect();
        check_contract_version(&exports)?;
        let code = self.prepare(&component)?;
        let mut store = self.new_store(&Limits::default());
        arm(&mut store, &Limits::default());
        let invalid = |what: &str, e: wasmtime::Error| PluginError::Invalid(format!("{what}: {e:#}"));
        let instance = code.pre.instantiate_async(&mut store).await.map_err(|e| invalid("instantiating", e))?;
        let rules = code.indices.load(&mut store, &instance).map_err(|e| invalid("instantiating", e))?;
        let info = rules
            .mapwright_plugin_meta()
            .call_describe(&mut store)
            .await
            .map_err(|e| PluginError::Invalid(format!("describe() failed: {e:#}")))?;
        // A component built with a 0.1.2 SDK exports `shape` whether or not it shapes: it says.
        let shapes = match &code.shaping {
            Some(i) => {
                let s = i.load(&mut store, &instance).map_err(|e| invalid("instantiating", e))?;
                s.mapwright_plugin_shape().call_shapes(&mut store).await.map_err(|e| invalid("shape.shapes() failed", e))?
            }
            None => false,
        };
        // Whether it scopes depends on each entry's configuration: asked per entry.
        let scopes = code.scoping.is_some();
        drop(store);
        let mut hooks = Hooks { shape: shapes, scope: scopes, ..Hooks::default() };
        for h in info.hooks {
            match h {
                WitHook::Username => hooks.username = true,
                WitHook::Groups => hooks.groups = true,
                WitHook::Attributes => hooks.attributes = true,
                WitHook::Deprovision => hooks.deprovision = true,
            }
        }
        let loaded = Arc::new(LoadedPlugin { hash: hash.clone(), name: info.name, version: info.version, hooks, exports, size: bytes.len() });
        // The code just compiled is held (it is about to be used), evicting others if needed.
        let (_, evicted) = self.resident.get_or_load(&hash, std::future::ready(Ok(code))).await?;
        self.forget(evicted.unwrap_or_default());
        if let Ok(mut c) = self.cache.lock() {
            c.entry(hash).or_insert_with(|| loaded.clone());
        }
        Ok(loaded)
    }
}

/// Where a runtime finds a plugin's bytes (by content hash) when it must compile evicted code
/// anew: its artifact on disk was deleted or damaged.
pub trait PluginSources: Send + Sync {
    /// The component whose SHA-256 is `hash`, or why it cannot be had.
    fn bytes<'a>(&'a self, hash: &'a str) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send + 'a>>;
}

/// The contract versions this host runs: `mapwright:plugin@0.1.x`. Checked by name before
/// anything is linked, so a plugin built for another contract is refused with the versions
/// side by side rather than with a type mismatch deep inside an export.
pub const CONTRACT_SERIES: (u64, u64) = (0, 1);

fn check_contract_version(exports: &[String]) -> Result<(), PluginError> {
    for name in exports {
        let Some(version) = name.strip_prefix("mapwright:plugin/").and_then(|rest| rest.split_once('@')).map(|(_, v)| v) else {
            continue;
        };
        let mut parts = version.split('.').map(|p| p.split(['-', '+']).next().unwrap_or(p).parse::<u64>().ok());
        let (major, minor) = (parts.next().flatten(), parts.next().flatten());
        // semver: below 1.0 the minor number is the breaking one.
        if (major, minor) != (Some(CONTRACT_SERIES.0), Some(CONTRACT_SERIES.1)) {
            return Err(PluginError::Invalid(format!(
                "the component was built for contract mapwright:plugin@{version}; this server runs plugins built for {}.{}.x: rebuild it with a {}.{} plugin SDK or upgrade the server",
                CONTRACT_SERIES.0, CONTRACT_SERIES.1, CONTRACT_SERIES.0, CONTRACT_SERIES.1
            )));
        }
    }
    Ok(())
}

/// Gives a store a fresh CPU budget for one call, and forgets earlier memory refusals.
pub(crate) fn arm(store: &mut Store<SandboxState>, limits: &Limits) {
    store.data_mut().ticks_left = limits.cpu_ms.max(1);
    store.data_mut().cpu_exhausted = false;
    store.data_mut().limits.reset();
    store.set_epoch_deadline(1);
}

/// The epoch callback: yield to the executor at every tick while the call's CPU budget
/// lasts, then trap.
pub(crate) fn budget(mut ctx: wasmtime::StoreContextMut<'_, SandboxState>) -> wasmtime::Result<wasmtime::UpdateDeadline> {
    let s = ctx.data_mut();
    if s.ticks_left == 0 {
        s.cpu_exhausted = true;
        return Err(wasmtime::Error::msg(CPU_EXHAUSTED));
    }
    s.ticks_left -= 1;
    Ok(wasmtime::UpdateDeadline::Yield(1))
}

/// The trap's message when a call's CPU budget runs out.
pub(crate) const CPU_EXHAUSTED: &str = "CPU time limit exceeded";
