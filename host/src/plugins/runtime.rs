//! The plugin engine: one per server, compiling each component once per content hash.
//!
//! Isolation: every chain entry of every IdP connection has its own instances (never shared
//! between tenants or connections); an instance is reused only by the entry that created it
//! and is discarded after any trap. Linear memory is bounded per instance, CPU per call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

use super::PluginError;
use super::bindings::HostRules as Rules;
use super::bindings::HostRulesIndices as RulesIndices;
use super::bindings::candidates::{Candidates, CandidatesIndices};
use super::bindings::scoping::{Scoping, ScopingIndices};
use super::bindings::shaping::{Shaping, ShapingIndices};
use super::bindings::mapwright::plugin::types::Hook as WitHook;
use super::idle::IdlePool;
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
/// pooling allocator (`MAX_INSTANCES`), and so that memory stays bounded with many
/// connections (an idle instance keeps the guest memory it touched, about 1 MiB for a Rust
/// plugin: 256 of them is a quarter of a GiB at most).
const IDLE_MAX: usize = 256;

/// An idle instance unused this long is dropped (its memory returns to the system).
const IDLE_TTL: Duration = Duration::from_secs(30);

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
}

/// A compiled, described plugin, ready to instantiate.
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
    pub(crate) pre: wasmtime::component::InstancePre<SandboxState>,
    /// Where the contract's exports are in an instance.
    pub(crate) indices: RulesIndices,
    /// Where the optional `shape` export is (contract 0.1.2 and later).
    pub(crate) shaping: Option<ShapingIndices>,
    /// Where the optional `scope` export is (contract 0.1.2 and later).
    pub(crate) scoping: Option<ScopingIndices>,
    /// Where the optional `username-candidates` export is (contract 0.1.2 and later).
    pub(crate) candidates: Option<CandidatesIndices>,
    /// The optional self-test export (contract 0.1.1 and later).
    pub(crate) self_test: Option<super::bindings::self_test::SelfTestedPre<SandboxState>>,
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
    cache: Mutex<HashMap<String, Arc<LoadedPlugin>>>,
    /// Where compiled artifacts persist between runs (`<sha256>-<engine hash>.cwasm`).
    disk_cache: Option<std::path::PathBuf>,
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
        let mut store = self.new_store(limits);
        arm(&mut store, limits);
        let fault = |e: wasmtime::Error| PluginError::Fault { plugin: plugin.name.clone(), reason: format!("instantiation failed: {e:#}") };
        let instance = plugin.pre.instantiate_async(&mut store).await.map_err(fault)?;
        let rules = plugin.indices.load(&mut store, &instance).map_err(fault)?;
        let shape = plugin.shaping.as_ref().map(|i| i.load(&mut store, &instance)).transpose().map_err(fault)?;
        let scope = plugin.scoping.as_ref().map(|i| i.load(&mut store, &instance)).transpose().map_err(fault)?;
        let candidates = plugin.candidates.as_ref().map(|i| i.load(&mut store, &instance)).transpose().map_err(fault)?;
        Ok(Instance { store, rules, shape, scope, candidates })
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
}

impl CompiledFrom {
    /// Counts it in the metrics.
    fn count(self) {
        crate::metrics::get().plugin_compiled(match self {
            CompiledFrom::Source => "source",
            CompiledFrom::Artifact => "artifact",
            CompiledFrom::DamagedArtifact => "damaged_artifact",
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
        Ok(Runtime { engine, linker, cache: Mutex::new(HashMap::new()), disk_cache: None, ticker, idle: IdlePool::new(IDLE_MAX, IDLE_TTL) })
    }

    /// Persists compiled components under `dir`, so a restart does not compile them again.
    pub fn with_disk_cache(mut self, dir: std::path::PathBuf) -> Runtime {
        self.disk_cache = Some(dir);
        self
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
        if let Some(path) = artifact
            && let Ok(serialized) = std::fs::read(path)
        {
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
                    return Ok(c);
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring an unusable compiled plugin artifact");
                    CompiledFrom::DamagedArtifact.count();
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        let component = Component::new(engine, bytes).map_err(|e| PluginError::Invalid(format!("not a valid component: {e:#}")))?;
        CompiledFrom::Source.count();
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
        let instance_pre = self.linker.instantiate_pre(&component).map_err(|e| {
            PluginError::Invalid(format!("the component imports something the sandbox does not grant: {e:#}"))
        })?;
        // Optional exports are bound on their own: a component without them still loads.
        let self_test = super::bindings::self_test::SelfTestedPre::new(instance_pre.clone()).ok();
        let shaping = ShapingIndices::new(&instance_pre).ok();
        let scoping = ScopingIndices::new(&instance_pre).ok();
        let candidates = CandidatesIndices::new(&instance_pre).ok();
        let indices = RulesIndices::new(&instance_pre).map_err(|e| {
            PluginError::Invalid(format!("the component does not implement mapwright:plugin/rules@0.1: {e:#}"))
        })?;
        let mut store = self.new_store(&Limits::default());
        arm(&mut store, &Limits::default());
        let invalid = |what: &str, e: wasmtime::Error| PluginError::Invalid(format!("{what}: {e:#}"));
        let instance = instance_pre.instantiate_async(&mut store).await.map_err(|e| invalid("instantiating", e))?;
        let rules = indices.load(&mut store, &instance).map_err(|e| invalid("instantiating", e))?;
        let info = rules
            .mapwright_plugin_meta()
            .call_describe(&mut store)
            .await
            .map_err(|e| PluginError::Invalid(format!("describe() failed: {e:#}")))?;
        // A component built with a 0.1.2 SDK exports `shape` whether or not it shapes: it says.
        let shapes = match &shaping {
            Some(i) => {
                let s = i.load(&mut store, &instance).map_err(|e| invalid("instantiating", e))?;
                s.mapwright_plugin_shape().call_shapes(&mut store).await.map_err(|e| invalid("shape.shapes() failed", e))?
            }
            None => false,
        };
        // Whether it scopes depends on each entry's configuration: asked per entry.
        let scopes = scoping.is_some();
        let mut hooks = Hooks { shape: shapes, scope: scopes, ..Hooks::default() };
        for h in info.hooks {
            match h {
                WitHook::Username => hooks.username = true,
                WitHook::Groups => hooks.groups = true,
                WitHook::Attributes => hooks.attributes = true,
                WitHook::Deprovision => hooks.deprovision = true,
            }
        }
        let loaded = Arc::new(LoadedPlugin { hash: hash.clone(), name: info.name, version: info.version, hooks, exports, size: bytes.len(), pre: instance_pre, indices, shaping, scoping, candidates, self_test });
        if let Ok(mut c) = self.cache.lock()
            && c.insert(hash, loaded.clone()).is_none()
        {
            let code = component.image_range();
            crate::metrics::get().plugin_code_resident((code.end as usize).saturating_sub(code.start as usize));
        }
        Ok(loaded)
    }
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
