//! The store's logic, written once over [`crate::store::sql::Sql`] and run on either
//! database: one module per concern of the data. No two of these modules import each other
//! in a cycle: lower ones (entries, memberships, held, audit) serve higher ones (users,
//! groups, approvals, reapply), and [`crate::store::impls`] alone puts them behind the
//! store's traits. Where the two databases differ (the feed's positions, a list of distinct
//! values) a module asks [`crate::store::sql::Sql::dialect`].

pub mod approvals;
pub mod audit;
pub mod connections;
pub mod delivery;
pub mod directory;
pub mod drift;
pub mod entries;
pub mod explain;
pub mod filter_sql;
pub mod groups;
pub mod guard_window;
pub mod held;
pub mod leases;
pub mod lifecycle;
pub mod local;
pub mod memberships;
pub mod reapply;
pub mod rules;
pub mod shapes;
pub mod users;
