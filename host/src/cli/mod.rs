//! The `mapwright` command line: dispatch here, the arguments in `args`; commands in `admin`
//! (tenants, connections, tokens), `rules`, `records` and `serve`. Every command calls the
//! same services the admin API does; what is printed for people goes to stdout, JSON with
//! `--json`; logs go through `tracing` to stderr (warnings only, unless `RUST_LOG` asks).
#![allow(clippy::print_stdout)]

mod admin;
mod args;
mod records;
mod rules;
mod scaffold;
mod serve;
mod shapes;
mod targets;

use std::sync::Arc;

use anyhow::Context;

pub use args::*;

use crate::config::{Config, LogFormat};
use crate::model::{IdpConnection, Tenant, TokenRole};
use crate::plugins::chain::ChainRegistry;
use crate::plugins::runtime::Runtime;
use crate::service::admin::AdminService;
use crate::service::rules::{RuleManager, RuleRecords};
use crate::store::SqlStore;
use crate::telemetry;

/// How often a watched rules directory is read (a change applies after two equal reads).
const WATCH_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// How often a server looks for chain versions another process activated.
const RULES_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// Where SCIM base URLs printed by a command point.
struct PublicUrl {
    url: String,
    /// Said beside a URL that comes from the configured listen address: a server started
    /// with `--listen` elsewhere is not there.
    guessed: bool,
}

impl PublicUrl {
    fn of(cfg: &Config) -> PublicUrl {
        match &cfg.server.public_url {
            Some(u) => PublicUrl { url: u.trim_end_matches('/').to_string(), guessed: false },
            None => PublicUrl { url: format!("http://{}", cfg.server.listen), guessed: true },
        }
    }

    fn scim_base(&self, idp: &IdpConnection) -> String {
        format!("{}/scim/v2/{}/{}", self.url, idp.tenant, idp.name)
    }
}

/// What every command runs with: the configuration, the store, and the services over it.
struct Ctx {
    cfg: Config,
    store: SqlStore,
    admin: AdminService<SqlStore>,
    public: PublicUrl,
}

impl Ctx {
    /// The rules service, with compiled plugins cached under the data directory (shared by
    /// the server and the CLI, so what one compiled the other loads).
    fn rules(&self) -> anyhow::Result<Arc<RuleManager<SqlStore>>> {
        let runtime = Runtime::new()?.with_disk_cache(self.cfg.server.data_dir.join("plugin-cache")).with_memory_budget(self.cfg.server.plugin_memory_mib.saturating_mul(1 << 20));
        let runtime = Arc::new(runtime);
        Ok(Arc::new(RuleManager::new(Arc::new(self.store.clone()), runtime, Arc::new(ChainRegistry::default()))))
    }

    /// The delivery service, with the server's secret key and a plugin engine of its own for
    /// the targets' shape rules.
    fn delivery(&self) -> anyhow::Result<crate::service::delivery::DeliveryService<SqlStore>> {
        self.delivery_with(self.rules()?)
    }

    /// The delivery service, loading shape rules with `rules`.
    fn delivery_with(&self, rules: Arc<RuleManager<SqlStore>>) -> anyhow::Result<crate::service::delivery::DeliveryService<SqlStore>> {
        let secrets = crate::secrets::SecretBox::load(&self.cfg.server.data_dir)?;
        Ok(crate::service::delivery::DeliveryService::new(Arc::new(self.store.clone()), secrets, self.cfg.delivery.policy()).with_rules(rules))
    }

    /// What is stored of rules (no plugin engine needed to read it).
    fn records(&self) -> RuleRecords<SqlStore> {
        RuleRecords::new(Arc::new(self.store.clone()))
    }

    async fn idp(&self, tenant: &str, idp: &str) -> anyhow::Result<IdpConnection> {
        Ok(self.admin.connection(tenant, idp).await?)
    }

    async fn tenant(&self, name: &str) -> anyhow::Result<Tenant> {
        Ok(self.admin.tenant(name).await?)
    }
}

/// Runs a parsed command line to its end.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    // Plugin commands that need no store run without configuration.
    let cli = match cli.command {
        Command::Plugin(cmd) if !matches!(cmd, PluginCommand::Add { .. } | PluginCommand::List { .. }) => {
            telemetry::init(LogFormat::Text, "warn");
            return rules::plugin_command(cmd).await;
        }
        command => Cli { command, ..cli },
    };
    let mut cfg = Config::load(cli.config.as_deref())?;
    if let Some(d) = cli.data_dir {
        cfg.server.data_dir = d;
    }
    if let Some(u) = cli.database_url {
        cfg.store.url = Some(u);
    }
    if let Some(u) = &cli.public_url {
        cfg.server.public_url = Some(u.clone());
    }
    let serving = matches!(cli.command, Command::Serve(_));
    if let Command::Serve(a) = &cli.command {
        if let Some(l) = a.listen {
            cfg.server.listen = l;
        }
        if let Some(f) = a.log_format {
            cfg.server.log_format = f;
        }
    }
    // A command's output is what a person reads: its logs stay at warnings unless asked.
    telemetry::init(cfg.server.log_format, if serving { "info" } else { "warn" });
    let migrating = cfg.store.auto_migrate || matches!(cli.command, Command::Migrate { .. });
    let store = open_store(&cfg, migrating).await?;
    let ctx = Ctx { public: PublicUrl::of(&cfg), admin: AdminService::new(Arc::new(store.clone())), store, cfg };
    match cli.command {
        Command::Serve(_) => serve::serve(ctx).await,
        Command::Migrate { json } => migrate(&ctx, json).await,
        Command::Tenant(cmd) => admin::tenant(&ctx, cmd).await,
        Command::Idp(cmd) => admin::idp(&ctx, cmd).await,
        Command::AdminToken { name, tenant, directory, signin } => {
            let role = match (directory, signin) {
                (_, true) => TokenRole::Signin,
                (true, false) => TokenRole::Directory,
                (false, false) => TokenRole::Admin,
            };
            admin::access_token(&ctx, name, tenant, role).await
        }
        Command::Chain(cmd) => rules::chain_command(&ctx, cmd).await,
        Command::Reapply(a) => rules::reapply(&ctx, a).await,
        Command::Plugin(PluginCommand::Add { tenant, plugin }) => rules::plugin_add(&ctx, tenant, plugin).await,
        Command::Plugin(PluginCommand::List { tenant }) => rules::plugin_list(&ctx, tenant).await,
        Command::Plugin(_) => Ok(()),
        Command::Held(HeldCommand::List { tenant, all, json }) => records::held_list(&ctx, tenant, all, json).await,
        Command::Held(cmd) => records::held_decide(&ctx, cmd).await,
        Command::Target(cmd) => targets::command(&ctx, cmd).await,
        Command::Drift { tenant, idp, json } => records::drift(&ctx, tenant, idp, json).await,
        Command::Audit(a) => records::audit(&ctx, a).await,
        Command::Explain { tenant, user, json } => records::explain(&ctx, tenant, user, json).await,
    }
}

/// Opens the configured store: PostgreSQL when a URL is set, else the SQLite file.
async fn open_store(cfg: &Config, migrate: bool) -> anyhow::Result<SqlStore> {
    match &cfg.store.url {
        Some(url) => SqlStore::postgres(url, cfg.store.pg_options(), migrate).await.context("opening the PostgreSQL store"),
        None => SqlStore::sqlite(&cfg.server.db_path(), cfg.server.durability).context("opening the store"),
    }
}

/// `mapwright migrate`: the store was opened migrating; say where it stands.
async fn migrate(ctx: &Ctx, json: bool) -> anyhow::Result<()> {
    let version = ctx.store.schema_version().await?;
    let backend = ctx.store.backend().name();
    if json {
        println!("{}", serde_json::json!({"backend": backend, "schema_version": version}));
    } else {
        println!("{backend} schema at version {version}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
