//! Compiled plugins held in memory under a byte budget, the least recently used evicted.
//!
//! A compiled component is megabytes of machine code (a JavaScript or Python one tens of
//! them), so a node where every tenant ships its own plugin would grow with the number of
//! plugins, not with its traffic. What a plugin *is* (name, hooks, exports) stays known for
//! ever and is small; only its code comes and goes here. An evicted plugin's next call loads
//! its artifact from the disk cache again (a millisecond or two for a Rust plugin).
//!
//! Eviction only forgets: code still in use (an instance in a call holds an `Arc` to it)
//! lives until that call ends, and the instance is then dropped rather than kept idle, so no
//! call ever runs on code freed under it and evicted code is gone as soon as nothing runs it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::PluginError;
use super::bindings::HostRulesIndices as RulesIndices;
use super::bindings::candidates::CandidatesIndices;
use super::bindings::scoping::ScopingIndices;
use super::bindings::shaping::ShapingIndices;
use super::sandbox::SandboxState;

/// A plugin's compiled code, ready to instantiate.
pub(crate) struct Compiled {
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
    /// Its machine code and data image, in bytes: what it counts against the budget.
    bytes: usize,
    /// The resident set's clock when it was last used (for least-recently-used eviction).
    used: AtomicU64,
    /// Forgotten by the resident set: instances of it are not kept idle any more.
    evicted: AtomicBool,
}

impl Compiled {
    /// Binds a compiled component's exports; `component` sizes it.
    pub(crate) fn new(component: &wasmtime::component::Component, pre: wasmtime::component::InstancePre<SandboxState>) -> Result<Compiled, PluginError> {
        // Optional exports are bound on their own: a component without them still loads.
        let self_test = super::bindings::self_test::SelfTestedPre::new(pre.clone()).ok();
        let shaping = ShapingIndices::new(&pre).ok();
        let scoping = ScopingIndices::new(&pre).ok();
        let candidates = CandidatesIndices::new(&pre).ok();
        let indices = RulesIndices::new(&pre).map_err(|e| PluginError::Invalid(format!("the component does not implement mapwright:plugin/rules@0.1: {e:#}")))?;
        let image = component.image_range();
        let bytes = (image.end as usize).saturating_sub(image.start as usize);
        crate::metrics::get().plugin_code_resident(bytes as i64);
        Ok(Compiled { pre, indices, shaping, scoping, candidates, self_test, bytes, used: AtomicU64::new(0), evicted: AtomicBool::new(false) })
    }

    /// Whether the resident set has forgotten it (its instances are dropped after their call).
    pub(crate) fn is_evicted(&self) -> bool {
        self.evicted.load(Ordering::Relaxed)
    }
}

impl Drop for Compiled {
    fn drop(&mut self) {
        crate::metrics::get().plugin_code_resident(-(self.bytes as i64));
    }
}

/// One hash's place in the set: loaded once however many calls wait for it.
type Slot = Arc<tokio::sync::OnceCell<Arc<Compiled>>>;

struct Slots {
    by_hash: HashMap<String, Slot>,
    /// Bytes of the loaded ones.
    held: usize,
}

/// The compiled plugins in memory, at most `budget` bytes of them (the one loaded last is
/// kept even if it alone is larger).
pub(crate) struct Resident {
    budget: usize,
    clock: AtomicU64,
    slots: Mutex<Slots>,
}

impl Resident {
    /// A set of at most `budget` bytes (`usize::MAX`: never evicts).
    pub(crate) fn new(budget: usize) -> Resident {
        Resident { budget, clock: AtomicU64::new(1), slots: Mutex::new(Slots { by_hash: HashMap::new(), held: 0 }) }
    }

    /// Marks `code` as used now.
    pub(crate) fn touch(&self, code: &Compiled) {
        code.used.store(self.clock.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
    }

    /// The code of `hash`, loaded with `load` if it is not held (concurrent callers wait for
    /// one load). Returns it and what its admission evicted (`Some` only for the caller that
    /// loaded it).
    pub(crate) async fn get_or_load<F>(&self, hash: &str, load: F) -> Result<(Arc<Compiled>, Option<Vec<Arc<Compiled>>>), PluginError>
    where
        F: Future<Output = Result<Compiled, PluginError>>,
    {
        let slot = {
            let mut s = self.slots.lock().map_err(|_| poisoned())?;
            match s.by_hash.get(hash) {
                Some(slot) => slot.clone(),
                None => s.by_hash.entry(hash.to_string()).or_default().clone(),
            }
        };
        if let Some(code) = slot.get() {
            self.touch(code);
            return Ok((code.clone(), None));
        }
        let mut loaded_here = false;
        let code = slot
            .get_or_try_init(|| async {
                loaded_here = true;
                load.await.map(Arc::new)
            })
            .await?
            .clone();
        self.touch(&code);
        if !loaded_here {
            return Ok((code, None));
        }
        let evicted = self.admit(hash, &slot, &code)?;
        Ok((code, Some(evicted)))
    }

    /// Counts newly loaded code against the budget and evicts the least recently used others
    /// until it fits.
    fn admit(&self, hash: &str, slot: &Slot, code: &Arc<Compiled>) -> Result<Vec<Arc<Compiled>>, PluginError> {
        let mut s = self.slots.lock().map_err(|_| poisoned())?;
        // Evicted while it loaded (cannot happen: only loaded slots are evicted), or its slot
        // replaced: then it is not counted here.
        if !s.by_hash.get(hash).is_some_and(|held| Arc::ptr_eq(held, slot)) {
            return Ok(Vec::new());
        }
        s.held += code.bytes;
        let mut evicted = Vec::new();
        while s.held > self.budget {
            let oldest = s
                .by_hash
                .iter()
                .filter(|(h, _)| h.as_str() != hash)
                .filter_map(|(h, slot)| slot.get().map(|c| (c.used.load(Ordering::Relaxed), h)))
                .min_by_key(|(used, _)| *used)
                .map(|(_, h)| h.clone());
            let Some(oldest) = oldest else { break };
            if let Some(code) = s.by_hash.remove(&oldest).and_then(|slot| slot.get().cloned()) {
                s.held = s.held.saturating_sub(code.bytes);
                code.evicted.store(true, Ordering::Relaxed);
                evicted.push(code);
            }
        }
        Ok(evicted)
    }

    /// Bytes of code held (what the budget bounds).
    pub(crate) fn held(&self) -> usize {
        self.slots.lock().map(|s| s.held).unwrap_or(0)
    }
}

fn poisoned() -> PluginError {
    PluginError::Invalid("the compiled-plugin set is unusable after a panic".into())
}
