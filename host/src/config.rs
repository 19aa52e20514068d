//! Configuration: a TOML file (or the embedded example), overridden by flags and environment.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::plugins::sandbox::Limits;
use crate::store::sqlite::Durability;
use crate::store::{IdpKind, RateLimit};

/// The example configuration compiled into the binary: `mapwright serve` with no `--config`
/// runs it (the example tenant and IdP connection, a SQLite file under `./data`).
pub const EMBEDDED_DEFAULT: &str = include_str!("../../examples/mapwright.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default, rename = "tenant")]
    pub tenants: Vec<TenantConfig>,
    /// The directory relative plugin paths are resolved from (the configuration file's).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// The URL clients reach the server at, if not `http://<listen>` (behind a proxy).
    pub public_url: Option<String>,
    pub data_dir: PathBuf,
    pub log_format: LogFormat,
    /// The largest request body accepted, in bytes (413 beyond).
    pub body_limit: usize,
    pub durability: Durability,
    /// How often soft-deleted entries past their retention are purged, in seconds.
    pub purge_interval_secs: u64,
    /// How long the directory change feed keeps a change, in seconds (default 30 days); an
    /// application whose cursor is older lists the directory again.
    pub change_retention_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            data_dir: PathBuf::from("data"),
            log_format: LogFormat::Text,
            body_limit: 1024 * 1024,
            durability: Durability::Process,
            purge_interval_secs: 300,
            change_retention_secs: 30 * 24 * 3600,
        }
    }
}

impl ServerConfig {
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("mapwright.db")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub name: String,
    /// Default sandbox limits for this tenant's plugins (each chain entry may override).
    #[serde(default)]
    pub plugin_limits: Limits,
    #[serde(default, rename = "idp")]
    pub idps: Vec<IdpConfig>,
}

/// One entry of an IdP connection's rule chain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainEntryConfig {
    /// `builtin:<name>` or a path to a component (relative to the configuration file).
    pub plugin: String,
    /// The plugin's configuration (any TOML value; it reaches the plugin as JSON).
    #[serde(default)]
    pub config: Option<toml::Value>,
    /// Overrides of the tenant's plugin limits.
    pub limits: Option<Limits>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdpConfig {
    pub name: String,
    #[serde(default = "default_kind")]
    pub kind: IdpKind,
    pub rate_per_second: Option<f64>,
    pub burst: Option<u32>,
    /// The rule chain, in order. Without one the connection maps identically.
    #[serde(default)]
    pub chain: Vec<ChainEntryConfig>,
    /// What a create does when the directory already has the user.
    #[serde(default)]
    pub matching: MatchingConfig,
    /// The cap on destructive operations and the protected principals.
    #[serde(default)]
    pub guard: GuardConfig,
    /// A directory holding this connection's `chain.toml` (and plugins), watched: changes
    /// become new chain versions without any command (relative to the configuration file).
    pub watch: Option<PathBuf>,
    /// Re-apply the active rules to everything the connection provisioned this often (the
    /// scheduled sync); an unfinished run is resumed when the server starts.
    pub reapply_every_secs: Option<u64>,
}

/// `[tenant.idp.guard]`: deactivations and deletions past `max_destructive` in `window_secs`
/// are held for an admin (`mapwright held`); `protected` userNames (regex) are never
/// deprovisioned by the IdP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardConfig {
    /// 0 turns the cap off.
    pub max_destructive: u32,
    pub window_secs: u64,
    pub protected: Vec<String>,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig { max_destructive: crate::service::guard::DEFAULT_MAX, window_secs: 3600, protected: Vec::new() }
    }
}

impl GuardConfig {
    pub fn policy(&self) -> anyhow::Result<crate::service::guard::GuardPolicy> {
        let max = (self.max_destructive > 0).then_some(self.max_destructive);
        crate::service::guard::GuardPolicy::new(max, std::time::Duration::from_secs(self.window_secs.max(1)), &self.protected).map_err(|e| anyhow::anyhow!("guard: {e}"))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchingConfig {
    #[serde(default)]
    pub policy: MatchingPolicy,
    /// With `adopt`: only entries whose address is in one of these domains are adopted.
    #[serde(default)]
    pub verified_domains: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchingPolicy {
    #[default]
    Conflict,
    Adopt,
}

impl MatchingConfig {
    pub fn policy(&self) -> crate::store::MatchPolicy {
        match self.policy {
            MatchingPolicy::Conflict => crate::store::MatchPolicy::Conflict,
            MatchingPolicy::Adopt => crate::store::MatchPolicy::Adopt { verified_domains: self.verified_domains.iter().map(|d| d.to_lowercase()).collect() },
        }
    }
}

fn default_kind() -> IdpKind {
    IdpKind::Generic
}

/// The chain entries as the plugin runtime takes them.
pub fn chain_specs(chain: &[ChainEntryConfig], tenant_limits: &Limits, base: &std::path::Path) -> anyhow::Result<Vec<crate::plugins::chain::EntrySpec>> {
    chain
        .iter()
        .map(|e| {
            let config = match &e.config {
                None => serde_json::Value::Null,
                Some(v) => serde_json::to_value(v).with_context(|| format!("converting the configuration of {}", e.plugin))?,
            };
            Ok(crate::plugins::chain::EntrySpec {
                plugin: crate::plugins::chain::PluginSource::parse(&e.plugin, base),
                config,
                limits: e.limits.unwrap_or(*tenant_limits),
            })
        })
        .collect()
}

/// A chain on its own (`mapwright chain set --file`, or a watched rules directory's
/// `chain.toml`): the same entries as an IdP connection's `chain` in the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainFile {
    #[serde(default, rename = "entry")]
    pub entries: Vec<ChainEntryConfig>,
    #[serde(default)]
    pub matching: MatchingConfig,
}

impl ChainFile {
    pub fn load(path: &std::path::Path) -> anyhow::Result<ChainFile> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("reading chain file {}", path.display()))
    }
}

impl IdpConfig {
    /// The chain as the plugin runtime takes it.
    pub fn chain_specs(&self, tenant_limits: &Limits, base: &std::path::Path) -> anyhow::Result<Vec<crate::plugins::chain::EntrySpec>> {
        chain_specs(&self.chain, tenant_limits, base)
    }

    pub fn rate(&self) -> RateLimit {
        let d = RateLimit::default();
        RateLimit { per_second: self.rate_per_second.unwrap_or(d.per_second), burst: self.burst.unwrap_or(d.burst) }
    }
}

/// Tenant and IdP names appear in URLs: lower-case letters, digits, `-` and `_`.
pub fn validate_name(what: &str, name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        bail!("invalid {what} name '{name}': use 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit");
    }
    Ok(())
}

impl Config {
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<Config> {
        let c: Config = toml::from_str(text).with_context(|| format!("reading configuration {origin}"))?;
        for t in &c.tenants {
            validate_name("tenant", &t.name)?;
            for i in &t.idps {
                validate_name("IdP connection", &i.name)?;
            }
        }
        Ok(c)
    }

    /// Loads `path`, or the embedded example when `None`.
    pub fn load(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
        match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
                let mut c = Config::parse(&text, &p.display().to_string())?;
                c.base_dir = p.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
                Ok(c)
            }
            None => Config::parse(EMBEDDED_DEFAULT, "(embedded example)"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn embedded_default_parses() {
        let c = Config::load(None).unwrap();
        assert!(!c.tenants.is_empty() && !c.tenants[0].idps.is_empty());
    }

    #[test]
    fn rejects_bad_names_and_unknown_keys() {
        assert!(Config::parse("[[tenant]]\nname = \"Bad Name\"", "t").is_err());
        assert!(Config::parse("[server]\nlisten_typo = 1", "t").is_err());
    }
}
