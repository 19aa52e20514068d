//! Rules as data: plugins (content-addressed) and chain versions.
//!
//! A chain version is immutable: a numbered list of (plugin hash, configuration, limits)
//! per IdP connection. Activating a version only moves the connection's pointer, so a
//! rollback is a pointer move too, and every past decision can name the version that made it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{MatchPolicy, Timestamp};

/// Per-call resource bounds of one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Linear memory a plugin instance may grow to.
    pub memory_bytes: usize,
    /// CPU time per call, in milliseconds (counted in 1 ms epoch ticks while the plugin runs).
    pub cpu_ms: u64,
    /// The largest output (username, group list, attributes JSON) accepted from one call.
    pub output_bytes: usize,
    /// A new instance for every call, instead of reusing the chain entry's instances
    /// between calls: no state can survive from one call to the next, at ~30 µs a call.
    pub fresh_instance_per_call: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { memory_bytes: 32 << 20, cpu_ms: 100, output_bytes: 256 << 10, fresh_instance_per_call: false }
    }
}

/// A group of decisions a plugin can make (what its `describe` lists).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    /// The username.
    Username,
    /// Group mapping and user memberships.
    Groups,
    /// The entry's attributes.
    Attributes,
    /// Deprovisioning and reactivation.
    Deprovision,
    /// What a delivery target receives (the optional `shape` export of contract 0.1.2).
    Shape,
    /// Whether a user is provisioned at all (the optional `scope` export of contract 0.1.2).
    Scope,
}

impl Hook {
    /// Every hook, in contract order.
    pub const ALL: [Hook; 6] = [Hook::Username, Hook::Groups, Hook::Attributes, Hook::Deprovision, Hook::Shape, Hook::Scope];

    /// The name in the contract and in stored records.
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Username => "username",
            Hook::Groups => "groups",
            Hook::Attributes => "attributes",
            Hook::Deprovision => "deprovision",
            Hook::Shape => "shape",
            Hook::Scope => "scope",
        }
    }

    /// A hook by name.
    pub fn parse(s: &str) -> Option<Hook> {
        Hook::ALL.into_iter().find(|h| h.as_str() == s)
    }
}

/// A stored plugin: what its component says of itself, keyed by the SHA-256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginRecord {
    /// SHA-256 of the component, hex.
    pub hash: String,
    /// The name it gives itself.
    pub name: String,
    /// The version it gives itself.
    pub version: String,
    /// The contract version it was built against (`0.1.1`).
    pub contract: String,
    /// The hooks it implements.
    pub hooks: Vec<Hook>,
    /// The component's size in bytes.
    pub size: usize,
    /// When it was first stored.
    pub uploaded: Timestamp,
}

/// One entry of a chain version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainEntryDef {
    /// SHA-256 of the plugin's component.
    pub plugin: String,
    /// The plugin's name when the version was made (for people; the hash is what counts).
    pub name: String,
    /// The plugin's configuration for this entry.
    #[serde(default)]
    pub config: Value,
    /// Its sandbox limits.
    #[serde(default)]
    pub limits: Limits,
}

/// Everything that decides how one IdP connection's resources are mapped.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainDefinition {
    /// The entries, in order.
    pub entries: Vec<ChainEntryDef>,
    /// What a create does when the directory already has the user.
    #[serde(default)]
    pub matching: MatchPolicy,
}

/// Where a chain version came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionSource {
    /// The server's configuration file (applied at start when it changed).
    Config,
    /// `mapwright chain set` or the admin API.
    Admin,
    /// A watched rules directory.
    Watch,
}

impl VersionSource {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            VersionSource::Config => "config",
            VersionSource::Admin => "admin",
            VersionSource::Watch => "watch",
        }
    }
    /// A source by its stored name (unknown names count as `admin`).
    pub fn parse(s: &str) -> VersionSource {
        match s {
            "config" => VersionSource::Config,
            "watch" => VersionSource::Watch,
            _ => VersionSource::Admin,
        }
    }
}

/// Who made a version and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionNote {
    /// Who.
    pub author: String,
    /// Why.
    pub note: String,
    /// Through what.
    pub source: VersionSource,
}

/// A stored chain version of one IdP connection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChainVersion {
    /// The connection.
    pub idp_id: i64,
    /// 1, 2, 3… per connection.
    pub number: i64,
    /// What it runs.
    pub definition: ChainDefinition,
    /// Who made it.
    pub author: String,
    /// Why.
    pub note: String,
    /// Through what.
    pub source: VersionSource,
    /// When.
    pub created: Timestamp,
    /// Whether the connection runs this version now.
    pub active: bool,
}

/// One activation: which version became active, when, by whom (rollbacks included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Activation {
    /// The version activated.
    pub number: i64,
    /// When.
    pub at: Timestamp,
    /// By whom.
    pub author: String,
}
