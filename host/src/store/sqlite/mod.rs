//! The SQLite backend: WAL, versioned migrations, one writer thread, a pool of readers.
//!
//! SQLite allows one writer at a time; rather than contend on its lock, every write is sent to
//! a dedicated thread that owns the write connection and runs each request in its own
//! transaction. Reads run on blocking-pool threads with their own connections and never wait
//! for writes (WAL). Nothing here runs on the async worker threads.

mod admin;
pub mod alloc;
mod audit;
mod directory;
mod drift;
mod filter_sql;
mod groups;
mod held;
mod migrations;
mod reapply;
mod rules;
mod users;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use tokio::sync::{mpsc, oneshot};

use super::*;
use super::directory::{DirGroup, DirPage, DirUser, Feed};
use super::rules::{Activation, ChainDefinition, ChainVersion, PluginRecord, VersionNote};

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
    stats: Arc<WriterStats>,
    /// Bumped by the writer after each commit.
    commits: tokio::sync::watch::Receiver<u64>,
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
            _ => StoreError::Backend(e.to_string()),
        }
    }
}

fn open(path: &Path, durability: Durability, write: bool) -> rusqlite::Result<Connection> {
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
        "PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; PRAGMA foreign_keys=ON; PRAGMA cache_size=-32000; PRAGMA temp_store=MEMORY;"
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
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Backend(format!("creating {}: {e}", dir.display())))?;
        }
        let mut conn = open(path, durability, true)?;
        migrations::migrate(&mut conn)?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Option<Job>>();
        let stats = Arc::new(WriterStats::default());
        let counters = stats.clone();
        let (committed, commits) = tokio::sync::watch::channel(0u64);
        let handle = std::thread::Builder::new()
            .name("mapwright-writer".into())
            .spawn(move || {
                let mut batch = Vec::with_capacity(MAX_BATCH);
                'serve: while let Some(Some(first)) = rx.blocking_recv() {
                    batch.push(first);
                    // Group commit: whatever queued up while the last batch committed goes in
                    // this one, so concurrent writes share one WAL commit instead of one each.
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(Some(job)) => batch.push(job),
                            Ok(None) => {
                                run_batch(&mut conn, &mut batch, &counters, &committed);
                                break 'serve;
                            }
                            Err(_) => break,
                        }
                    }
                    run_batch(&mut conn, &mut batch, &counters, &committed);
                }
                drop(conn);
            })
            .map_err(|e| StoreError::Backend(format!("starting the writer thread: {e}")))?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                durability,
                writer: tx,
                readers: Mutex::new(Vec::new()),
                writer_thread: Mutex::new(Some(handle)),
                stats,
                commits,
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
        let handle = self.inner.writer_thread.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = self.inner.writer.send(None);
            let _ = h.join();
        }
    }

    /// Counters of the writer thread (group commit).
    pub fn writer_stats(&self) -> &WriterStats {
        &self.inner.stats
    }

    /// Runs `f` in one write transaction on the writer thread.
    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        self.write_or_roll_back(f, true).await
    }

    /// Runs `f` like [`Self::write`], then keeps (`commit`) or rolls back what it wrote: a
    /// rolled-back run computes exactly what the write would do, and writes nothing.
    async fn write_or_roll_back<T, F>(&self, f: F, commit: bool) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |txn| {
            let result = f(txn);
            let ok = result.is_ok() && commit;
            let done: Done = Box::new(move |commit_failed| {
                let _ = tx.send(match commit_failed {
                    Some(e) => Err(e),
                    None => result,
                });
            });
            (ok, done)
        });
        let started = std::time::Instant::now();
        self.inner.writer.send(Some(job)).map_err(|_| StoreError::Backend("the writer thread has stopped".into()))?;
        let result = rx.await.map_err(|_| StoreError::Backend("the writer thread dropped a request".into()))?;
        crate::metrics::get().store_write(started.elapsed().as_secs_f64());
        result
    }

    /// Runs `f` on a pooled read connection, off the async threads.
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
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
        .map_err(|e| StoreError::Backend(format!("read task failed: {e}")))?
    }
}

/// Runs queued writes in one transaction, each inside its own savepoint: a write that fails
/// is rolled back alone (it leaves no partial change), the others commit together (a write
/// alone is its own transaction, rolled back whole if it fails). Results
/// are delivered only after the commit, so nothing is acknowledged that is not durable.
fn run_batch(conn: &mut Connection, batch: &mut Vec<Job>, stats: &WriterStats, committed: &tokio::sync::watch::Sender<u64>) {
    use std::sync::atomic::Ordering::Relaxed;
    stats.commits.fetch_add(1, Relaxed);
    stats.writes.fetch_add(batch.len() as u64, Relaxed);
    stats.largest_batch.fetch_max(batch.len() as u64, Relaxed);
    crate::metrics::get().store_commit(batch.len());
    let mut done: Vec<Done> = Vec::with_capacity(batch.len());
    let result = (|| -> StoreResult<bool> {
        let txn = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if batch.len() == 1
            && let Some(job) = batch.pop()
        {
            // A write alone needs no savepoint (SQLite builds a bit vector per savepoint over
            // the pages it writes): if it fails, the whole transaction is rolled back.
            let (ok, d) = job(&txn);
            done.push(d);
            if !ok {
                txn.rollback()?;
                return Ok(false);
            }
        } else {
            for job in batch.drain(..) {
                // Cached: parsing them for every write cost ~6k instructions each (callgrind).
                txn.prepare_cached("SAVEPOINT job")?.execute([])?;
                let (ok, d) = job(&txn);
                done.push(d);
                if !ok {
                    txn.prepare_cached("ROLLBACK TO job")?.execute([])?;
                }
                txn.prepare_cached("RELEASE job")?.execute([])?;
            }
        }
        txn.commit()?;
        Ok(true)
    })();
    // Jobs not reached (the batch failed before them) were dropped: their callers see the
    // writer drop the request and fail it.
    batch.clear();
    let failed = result.as_ref().err();
    if matches!(result, Ok(true)) {
        committed.send_modify(|n| *n += 1);
    }
    for d in done {
        d(failed.map(|e| StoreError::Backend(format!("commit failed: {e}"))));
    }
}

pub(crate) fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

impl Store for SqliteStore {
    async fn create_tenant(&self, name: &str) -> StoreResult<Tenant> {
        let name = name.to_string();
        self.write(move |t| admin::create_tenant(t, &name)).await
    }
    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        self.read(admin::list_tenants).await
    }
    async fn create_idp(&self, tenant: &str, idp: NewIdp) -> StoreResult<IdpConnection> {
        let tenant = tenant.to_string();
        self.write(move |t| admin::create_idp(t, &tenant, &idp)).await
    }
    async fn list_idps(&self, tenant: Option<&str>) -> StoreResult<Vec<IdpConnection>> {
        let tenant = tenant.map(str::to_string);
        self.read(move |c| admin::list_idps(c, tenant.as_deref())).await
    }
    async fn update_idp(&self, idp_id: i64, kind: IdpKind, rate: RateLimit) -> StoreResult<()> {
        self.write(move |t| admin::update_idp(t, idp_id, kind, rate)).await
    }
    async fn find_idp(&self, tenant: &str, idp: &str) -> StoreResult<Option<IdpConnection>> {
        let (tenant, idp) = (tenant.to_string(), idp.to_string());
        self.read(move |c| admin::find_idp(c, &tenant, &idp)).await
    }
    async fn add_token(&self, idp_id: i64, token_id: &str, secret_hash: &[u8], expire_others_at: Option<String>) -> StoreResult<()> {
        let (token_id, hash) = (token_id.to_string(), secret_hash.to_vec());
        self.write(move |t| admin::add_token(t, idp_id, &token_id, &hash, expire_others_at.as_deref())).await
    }
    async fn find_token(&self, token_id: &str) -> StoreResult<Option<TokenRecord>> {
        let token_id = token_id.to_string();
        self.read(move |c| admin::find_token(c, &token_id)).await
    }

    async fn add_admin_token(&self, token_id: &str, secret_hash: &[u8], tenant_id: Option<i64>, name: &str, role: TokenRole) -> StoreResult<()> {
        let (token_id, hash, name) = (token_id.to_string(), secret_hash.to_vec(), name.to_string());
        self.write(move |t| admin::add_admin_token(t, &token_id, &hash, tenant_id, &name, role)).await
    }
    async fn find_admin_token(&self, token_id: &str) -> StoreResult<Option<AdminTokenRecord>> {
        let token_id = token_id.to_string();
        self.read(move |c| admin::find_admin_token(c, &token_id)).await
    }
    async fn count_admin_tokens(&self) -> StoreResult<i64> {
        self.read(admin::count_admin_tokens).await
    }
    async fn set_idp_disabled(&self, idp_id: i64, disabled: bool) -> StoreResult<()> {
        self.write(move |t| admin::set_idp_disabled(t, idp_id, disabled)).await
    }
    async fn get_user(&self, idp: &IdpConnection, id: &str, with_groups: bool) -> StoreResult<StoredUser> {
        let (idp_id, id) = (idp.id, id.to_string());
        self.read(move |c| users::get(c, idp_id, &id, with_groups)).await
    }
    async fn list_users(&self, idp: &IdpConnection, q: &ListQuery) -> StoreResult<Page<StoredUser>> {
        let (idp_id, q) = (idp.id, q.clone());
        self.read(move |c| users::list(c, idp_id, &q)).await
    }
    async fn create_user(&self, idp: &IdpConnection, w: UserWrite, audit: AuditInfo) -> StoreResult<StoredUser> {
        let idp = idp.clone();
        self.write(move |t| users::create(t, &idp, &w, &audit)).await
    }
    async fn update_user(&self, idp: &IdpConnection, id: &str, expected_version: i64, w: UserWrite, audit: AuditInfo) -> StoreResult<StoredUser> {
        let (idp, id) = (idp.clone(), id.to_string());
        self.write(move |t| users::update(t, &idp, &id, expected_version, &w, &audit)).await
    }
    async fn delete_user(&self, idp: &IdpConnection, id: &str, expected_version: Option<i64>, action: DeprovisionAction, hold: bool, audit: AuditInfo) -> StoreResult<()> {
        let (idp, id) = (idp.clone(), id.to_string());
        self.write(move |t| users::delete(t, &idp, &id, expected_version, action, hold, &audit)).await
    }
    async fn held_ops(&self, tenant_id: i64, status: Option<&str>) -> StoreResult<Vec<HeldOp>> {
        let status = status.map(str::to_string);
        self.read(move |c| held::held_ops(c, tenant_id, status.as_deref())).await
    }
    async fn decide_held(&self, tenant_id: i64, id: i64, approve: bool, by: &str) -> StoreResult<HeldOp> {
        let by = by.to_string();
        self.write(move |t| held::decide_held(t, tenant_id, id, approve, &by)).await
    }
    async fn purge_expired(&self, now: &str) -> StoreResult<usize> {
        let now = now.to_string();
        self.write(move |t| users::purge_expired(t, &now)).await
    }

    async fn get_group(&self, idp: &IdpConnection, id: &str, with_members: bool) -> StoreResult<StoredGroup> {
        let (idp_id, id) = (idp.id, id.to_string());
        self.read(move |c| groups::get(c, idp_id, &id, with_members)).await
    }
    async fn list_groups(&self, idp: &IdpConnection, q: &ListQuery) -> StoreResult<Page<StoredGroup>> {
        let (idp_id, q) = (idp.id, q.clone());
        self.read(move |c| groups::list(c, idp_id, &q)).await
    }
    async fn create_group(&self, idp: &IdpConnection, w: GroupWrite, members: Vec<String>, rules: MemberRules, audit: AuditInfo) -> StoreResult<StoredGroup> {
        let idp = idp.clone();
        self.write(move |t| groups::create(t, &idp, &w, &members, &rules, &audit)).await
    }
    async fn update_group(&self, idp: &IdpConnection, id: &str, u: GroupUpdate, audit: AuditInfo) -> StoreResult<(StoredGroup, u32)> {
        let (idp, id) = (idp.clone(), id.to_string());
        self.write(move |t| groups::update(t, &idp, &id, &u, &audit)).await
    }
    async fn group_targets(&self, idp: &IdpConnection, id: &str) -> StoreResult<Vec<String>> {
        let (idp_id, id) = (idp.id, id.to_string());
        self.read(move |c| groups::target_names(c, idp_id, &id)).await
    }
    async fn delete_group(&self, idp: &IdpConnection, id: &str, expected_version: Option<i64>, removal_budget: Option<u32>, audit: AuditInfo) -> StoreResult<u32> {
        let (idp, id) = (idp.clone(), id.to_string());
        self.write(move |t| groups::delete(t, &idp, &id, expected_version, removal_budget, &audit)).await
    }
    async fn users_after(&self, idp: &IdpConnection, after_pk: i64, limit: usize) -> StoreResult<Vec<(i64, StoredUser)>> {
        let idp_id = idp.id;
        self.read(move |c| users::page_after(c, idp_id, after_pk, limit)).await
    }
    async fn groups_after(&self, idp: &IdpConnection, after_pk: i64, limit: usize) -> StoreResult<Vec<(i64, StoredGroup)>> {
        let idp_id = idp.id;
        self.read(move |c| groups::page_after(c, idp_id, after_pk, limit)).await
    }
    async fn reapply_users(&self, idp: &IdpConnection, items: Vec<ReapplyUser>, mode: ReapplyMode) -> StoreResult<Vec<ReapplyOutcome>> {
        let idp = idp.clone();
        self.write_or_roll_back(move |t| reapply::users(t, &idp, &items, mode), mode != ReapplyMode::Preview).await
    }
    async fn reapply_groups(&self, idp: &IdpConnection, items: Vec<ReapplyGroup>, mode: ReapplyMode) -> StoreResult<Vec<ReapplyOutcome>> {
        let idp = idp.clone();
        self.write_or_roll_back(move |t| reapply::groups(t, &idp, &items, mode), mode != ReapplyMode::Preview).await
    }
    async fn start_reapply(&self, idp: &IdpConnection, chain_version: Option<i64>, author: &str) -> StoreResult<ReapplyJob> {
        let (idp, author) = (idp.clone(), author.to_string());
        self.write(move |t| reapply::start(t, &idp, chain_version, &author)).await
    }
    async fn reapply_job(&self, idp_id: i64) -> StoreResult<Option<ReapplyJob>> {
        self.read(move |c| reapply::latest(c, idp_id)).await
    }
    async fn advance_reapply(&self, job_id: i64, phase: &str, error: Option<String>) -> StoreResult<ReapplyJob> {
        let phase = phase.to_string();
        self.write(move |t| reapply::advance(t, job_id, &phase, error.as_deref())).await
    }
    async fn local_change(&self, tenant_id: i64, user_name: &str, change: LocalChange, by: &str) -> StoreResult<DirectoryEntry> {
        let (user_name, by) = (user_name.to_string(), by.to_string());
        self.write(move |t| users::local_change(t, tenant_id, &user_name, &change, &by)).await
    }
    async fn drift(&self, idp: &IdpConnection) -> StoreResult<DriftReport> {
        let idp = idp.clone();
        self.read(move |c| drift::report(c, &idp)).await
    }
    async fn audit(&self, q: AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        self.read(move |c| audit::query(c, &q)).await
    }
    async fn explain(&self, tenant_id: i64, user_name: &str) -> StoreResult<Option<Explanation>> {
        let user_name = user_name.to_string();
        self.read(move |c| audit::explain(c, tenant_id, &user_name)).await
    }
    async fn put_plugin(&self, tenant_id: i64, record: PluginRecord, bytes: Vec<u8>) -> StoreResult<PluginRecord> {
        self.write(move |t| rules::put_plugin(t, tenant_id, &record, &bytes)).await
    }
    async fn plugin_bytes(&self, hash: &str) -> StoreResult<Vec<u8>> {
        let hash = hash.to_string();
        self.read(move |c| rules::plugin_bytes(c, &hash)).await
    }
    async fn list_plugins(&self, tenant_id: i64) -> StoreResult<Vec<PluginRecord>> {
        self.read(move |c| rules::list_plugins(c, tenant_id)).await
    }
    async fn add_chain_version(&self, idp_id: i64, def: ChainDefinition, note: VersionNote, activate: bool) -> StoreResult<ChainVersion> {
        self.write(move |t| rules::add_version(t, idp_id, &def, &note, activate)).await
    }
    async fn activate_chain_version(&self, idp_id: i64, number: i64, author: &str) -> StoreResult<ChainVersion> {
        let author = author.to_string();
        self.write(move |t| rules::activate_version(t, idp_id, number, &author)).await
    }
    async fn chain_versions(&self, idp_id: i64) -> StoreResult<Vec<ChainVersion>> {
        self.read(move |c| rules::versions(c, idp_id)).await
    }
    async fn chain_activations(&self, idp_id: i64) -> StoreResult<Vec<Activation>> {
        self.read(move |c| rules::activations(c, idp_id)).await
    }
    async fn active_chains(&self) -> StoreResult<Vec<ChainVersion>> {
        self.read(rules::active).await
    }
    async fn set_shadow(&self, idp_id: i64, number: Option<i64>) -> StoreResult<()> {
        self.write(move |t| rules::set_shadow(t, idp_id, number)).await
    }
    async fn shadow_chains(&self) -> StoreResult<Vec<ChainVersion>> {
        self.read(rules::shadows).await
    }
    async fn add_shadow_diff(&self, idp_id: i64, d: ShadowDiff) -> StoreResult<()> {
        self.write(move |t| rules::add_shadow_diff(t, idp_id, &d)).await
    }
    async fn shadow_diffs(&self, idp_id: i64, version: i64, limit: usize) -> StoreResult<Vec<ShadowDiff>> {
        self.read(move |c| rules::shadow_diffs(c, idp_id, version, limit)).await
    }
    async fn rules_epoch(&self) -> StoreResult<i64> {
        self.read(rules::epoch).await
    }
    async fn entry_of_user(&self, idp: &IdpConnection, id: &str) -> StoreResult<Option<DirectoryEntry>> {
        let (idp_id, id) = (idp.id, id.to_string());
        self.read(move |c| users::entry_of_user(c, idp_id, &id)).await
    }
    async fn directory_entry(&self, tenant_id: i64, user_name: &str) -> StoreResult<Option<DirectoryEntry>> {
        let user_name = user_name.to_string();
        self.read(move |c| users::directory_entry(c, tenant_id, &user_name)).await
    }
    async fn directory_users(&self, tenant_id: i64, q: &ListQuery) -> StoreResult<DirPage<DirUser>> {
        let q = q.clone();
        self.read(move |c| self::directory::users(c, tenant_id, &q)).await
    }
    async fn directory_user(&self, tenant_id: i64, id: &str) -> StoreResult<Option<DirUser>> {
        let id = id.to_string();
        self.read(move |c| self::directory::user(c, tenant_id, &id)).await
    }
    async fn directory_groups(&self, tenant_id: i64, q: &ListQuery) -> StoreResult<DirPage<DirGroup>> {
        let q = q.clone();
        self.read(move |c| self::directory::groups(c, tenant_id, &q)).await
    }
    async fn directory_group(&self, tenant_id: i64, id: &str, with_members: bool) -> StoreResult<Option<DirGroup>> {
        let id = id.to_string();
        self.read(move |c| self::directory::group(c, tenant_id, &id, with_members)).await
    }
    async fn changes(&self, tenant_id: i64, since: i64, limit: usize) -> StoreResult<Feed> {
        self.read(move |c| self::directory::changes(c, tenant_id, since, limit)).await
    }
    async fn change_cursor(&self) -> StoreResult<i64> {
        self.read(self::directory::cursor).await
    }
    async fn purge_changes(&self, before: &str) -> StoreResult<usize> {
        let before = before.to_string();
        self.write(move |t| self::directory::purge_changes(t, &before)).await
    }
    fn subscribe_commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.commits.clone()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    /// Writes committed together stay independent: a failing write leaves nothing behind,
    /// its neighbours in the same batch commit, and every caller gets its own result.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn group_commit_isolates_each_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db"), Durability::Process).unwrap();
        let mut tasks = Vec::new();
        for i in 0..200 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                match i % 3 {
                    0 => s.create_tenant(&format!("t{i}")).await.map(|_| "created"),
                    1 => s.create_tenant("dup").await.map(|_| "dup"),
                    // Writes, then fails: its insert must be rolled back on its own.
                    _ => s
                        .write(move |t| {
                            admin::create_tenant(t, &format!("partial{i}"))?;
                            Err::<(), _>(StoreError::Conflict("refused after writing".into()))
                        })
                        .await
                        .map(|_| "partial"),
                }
            }));
        }
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        let names: Vec<String> = store.list_tenants().await.unwrap().into_iter().map(|t| t.name).collect();
        assert_eq!(results.iter().filter(|r| matches!(r, Ok("dup"))).count(), 1, "exactly one duplicate create wins");
        assert_eq!(results.iter().filter(|r| matches!(r, Err(StoreError::Conflict(_)))).count(), 66 + 66, "the other duplicates and all partial writes fail");
        assert!(!names.iter().any(|n| n.starts_with("partial")), "failed writes left nothing");
        assert_eq!(names.iter().filter(|n| n.starts_with('t')).count(), 67);
        let st = store.writer_stats();
        let (commits, writes) = (st.commits.load(std::sync::atomic::Ordering::Relaxed), st.writes.load(std::sync::atomic::Ordering::Relaxed));
        assert!(writes >= 200 && commits <= writes, "{commits} commits for {writes} writes");
        store.close();
    }

    #[tokio::test]
    async fn a_write_alone_in_its_batch_that_fails_or_is_a_dry_run_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db"), Durability::Process).unwrap();
        // Awaited one by one: each is the only write of its batch (no savepoint).
        let failed = store
            .write(|t| {
                admin::create_tenant(t, "partial")?;
                Err::<(), _>(StoreError::Conflict("refused after writing".into()))
            })
            .await;
        assert!(matches!(failed, Err(StoreError::Conflict(_))), "{failed:?}");
        let dry = store.write_or_roll_back(|t| admin::create_tenant(t, "dry").map(|t| t.name), false).await.unwrap();
        assert_eq!(dry, "dry", "a rolled-back run still returns what it computed");
        store.create_tenant("kept").await.unwrap();
        let names: Vec<String> = store.list_tenants().await.unwrap().into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["kept"]);
        store.close();
    }
}
