//! [`SqlStore`]: the store the server holds, one type over either engine. SQLite (the
//! embedded default: one writer thread, group commit) or PostgreSQL (a pool, serializable
//! writes, several replicas). Both run the same logic ([`crate::store::logic`]) over
//! [`Sql`]; the engine only decides how a read or a write gets its transaction.

use std::path::Path;

use tokio::sync::watch;

use super::{StoreError, StoreResult};
use super::postgres::{PgOptions, PgStore};
use super::sql::Sql;
use super::sqlite::{Durability, SqliteStore};

/// The store, over SQLite or PostgreSQL. Cheap to clone.
#[derive(Clone)]
pub struct SqlStore {
    engine: Engine,
}

#[derive(Clone)]
enum Engine {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

impl Backend {
    /// Its name, as `/readyz` and the logs say it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

impl SqlStore {
    /// Opens (creating and migrating if needed) the SQLite database at `path`.
    pub fn sqlite(path: &Path, durability: Durability) -> StoreResult<SqlStore> {
        Ok(SqlStore { engine: Engine::Sqlite(SqliteStore::open(path, durability)?) })
    }

    /// Connects to PostgreSQL at `url`; with `migrate`, brings the schema up to date (once
    /// across replicas starting together), else refuses a schema other than this build's.
    pub async fn postgres(url: &str, options: PgOptions, migrate: bool) -> StoreResult<SqlStore> {
        let url = url.to_string();
        // The synchronous client blocks (and owns a runtime): connect off the async threads.
        let pg = tokio::task::spawn_blocking(move || if migrate { PgStore::open(&url, options) } else { PgStore::open_current(&url, options) })
            .await
            .map_err(|e| StoreError::backend(format!("connecting to PostgreSQL: {e}")))??;
        Ok(SqlStore { engine: Engine::Postgres(pg) })
    }

    /// Brings the schema up to date (SQLite's was at open); returns the version it is at.
    pub async fn migrate(&self) -> StoreResult<usize> {
        match &self.engine {
            Engine::Sqlite(_) => self.read(|c| Ok(c.query_one("PRAGMA user_version", &[])?.get::<i64>(0)? as usize)).await,
            Engine::Postgres(p) => {
                let p = p.clone();
                tokio::task::spawn_blocking(move || p.migrate()).await.map_err(|e| StoreError::backend(format!("migrating: {e}")))?
            }
        }
    }

    /// The schema version the database is at.
    pub async fn schema_version(&self) -> StoreResult<usize> {
        match &self.engine {
            Engine::Sqlite(_) => self.migrate().await,
            Engine::Postgres(p) => {
                let p = p.clone();
                tokio::task::spawn_blocking(move || p.schema_version()).await.map_err(|e| StoreError::backend(format!("reading the schema version: {e}")))?
            }
        }
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        match &self.engine {
            Engine::Sqlite(_) => Backend::Sqlite,
            Engine::Postgres(_) => Backend::Postgres,
        }
    }

    /// The SQLite engine, for what only it has (the writer's group-commit counters).
    pub fn as_sqlite(&self) -> Option<&SqliteStore> {
        match &self.engine {
            Engine::Sqlite(s) => Some(s),
            Engine::Postgres(_) => None,
        }
    }

    /// Runs `f` in one read transaction (one consistent snapshot), off the async threads.
    pub async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Sql) -> StoreResult<T> + Send + 'static,
    {
        match &self.engine {
            Engine::Sqlite(s) => s.read(move |c| f(c)).await,
            Engine::Postgres(p) => p.read(f).await,
        }
    }

    /// Runs `f` in one write transaction; nothing of it stays when it fails. `f` may run more
    /// than once (PostgreSQL runs a write again when a concurrent one wins): it must do
    /// nothing outside its transaction.
    pub async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: Fn(&dyn Sql) -> StoreResult<T> + Send + 'static,
    {
        self.write_or_roll_back(f, true).await
    }

    /// Runs `f` like [`Self::write`], then keeps (`commit`) or rolls back what it wrote: a
    /// rolled-back run computes exactly what the write would do, and writes nothing.
    pub async fn write_or_roll_back<T, F>(&self, f: F, commit: bool) -> StoreResult<T>
    where
        T: Send + 'static,
        F: Fn(&dyn Sql) -> StoreResult<T> + Send + 'static,
    {
        self.write_as(None, f, commit).await
    }

    /// [`Self::write`] of a tenant's data (users, groups, their directory and feed): on
    /// PostgreSQL a tenant's writes take turns across replicas rather than race (see
    /// `PgStore::write`); SQLite has one writer anyway.
    pub async fn write_for<T, F>(&self, tenant_id: i64, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: Fn(&dyn Sql) -> StoreResult<T> + Send + 'static,
    {
        self.write_as(Some(tenant_id), f, true).await
    }

    /// [`Self::write_or_roll_back`] of a tenant's data, as [`Self::write_for`].
    pub async fn write_or_roll_back_for<T, F>(&self, tenant_id: i64, f: F, commit: bool) -> StoreResult<T>
    where
        T: Send + 'static,
        F: Fn(&dyn Sql) -> StoreResult<T> + Send + 'static,
    {
        self.write_as(Some(tenant_id), f, commit).await
    }

    async fn write_as<T, F>(&self, tenant: Option<i64>, f: F, commit: bool) -> StoreResult<T>
    where
        T: Send + 'static,
        F: Fn(&dyn Sql) -> StoreResult<T> + Send + 'static,
    {
        match &self.engine {
            Engine::Sqlite(s) => s.write_or_roll_back(move |t| f(t), commit).await,
            Engine::Postgres(p) => p.write(tenant, f, commit).await,
        }
    }

    /// Ticks after every write this process committed.
    pub fn commits(&self) -> watch::Receiver<u64> {
        match &self.engine {
            Engine::Sqlite(s) => s.commits(),
            Engine::Postgres(p) => p.commits(),
        }
    }

    /// Closes the database (SQLite: readers, then the writer thread, joined).
    pub fn close(&self) {
        match &self.engine {
            Engine::Sqlite(s) => s.close(),
            Engine::Postgres(p) => p.close(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::store::logic::connections;
    use crate::store::{StoreError, TenantStore};

    /// Writes committed together stay independent: a failing write leaves nothing behind,
    /// its neighbours in the same batch commit, and every caller gets its own result.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn group_commit_isolates_each_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlStore::sqlite(&dir.path().join("t.db"), Durability::Process).unwrap();
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
                            connections::create_tenant(t, &format!("partial{i}"))?;
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
        let st = store.as_sqlite().unwrap().writer_stats();
        let (commits, writes) = (st.commits.load(std::sync::atomic::Ordering::Relaxed), st.writes.load(std::sync::atomic::Ordering::Relaxed));
        assert!(writes >= 200 && commits <= writes, "{commits} commits for {writes} writes");
        store.close();
    }

    #[tokio::test]
    async fn a_write_alone_in_its_batch_that_fails_or_is_a_dry_run_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlStore::sqlite(&dir.path().join("t.db"), Durability::Process).unwrap();
        // Awaited one by one: each is the only write of its batch (no savepoint).
        let failed = store
            .write(|t| {
                connections::create_tenant(t, "partial")?;
                Err::<(), _>(StoreError::Conflict("refused after writing".into()))
            })
            .await;
        assert!(matches!(failed, Err(StoreError::Conflict(_))), "{failed:?}");
        let dry = store.write_or_roll_back(|t| connections::create_tenant(t, "dry").map(|t| t.name), false).await.unwrap();
        assert_eq!(dry, "dry", "a rolled-back run still returns what it computed");
        store.create_tenant("kept").await.unwrap();
        let names: Vec<String> = store.list_tenants().await.unwrap().into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["kept"]);
        store.close();
    }
}
