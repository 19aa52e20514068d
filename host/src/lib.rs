//! Mapwright: a SCIM 2.0 provisioning server whose mapping rules run as sandboxed plugins.
//!
//! Layers, with dependencies flowing one way: [`http`] → [`service`] → [`store`], all
//! speaking the protocol types of [`scim`]. See `ARCHITECTURE.md` at the repository root.

/// The protocol types, from the `mapwright-scim` crate (re-exported so paths read `crate::scim::…`).
pub use mapwright_scim as scim;
pub mod store;
pub mod service;
pub mod http;
pub mod tokens;
pub mod cli;
pub mod config;
pub mod server;
pub mod telemetry;
pub mod plugins;
pub mod metrics;
