//! The SCIM 2.0 protocol (RFC 7643/7644), independent of storage, transport and plugins:
//! schemas, the filter language, PATCH, resource canonicalisation, list parameters and errors.
//!
//! A crate of its own so that what parses untrusted input can be fuzzed and tested without
//! building the server (and wasmtime) around it.

pub mod error;
pub mod eval;
pub mod filter;
pub mod list;
pub mod names;
pub mod patch;
pub mod resource;
pub mod schema;
