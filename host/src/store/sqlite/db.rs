//! The SQLite engine room: WAL, one writer thread, a pool of readers.
//!
//! SQLite allows one writer at a time; rather than contend on its lock, every write is sent to
//! a dedicated thread that owns the write connection and runs each request in its own
//! transaction. Reads run on blocking-pool threads with their own connections and never wait
//! for writes (WAL). Checkpoints (copying the WAL back into the database file) run on a thread
//! of their own, never on the writer's commit path. Nothing here runs on the async worker
//! threads.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use tokio::sync::{mpsc, oneshot};

use crate::model::Timestamp;
use crate::store::{StoreError, StoreResult};

/// A write, run inside the batch's transaction; it returns whether it succeeded and what to
/// do once the batch is committed (or failed to commit).
type Job = Box<dyn FnOnce(&rusqlite::Transaction<'_>) -> (bool, Done) + Send>;
/// Delivers a job's result after the commit: `Some(error)` if the commit itself failed.
type Done = Box<dyn FnOnce(Option<StoreError>) + Send>;

/// The most writes committed together (group commit).
const MAX_BATCH: usize = 64;

/// How durable an acknowledged write is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Survives a crash of the process (WAL, `synchronous=NORMAL`).
    #[default]
    Process,
    /// Also survives a power loss (`synchronous=FULL`: an fsync per commit).
    Power,
}

#[derive(Clone)]
/// The SQLite store: cheap to clone (all clones share the database).
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    durability: Durability,
    /// `None` asks the writer thread to close the database and stop.
    writer: mpsc::UnboundedSender<Option<Job>>,
    readers: Mutex<Vec<Connection>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    checkpointer: Mutex<Option<Checkpointer>>,
    stats: Arc<WriterStats>,
    /// Bumped by the writer after each commit.
    commits: tokio::sync::watch::Receiver<u64>,
    /// Writes on their way to the writer (see [`SqliteStore::write_coming`]).
    coming: Arc<std::sync::atomic::AtomicUsize>,
}

/// What the writer thread has done: how well group commit batches.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Transactions committed (or attempted).
    pub commits: std::sync::atomic::AtomicU64,
    /// Writes run (each in its own savepoint).
    pub writes: std::sync::atomic::AtomicU64,
    /// The most writes one commit carried.
    pub largest_batch: std::sync::atomic::AtomicU64,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match &e {
            rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound,
            rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::ConstraintViolation => {
                StoreError::Conflict(e.to_string())
            }
            _ => StoreError::Backend(Box::new(e)),
        }
    }
}

/// Opens a connection with the server's settings and SQL functions.
pub(crate) fn open(path: &Path, durability: Durability, write: bool) -> rusqlite::Result<Connection> {
    let flags = if write {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let sync = match durability {
        Durability::Process => "NORMAL",
        Durability::Power => "FULL",
    };
    conn.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; PRAGMA foreign_keys=ON; PRAGMA cache_size=-{READER_CACHE_KIB}; PRAGMA temp_store=MEMORY;"
    ))?;
    // Unicode case folding for caseExact=false comparisons, matching `scim::eval::fold`.
    conn.create_scalar_function("scim_fold", 1, FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC, |ctx| {
        Ok(match ctx.get_raw(0) {
            rusqlite::types::ValueRef::Text(t) => std::str::from_utf8(t).ok().map(crate::scim::eval::fold),
            _ => None,
        })
    })?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the database at `path`.
    pub fn open(path: &Path, durability: Durability) -> StoreResult<SqliteStore> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::backend(format!("creating {}: {e}", dir.display())))?;
        }
        let mut conn = open(path, durability, true)?;
        super::migrations::migrate(&mut conn)?;
        // SQLite checkpoints on the commit that crosses 1,000 WAL pages, in the writer's own
        // time: one write now and then waited for the copy and its fsyncs (the tail of a
        // write's latency). The checkpointer thread does it instead.
        conn.execute_batch(&format!("PRAGMA wal_autocheckpoint=0; PRAGMA journal_size_limit={WAL_SIZE_LIMIT};"))?;
        conn.execute_batch(&format!("PRAGMA cache_size=-{WRITER_CACHE_KIB}; PRAGMA mmap_size={WRITER_MMAP_BYTES};"))?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Option<Job>>();
        let stats = Arc::new(WriterStats::default());
        let counters = stats.clone();
        let (committed, commits) = tokio::sync::watch::channel(0u64);
        let restart = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let restart_wanted = restart.clone();
        let coming = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let gathering = coming.clone();
        let handle = std::thread::Builder::new()
            .name("mapwright-writer".into())
            .spawn(move || {
                while let Some(Some(first)) = next_job(&mut rx, WRITER_SPIN) {
                    let more = run_batch(&mut conn, first, &mut rx, &gathering, &counters, &committed);
                    if restart_wanted.swap(false, std::sync::atomic::Ordering::Relaxed) {
                        // Writes sent meanwhile wait (their queue phase): logged to be seen.
                        let started = std::time::Instant::now();
                        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))) {
                            Ok((frames, copied)) => tracing::debug!(frames, copied, us = micros(started.elapsed()), "the writer finished a long WAL's checkpoint"),
                            Err(e) => tracing::warn!(error = %e, "finishing a WAL checkpoint failed"),
                        }
                    }
                    if !more {
                        break;
                    }
                }
                drop(conn);
            })
            .map_err(|e| StoreError::backend(format!("starting the writer thread: {e}")))?;
        let checkpointer = Checkpointer::start(open(path, durability, true)?, commits.clone(), restart)?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                durability,
                writer: tx,
                readers: Mutex::new(Vec::new()),
                writer_thread: Mutex::new(Some(handle)),
                checkpointer: Mutex::new(Some(checkpointer)),
                stats,
                commits,
                coming,
            }),
        })
    }

    /// Closes the database in order: readers first, then the writer, whose thread is joined,
    /// so the process never exits while SQLite is still closing its files. Requests after
    /// this fail with a storage error.
    pub fn close(&self) {
        if let Ok(mut r) = self.inner.readers.lock() {
            r.clear();
        }
        if let Some(c) = self.inner.checkpointer.lock().ok().and_then(|mut c| c.take()) {
            c.stop();
        }
        let handle = self.inner.writer_thread.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = self.inner.writer.send(None);
            let _ = h.join();
        }
    }

    /// Says a write is on its way: its request is being mapped and will reach the writer
    /// soon (drop the guard when it is sent, or when it will not come). While any is on its
    /// way the writer holds a batch's commit up to [`GATHER`] for it, so concurrent writes share
    /// one commit (its WAL frames, its page cache work) instead of each paying for its own;
    /// with none on its way (a lone client) it commits at once.
    pub fn write_coming(&self) -> crate::store::WriteComing {
        crate::store::WriteComing::counted(&self.inner.coming)
    }

    /// Counters of the writer thread (group commit).
    pub fn writer_stats(&self) -> &WriterStats {
        &self.inner.stats
    }

    /// Ticks after every committed write.
    pub fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.commits.clone()
    }

    /// Runs `f` in one write transaction on the writer thread.
    pub async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        self.write_or_roll_back(f, true).await
    }

    /// Runs `f` like [`Self::write`], then keeps (`commit`) or rolls back what it wrote: a
    /// rolled-back run computes exactly what the write would do, and writes nothing.
    pub async fn write_or_roll_back<T, F>(&self, f: F, commit: bool) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        use std::time::Instant;
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |txn| {
            let started = Instant::now();
            let result = f(txn);
            let ran = Instant::now();
            let ok = result.is_ok() && commit;
            let done: Done = Box::new(move |commit_failed| {
                let result = match commit_failed {
                    Some(e) => Err(e),
                    None => result,
                };
                let _ = tx.send((result, [started, ran, Instant::now()]));
            });
            (ok, done)
        });
        let sent = Instant::now();
        self.inner.writer.send(Some(job)).map_err(|_| StoreError::backend("the writer thread has stopped"))?;
        let (result, [started, ran, committed]) = rx.await.map_err(|_| StoreError::backend("the writer thread dropped a request"))?;
        let woke = Instant::now();
        let m = crate::metrics::get();
        m.store_write(woke.duration_since(sent).as_secs_f64());
        let phases = [started.saturating_duration_since(sent), ran.saturating_duration_since(started), committed.saturating_duration_since(ran), woke.saturating_duration_since(committed)];
        m.store_write_phases(phases.map(|d| d.as_secs_f64()));
        // Per write, for finding where a slow one lost its time (RUST_LOG=mapwright::store::sqlite=debug).
        let [queue_us, run_us, commit_us, wake_us] = phases.map(micros);
        tracing::debug!(queue_us, run_us, commit_us, wake_us, "sqlite write");
        result
    }

    /// Runs `f` on a pooled read connection, off the async threads.
    pub async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = inner.readers.lock().ok().and_then(|mut p| p.pop());
            let conn = match pooled {
                Some(c) => c,
                None => open(&inner.path, inner.durability, false)?,
            };
            // A read transaction gives the whole request one consistent snapshot.
            conn.execute_batch("BEGIN")?;
            let out = f(&conn);
            let _ = conn.execute_batch("COMMIT");
            if let Ok(mut p) = inner.readers.lock()
                && p.len() < 16
            {
                p.push(conn);
            }
            out
        })
        .await
        .map_err(|e| StoreError::backend(format!("read task failed: {e}")))?
    }
}

/// A duration in whole microseconds, for the debug log.
fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The WAL file is cut back to this size when it is reset (128 MiB).
const WAL_SIZE_LIMIT: i64 = 128 * 1024 * 1024;

/// A WAL longer than this many frames (4 KiB pages: 125 MiB) is finished by the writer between
/// two batches (the checkpointer has copied nearly all of it), so that the next write starts
/// the WAL over.
const RESTART_AT_FRAMES: i64 = 32_000;

/// How often the checkpointer looks for new commits. Each checkpoint copies a page written
/// since the last one once, however often it changed (the audit's and the feed's last pages
/// change with every commit), and one that catches up makes the next write restart the WAL
/// (an fsync on the writer): every second rather than every 200 ms, a lone client's create
/// p99 / p50 went from 3.9-4.1 to 3.5-3.7 (6 pairs, BENCHMARKS.md), c8 updates no worse.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The thread that checkpoints the WAL while the writer goes on writing. Its checkpoints are
/// PASSIVE: they copy what no reader still needs and wait for nobody (the writer restarts the
/// WAL from its start once a checkpoint has copied all of it).
struct Checkpointer {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Checkpointer {
    fn start(conn: Connection, mut commits: tokio::sync::watch::Receiver<u64>, restart: Arc<std::sync::atomic::AtomicBool>) -> StoreResult<Checkpointer> {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("mapwright-ckpt".into())
            .spawn(move || {
                // The WAL frames copied so far: the pragma counts since the WAL's last reset.
                let mut copied_before = 0i64;
                while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::park_timeout(CHECKPOINT_EVERY);
                    match commits.has_changed() {
                        Ok(true) => {}
                        Ok(false) => continue,
                        // The writer is gone: so is the store (dropped without `close`).
                        Err(_) => break,
                    }
                    commits.mark_unchanged();
                    let started = std::time::Instant::now();
                    match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))) {
                        Ok((frames, copied)) => {
                            let new = if copied >= copied_before { copied - copied_before } else { copied };
                            copied_before = copied;
                            crate::metrics::get().store_checkpoint(started.elapsed().as_secs_f64(), u64::try_from(new).unwrap_or(0));
                            tracing::debug!(frames, copied = new, us = micros(started.elapsed()), "checkpointed the WAL");
                            // Under steady writes a checkpoint never catches up with the end of
                            // the WAL, and SQLite restarts only a WAL copied whole: past the
                            // limit the writer copies the little rest between two batches.
                            if frames > RESTART_AT_FRAMES {
                                restart.store(true, std::sync::atomic::Ordering::Relaxed);
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "checkpointing the WAL failed; trying again"),
                    }
                }
            })
            .map_err(|e| StoreError::backend(format!("starting the checkpointer thread: {e}")))?;
        Ok(Checkpointer { stop, thread })
    }

    /// Stops the thread and waits for it (a checkpoint under way finishes first).
    fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.thread().unpark();
        let _ = self.thread.join();
    }
}

/// Each connection's page cache, in KiB, but the writer's ([`WRITER_CACHE_KIB`]).
const READER_CACHE_KIB: u32 = 32_000;

/// The writer's page cache, in KiB (readers keep [`READER_CACHE_KIB`] each).
///
/// Small on purpose. When a commit's B-tree balancing reordered pages, it moved one through
/// the page number just past the lock-byte page (`balance_nonroot`), far beyond the end of the
/// database; at the end of that transaction SQLite drops cached pages past the end by
/// scanning its whole page-cache hash (`pcache1TruncateUnsafe`). With 32 MB cached that scan
/// took ~0.5 ms on ~4% of commits, most of a lone write's p99 (BENCHMARKS.md, issue 20); with
/// 2 MB it takes microseconds. Pages the writer no longer holds are read through the memory
/// map below, without a copy or a system call.
const WRITER_CACHE_KIB: u32 = 2_000;

/// How much of the database file the writer reads through a memory map (SQLite writes
/// through `pwrite` still, and reads WAL pages from the WAL).
const WRITER_MMAP_BYTES: u64 = 1 << 30;

/// How long the writer looks for the next job, yielding its CPU, before it sleeps.
///
/// Waking a sleeping thread costs far more than a write's own work on a small VM (the futex,
/// and the vCPU's way out of idle): with the writer asleep between writes a create at
/// concurrency 1 took 0.39-0.44 ms at the median, looking 250 µs for the next job 0.24-0.30
/// (BENCHMARKS.md). At concurrency 1 the next write comes one round trip later, under load
/// it is already queued. Yielding rather than spinning hands the CPU to any thread that
/// wants it; an idle server pays at most this much CPU per write.
const WRITER_SPIN: std::time::Duration = std::time::Duration::from_micros(250);

/// The next job (`None`: every sender is gone), looked for during `spin`, then waited for.
fn next_job(rx: &mut mpsc::UnboundedReceiver<Option<Job>>, spin: std::time::Duration) -> Option<Option<Job>> {
    let until = std::time::Instant::now() + spin;
    loop {
        match rx.try_recv() {
            Ok(job) => return Some(job),
            Err(mpsc::error::TryRecvError::Disconnected) => return None,
            Err(mpsc::error::TryRecvError::Empty) if std::time::Instant::now() < until => std::thread::yield_now(),
            Err(mpsc::error::TryRecvError::Empty) => return rx.blocking_recv(),
        }
    }
}

/// The longest a batch's commit waits for writes on their way (see [`SqliteStore::write_coming`]).
const GATHER: std::time::Duration = std::time::Duration::from_micros(100);

/// Runs `first` and the writes queued behind it in one transaction: the ones that arrive
/// while it runs join it too, and, while more are on their way (`coming`), the commit waits
/// up to [`GATHER`] for them (group commit, up to [`MAX_BATCH`] writes). The first write runs
/// bare (SQLite builds a bit vector per savepoint over the pages it writes) and a failure
/// rolls it back whole; each later one runs in its own savepoint, so a write that fails is
/// rolled back alone and the others commit together. Results are delivered only after the
/// commit, so nothing is acknowledged that is not durable. Returns false when the writer
/// is asked to stop (or every sender is gone).
fn run_batch(
    conn: &mut Connection,
    first: Job,
    rx: &mut mpsc::UnboundedReceiver<Option<Job>>,
    coming: &std::sync::atomic::AtomicUsize,
    stats: &WriterStats,
    committed: &tokio::sync::watch::Sender<u64>,
) -> bool {
    use std::sync::atomic::Ordering::{Acquire, Relaxed};
    let mut done: Vec<Done> = Vec::with_capacity(MAX_BATCH);
    let mut more = true;
    let mut first = Some(first);
    let result = (|| -> StoreResult<bool> {
        let txn = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if let Some(job) = first.take() {
            let (ok, d) = job(&txn);
            done.push(d);
            if !ok {
                txn.rollback()?;
                return Ok(false);
            }
        }
        let until = std::time::Instant::now() + GATHER;
        while done.len() < MAX_BATCH {
            let job = match rx.try_recv() {
                Ok(Some(job)) => job,
                Ok(None) | Err(mpsc::error::TryRecvError::Disconnected) => {
                    more = false;
                    break;
                }
                Err(mpsc::error::TryRecvError::Empty) if coming.load(Acquire) > 0 && std::time::Instant::now() < until => {
                    std::thread::yield_now();
                    continue;
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
            };
            // Cached: parsing them for every write cost ~6k instructions each (callgrind).
            txn.prepare_cached("SAVEPOINT job")?.execute([])?;
            let (ok, d) = job(&txn);
            done.push(d);
            if !ok {
                txn.prepare_cached("ROLLBACK TO job")?.execute([])?;
            }
            txn.prepare_cached("RELEASE job")?.execute([])?;
        }
        txn.commit()?;
        Ok(true)
    })();
    stats.commits.fetch_add(1, Relaxed);
    stats.writes.fetch_add(done.len() as u64, Relaxed);
    stats.largest_batch.fetch_max(done.len() as u64, Relaxed);
    crate::metrics::get().store_commit(done.len());
    // A job not reached (the batch failed before it ran) was dropped: its caller sees the
    // writer drop the request and fails it.
    drop(first);
    let failed = result.as_ref().err();
    if matches!(result, Ok(true)) {
        committed.send_modify(|n| *n += 1);
    }
    for d in done {
        d(failed.map(|e| StoreError::backend(format!("commit failed: {e}"))));
    }
    more
}

/// Times are stored as their canonical text (see [`Timestamp`]).
impl rusqlite::ToSql for Timestamp {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::Borrowed(rusqlite::types::ValueRef::Text(self.as_str().as_bytes())))
    }
}

impl rusqlite::types::FromSql for Timestamp {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        String::column_result(value).map(Timestamp::from_stored)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The writer finds a job sent while it looks, one sent after it went to sleep, the stop
    /// message, and the end of the channel.
    #[test]
    fn the_writer_takes_each_job_however_late_it_comes() {
        let (tx, mut rx) = mpsc::unbounded_channel::<Option<Job>>();
        let job = || Some(Box::new(|_: &rusqlite::Transaction<'_>| (true, Box::new(|_: Option<StoreError>| {}) as Done)) as Job);
        let sender = std::thread::spawn(move || {
            tx.send(job()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(30));
            tx.send(job()).unwrap();
            tx.send(None).unwrap();
        });
        let spin = std::time::Duration::from_millis(5);
        assert!(matches!(next_job(&mut rx, spin), Some(Some(_))), "the first job");
        assert!(matches!(next_job(&mut rx, spin), Some(Some(_))), "a job sent after the look ended");
        assert!(matches!(next_job(&mut rx, spin), Some(None)), "the stop message");
        sender.join().unwrap();
        assert!(next_job(&mut rx, spin).is_none(), "no sender left");
    }

    fn counts(store: &SqliteStore) -> (u64, u64) {
        let st = store.writer_stats();
        (st.commits.load(std::sync::atomic::Ordering::Relaxed), st.writes.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Writes sent while a batch runs join it (one commit for all), each in its own savepoint:
    /// a later write that fails leaves the others committed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_sent_while_a_batch_runs_join_its_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("m.db"), Durability::Process).unwrap();
        store.write(|t| Ok(t.execute_batch("CREATE TABLE t (v INTEGER)")?)).await.unwrap();
        let (c0, w0) = counts(&store);
        let (started, running) = std::sync::mpsc::channel::<()>();
        let slow = store.clone();
        let first = tokio::spawn(async move {
            slow.write(move |t| {
                started.send(()).unwrap();
                // Long enough for the writes below to be queued behind it.
                std::thread::sleep(std::time::Duration::from_millis(100));
                Ok(t.execute("INSERT INTO t VALUES (1)", [])?)
            })
            .await
        });
        tokio::task::spawn_blocking(move || running.recv().unwrap()).await.unwrap();
        let (a, b) = (store.clone(), store.clone());
        let second = tokio::spawn(async move { a.write(|t| Ok(t.execute("INSERT INTO t VALUES (2)", [])?)).await });
        let failing = tokio::spawn(async move {
            b.write(|t| {
                t.execute("INSERT INTO t VALUES (3)", [])?;
                Err::<(), _>(StoreError::Conflict("refused after writing".into()))
            })
            .await
        });
        assert_eq!(first.await.unwrap().unwrap(), 1);
        assert_eq!(second.await.unwrap().unwrap(), 1);
        assert!(matches!(failing.await.unwrap(), Err(StoreError::Conflict(_))));
        let (c1, w1) = counts(&store);
        assert_eq!((c1 - c0, w1 - w0), (1, 3), "one commit carried the three writes");
        let kept: Vec<i64> = store.read(|c| Ok(c.prepare("SELECT v FROM t ORDER BY v")?.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?)).await.unwrap();
        assert_eq!(kept, [1, 2], "the failed write alone was rolled back");
        store.close();
    }

    /// While a write is on its way the writer holds its commit for it (up to `GATHER`); with
    /// none on its way a write commits alone, at once; a write said to be coming that never
    /// comes costs the others at most `GATHER`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_commit_waits_for_a_write_on_its_way_and_only_for_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("m.db"), Durability::Process).unwrap();
        store.write(|t| Ok(t.execute_batch("CREATE TABLE t (v INTEGER)")?)).await.unwrap();
        let insert = |v: i64| move |t: &rusqlite::Transaction<'_>| Ok(t.execute("INSERT INTO t VALUES (?1)", [v])?);
        // None on its way: two writes one after the other are two commits.
        let (c0, _) = counts(&store);
        store.write(insert(1)).await.unwrap();
        store.write(insert(2)).await.unwrap();
        assert_eq!(counts(&store).0 - c0, 2);
        // One said to be coming and never sent: the write still commits (after GATHER).
        let never = store.write_coming();
        let started = std::time::Instant::now();
        store.write(insert(3)).await.unwrap();
        assert!(started.elapsed() >= GATHER, "the commit waited for the write on its way");
        drop(never);
        assert_eq!(store.write_coming().0.as_ref().map(|n| n.load(std::sync::atomic::Ordering::Relaxed)), Some(1), "the guard counts itself only");
        store.close();
    }

    /// The writer connection keeps a small page cache and reads through a memory map (see
    /// [`WRITER_CACHE_KIB`]); readers keep their own larger caches.
    #[tokio::test]
    async fn the_writer_caches_little_and_reads_through_a_map() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("m.db"), Durability::Process).unwrap();
        let pragma = |name: &'static str| move |c: &Connection| Ok(c.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0))?);
        let cache = store.write(move |t| pragma("cache_size")(t)).await.unwrap();
        let map = store.write(move |t| pragma("mmap_size")(t)).await.unwrap();
        assert_eq!((cache, map), (-i64::from(WRITER_CACHE_KIB), i64::try_from(WRITER_MMAP_BYTES).unwrap()));
        assert_eq!(store.read(move |c| pragma("cache_size")(c)).await.unwrap(), -i64::from(READER_CACHE_KIB), "readers keep theirs");
        store.close();
    }

    /// Nothing reaches the database file but through a checkpoint: it grows while the writer
    /// only appends to the WAL, so the checkpointer thread did it.
    #[tokio::test]
    async fn the_checkpointer_copies_the_wal_into_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let store = SqliteStore::open(&path, Durability::Process).unwrap();
        store.write(|t| Ok(t.execute_batch("CREATE TABLE big (v BLOB)")?)).await.unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        for _ in 0..20 {
            store.write(|t| Ok(t.execute("INSERT INTO big VALUES (zeroblob(65536))", []).map(|_| ())?)).await.unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::metadata(&path).unwrap().len() < before + 20 * 65536 {
            assert!(std::time::Instant::now() < deadline, "the WAL was never checkpointed");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        store.close();
    }
}
