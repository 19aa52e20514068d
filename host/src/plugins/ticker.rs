//! The epoch ticker: the clock of plugins' CPU limits (one epoch per [`TICK`](super::runtime::TICK)).
//!
//! It ticks only while plugin stores exist. Every store holds a [`Ticking`] token (in its
//! [`SandboxState`](super::sandbox::SandboxState)), so no plugin code can run without the
//! clock running: there is no call site to forget. When no store has existed for a while
//! (idle instances expire after 30 s), the thread parks, and a server without plugin
//! traffic stops waking a thousand times a second (about 1% of a core on this machine).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use wasmtime::Engine;

/// The ticker thread; stops (and is joined) on [`Ticker::stop`].
pub struct Ticker {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    /// Plugin stores alive now.
    stores: AtomicUsize,
    parked: AtomicBool,
    stop: AtomicBool,
    /// Epochs advanced so far (read by the tests).
    ticks: AtomicU64,
    thread: OnceLock<Thread>,
}

/// Held by each plugin store: the clock runs while any token exists.
pub struct Ticking(Arc<Shared>);

impl Ticker {
    /// Starts the thread: every `tick` it advances `engine`'s epoch; after `park_after` ticks
    /// with no store alive it parks until a store is created.
    pub fn start(engine: Engine, tick: Duration, park_after: u32) -> std::io::Result<Ticker> {
        let shared = Arc::new(Shared { stores: AtomicUsize::new(0), parked: AtomicBool::new(false), stop: AtomicBool::new(false), ticks: AtomicU64::new(0), thread: OnceLock::new() });
        let s = shared.clone();
        let handle = std::thread::Builder::new().name("mapwright-epoch".into()).spawn(move || {
            let mut idle = 0;
            while !s.stop.load(SeqCst) {
                std::thread::sleep(tick);
                engine.increment_epoch();
                s.ticks.fetch_add(1, SeqCst);
                idle = if s.stores.load(SeqCst) == 0 { idle + 1 } else { 0 };
                if idle < park_after {
                    continue;
                }
                // Announce the park before checking for stores; `Ticking::new` counts itself
                // before checking for a park: with both sequentially consistent, either this
                // sees the new store or that sees the park and unparks (a token for `park`).
                s.parked.store(true, SeqCst);
                while s.stores.load(SeqCst) == 0 && !s.stop.load(SeqCst) {
                    std::thread::park();
                }
                s.parked.store(false, SeqCst);
                idle = 0;
            }
        })?;
        let _ = shared.thread.set(handle.thread().clone());
        Ok(Ticker { shared, thread: Mutex::new(Some(handle)) })
    }

    /// A token for a new store: the clock runs (resumes at once if parked) while it lives.
    pub fn ticking(&self) -> Ticking {
        self.shared.stores.fetch_add(1, SeqCst);
        if self.shared.parked.load(SeqCst) {
            self.shared.unpark();
        }
        Ticking(self.shared.clone())
    }

    /// Epochs advanced since the start.
    #[cfg(test)]
    fn ticks(&self) -> u64 {
        self.shared.ticks.load(SeqCst)
    }

    /// Whether the thread is parked (no store for a while).
    #[cfg(test)]
    fn is_parked(&self) -> bool {
        self.shared.parked.load(SeqCst)
    }

    /// Stops the thread and waits for it.
    pub fn stop(&self) {
        self.shared.stop.store(true, SeqCst);
        self.shared.unpark();
        if let Some(h) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = h.join();
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        // Not joined here (a drop should not block); the thread sees `stop` and ends.
        self.shared.stop.store(true, SeqCst);
        self.shared.unpark();
    }
}

impl Shared {
    fn unpark(&self) {
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }
}

impl Drop for Ticking {
    fn drop(&mut self) {
        self.0.stores.fetch_sub(1, SeqCst);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Polls `cond` for up to 5 s (what is checked is behaviour, not speed).
    fn eventually(what: &str, cond: impl Fn() -> bool) {
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while !cond() {
            assert!(std::time::Instant::now() < until, "never: {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn ticks_while_a_store_lives_and_parks_without_one() {
        let t = Ticker::start(Engine::default(), Duration::from_millis(1), 5).unwrap();
        eventually("parks with no store", || t.is_parked());
        let parked_at = t.ticks();
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(t.ticks(), parked_at, "a parked ticker does not tick");

        let store = t.ticking();
        eventually("resumes for a new store", || t.ticks() >= parked_at + 20);
        assert!(!t.is_parked());
        drop(store);
        eventually("parks again once the store is gone", || t.is_parked());

        // Stopping a parked ticker does not hang.
        t.stop();
    }

    #[test]
    fn a_store_created_as_the_ticker_parks_is_never_left_without_ticks() {
        let t = Ticker::start(Engine::default(), Duration::from_millis(1), 1).unwrap();
        for _ in 0..200 {
            let store = t.ticking();
            let at = t.ticks();
            eventually("a tick for the new store", || t.ticks() > at);
            drop(store);
            // Let it get to (or near) parking before the next store arrives.
            std::thread::sleep(Duration::from_micros(1500));
        }
        t.stop();
    }
}
