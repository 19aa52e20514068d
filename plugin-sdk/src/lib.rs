//! The Mapwright plugin SDK.
//!
//! This crate will hold the WIT contract (`mapwright:plugin`) and the Rust SDK that rule
//! plugins are written against. It is intentionally empty until the plugin runtime lands:
//! the host currently applies the identity mapping (see `ARCHITECTURE.md`).
#![deny(missing_docs)]
