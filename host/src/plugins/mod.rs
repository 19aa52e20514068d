//! Rule plugins: Wasm components run in a sandbox, chained per IdP connection.
//!
//! - [`runtime`]: the engine (pooling allocator, epoch interruption), the plugins described
//!   so far keyed by content hash, the on-disk artifact cache, and per-call limits.
//! - `resident`: compiled code held under a byte budget, the least recently used evicted
//!   (loaded again from its artifact on its next call).
//! - [`sandbox`]: what a plugin's store holds: WASI with nothing granted (no files, network,
//!   environment; fixed clocks; deterministic randomness), memory limits, captured stderr.
//! - [`ticker`]: the epoch clock of the CPU limits; it runs while any plugin store exists.
//! - [`instance`]: calls into one chain entry, reusing its instances between calls.
//! - [`idle`]: idle instances kept for reuse, bounded and expired, owned by the runtime.
//! - [`chain`]: an IdP connection's ordered entries as a [`MappingPipeline`](crate::mapping::MappingPipeline).
//!
//! This layer implements the mapping contract ([`crate::mapping`]) over the domain types
//! ([`crate::model`]); it knows nothing of the services, the store or HTTP.

mod bindings;
pub mod builtin;
pub mod chain;
pub mod idle;
pub mod instance;
mod resident;
pub mod runtime;
pub mod sandbox;
pub mod ticker;

/// Why a plugin call or load failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// The plugin refused the input (a client error).
    #[error("{plugin}: rejected by rule {rule}: {reason}")]
    #[allow(missing_docs)]
    Rejected { plugin: String, rule: String, reason: String },
    /// The plugin trapped, ran out of time or memory, or returned invalid output.
    #[error("{plugin}: {reason}")]
    #[allow(missing_docs)]
    Fault { plugin: String, reason: String },
    /// The connection's rules are suspended for `retry_after` seconds: its plugin kept running
    /// out of CPU time (see `instance::Lane`).
    #[error("{plugin}: {}", instance::suspension(*retry_after))]
    #[allow(missing_docs)]
    Suspended { plugin: String, retry_after: u64 },
    /// The component cannot be used as a plugin.
    #[error("invalid plugin: {0}")]
    Invalid(String),
    /// A chain entry's configuration was refused by its plugin.
    #[error("invalid configuration for {plugin}: {reason}")]
    #[allow(missing_docs)]
    Config { plugin: String, reason: String },
}
