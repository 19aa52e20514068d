//! The PostgreSQL backend: a pool of connections, versioned migrations, and the two ways the
//! store's logic runs on it — a read in one snapshot, a write in one serializable transaction
//! run again when a concurrent one wins.
//!
//! Why serializable: the store's logic was written for SQLite's single writer, where a write
//! sees nothing change under it (a username checked free stays free until the commit).
//! SERIALIZABLE gives each write exactly that, across connections and replicas; the price is
//! a retry when two writes touch the same rows, which the closures allow (`Fn`: a write is
//! pure over its transaction). Why the synchronous `postgres` client (tokio-postgres under
//! it): the logic is synchronous code over [`Sql`], shared with SQLite, so it runs on blocking
//! threads here as SQLite's readers do.

mod migrations;
pub mod scratch;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fallible_iterator::FallibleIterator as _;
use postgres::IsolationLevel;
use tokio::sync::{Semaphore, watch};

use crate::store::sql::Sql;
use crate::store::sql::postgres::{PgConn, is_retryable};
use crate::store::{StoreError, StoreResult};

/// How the pool connects: what an operator sets under `[store]`.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Connections held open at most (reads and writes share them).
    pub pool_size: usize,
    /// A statement running longer than this is cancelled (0: no limit).
    pub statement_timeout: Duration,
    /// How often a write refused for a conflict with a concurrent one is run again.
    pub write_retries: u32,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions { pool_size: 16, statement_timeout: Duration::from_secs(30), write_retries: 20 }
    }
}

/// The PostgreSQL store's engine. Cheap to clone (one shared pool).
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    options: PgOptions,
    /// Idle connections.
    idle: Mutex<Vec<PgConn>>,
    /// One permit per connection the pool may hold open.
    permits: Semaphore,
    /// Ticks after every write this process committed (a local feed reader wakes on it).
    committed: watch::Sender<u64>,
}

impl PgStore {
    /// Connects to `url`, brings the schema up to date (one process at a time: the others wait
    /// on an advisory lock) and returns the store.
    pub fn open(url: &str, options: PgOptions) -> StoreResult<PgStore> {
        let store = PgStore::connect(url, options)?;
        store.with_conn(migrations::migrate)?;
        Ok(store)
    }

    /// Connects and checks that the schema is the one this build knows, changing nothing
    /// (for operators who run `mapwright migrate` themselves).
    pub fn open_current(url: &str, options: PgOptions) -> StoreResult<PgStore> {
        let store = PgStore::connect(url, options)?;
        store.with_conn(migrations::check)?;
        Ok(store)
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> StoreResult<usize> {
        self.with_conn(migrations::version)
    }

    /// Connects without migrating or checking the schema.
    pub fn connect(url: &str, options: PgOptions) -> StoreResult<PgStore> {
        let (committed, _) = watch::channel(0);
        let permits = Semaphore::new(options.pool_size.max(1));
        let store = PgStore { inner: Arc::new(Inner { url: url.to_string(), options, idle: Mutex::new(Vec::new()), permits, committed }) };
        // Fail now, not on the first request, when the database cannot be reached.
        let conn = store.new_conn()?;
        store.give_back(conn);
        listen_for_changes(Arc::downgrade(&store.inner));
        Ok(store)
    }

    /// Brings the schema up to date; returns the version it is at.
    pub fn migrate(&self) -> StoreResult<usize> {
        self.with_conn(migrations::migrate)
    }

    fn new_conn(&self) -> StoreResult<PgConn> {
        let conn = PgConn::connect(&self.inner.url)?;
        let ms = self.inner.options.statement_timeout.as_millis();
        conn.execute(&format!("SET statement_timeout = {ms}"), &[])?;
        Ok(conn)
    }

    fn give_back(&self, conn: PgConn) {
        if conn.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.inner.idle.lock() {
            idle.push(conn);
        }
    }

    /// Runs `f` with a pooled connection, on this (blocking) thread.
    fn with_conn<T>(&self, f: impl FnOnce(&mut PgConn) -> StoreResult<T>) -> StoreResult<T> {
        let pooled = self.inner.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut conn = match pooled {
            Some(c) => c,
            None => self.new_conn()?,
        };
        let out = f(&mut conn);
        self.give_back(conn);
        out
    }

    /// Runs `f` on a pooled connection off the async threads, once a permit is free.
    async fn blocking<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&PgStore) -> StoreResult<T> + Send + 'static,
    {
        let _permit = self.inner.permits.acquire().await.map_err(|_| StoreError::backend("the PostgreSQL pool is closed"))?;
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store)).await.map_err(|e| StoreError::backend(format!("database task failed: {e}")))?
    }

    /// Runs `f` in one read-only snapshot (REPEATABLE READ): a request sees one state.
    pub async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Sql) -> StoreResult<T> + Send + 'static,
    {
        self.blocking(move |s| s.with_conn(|c| c.transaction(IsolationLevel::RepeatableRead, true, false, |t| f(t)))).await
    }

    /// Runs `f` in one serializable transaction, committed when `commit` and `f` succeeds,
    /// rolled back otherwise. A transaction PostgreSQL refuses because a concurrent one
    /// touched the same rows (serialization failure, deadlock) runs again, a bounded number
    /// of times with a growing pause.
    ///
    /// With a `tenant`, the write first takes that tenant's advisory lock (every replica's
    /// writes of one tenant take turns): they all move the tenant's feed head, so run side by
    /// side they would fail one another and retry.
    pub async fn write<T, F>(&self, tenant: Option<i64>, f: F, commit: bool) -> StoreResult<T>
    where
        T: Send + 'static,
        F: Fn(&dyn Sql) -> StoreResult<T> + Send + 'static,
    {
        let started = std::time::Instant::now();
        let retries = self.inner.options.write_retries;
        let out = self
            .blocking(move |s| {
                let mut attempt = 0;
                loop {
                    let run = |c: &mut PgConn| match tenant {
                        Some(id) => c.transaction_locked(TENANT_WRITES.wrapping_add(id), IsolationLevel::Serializable, false, commit, |t| f(t)),
                        None => c.transaction(IsolationLevel::Serializable, false, commit, |t| f(t)),
                    };
                    match s.with_conn(run) {
                        Err(e) if is_retryable(&e) && attempt < retries => {
                            attempt += 1;
                            crate::metrics::get().store_retry();
                            // A little longer each time, spread so that the racers part.
                            let jitter = u64::from(rand_jitter()) % (1 + 2 * u64::from(attempt));
                            std::thread::sleep(Duration::from_millis(u64::from(attempt) + jitter));
                        }
                        other => return other,
                    }
                }
            })
            .await;
        crate::metrics::get().store_write(started.elapsed().as_secs_f64());
        if out.is_ok() && commit {
            // One write, one commit (SQLite's writer commits several together).
            crate::metrics::get().store_commit(1);
            self.inner.committed.send_modify(|n| *n = n.wrapping_add(1));
        }
        out
    }

    /// Ticks after every write this process committed.
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.inner.committed.subscribe()
    }

    /// Closes the idle connections; requests after this open new ones.
    pub fn close(&self) {
        if let Ok(mut idle) = self.inner.idle.lock() {
            drop_off_async(std::mem::take(&mut *idle));
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(idle) = self.idle.get_mut() {
            drop_off_async(std::mem::take(idle));
        }
    }
}

/// Drops connections where that is allowed: each synchronous client owns a small runtime,
/// and tokio refuses to drop a runtime on an async worker thread.
fn drop_off_async(conns: Vec<PgConn>) {
    if conns.is_empty() {
        return;
    }
    if tokio::runtime::Handle::try_current().is_ok() {
        let _ = std::thread::Builder::new().name("pg-close".into()).spawn(move || drop(conns));
    } else {
        drop(conns);
    }
}

/// The channel the feed trigger notifies at every commit that adds a change.
const CHANGES_CHANNEL: &str = "mapwright_changes";

/// Ticks the store's commit signal when any replica commits a change, so that feed long
/// polls and delivery workers here wake for writes made elsewhere. One connection LISTENs on
/// a thread of its own, reconnecting after a failure; the thread ends with the store.
fn listen_for_changes(inner: std::sync::Weak<Inner>) {
    let spawned = std::thread::Builder::new().name("pg-listen".into()).spawn(move || {
        let mut delay = Duration::from_millis(100);
        loop {
            let Some(url) = inner.upgrade().map(|i| i.url.clone()) else { return };
            let listened = (|| -> Result<(), postgres::Error> {
                let mut client = postgres::Client::connect(&url, postgres::NoTls)?;
                client.batch_execute(&format!("LISTEN {CHANGES_CHANNEL}"))?;
                loop {
                    let mut woke = false;
                    let mut notifications = client.notifications();
                    let mut it = notifications.timeout_iter(Duration::from_secs(1));
                    while it.next()?.is_some() {
                        woke = true;
                    }
                    let Some(inner) = inner.upgrade() else { return Ok(()) };
                    if woke {
                        inner.committed.send_modify(|n| *n = n.wrapping_add(1));
                    }
                }
            })();
            match listened {
                Ok(()) => return,
                Err(e) => {
                    if inner.upgrade().is_none() {
                        return;
                    }
                    tracing::warn!(error = %crate::store::sql::postgres::PgError(e), "listening for changes from other replicas failed; reconnecting");
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start listening for changes from other replicas");
    }
}

/// A few bits that differ between threads and calls (no RNG dependency for a back-off).
/// The advisory lock keys of tenants' writes: this plus the tenant's storage key (far from
/// the migration lock's).
const TENANT_WRITES: i64 = 0x6d77_7465_0000_0000;

fn rand_jitter() -> u32 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    t ^ (t >> 7)
}
