//! The SQLite engine: WAL, versioned migrations, one writer thread with group commit, a pool
//! of readers ([`db`]). The logic that runs on it is [`crate::store::logic`], shared with
//! PostgreSQL.

pub mod alloc;
mod db;
pub(crate) mod migrations;

pub use db::{Durability, SqliteStore, WriterStats};
#[cfg(test)]
pub(crate) use db::open;
