//! The SQLite backend: WAL, versioned migrations, one writer thread, a pool of readers
//! ([`db`]), and one module per concern of the data. No two of these modules import each
//! other: lower ones (entries, memberships, held, audit) serve higher ones (users, groups,
//! approvals, reapply), and [`impls`] alone puts them behind the store's traits.

pub mod alloc;
mod approvals;
mod audit;
mod connections;
mod db;
mod delivery;
mod directory;
mod drift;
mod entries;
mod explain;
mod filter_sql;
mod groups;
mod held;
mod impls;
mod lifecycle;
mod local;
mod memberships;
mod migrations;
mod reapply;
mod rules;
mod shapes;
mod users;

pub use db::{Durability, SqliteStore, WriterStats};
