//! The `mapwright` command line: arguments and dispatch here; commands in `serve`, `rules`
//! and `records`. Output meant for people goes to stdout here; logs go
//! through `tracing` to stderr.
#![allow(clippy::print_stdout)]

mod records;
mod rules;
mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use std::sync::Arc;

use crate::config::{ChainFile, Config, LogFormat, validate_name};
use crate::plugins::chain::{Chain, ChainRegistry, PluginSource};
use crate::plugins::runtime::Runtime;
use crate::service::rules::RuleManager;
use crate::store::rules::{ChainVersion, VersionNote, VersionSource};
use crate::store::sqlite::SqliteStore;
use crate::store::{AuditQuery, IdpConnection, IdpKind, NewIdp, RateLimit, Store, StoreError};
use crate::{server, telemetry, tokens};

/// Mapwright: a SCIM 2.0 provisioning server with per-IdP mapping rules.
#[derive(Debug, Parser)]
#[command(name = "mapwright", version, propagate_version = true)]
pub struct Cli {
    /// Configuration file (TOML). Without it, the embedded example configuration is used.
    #[arg(long, global = true, env = "MAPWRIGHT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory holding the SQLite database (overrides the configuration).
    #[arg(long, global = true, env = "MAPWRIGHT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the SCIM server.
    Serve(ServeArgs),
    /// Manage tenants (one application directory each).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage IdP connections (each with its own SCIM base URL and token).
    #[command(subcommand)]
    Idp(IdpCommand),
    /// Inspect, try and store rule plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Versions of an IdP connection's rule chain: set, show, history, rollback.
    #[command(subcommand)]
    Chain(ChainCommand),
    /// Apply the connection's active rules to everything it has provisioned (after a rule
    /// change), in batches, resumable, each change recorded.
    Reapply(ReapplyArgs),
    /// Destructive operations a connection's guard held: list, approve, reject.
    #[command(subcommand)]
    Held(HeldCommand),
    /// Where the directory differs from what a connection's IdP says: entries it never
    /// touched, memberships changed outside its groups, deactivated users holding groups.
    Drift {
        tenant: String,
        idp: String,
        #[arg(long)]
        json: bool,
    },
    /// Create an admin API token (global, or scoped to one tenant), shown once.
    AdminToken {
        /// A name for the token (recorded as the actor of its changes).
        name: String,
        /// Scope the token to this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// A token that can only read the directory (`/directory/v1`): the one to give the
        /// application.
        #[arg(long)]
        directory: bool,
    },
    /// Query the audit trail: every change, who made it, and which rules decided.
    Audit(AuditArgs),
    /// Show why a directory entry is what it is: owners of its memberships, the IdP users
    /// that map to it, and the recorded decisions (with chain versions) that shaped it.
    Explain {
        tenant: String,
        /// The entry's userName in the directory.
        user: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum HeldCommand {
    /// List held operations (pending ones unless `--all`).
    List {
        tenant: String,
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Apply held operations.
    Approve {
        tenant: String,
        ids: Vec<i64>,
        #[arg(long, env = "USER", default_value = "admin")]
        author: String,
    },
    /// Drop held operations: the entries stay as they are.
    Reject {
        tenant: String,
        ids: Vec<i64>,
        #[arg(long, env = "USER", default_value = "admin")]
        author: String,
    },
}

#[derive(Debug, Args)]
pub struct ReapplyArgs {
    pub tenant: String,
    pub idp: String,
    /// Continue the connection's unfinished job (after a crash or a kill).
    #[arg(long)]
    pub resume: bool,
    /// Only print the latest job's progress.
    #[arg(long, conflicts_with = "resume")]
    pub status: bool,
    /// Resources per batch (one short write transaction each).
    #[arg(long, default_value_t = crate::service::reapply::DEFAULT_BATCH)]
    pub batch: usize,
    /// Pause between batches, in milliseconds, to leave room for provisioning traffic.
    #[arg(long, default_value_t = 0)]
    pub pause_ms: u64,
    #[arg(long, env = "USER", default_value = "admin")]
    pub author: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    pub tenant: String,
    /// Only changes that came through this IdP connection.
    #[arg(long)]
    pub idp: Option<String>,
    /// Only changes to this SCIM resource (a User or Group id).
    #[arg(long)]
    pub resource: Option<String>,
    /// Only changes to this directory entry (by its userName).
    #[arg(long)]
    pub user: Option<String>,
    /// From this time (RFC 3339, e.g. 2026-11-24T08:00:00Z).
    #[arg(long)]
    pub since: Option<String>,
    /// Until this time (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
    /// At most this many records (newest first).
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Only records older than this record id (the next page).
    #[arg(long)]
    pub before: Option<i64>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ChainCommand {
    /// Make a new chain version from a chain file and activate it (a running server picks it
    /// up within a second). Refused, with the reason, if any entry fails to load.
    Set {
        tenant: String,
        idp: String,
        /// The chain (TOML: `[[entry]]` tables with `plugin`, `config`, `limits`; optional
        /// `[matching]`). Plugin paths are relative to the file; `sha256:<hash>` names a
        /// stored plugin.
        #[arg(long)]
        file: PathBuf,
        /// Why: shown in the history.
        #[arg(long, default_value = "")]
        note: String,
        /// Who: shown in the history.
        #[arg(long, env = "USER", default_value = "admin")]
        author: String,
        /// Store the version without activating it (preview it, then `rollback --to N`).
        #[arg(long)]
        candidate: bool,
    },
    /// What a chain would change if applied to everything the connection has provisioned:
    /// usernames (and collisions), memberships, attributes, deprovisioning. Writes nothing.
    Preview {
        tenant: String,
        idp: String,
        /// A chain file to preview.
        #[arg(long, conflicts_with = "number", required_unless_present = "number")]
        file: Option<PathBuf>,
        /// A stored version to preview.
        #[arg(long)]
        number: Option<i64>,
        /// JSON: `{summary, total, items}` with `--offset`/`--limit` paging the items.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 0)]
        offset: usize,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Run a stored version beside the active one on live traffic, writing nothing but where
    /// its decisions differ (`--off` stops it).
    Shadow {
        tenant: String,
        idp: String,
        #[arg(long, conflicts_with = "off", required_unless_present = "off")]
        number: Option<i64>,
        #[arg(long)]
        off: bool,
    },
    /// Where the shadow version's decisions differed from the active ones, newest first.
    ShadowReport {
        tenant: String,
        idp: String,
        /// The shadow version (default: the one running now).
        #[arg(long)]
        number: Option<i64>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Make the shadow version the active one (and stop shadowing).
    Promote {
        tenant: String,
        idp: String,
        #[arg(long, env = "USER", default_value = "admin")]
        author: String,
    },
    /// Print the active version (or another one).
    Show {
        tenant: String,
        idp: String,
        /// The version number (default: the active one).
        #[arg(long)]
        number: Option<i64>,
        #[arg(long)]
        json: bool,
    },
    /// List every version and every activation.
    History {
        tenant: String,
        idp: String,
        #[arg(long)]
        json: bool,
    },
    /// Activate an earlier version again: the one active before the current one, or `--to`.
    Rollback {
        tenant: String,
        idp: String,
        #[arg(long)]
        to: Option<i64>,
        #[arg(long, env = "USER", default_value = "admin")]
        author: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Print a plugin's name, version, hooks and contract version.
    Inspect {
        /// A component file, or `builtin:<name>`.
        plugin: String,
    },
    /// Run a plugin on a SCIM payload and print each decision it makes.
    Test {
        /// A component file, or `builtin:<name>`.
        #[arg(long)]
        plugin: String,
        /// The chain entry's configuration (a JSON file); none means `null`.
        #[arg(long)]
        config: Option<PathBuf>,
        /// A SCIM User (for the user hooks) or Group (for --hook groups) as JSON.
        #[arg(long)]
        input: PathBuf,
        /// Which decision to run: `user` (username, attributes, memberships) or `group`.
        #[arg(long, value_enum, default_value = "user")]
        hook: TestHook,
        /// The IdP kind the plugin sees in its context.
        #[arg(long, value_enum, default_value = "generic")]
        kind: IdpKind,
    },
    /// List the plugins compiled into this binary.
    Builtins,
    /// Check a component and store it for a tenant (content-addressed), printing its hash.
    Add {
        tenant: String,
        /// A component file, or `builtin:<name>`.
        plugin: String,
    },
    /// List the plugins stored for a tenant.
    List { tenant: String },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TestHook {
    User,
    Group,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "MAPWRIGHT_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// The URL clients reach the server at, when behind a proxy.
    #[arg(long, env = "MAPWRIGHT_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Log format.
    #[arg(long, env = "MAPWRIGHT_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant.
    Add {
        /// Tenant name (used in SCIM URLs).
        name: String,
    },
    /// List tenants.
    List,
}

#[derive(Debug, Subcommand)]
pub enum IdpCommand {
    /// Create an IdP connection and print its SCIM base URL and bearer token (shown once).
    Add {
        tenant: String,
        name: String,
        /// Which IdP this is; selects the dialect details where IdPs conflict.
        #[arg(long, value_enum, default_value = "generic")]
        kind: IdpKind,
        /// Sustained requests per second allowed (0 = unlimited).
        #[arg(long)]
        rate_per_second: Option<f64>,
        /// Requests allowed in a burst.
        #[arg(long)]
        burst: Option<u32>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List IdP connections.
    List {
        /// Only this tenant's connections.
        tenant: Option<String>,
    },
    /// Issue a new bearer token; older tokens keep working for the overlap window.
    RotateToken {
        tenant: String,
        name: String,
        /// Seconds the previous tokens stay valid (0 revokes them now).
        #[arg(long, default_value_t = 86_400)]
        overlap_secs: u64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// How often a watched rules directory is read (a change applies after two equal reads).
const WATCH_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// How often a server looks for chain versions another process activated.
const RULES_POLL: std::time::Duration = std::time::Duration::from_millis(250);

fn public_url(cfg: &Config) -> String {
    cfg.server.public_url.clone().unwrap_or_else(|| format!("http://{}", cfg.server.listen)).trim_end_matches('/').to_string()
}

fn base_url(public: &str, idp: &IdpConnection) -> String {
    format!("{public}/scim/v2/{}/{}", idp.tenant, idp.name)
}

fn store_err(e: StoreError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

async fn issue_token(store: &SqliteStore, idp: &IdpConnection, expire_others_at: Option<String>) -> anyhow::Result<String> {
    let t = tokens::generate()?;
    store.add_token(idp.id, &t.id, &t.secret_hash, expire_others_at).await.map_err(store_err)?;
    Ok(t.token)
}

fn print_token(public: &str, idp: &IdpConnection, token: &str, as_json: bool) {
    if as_json {
        println!("{}", json!({"tenant": idp.tenant, "idp": idp.name, "kind": idp.kind.as_str(), "base_url": base_url(public, idp), "token": token}));
    } else {
        println!("IdP connection {}/{} ({})", idp.tenant, idp.name, idp.kind.as_str());
        println!("  SCIM base URL: {}", base_url(public, idp));
        println!("  Bearer token (shown once, store it now): {token}");
    }
}

/// The rules service over the store, with compiled plugins cached under the data directory
/// (shared by the server and the CLI, so what one compiled the other loads).
fn rule_manager(cfg: &Config, store: &SqliteStore) -> anyhow::Result<Arc<RuleManager<SqliteStore>>> {
    let runtime = Arc::new(Runtime::new()?.with_disk_cache(cfg.server.data_dir.join("plugin-cache")));
    Ok(Arc::new(RuleManager::new(Arc::new(store.clone()), runtime, Arc::new(ChainRegistry::default()))))
}

async fn find_idp(store: &SqliteStore, tenant: &str, idp: &str) -> anyhow::Result<IdpConnection> {
    store.find_idp(tenant, idp).await.map_err(store_err)?.with_context(|| format!("no IdP connection {tenant}/{idp}"))
}

async fn find_tenant(store: &SqliteStore, name: &str) -> anyhow::Result<crate::store::Tenant> {
    store.list_tenants().await.map_err(store_err)?.into_iter().find(|t| t.name == name).with_context(|| format!("no tenant named '{name}'"))
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    // Plugin commands that need no store run without configuration.
    let cli = match cli.command {
        Command::Plugin(cmd) if !matches!(cmd, PluginCommand::Add { .. } | PluginCommand::List { .. }) => {
            telemetry::init(LogFormat::Text);
            return rules::plugin_command(cmd).await;
        }
        command => Cli { command, ..cli },
    };
    let mut cfg = Config::load(cli.config.as_deref())?;
    if let Some(d) = cli.data_dir {
        cfg.server.data_dir = d;
    }
    if let Command::Serve(a) = &cli.command {
        if let Some(l) = a.listen {
            cfg.server.listen = l;
        }
        if let Some(u) = &a.public_url {
            cfg.server.public_url = Some(u.clone());
        }
        if let Some(f) = a.log_format {
            cfg.server.log_format = f;
        }
    }
    telemetry::init(cfg.server.log_format);
    let store = SqliteStore::open(&cfg.server.db_path(), cfg.server.durability).map_err(store_err).context("opening the store")?;
    match cli.command {
        Command::Serve(_) => serve::serve(cfg, store).await,
        Command::Tenant(TenantCommand::Add { name }) => {
            validate_name("tenant", &name)?;
            let t = store.create_tenant(&name).await.map_err(store_err)?;
            println!("tenant {} created", t.name);
            Ok(())
        }
        Command::Tenant(TenantCommand::List) => {
            for t in store.list_tenants().await.map_err(store_err)? {
                println!("{}\t{}", t.name, t.created);
            }
            Ok(())
        }
        Command::Idp(IdpCommand::Add { tenant, name, kind, rate_per_second, burst, json }) => {
            validate_name("IdP connection", &name)?;
            let d = RateLimit::default();
            let rate = RateLimit { per_second: rate_per_second.unwrap_or(d.per_second), burst: burst.unwrap_or(d.burst) };
            if rate.per_second < 0.0 || !rate.per_second.is_finite() {
                bail!("--rate-per-second must be 0 (unlimited) or positive");
            }
            let idp = store.create_idp(&tenant, NewIdp { name, kind, rate }).await.map_err(store_err)?;
            let token = issue_token(&store, &idp, None).await?;
            print_token(&public_url(&cfg), &idp, &token, json);
            Ok(())
        }
        Command::Idp(IdpCommand::List { tenant }) => {
            let public = public_url(&cfg);
            for i in store.list_idps(tenant.as_deref()).await.map_err(store_err)? {
                println!("{}/{}\t{}\t{}/s burst {}\t{}", i.tenant, i.name, i.kind.as_str(), i.rate.per_second, i.rate.burst, base_url(&public, &i));
            }
            Ok(())
        }
        Command::Idp(IdpCommand::RotateToken { tenant, name, overlap_secs, json }) => {
            let idp = store.find_idp(&tenant, &name).await.map_err(store_err)?.with_context(|| format!("no IdP connection {tenant}/{name}"))?;
            let until = chrono::Utc::now() + chrono::Duration::seconds(overlap_secs.min(365 * 86_400) as i64);
            let token = issue_token(&store, &idp, Some(until.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())).await?;
            print_token(&public_url(&cfg), &idp, &token, json);
            if !json {
                println!("  Previous tokens stop working at {}", until.format("%Y-%m-%dT%H:%M:%SZ"));
            }
            Ok(())
        }
        Command::Chain(cmd) => rules::chain_command(&cfg, &store, cmd).await,
        Command::Held(HeldCommand::List { tenant, all, json }) => records::held_list(&store, tenant, all, json).await,
        Command::Held(cmd) => records::held_decide(&store, cmd).await,
        Command::AdminToken { name, tenant, directory } => records::admin_token(&store, name, tenant, directory).await,
        Command::Drift { tenant, idp, json } => records::drift(&store, tenant, idp, json).await,
        Command::Reapply(a) => rules::reapply(&cfg, &store, a).await,
        Command::Audit(a) => records::audit(&store, a).await,
        Command::Explain { tenant, user, json } => records::explain(&store, tenant, user, json).await,
        Command::Plugin(PluginCommand::Add { tenant, plugin }) => rules::plugin_add(&cfg, &store, tenant, plugin).await,
        Command::Plugin(PluginCommand::List { tenant }) => rules::plugin_list(&store, tenant).await,
        Command::Plugin(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
