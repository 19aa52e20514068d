//! Mapwright: a SCIM 2.0 provisioning server whose mapping rules run as sandboxed plugins.
//!
//! Layers, each using only those below it (a test, `layers.rs`, keeps it so):
//!
//! | layer | modules |
//! |---|---|
//! | edge | [`cli`], [`server`], [`config`] |
//! | HTTP | [`http`] |
//! | services | [`service`] |
//! | rules | [`plugins`] over [`mapping`] |
//! | storage | [`store`] |
//! | domain | [`model`], and [`scim`] (the protocol), [`tokens`], [`secrets`], [`metrics`], [`telemetry`] |
//!
//! See `ARCHITECTURE.md` at the repository root for the path of one request.

#![deny(missing_docs)]

/// The protocol types, from the `mapwright-scim` crate (re-exported so paths read `crate::scim::…`).
pub use mapwright_scim as scim;

pub mod cli;
pub mod config;
pub mod http;
pub mod mapping;
pub mod metrics;
pub mod model;
pub mod plugins;
pub mod secrets;
pub mod server;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod tokens;

#[cfg(test)]
mod layers;
