//! The `mapwright` command line. Output meant for people goes to stdout here; logs go
//! through `tracing` to stderr.
#![allow(clippy::print_stdout)]

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

/// Creates the tenants and IdP connections of the configuration that do not exist yet;
/// returns the new connections with their tokens.
async fn seed(store: &SqliteStore, cfg: &Config) -> anyhow::Result<Vec<(IdpConnection, Option<String>)>> {
    let mut out = Vec::new();
    let existing = store.list_tenants().await.map_err(store_err)?;
    for t in &cfg.tenants {
        if !existing.iter().any(|e| e.name == t.name) {
            store.create_tenant(&t.name).await.map_err(store_err)?;
        }
        for i in &t.idps {
            match store.find_idp(&t.name, &i.name).await.map_err(store_err)? {
                // The configuration is the source of truth for the connections it declares.
                Some(mut idp) => {
                    if idp.kind != i.kind || idp.rate != i.rate() {
                        store.update_idp(idp.id, i.kind, i.rate()).await.map_err(store_err)?;
                        tracing::info!(tenant = %idp.tenant, idp = %idp.name, "applied configured kind and rate limit");
                        (idp.kind, idp.rate) = (i.kind, i.rate());
                    }
                    out.push((idp, None))
                }
                None => {
                    let idp = store.create_idp(&t.name, NewIdp { name: i.name.clone(), kind: i.kind, rate: i.rate() }).await.map_err(store_err)?;
                    let token = issue_token(store, &idp, None).await?;
                    out.push((idp, Some(token)));
                }
            }
        }
    }
    Ok(out)
}

/// The rules service over the store, with compiled plugins cached under the data directory
/// (shared by the server and the CLI, so what one compiled the other loads).
fn rule_manager(cfg: &Config, store: &SqliteStore) -> anyhow::Result<Arc<RuleManager<SqliteStore>>> {
    let runtime = Arc::new(Runtime::new()?.with_disk_cache(cfg.server.data_dir.join("plugin-cache")));
    Ok(Arc::new(RuleManager::new(Arc::new(store.clone()), runtime, Arc::new(ChainRegistry::default()))))
}

/// Applies the chains the configuration declares (where it changed since last time), then
/// loads every connection's active version. A declared chain that fails to load stops the
/// server from starting, with the reason.
async fn load_chains(cfg: &Config, rules: &RuleManager<SqliteStore>, seeded: &[(IdpConnection, Option<String>)]) -> anyhow::Result<()> {
    for t in &cfg.tenants {
        for i in &t.idps {
            let Some((idp, _)) = seeded.iter().find(|(c, _)| c.tenant == t.name && c.name == i.name) else { continue };
            let specs = i.chain_specs(&t.plugin_limits, &cfg.base_dir)?;
            if let Some(v) = rules.apply_config(idp, &specs, i.matching.policy()).await.with_context(|| format!("loading the rule chain of {}/{}", t.name, i.name))? {
                tracing::info!(tenant = %t.name, idp = %i.name, version = v.number, "configured rule chain changed: new version activated");
            }
        }
    }
    rules.sync().await.context("loading the active rule chains")?;
    Ok(())
}

/// The configured guards of the connections that exist in the store.
async fn configured_guards(cfg: &Config, store: &SqliteStore) -> anyhow::Result<crate::service::guard::Guard> {
    let mut found = Vec::new();
    for t in &cfg.tenants {
        for i in &t.idps {
            if let Some(idp) = store.find_idp(&t.name, &i.name).await.map_err(store_err)? {
                found.push((idp, None));
            }
        }
    }
    guards(cfg, &found)
}

/// On the very first start, a global admin token (there is no other way in yet).
async fn first_admin_token(store: &SqliteStore) -> anyhow::Result<Option<String>> {
    if store.count_admin_tokens().await.map_err(store_err)? > 0 {
        return Ok(None);
    }
    let t = tokens::generate_admin()?;
    store.add_admin_token(&t.id, &t.secret_hash, None, "initial").await.map_err(store_err)?;
    Ok(Some(t.token))
}

/// The guard of every configured connection (others get the default cap).
fn guards(cfg: &Config, seeded: &[(IdpConnection, Option<String>)]) -> anyhow::Result<crate::service::guard::Guard> {
    let mut policies = std::collections::HashMap::new();
    for t in &cfg.tenants {
        for i in &t.idps {
            if let Some((idp, _)) = seeded.iter().find(|(c, _)| c.tenant == t.name && c.name == i.name) {
                policies.insert(idp.id, i.guard.policy().with_context(|| format!("{}/{}", t.name, i.name))?);
            }
        }
    }
    Ok(crate::service::guard::Guard::new(policies))
}

async fn find_idp(store: &SqliteStore, tenant: &str, idp: &str) -> anyhow::Result<IdpConnection> {
    store.find_idp(tenant, idp).await.map_err(store_err)?.with_context(|| format!("no IdP connection {tenant}/{idp}"))
}

async fn chain_command(cfg: &Config, store: &SqliteStore, cmd: ChainCommand) -> anyhow::Result<()> {
    match cmd {
        ChainCommand::Set { tenant, idp, file, note, author, candidate } => {
            let idp = find_idp(store, &tenant, &idp).await?;
            let rules = rule_manager(cfg, store)?;
            let def = define_from_file(cfg, &rules, &idp, &file).await?;
            let note = VersionNote { author, note, source: VersionSource::Admin };
            if candidate {
                let v = rules.add_candidate(&idp, def, note).await.context("the chain was refused")?;
                println!("{}/{}: chain version {} stored, not active (preview it: mapwright chain preview {} {} --number {})", idp.tenant, idp.name, v.number, idp.tenant, idp.name, v.number);
            } else {
                let v = rules.set_chain(&idp, def, note).await.context("the chain was refused; the active version is unchanged")?;
                println!("{}/{}: chain version {} is active ({} entries)", idp.tenant, idp.name, v.number, v.definition.entries.len());
            }
            rules.runtime().shutdown();
            Ok(())
        }
        ChainCommand::Preview { tenant, idp, file, number, json, offset, limit } => {
            let idp = find_idp(store, &tenant, &idp).await?;
            let rules = rule_manager(cfg, store)?;
            let candidate = match (file, number) {
                (Some(f), _) => rules.build(&define_from_file(cfg, &rules, &idp, &f).await?).await?,
                (None, Some(n)) => {
                    let versions = store.chain_versions(idp.id).await.map_err(store_err)?;
                    let v = versions.iter().find(|v| v.number == n).with_context(|| format!("{tenant}/{} has no chain version {n}", idp.name))?;
                    rules.build(&v.definition).await?.with_version(n)
                }
                (None, None) => bail!("give --file or --number"),
            };
            let service = crate::service::Service::new(Arc::new(store.clone()), rules.registry().clone());
            let report = service.preview(&idp, &candidate, &Default::default()).await.map_err(|e| anyhow::anyhow!("{}", e.detail))?;
            rules.runtime().shutdown();
            if json {
                let items: Vec<_> = report.items.iter().skip(offset).take(limit).collect();
                println!("{}", serde_json::to_string_pretty(&json!({"summary": report.summary, "total": report.items.len(), "offset": offset, "items": items}))?);
            } else {
                print_report(&report);
            }
            Ok(())
        }
        ChainCommand::Shadow { tenant, idp, number, off } => {
            let idp = find_idp(store, &tenant, &idp).await?;
            if !off && let Some(n) = number {
                // Check it loads before a running server tries to.
                let rules = rule_manager(cfg, store)?;
                let versions = store.chain_versions(idp.id).await.map_err(store_err)?;
                let v = versions.iter().find(|v| v.number == n).with_context(|| format!("{tenant}/{} has no chain version {n}", idp.name))?;
                rules.build(&v.definition).await.context("the shadow version does not load")?;
                rules.runtime().shutdown();
            }
            store.set_shadow(idp.id, if off { None } else { number }).await.map_err(store_err)?;
            match number.filter(|_| !off) {
                Some(n) => println!("{}/{}: version {n} runs in shadow beside the active rules", idp.tenant, idp.name),
                None => println!("{}/{}: shadow evaluation stopped", idp.tenant, idp.name),
            }
            Ok(())
        }
        ChainCommand::ShadowReport { tenant, idp, number, limit, json } => {
            let idp = find_idp(store, &tenant, &idp).await?;
            let number = match number {
                Some(n) => n,
                None => store.shadow_chains().await.map_err(store_err)?.into_iter().find(|v| v.idp_id == idp.id).map(|v| v.number).context("no shadow version is running; give --number")?,
            };
            let diffs = store.shadow_diffs(idp.id, number, limit).await.map_err(store_err)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&diffs)?);
            } else {
                println!("shadow version {number} vs active: {} differing decisions (newest first)", diffs.len());
                for d in &diffs {
                    println!("  {} {} {} {} (request {}): {}", d.at, d.operation, d.resource_type, d.resource, d.request_id, d.diff);
                }
            }
            Ok(())
        }
        ChainCommand::Promote { tenant, idp, author } => {
            let idp = find_idp(store, &tenant, &idp).await?;
            let n = store.shadow_chains().await.map_err(store_err)?.into_iter().find(|v| v.idp_id == idp.id).map(|v| v.number).context("no shadow version to promote")?;
            let rules = rule_manager(cfg, store)?;
            rules.activate(&idp, n, &author).await.context("the promotion was refused; the active version is unchanged")?;
            store.set_shadow(idp.id, None).await.map_err(store_err)?;
            rules.runtime().shutdown();
            println!("{}/{}: shadow version {n} is now active", idp.tenant, idp.name);
            Ok(())
        }
        ChainCommand::Show { tenant, idp, number, json } => {
            let idp = find_idp(store, &tenant, &idp).await?;
            let versions = store.chain_versions(idp.id).await.map_err(store_err)?;
            let v = match number {
                Some(n) => versions.iter().find(|v| v.number == n).with_context(|| format!("{tenant}/{} has no chain version {n}", idp.name))?,
                None => match versions.iter().find(|v| v.active) {
                    Some(v) => v,
                    None => {
                        println!("{}/{}: no chain (identity mapping)", idp.tenant, idp.name);
                        return Ok(());
                    }
                },
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&version_json(v))?);
            } else {
                print_version(v);
            }
            Ok(())
        }
        ChainCommand::History { tenant, idp, json } => {
            let idp = find_idp(store, &tenant, &idp).await?;
            let versions = store.chain_versions(idp.id).await.map_err(store_err)?;
            let activations = store.chain_activations(idp.id).await.map_err(store_err)?;
            if json {
                let acts: Vec<_> = activations.iter().map(|a| json!({"version": a.number, "at": a.at, "author": a.author})).collect();
                println!("{}", serde_json::to_string_pretty(&json!({"versions": versions.iter().map(version_json).collect::<Vec<_>>(), "activations": acts}))?);
                return Ok(());
            }
            println!("versions of {}/{} (newest first):", idp.tenant, idp.name);
            for v in &versions {
                let names: Vec<&str> = v.definition.entries.iter().map(|e| e.name.as_str()).collect();
                println!("{} v{:<4} {}  {:<7} {:<12} [{}]  {}", if v.active { "*" } else { " " }, v.number, v.created, v.source.as_str(), v.author, names.join(" → "), v.note);
            }
            println!("activations (newest first):");
            for a in &activations {
                println!("  v{:<4} {}  by {}", a.number, a.at, a.author);
            }
            Ok(())
        }
        ChainCommand::Rollback { tenant, idp, to, author } => {
            let idp = find_idp(store, &tenant, &idp).await?;
            let versions = store.chain_versions(idp.id).await.map_err(store_err)?;
            let current = versions.iter().find(|v| v.active).map(|v| v.number);
            let target = match to {
                Some(n) => n,
                None => {
                    // The version that was active before the current one took over.
                    let acts = store.chain_activations(idp.id).await.map_err(store_err)?;
                    acts.iter().map(|a| a.number).find(|n| Some(*n) != current).context("there is no earlier version to roll back to")?
                }
            };
            if Some(target) == current {
                bail!("version {target} is already active");
            }
            let rules = rule_manager(cfg, store)?;
            let v = rules.activate(&idp, target, &author).await.context("the rollback was refused; the active version is unchanged")?;
            println!("{}/{}: chain version {} is active again", idp.tenant, idp.name, v.number);
            rules.runtime().shutdown();
            Ok(())
        }
    }
}

fn print_job(j: &crate::store::ReapplyJob) {
    println!(
        "re-apply job {} ({}): {}/{} seen, {} changed, {} failed, rules v{}{}",
        j.id,
        j.phase,
        j.seen,
        j.total,
        j.changed,
        j.failed,
        j.chain_version.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
        j.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
    );
}

async fn find_tenant(store: &SqliteStore, name: &str) -> anyhow::Result<crate::store::Tenant> {
    store.list_tenants().await.map_err(store_err)?.into_iter().find(|t| t.name == name).with_context(|| format!("no tenant named '{name}'"))
}

fn print_audit(r: &crate::store::AuditRecord) {
    let rules = r.chain_version.map(|v| format!(" rules v{v}")).unwrap_or_default();
    println!(
        "#{} {} {} {} {} {}{} by {} (request {})",
        r.id, r.at, r.operation, r.resource_type, r.resource_id, r.entry.as_deref().map(|e| format!("entry {e}")).unwrap_or_default(), rules, r.actor, r.request_id
    );
    if r.changes.as_object().is_some_and(|o| !o.is_empty()) {
        println!("    changes: {}", r.changes);
    }
    for d in &r.decisions {
        println!("    because {}/{}: {}", d.plugin, d.rule, d.reason);
    }
}

async fn define_from_file(cfg: &Config, rules: &RuleManager<SqliteStore>, idp: &IdpConnection, file: &std::path::Path) -> anyhow::Result<crate::store::rules::ChainDefinition> {
    let chain = ChainFile::load(file)?;
    let limits = cfg.tenants.iter().find(|t| t.name == idp.tenant).map(|t| t.plugin_limits).unwrap_or_default();
    let base = file.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
    let specs = crate::config::chain_specs(&chain.entries, &limits, &base)?;
    Ok(rules.define(idp.tenant_id, &specs, chain.matching.policy()).await?)
}

fn print_report(r: &crate::service::reapply::Report) {
    let s = &r.summary;
    println!("{} users and {} groups: {} would change, {} unchanged, {} skipped, {} refused", s.users, s.groups, s.changed, s.unchanged, s.skipped, s.failed);
    println!(
        "  usernames {} (collisions {}), memberships +{} -{}, attributes {}, deprovisioned {}, groups remapped {}",
        s.usernames_changed, s.collisions, s.memberships_added, s.memberships_removed, s.attributes_changed, s.deprovisioned, s.groups_remapped
    );
    for o in &r.items {
        let what = match &o.error {
            Some(e) => format!("{}: {e}", o.status),
            None => o.changes.to_string(),
        };
        println!("  {:<5} {:<24} {}  {}", o.resource_type, o.name, o.id, what);
    }
}

fn version_json(v: &ChainVersion) -> serde_json::Value {
    json!({
        "version": v.number,
        "active": v.active,
        "created": v.created,
        "author": v.author,
        "note": v.note,
        "source": v.source.as_str(),
        "definition": v.definition,
    })
}

fn print_version(v: &ChainVersion) {
    println!("version {}{}  created {} by {} ({})", v.number, if v.active { " (active)" } else { "" }, v.created, v.author, v.source.as_str());
    if !v.note.is_empty() {
        println!("  note: {}", v.note);
    }
    if v.definition.entries.is_empty() {
        println!("  no entries (identity mapping)");
    }
    for (i, e) in v.definition.entries.iter().enumerate() {
        println!("  {}. {} sha256:{}  config {}", i + 1, e.name, &e.plugin[..12.min(e.plugin.len())], e.config);
    }
    if v.definition.matching != crate::store::MatchPolicy::Conflict {
        println!("  matching: {:?}", v.definition.matching);
    }
}

async fn plugin_command(cmd: PluginCommand) -> anyhow::Result<()> {
    use crate::plugins::chain::EntrySpec;
    use crate::service::mapping::{GroupInput, MapContext, MappingPipeline, Operation};
    let cwd = std::env::current_dir()?;
    match cmd {
        PluginCommand::Builtins => {
            for n in crate::plugins::builtin::names() {
                println!("builtin:{n}");
            }
            Ok(())
        }
        PluginCommand::Add { .. } | PluginCommand::List { .. } => Ok(()),
        PluginCommand::Inspect { plugin } => {
            let runtime = Runtime::new()?;
            let p = runtime.load(&PluginSource::parse(&plugin, &cwd).bytes()?).await?;
            let hooks = p.hook_names();
            println!("name:      {}", p.name);
            println!("version:   {}", p.version);
            println!("contract:  mapwright:plugin@{}", p.contract().unwrap_or("unknown"));
            println!("hooks:     {}", if hooks.is_empty() { "none".to_string() } else { hooks.join(", ") });
            println!("sha256:    {}", p.hash);
            println!("size:      {} bytes", p.size);
            Ok(())
        }
        PluginCommand::Test { plugin, config, input, hook, kind } => {
            let runtime = Arc::new(Runtime::new()?);
            let config: serde_json::Value = match config {
                Some(p) => serde_json::from_str(&std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?)
                    .with_context(|| format!("{} is not JSON", p.display()))?,
                None => serde_json::Value::Null,
            };
            let spec = EntrySpec { plugin: PluginSource::parse(&plugin, &cwd), config, limits: Default::default() };
            let chain = Chain::load(&runtime, &[spec]).await?;
            let text = std::fs::read_to_string(&input).with_context(|| format!("reading {}", input.display()))?;
            let raw: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", input.display()))?;
            let idp = IdpConnection {
                id: 0, tenant_id: 0, tenant: "test".into(), name: "test".into(), kind, rate: RateLimit::default(), disabled: false, created: String::new(),
            };
            let ctx = MapContext { idp: &idp, operation: Operation::Create, current: None };
            let show = |decisions: &[(String, String, String)]| {
                for (plugin, rule, reason) in decisions {
                    println!("  because {plugin}/{rule}: {reason}");
                }
            };
            match hook {
                TestHook::User => {
                    let user = crate::scim::resource::canonicalize(crate::scim::schema::ResourceKind::User, &raw).map_err(|e| anyhow::anyhow!("{}", e.detail))?;
                    match chain.map_user(ctx, &user).await {
                        Ok((entry, decisions)) => {
                            println!("userName:   {}", entry.user_name);
                            println!("active:     {}", entry.active);
                            println!("grant:      {:?}", entry.grant);
                            println!("revoke:     {:?}", entry.revoke);
                            println!("attributes: {}", serde_json::to_string_pretty(&entry.attributes)?);
                            show(&decisions);
                        }
                        Err(e) => bail!("{e}"),
                    }
                }
                TestHook::Group => {
                    let group = crate::scim::resource::canonicalize(crate::scim::schema::ResourceKind::Group, &raw).map_err(|e| anyhow::anyhow!("{}", e.detail))?;
                    match chain.map_group(ctx, GroupInput { id: "test-group", body: &group }).await {
                        Ok((groups, decisions)) => {
                            println!("app groups: {groups:?}");
                            show(&decisions);
                        }
                        Err(e) => bail!("{e}"),
                    }
                }
            }
            Ok(())
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    // Plugin commands that need no store run without configuration.
    let cli = match cli.command {
        Command::Plugin(cmd) if !matches!(cmd, PluginCommand::Add { .. } | PluginCommand::List { .. }) => {
            telemetry::init(LogFormat::Text);
            return plugin_command(cmd).await;
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
        Command::Serve(_) => {
            let shutdown = server::shutdown_signal();
            let seeded = seed(&store, &cfg).await?;
            let rules = rule_manager(&cfg, &store)?;
            load_chains(&cfg, &rules, &seeded).await?;
            let guard = Arc::new(guards(&cfg, &seeded)?);
            let srv_store = store.clone();
            let admin_token = first_admin_token(&store).await?;
            let srv = server::Server::bind_with(&cfg.server, store, rules.registry().clone(), guard).await?.with_rules(rules.clone());
            let public = srv.public_url().to_string();
            println!("Mapwright {}", env!("CARGO_PKG_VERSION"));
            println!("  database: {}", cfg.server.db_path().display());
            for (idp, token) in &seeded {
                match token {
                    Some(t) => print_token(&public, idp, t, false),
                    None => {
                        println!("IdP connection {}/{} ({})", idp.tenant, idp.name, idp.kind.as_str());
                        println!("  SCIM base URL: {}", base_url(&public, idp));
                        println!("  Bearer token: issued earlier (new one: mapwright idp rotate-token {} {})", idp.tenant, idp.name);
                    }
                }
            }
            if let Some(t) = &admin_token {
                println!("Admin API: {public}/admin/v1");
                println!("  Admin token (shown once, store it now): {t}");
            }
            // Last, so that a script reading the banner has everything once it sees this line.
            println!("Mapwright listening on {public}");
            // Chain versions activated by another process (the CLI) are picked up from the store.
            let mut watchers = vec![rules.clone().watch_store(RULES_POLL)];
            for t in &cfg.tenants {
                for i in &t.idps {
                    if let (Some(dir), Some((idp, _))) = (&i.watch, seeded.iter().find(|(c, _)| c.tenant == t.name && c.name == i.name)) {
                        let dir = cfg.base_dir.join(dir);
                        tracing::info!(tenant = %t.name, idp = %i.name, dir = %dir.display(), "watching a rules directory");
                        watchers.push(rules.clone().watch_dir(idp.clone(), dir, t.plugin_limits, WATCH_POLL));
                    }
                }
            }
            let scheduler = Arc::new(crate::service::Service::new(Arc::new(srv_store.clone()), rules.registry().clone()));
            for t in &cfg.tenants {
                for i in &t.idps {
                    if let (Some(secs), Some((idp, _))) = (i.reapply_every_secs, seeded.iter().find(|(c, _)| c.tenant == t.name && c.name == i.name)) {
                        watchers.push(scheduler.clone().schedule_reapply(idp.clone(), std::time::Duration::from_secs(secs.max(1))));
                    }
                }
            }
            let served = srv.serve(shutdown).await;
            for w in watchers {
                w.abort();
            }
            rules.runtime().shutdown();
            served
        }
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
        Command::Chain(cmd) => chain_command(&cfg, &store, cmd).await,
        Command::Held(HeldCommand::List { tenant, all, json: as_json }) => {
            let t = find_tenant(&store, &tenant).await?;
            let ops = store.held_ops(t.id, if all { None } else { Some("held") }).await.map_err(store_err)?;
            if as_json {
                println!("{}", serde_json::to_string_pretty(&ops)?);
            } else {
                for o in &ops {
                    println!("#{} {} {} {} ({}) via {} at {} [{}] request {}", o.id, o.status, o.kind, o.user_name, o.resource_id, o.idp, o.at, serde_json::to_string(&o.action)?, o.request_id);
                }
            }
            Ok(())
        }
        Command::Held(HeldCommand::Approve { tenant, ids, author } | HeldCommand::Reject { tenant, ids, author }) if ids.is_empty() => {
            let _ = (tenant, author);
            bail!("give the ids of the held operations (mapwright held list)")
        }
        Command::Held(cmd @ (HeldCommand::Approve { .. } | HeldCommand::Reject { .. })) => {
            let approve = matches!(cmd, HeldCommand::Approve { .. });
            let (HeldCommand::Approve { tenant, ids, author } | HeldCommand::Reject { tenant, ids, author }) = cmd else { return Ok(()) };
            let t = find_tenant(&store, &tenant).await?;
            for id in ids {
                let o = store.decide_held(t.id, id, approve, &format!("admin:{author}")).await.map_err(store_err)?;
                println!("#{} {}: {} {}", o.id, o.status, o.kind, o.user_name);
            }
            Ok(())
        }
        Command::AdminToken { name, tenant } => {
            validate_name("admin token", &name)?;
            let tenant_id = match &tenant {
                Some(t) => Some(find_tenant(&store, t).await?.id),
                None => None,
            };
            let t = tokens::generate_admin()?;
            store.add_admin_token(&t.id, &t.secret_hash, tenant_id, &name).await.map_err(store_err)?;
            println!("admin token {name} ({}): {}", tenant.as_deref().map(|t| format!("tenant {t}")).unwrap_or_else(|| "global".into()), t.token);
            Ok(())
        }
        Command::Drift { tenant, idp, json: as_json } => {
            let idp = find_idp(&store, &tenant, &idp).await?;
            let r = store.drift(&idp).await.map_err(store_err)?;
            if as_json {
                println!("{}", serde_json::to_string_pretty(&r)?);
                return Ok(());
            }
            println!("drift of {}/{}:", idp.tenant, idp.name);
            println!("  entries this IdP never touched: {}", r.untouched.len());
            for e in &r.untouched {
                println!("    {} ({})", e.user_name, e.detail);
            }
            println!("  memberships its groups give that are missing: {}", r.missing_memberships.len());
            for m in &r.missing_memberships {
                println!("    {} in {} (from {})", m.user_name, m.group, m.detail);
            }
            println!("  memberships of its app groups held through something else: {}", r.extra_memberships.len());
            for m in &r.extra_memberships {
                println!("    {} in {} (held by {})", m.user_name, m.group, m.detail);
            }
            println!("  deactivated users still holding groups: {}", r.inactive_with_groups.len());
            for e in &r.inactive_with_groups {
                println!("    {} ({})", e.user_name, e.detail);
            }
            Ok(())
        }
        Command::Reapply(a) => {
            let idp = find_idp(&store, &a.tenant, &a.idp).await?;
            if a.status {
                match store.reapply_job(idp.id).await.map_err(store_err)? {
                    Some(j) if a.json => println!("{}", serde_json::to_string_pretty(&j)?),
                    Some(j) => print_job(&j),
                    None => println!("{}/{}: no re-apply has run", idp.tenant, idp.name),
                }
                return Ok(());
            }
            let rules = rule_manager(&cfg, &store)?;
            rules.sync().await?;
            // This process has a guard window of its own: the configured cap applies to the
            // re-apply on its own, besides what the server counts.
            let guard = Arc::new(configured_guards(&cfg, &store).await?);
            let service = crate::service::Service::new(Arc::new(store.clone()), rules.registry().clone()).with_guard(guard);
            let actor = format!("admin:{}", a.author);
            let job = service.start_or_resume_reapply(&idp, &actor, a.resume).await.map_err(|e| anyhow::anyhow!("{}", e.detail))?;
            let opts = crate::service::reapply::PassOptions { batch: a.batch.max(1), pause: std::time::Duration::from_millis(a.pause_ms), actor, guarded: true };
            let json_out = a.json;
            let mut on_batch = |j: &crate::store::ReapplyJob, _: &crate::service::reapply::Report| {
                if !json_out {
                    print_job(j);
                }
            };
            let report = service.run_reapply(&idp, job, &opts, &mut on_batch).await.map_err(|e| anyhow::anyhow!("{}", e.detail));
            rules.runtime().shutdown();
            let report = report?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&json!({"summary": report.summary, "items": report.items}))?);
            } else {
                print_report(&report);
            }
            Ok(())
        }
        Command::Audit(a) => {
            let tenant = find_tenant(&store, &a.tenant).await?;
            let idp_id = match &a.idp {
                Some(i) => Some(find_idp(&store, &a.tenant, i).await?.id),
                None => None,
            };
            let time = |what: &str, t: &Option<String>| -> anyhow::Result<Option<String>> {
                t.as_deref()
                    .map(|t| {
                        chrono::DateTime::parse_from_rfc3339(t)
                            .map(|d| d.with_timezone(&chrono::Utc).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
                            .with_context(|| format!("--{what} {t:?} is not an RFC 3339 time"))
                    })
                    .transpose()
            };
            let q = AuditQuery {
                tenant_id: tenant.id,
                idp_id,
                resource_id: a.resource,
                entry: a.user,
                since: time("since", &a.since)?,
                until: time("until", &a.until)?,
                before_id: a.before,
                limit: a.limit.max(1),
            };
            let records = store.audit(q).await.map_err(store_err)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&records)?);
            } else {
                for r in &records {
                    print_audit(r);
                }
            }
            Ok(())
        }
        Command::Explain { tenant, user, json } => {
            let t = find_tenant(&store, &tenant).await?;
            let e = store.explain(t.id, &user).await.map_err(store_err)?.with_context(|| format!("{tenant} has no directory entry named '{user}'"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&e)?);
                return Ok(());
            }
            println!("{} ({}{})", e.user_name, if e.active { "active" } else { "inactive" }, if e.deleted { ", deleted" } else { "" });
            for (idp, id) in &e.idp_users {
                println!("  from IdP {idp}: user {id}");
            }
            if let Some(o) = e.attribute_owners.as_object().filter(|o| !o.is_empty()) {
                let mut by: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
                for (k, v) in o {
                    by.entry(v.as_str().unwrap_or("?")).or_default().push(k);
                }
                for (owner, keys) in by {
                    println!("  attributes from {owner}: {}", keys.join(", "));
                }
            }
            println!("groups:");
            for m in &e.memberships {
                match (&*m.kind, &m.via) {
                    ("idp-group", Some(via)) => println!("  {:<24} via {} group '{via}'", m.group, m.idp),
                    ("local", _) => println!("  {:<24} granted locally (no sync removes it)", m.group),
                    _ => println!("  {:<24} granted by the rules of {}", m.group, m.idp),
                }
            }
            println!("history (newest first):");
            for r in &e.history {
                print_audit(r);
            }
            Ok(())
        }
        Command::Plugin(PluginCommand::Add { tenant, plugin }) => {
            let t = find_tenant(&store, &tenant).await?;
            let rules = rule_manager(&cfg, &store)?;
            let bytes = PluginSource::parse(&plugin, &std::env::current_dir()?).bytes()?;
            let rec = rules.add_plugin(t.id, bytes).await?;
            println!("stored {} {} (hooks: {}) as sha256:{}", rec.name, rec.version, rec.hooks.join(", "), rec.hash);
            rules.runtime().shutdown();
            Ok(())
        }
        Command::Plugin(PluginCommand::List { tenant }) => {
            let t = find_tenant(&store, &tenant).await?;
            for p in store.list_plugins(t.id).await.map_err(store_err)? {
                println!("sha256:{}  {} {}  contract {}  hooks {}  {} bytes", p.hash, p.name, p.version, p.contract, p.hooks.join(","), p.size);
            }
            Ok(())
        }
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
