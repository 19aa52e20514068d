//! Throwaway databases for tests and benchmarks: each gets a database of its own on a shared
//! cluster, created fresh and dropped (with its connections) when done.

use crate::store::sql::Sql as _;
use crate::store::sql::postgres::PgConn;
use crate::store::{StoreError, StoreResult};

/// A database created for one test or run; dropped with this value.
pub struct ScratchDb {
    admin_url: String,
    name: String,
    url: String,
}

impl ScratchDb {
    /// Creates an empty database on the cluster `admin_url` points at (any database there the
    /// user may connect to and create databases from).
    pub fn create(admin_url: &str) -> StoreResult<ScratchDb> {
        let name = format!("mw_{}", uuid::Uuid::new_v4().simple());
        let url = with_database(admin_url, &name)?;
        let admin = admin_url.to_string();
        let statement = format!("CREATE DATABASE {name}");
        // Off any async runtime: the synchronous client brings its own.
        run_detached(move || PgConn::connect(&admin)?.execute(&statement, &[]).map(|_| ()))?;
        Ok(ScratchDb { admin_url: admin_url.to_string(), name, url })
    }

    /// Its URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let admin = self.admin_url.clone();
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = run_detached(move || PgConn::connect(&admin)?.execute(&statement, &[]).map(|_| ())) {
            tracing::warn!(error = %e, database = %self.name, "dropping a scratch database failed");
        }
    }
}

fn run_detached(f: impl FnOnce() -> StoreResult<()> + Send + 'static) -> StoreResult<()> {
    std::thread::spawn(f).join().map_err(|_| StoreError::backend("scratch database thread panicked"))?
}

/// `url` with its database name replaced by `name`.
pub fn with_database(url: &str, name: &str) -> StoreResult<String> {
    let (rest, query) = url.split_once('?').map_or((url, None), |(r, q)| (r, Some(q)));
    let Some((scheme, after)) = rest.split_once("://") else { return Err(StoreError::backend("a PostgreSQL URL is postgres://user@host:port/database")) };
    let authority = after.split('/').next().unwrap_or(after);
    let mut out = format!("{scheme}://{authority}/{name}");
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn the_database_name_is_replaced() {
        assert_eq!(super::with_database("postgres://u@h:5/postgres?sslmode=disable", "x").unwrap(), "postgres://u@h:5/x?sslmode=disable");
        assert_eq!(super::with_database("postgres://u@h:5", "x").unwrap(), "postgres://u@h:5/x");
    }
}
