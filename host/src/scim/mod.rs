//! The SCIM 2.0 protocol, independent of storage and transport: schemas, filters, PATCH,
//! resource canonicalisation, list parameters and errors.

pub mod error;
pub mod dialect;
pub mod eval;
pub mod filter;
pub mod list;
pub mod patch;
pub mod resource;
pub mod schema;
