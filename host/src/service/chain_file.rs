//! The chain file: a connection's rule chain written as TOML, as `mapwright chain set --file`
//! and watched rules directories (`chain.toml`) take it. The server configuration's
//! `[[tenant.idp.chain]]` entries and `[tenant.idp.matching]` have the same shape.
//!
//! ```toml
//! [[entry]]
//! plugin = "builtin:username"            # or a component path, or sha256:<hash> of a stored one
//! config = { source = "email", local_part = true }
//! limits = { cpu_ms = 20 }               # optional
//!
//! [matching]
//! policy = "adopt"
//! verified_domains = ["acme.com"]
//! ```

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

use crate::model::{Limits, MatchPolicy};
use crate::plugins::chain::{EntrySpec, PluginSource};

/// One entry of an IdP connection's rule chain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainEntryConfig {
    /// `builtin:<name>`, `sha256:<hash>` or a path to a component (relative to the file).
    pub plugin: String,
    /// The plugin's configuration (any TOML value; it reaches the plugin as JSON).
    #[serde(default)]
    pub config: Option<toml::Value>,
    /// Overrides of the tenant's plugin limits.
    pub limits: Option<Limits>,
}

/// `[matching]`: what a create does when the directory already has the user.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchingConfig {
    /// `conflict` (409) or `adopt`.
    #[serde(default)]
    pub policy: MatchingPolicy,
    /// With `adopt`: only entries whose address is in one of these domains are adopted.
    #[serde(default)]
    pub verified_domains: Vec<String>,
}

/// The policies of `[matching]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchingPolicy {
    /// Answer 409 `uniqueness`.
    #[default]
    Conflict,
    /// Link the new IdP user to the existing entry.
    Adopt,
}

impl MatchingConfig {
    /// The policy as the rules store it.
    pub fn policy(&self) -> MatchPolicy {
        match self.policy {
            MatchingPolicy::Conflict => MatchPolicy::Conflict,
            MatchingPolicy::Adopt => MatchPolicy::Adopt { verified_domains: self.verified_domains.iter().map(|d| d.to_lowercase()).collect() },
        }
    }
}

/// The chain entries as the plugin runtime takes them: paths relative to `base`, limits
/// defaulting to the tenant's.
pub fn chain_specs(chain: &[ChainEntryConfig], tenant_limits: &Limits, base: &Path) -> anyhow::Result<Vec<EntrySpec>> {
    chain
        .iter()
        .map(|e| {
            let config = match &e.config {
                None => serde_json::Value::Null,
                Some(v) => serde_json::to_value(v).with_context(|| format!("converting the configuration of {}", e.plugin))?,
            };
            Ok(EntrySpec { plugin: PluginSource::parse(&e.plugin, base), config, limits: e.limits.unwrap_or(*tenant_limits) })
        })
        .collect()
}

/// A chain on its own (`mapwright chain set --file`, or a watched rules directory's
/// `chain.toml`): the same entries as an IdP connection's `chain` in the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainFile {
    /// The entries, in order.
    #[serde(default, rename = "entry")]
    pub entries: Vec<ChainEntryConfig>,
    /// What a create does when the directory already has the user.
    #[serde(default)]
    pub matching: MatchingConfig,
}

impl ChainFile {
    /// Reads and parses a chain file.
    pub fn load(path: &Path) -> anyhow::Result<ChainFile> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("reading chain file {}", path.display()))
    }

    /// Its entries as the plugin runtime takes them (paths relative to the file's directory).
    pub fn specs(&self, tenant_limits: &Limits, file: &Path) -> anyhow::Result<Vec<EntrySpec>> {
        chain_specs(&self.entries, tenant_limits, file.parent().unwrap_or(Path::new("")))
    }
}

/// A delivery target's shape chain on its own (`mapwright target shape set --file`): entries
/// as in a chain file, each a plugin that shapes deliveries (`builtin:shape`, or one built
/// with contract 0.1.2 that lists `Hook::Shape`).
///
/// ```toml
/// [[entry]]
/// plugin = "builtin:shape"
/// config = { users = { allow = ["userName", "name", "emails"] }, groups = { prefix = "mw-" } }
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShapeFile {
    /// The entries, in order.
    #[serde(rename = "entry")]
    pub entries: Vec<ChainEntryConfig>,
}

impl ShapeFile {
    /// Reads and parses a shape file.
    pub fn load(path: &Path) -> anyhow::Result<ShapeFile> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("reading shape file {}", path.display()))
    }

    /// Its entries as the plugin runtime takes them (paths relative to the file's directory).
    pub fn specs(&self, tenant_limits: &Limits, file: &Path) -> anyhow::Result<Vec<EntrySpec>> {
        chain_specs(&self.entries, tenant_limits, file.parent().unwrap_or(Path::new("")))
    }
}
