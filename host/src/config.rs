//! Configuration: a TOML file (or the embedded example), overridden by flags and environment.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use serde::Deserialize;

use crate::model::{IdpKind, Limits, RateLimit, check_name};
use crate::service::chain_file::{ChainEntryConfig, MatchingConfig, chain_specs};
use crate::store::sqlite::Durability;
pub use crate::telemetry::LogFormat;

/// The example configuration compiled into the binary: `mapwright serve` with no `--config`
/// runs it (the example tenant and IdP connection, a SQLite file under `./data`).
pub const EMBEDDED_DEFAULT: &str = include_str!("../../examples/mapwright.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
/// The server configuration (`--config`, or the embedded example).
pub struct Config {
    #[serde(default)]
    /// `[server]`
    pub server: ServerConfig,
    #[serde(default, rename = "tenant")]
    /// `[[tenant]]` tables: tenants and connections declared here exist at start.
    pub tenants: Vec<TenantConfig>,
    /// `[delivery]`: where delivery targets may be.
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// `[store]`: which database (SQLite under `data_dir` unless a PostgreSQL URL is given).
    #[serde(default)]
    pub store: StoreConfig,
    /// The directory relative plugin paths are resolved from (the configuration file's).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// `[delivery]`: delivery to applications.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Targets on loopback and private addresses (RFC 1918, unique local, CGNAT) allowed: for a
    /// target on the server's own network. Link-local and metadata addresses never are.
    pub allow_private_targets: bool,
}

impl DeliveryConfig {
    /// Where targets may be.
    pub fn policy(&self) -> crate::service::delivery::egress::EgressPolicy {
        crate::service::delivery::egress::EgressPolicy { allow_private: self.allow_private_targets }
    }
}

/// `[store]`: the database. Without `url`, an SQLite file under `[server] data_dir`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `postgres://user:password@host/db`: PostgreSQL, shared by every replica given it.
    pub url: Option<String>,
    /// PostgreSQL connections each process holds open at most.
    pub pool_size: usize,
    /// A PostgreSQL statement running longer than this is cancelled, in milliseconds (0: never).
    pub statement_timeout_ms: u64,
    /// Bring the schema up to date at start (false: `mapwright migrate` does it, and a server
    /// finding an older schema refuses to start).
    pub auto_migrate: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        let pg = crate::store::postgres::PgOptions::default();
        StoreConfig { url: None, pool_size: pg.pool_size, statement_timeout_ms: pg.statement_timeout.as_millis() as u64, auto_migrate: true }
    }
}

// By hand: the URL may carry a password, and configurations get logged.
impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &self.url.as_ref().map(|_| "<set>"))
            .field("pool_size", &self.pool_size)
            .field("statement_timeout_ms", &self.statement_timeout_ms)
            .field("auto_migrate", &self.auto_migrate)
            .finish()
    }
}

impl StoreConfig {
    /// Where the data lives, as a person reads it (never a password).
    pub fn describe(&self, server: &ServerConfig) -> String {
        match &self.url {
            Some(url) => format!("PostgreSQL {}", redact_password(url)),
            None => format!("SQLite {}", server.db_path().display()),
        }
    }

    /// The PostgreSQL pool's options.
    pub fn pg_options(&self) -> crate::store::postgres::PgOptions {
        crate::store::postgres::PgOptions {
            pool_size: self.pool_size.max(1),
            statement_timeout: std::time::Duration::from_millis(self.statement_timeout_ms),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
/// `[server]`: where it listens, where it keeps its data, how it logs.
pub struct ServerConfig {
    /// The address to listen on (port 0 picks one).
    pub listen: SocketAddr,
    /// The URL clients reach the server at, if not `http://<listen>` (behind a proxy).
    pub public_url: Option<String>,
    /// Where the SQLite database and compiled plugins live.
    pub data_dir: PathBuf,
    /// How log lines are written.
    pub log_format: LogFormat,
    /// The largest request body accepted, in bytes (413 beyond).
    pub body_limit: usize,
    /// How durable an acknowledged write is.
    pub durability: Durability,
    /// How often soft-deleted entries past their retention are purged, in seconds.
    pub purge_interval_secs: u64,
    /// How long the directory change feed keeps a change, in seconds (default 30 days); an
    /// application whose cursor is older lists the directory again.
    pub change_retention_secs: u64,
    /// `[server.tls]`: serve HTTPS with these files (none: plain HTTP, e.g. behind a proxy).
    pub tls: Option<TlsConfig>,
    /// Memory for the IdP users updates start from without reading them first, in MiB (0:
    /// none). Unset: 64 on SQLite, none on PostgreSQL, where other replicas change users
    /// under it (a stale one is only read again, but costs its update a second mapping).
    pub remembered_users_mib: Option<usize>,
    /// Memory for plugins, in MiB (default 384): two thirds for compiled code, beyond which
    /// the plugins used least recently are evicted and load again from the on-disk cache on
    /// their next call (a millisecond or two for a Rust plugin, ~0.1 s for a JavaScript or
    /// Python one); a third for idle instances kept for reuse.
    pub plugin_memory_mib: usize,
}

/// `[server.tls]`: the certificate and key, PEM files, read again when they change.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate and its chain (relative paths: from the configuration file).
    pub cert_file: PathBuf,
    /// Its private key.
    pub key_file: PathBuf,
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
            tls: None,
            remembered_users_mib: None,
            plugin_memory_mib: 384,
        }
    }
}

impl ServerConfig {
    /// The SQLite database file.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("mapwright.db")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
/// `[[tenant]]`: one application directory.
pub struct TenantConfig {
    /// Its name in URLs.
    pub name: String,
    /// Default sandbox limits for this tenant's plugins (each chain entry may override).
    #[serde(default)]
    pub plugin_limits: Limits,
    #[serde(default, rename = "idp")]
    /// `[[tenant.idp]]`: its IdP connections.
    pub idps: Vec<IdpConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
/// `[[tenant.idp]]`: one IdP connection and its rules.
pub struct IdpConfig {
    /// Its name in URLs.
    pub name: String,
    #[serde(default = "default_kind")]
    /// Which IdP it is.
    pub kind: IdpKind,
    /// Sustained requests per second (0: unlimited; default 50).
    pub rate_per_second: Option<f64>,
    /// Requests allowed in a burst (default 200).
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
    /// What a group write does with a member this connection does not have: `skip` (the
    /// default: the rest applies, each skipped member recorded) or `reject` (400).
    #[serde(default)]
    pub unknown_members: crate::model::UnknownMembers,
    /// A `signin` connection: which claims give which attributes (OpenID Connect's standard
    /// claims by default).
    #[serde(default)]
    pub claims: crate::model::ClaimMapping,
}

/// `[tenant.idp.guard]`: deactivations and deletions past `max_destructive` in `window_secs`
/// are held for an admin (`mapwright held`); `protected` userNames (regex) are never
/// deprovisioned by the IdP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardConfig {
    /// 0 turns the cap off.
    pub max_destructive: u32,
    /// The window the cap counts over, in seconds.
    pub window_secs: u64,
    /// userName patterns (regex) never deprovisioned by an IdP.
    pub protected: Vec<String>,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig { max_destructive: crate::service::guard::DEFAULT_MAX, window_secs: 3600, protected: Vec::new() }
    }
}

impl GuardConfig {
    /// The guard of the connection this configures.
    pub fn policy(&self) -> anyhow::Result<crate::service::guard::GuardPolicy> {
        let max = (self.max_destructive > 0).then_some(self.max_destructive);
        crate::service::guard::GuardPolicy::new(max, std::time::Duration::from_secs(self.window_secs.max(1)), &self.protected).map_err(|e| anyhow::anyhow!("guard: {e}"))
    }
}

fn default_kind() -> IdpKind {
    IdpKind::Generic
}

impl IdpConfig {
    /// The chain as the plugin runtime takes it.
    pub fn chain_specs(&self, tenant_limits: &Limits, base: &std::path::Path) -> anyhow::Result<Vec<crate::plugins::chain::EntrySpec>> {
        chain_specs(&self.chain, tenant_limits, base)
    }

    /// The connection's policies.
    pub fn settings(&self) -> crate::model::ConnectionSettings {
        crate::model::ConnectionSettings { unknown_members: self.unknown_members, claims: self.claims.clone() }
    }

    /// The connection's rate limit.
    pub fn rate(&self) -> RateLimit {
        let d = RateLimit::default();
        RateLimit { per_second: self.rate_per_second.unwrap_or(d.per_second), burst: self.burst.unwrap_or(d.burst) }
    }
}

impl Config {
    /// Parses a configuration (`origin` names it in errors).
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<Config> {
        let c: Config = toml::from_str(text).with_context(|| format!("reading configuration {origin}"))?;
        for t in &c.tenants {
            check_name("tenant", &t.name)?;
            for i in &t.idps {
                check_name("IdP connection", &i.name)?;
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
                if let Some(tls) = &mut c.server.tls {
                    tls.cert_file = c.base_dir.join(&tls.cert_file);
                    tls.key_file = c.base_dir.join(&tls.key_file);
                }
                Ok(c)
            }
            None => Config::parse(EMBEDDED_DEFAULT, "(embedded example)"),
        }
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`; a `password=` key of a
/// `key=value` connection string the same way.
fn redact_password(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, path) = rest.split_once('/').map_or((rest, None), |(a, p)| (a, Some(p)));
        let authority = match authority.rsplit_once('@') {
            Some((user, host)) => match user.split_once(':') {
                Some((name, _)) => format!("{name}:***@{host}"),
                None => authority.to_string(),
            },
            None => authority.to_string(),
        };
        let path = path.map(|p| p.split('?').next().unwrap_or("")).map(|p| format!("/{p}")).unwrap_or_default();
        return format!("{scheme}://{authority}{path}");
    }
    url.split_whitespace().map(|kv| if kv.starts_with("password=") { "password=***" } else { kv }).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn database_passwords_are_never_shown() {
        assert_eq!(redact_password("postgres://mw:s3cret@db.example:5432/mapwright?sslmode=require&password=x"), "postgres://mw:***@db.example:5432/mapwright");
        assert_eq!(redact_password("postgres://mw@127.0.0.1/db"), "postgres://mw@127.0.0.1/db");
        assert_eq!(redact_password("host=db user=mw password=s3cret dbname=m"), "host=db user=mw password=*** dbname=m");
    }

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
