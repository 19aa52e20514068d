//! Rule plugins: Wasm components run in a sandbox, chained per IdP connection.
//!
//! - [`runtime`]: the engine (pooling allocator, epoch interruption), the compiled-component
//!   cache keyed by content hash, and per-call limits.
//! - [`sandbox`]: what a plugin's store holds: WASI with nothing granted (no files, network,
//!   environment; fixed clocks; deterministic randomness), memory limits, captured stderr.
//! - [`ticker`]: the epoch clock of the CPU limits; it runs while any plugin store exists.
//! - [`instance`]: calls into one chain entry, reusing its instances between calls.
//! - [`chain`]: an IdP connection's ordered entries as a [`MappingPipeline`](crate::service::mapping::MappingPipeline).

mod bindings;
pub mod builtin;
pub mod chain;
pub mod instance;
pub mod runtime;
pub mod sandbox;
pub mod ticker;

/// Why a plugin call or load failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// The plugin refused the input (a client error).
    #[error("{plugin}: rejected by rule {rule}: {reason}")]
    Rejected { plugin: String, rule: String, reason: String },
    /// The plugin trapped, ran out of time or memory, or returned invalid output.
    #[error("{plugin}: {reason}")]
    Fault { plugin: String, reason: String },
    /// The connection's rules are suspended for `retry_after` seconds: its plugin kept running
    /// out of CPU time (see `instance::Lane`).
    #[error("{plugin}: {}", instance::suspension(*retry_after))]
    Suspended { plugin: String, retry_after: u64 },
    /// The component cannot be used as a plugin.
    #[error("invalid plugin: {0}")]
    Invalid(String),
    /// A chain entry's configuration was refused by its plugin.
    #[error("invalid configuration for {plugin}: {reason}")]
    Config { plugin: String, reason: String },
}
