//! Idle plugin instances, kept for reuse by the chain entry that made them.
//!
//! Instantiating a component costs tens of microseconds; reusing an instance between calls of
//! one chain entry saves that. Idle instances hold guest memory (about 1 MiB for a Rust
//! plugin, 11-13 MiB for a JavaScript or Python one), so they are bounded per entry, across
//! the server in number and in bytes, and dropped after a while
//! unused so that the connections busy now keep the reuse, not those that were busy once.
//! A full pool makes room by dropping the items idle for a while (at most once a second):
//! refusing the instance just returned, which its entry takes again within milliseconds,
//! left a busy connection instantiating on every call while the room was held by instances
//! of connections called once, until they expired (a third of a node's hot throughput).
//! The pool belongs to the [`Runtime`](super::runtime::Runtime): its counts and its sweeper
//! thread live and stop with it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

struct Idle<T> {
    item: T,
    /// What it holds, as its owner weighed it.
    bytes: usize,
    since: Instant,
}

type List<T> = Mutex<Vec<Idle<T>>>;

struct Shared<T> {
    /// Idle items across every list.
    total: AtomicUsize,
    max_total: usize,
    /// Bytes they hold across every list.
    bytes: AtomicUsize,
    max_bytes: usize,
    lists: Mutex<Vec<Weak<List<T>>>>,
    stop: AtomicBool,
    /// How long an item idles before it counts as stale, making room when the pool is full.
    stale_after: Duration,
    /// When room was last made that way (milliseconds since `born`).
    relieved_at: AtomicU64,
    born: Instant,
}

/// An item idle this share of the TTL is dropped when the pool is full and a fresher one needs
/// its room; a busy entry takes its instances back within milliseconds.
const STALE_SHARE: u32 = 6;
/// The pool makes room that way at most once per this long (it scans every list).
const RELIEVE_EVERY: Duration = Duration::from_secs(1);

/// Every chain entry's idle instances, bounded in total, swept by a thread of its own.
pub struct IdlePool<T: Send + 'static> {
    shared: Arc<Shared<T>>,
    sweeper: Mutex<Option<JoinHandle<()>>>,
}

/// One chain entry's idle instances (at most `per_list`).
pub struct IdleList<T: Send + 'static> {
    list: Arc<List<T>>,
    shared: Arc<Shared<T>>,
    per_list: usize,
}

impl<T: Send + 'static> IdlePool<T> {
    /// A pool of at most `max_total` idle items holding at most `max_bytes`; a thread drops
    /// items idle longer than `ttl` (checked every sixth of it). Without the thread (it could
    /// not start) items are still bounded, they just do not expire.
    pub fn new(max_total: usize, max_bytes: usize, ttl: Duration) -> IdlePool<T> {
        let shared = Arc::new(Shared {
            total: AtomicUsize::new(0),
            max_total,
            bytes: AtomicUsize::new(0),
            max_bytes,
            lists: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            stale_after: ttl / STALE_SHARE,
            relieved_at: AtomicU64::new(0),
            born: Instant::now(),
        });
        let s = shared.clone();
        let sweeper = std::thread::Builder::new().name("mapwright-idle-sweeper".into()).spawn(move || {
            while !s.stop.load(Ordering::SeqCst) {
                std::thread::park_timeout(ttl / 6);
                sweep(&s, ttl);
            }
        });
        let sweeper = match sweeper {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(error = %e, "no idle-instance sweeper: idle plugin instances will not expire");
                None
            }
        };
        IdlePool { shared, sweeper: Mutex::new(sweeper) }
    }

    /// A list for one chain entry, of at most `per_list` items.
    pub fn list(&self, per_list: usize) -> IdleList<T> {
        let list = Arc::new(Mutex::new(Vec::new()));
        if let Ok(mut all) = self.shared.lists.lock() {
            all.push(Arc::downgrade(&list));
        }
        IdleList { list, shared: self.shared.clone(), per_list }
    }

    /// Idle items across the server.
    pub fn total(&self) -> usize {
        self.shared.total.load(Ordering::Relaxed)
    }

    /// Bytes the idle items hold, as weighed when they were put.
    pub fn bytes(&self) -> usize {
        self.shared.bytes.load(Ordering::Relaxed)
    }

    /// Drops items idle longer than `ttl` now; returns how many.
    pub fn sweep(&self, ttl: Duration) -> usize {
        sweep(&self.shared, ttl)
    }

    /// Keeps only the idle items for which `keep` holds, across every list; returns how many
    /// were dropped.
    pub fn retain(&self, keep: impl Fn(&T) -> bool) -> usize {
        let Ok(all) = self.shared.lists.lock() else { return 0 };
        let (mut dropped, mut bytes) = (0, 0);
        for list in all.iter().filter_map(Weak::upgrade) {
            if let Ok(mut idle) = list.lock() {
                idle.retain(|i| {
                    let kept = keep(&i.item);
                    if !kept {
                        dropped += 1;
                        bytes += i.bytes;
                    }
                    kept
                });
            }
        }
        self.shared.forget(dropped, bytes);
        dropped
    }

    /// Stops the sweeper and waits for it.
    pub fn shutdown(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.sweeper.lock().ok().and_then(|mut s| s.take()) {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

impl<T: Send + 'static> Drop for IdlePool<T> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl<T> Shared<T> {
    /// Counts `n` items holding `bytes` out of the pool.
    fn forget(&self, n: usize, bytes: usize) {
        self.total.fetch_sub(n, Ordering::Relaxed);
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Counts one item holding `bytes` into the pool if both bounds leave room.
    fn reserve(&self, bytes: usize) -> bool {
        if self.total.fetch_add(1, Ordering::Relaxed) >= self.max_total {
            self.total.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        if self.bytes.fetch_add(bytes, Ordering::Relaxed).saturating_add(bytes) > self.max_bytes {
            self.forget(1, bytes);
            return false;
        }
        true
    }

    /// The pool is full: drops the stale items, unless that was done less than
    /// [`RELIEVE_EVERY`] ago. Whether any were dropped.
    fn relieve(&self) -> bool {
        let now = self.born.elapsed().as_millis() as u64;
        let last = self.relieved_at.load(Ordering::Relaxed);
        if (last != 0 && now.saturating_sub(last) < RELIEVE_EVERY.as_millis() as u64) || self.relieved_at.compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed).is_err() {
            return false;
        }
        sweep(self, self.stale_after) > 0
    }
}

/// Drops idle items older than `ttl`, and forgets the lists of entries that are gone.
fn sweep<T>(shared: &Shared<T>, ttl: Duration) -> usize {
    let Ok(mut all) = shared.lists.lock() else { return 0 };
    let (mut dropped, mut bytes) = (0, 0);
    all.retain(|weak| {
        let Some(list) = weak.upgrade() else { return false };
        if let Ok(mut idle) = list.lock() {
            idle.retain(|i| {
                let young = i.since.elapsed() < ttl;
                if !young {
                    dropped += 1;
                    bytes += i.bytes;
                }
                young
            });
        }
        true
    });
    shared.forget(dropped, bytes);
    dropped
}

impl<T: Send + 'static> IdleList<T> {
    /// The most recently returned item, if any.
    pub fn take(&self) -> Option<T> {
        let item = self.list.lock().ok().and_then(|mut v| v.pop())?;
        self.shared.forget(1, item.bytes);
        Some(item.item)
    }

    /// Keeps `item`, which holds `bytes`, for reuse if this list and the pool have room (a
    /// full pool drops its stale items first, see [`RELIEVE_EVERY`]); drops it otherwise.
    pub fn put(&self, item: T, bytes: usize) {
        if self.len() >= self.per_list {
            return;
        }
        // Room is reserved before this list is locked: making room sweeps every list.
        let room = self.shared.reserve(bytes) || (self.shared.relieve() && self.shared.reserve(bytes));
        if !room {
            return;
        }
        let Ok(mut idle) = self.list.lock() else {
            self.shared.forget(1, bytes);
            return;
        };
        if idle.len() >= self.per_list {
            drop(idle);
            self.shared.forget(1, bytes);
            return;
        }
        idle.push(Idle { item, bytes, since: Instant::now() });
    }

    /// Items in this list now.
    pub fn len(&self) -> usize {
        self.list.lock().map(|l| l.len()).unwrap_or(0)
    }

    /// Whether the list holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T: Send + 'static> Drop for IdleList<T> {
    fn drop(&mut self) {
        if let Ok(mut idle) = self.list.lock() {
            self.shared.forget(idle.len(), idle.iter().map(|i| i.bytes).sum());
            idle.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bounded_per_list_and_in_total_and_expired_by_age() {
        let pool: IdlePool<u32> = IdlePool::new(3, 1000, Duration::from_secs(3600));
        let (a, b) = (pool.list(2), pool.list(2));
        for i in 0..3 {
            a.put(i, 1);
        }
        assert_eq!((a.len(), pool.total()), (2, 2), "two per list");
        b.put(10, 1);
        b.put(11, 1);
        assert_eq!((b.len(), pool.total()), (1, 3), "three in all");
        assert_eq!(a.take(), Some(1), "the last one returned comes out first");
        assert_eq!(pool.total(), 2);
        assert_eq!(pool.sweep(Duration::from_secs(3600)), 0, "young items stay");
        assert_eq!(pool.sweep(Duration::ZERO), 2);
        assert_eq!((a.len(), b.len(), pool.total()), (0, 0, 0));
        a.put(20, 1);
        a.put(21, 1);
        b.put(30, 1);
        assert_eq!(pool.retain(|i| i % 2 == 0), 1, "one odd item");
        assert_eq!((a.take(), a.take(), b.take(), pool.total()), (Some(20), None, Some(30), 0));
        b.put(12, 1);
        drop(b);
        assert_eq!((pool.total(), pool.bytes()), (0, 0), "a dropped list gives its count back");
        pool.shutdown();
    }

    #[test]
    fn a_full_pool_drops_its_stale_items_for_a_fresh_one_at_most_once_a_second() {
        // Stale after 100 ms; the sweeper only expires items after 600 ms.
        let pool: IdlePool<u32> = IdlePool::new(2, 1000, Duration::from_millis(600));
        let (once, busy) = (pool.list(4), pool.list(4));
        once.put(1, 10);
        once.put(2, 10);
        std::thread::sleep(Duration::from_millis(150));
        busy.put(3, 10);
        assert_eq!((once.len(), busy.len(), pool.total(), pool.bytes()), (0, 1, 1, 10), "the stale ones made room");
        busy.put(4, 10);
        busy.put(5, 10);
        assert_eq!((busy.len(), pool.total()), (2, 2), "full again, and room was made less than a second ago");
        assert_eq!((busy.take(), busy.take(), pool.total(), pool.bytes()), (Some(4), Some(3), 0, 0));
        pool.shutdown();
    }

    #[test]
    fn bounded_in_bytes() {
        let pool: IdlePool<u32> = IdlePool::new(10, 100, Duration::from_secs(3600));
        let (a, b) = (pool.list(4), pool.list(4));
        a.put(1, 60);
        b.put(2, 50);
        assert_eq!((b.len(), pool.total(), pool.bytes()), (0, 1, 60), "the second would exceed 100 bytes");
        b.put(3, 40);
        assert_eq!((pool.total(), pool.bytes()), (2, 100));
        assert_eq!(a.take(), Some(1));
        assert_eq!(pool.bytes(), 40);
        pool.sweep(Duration::ZERO);
        assert_eq!((pool.total(), pool.bytes()), (0, 0));
        pool.shutdown();
    }
}
