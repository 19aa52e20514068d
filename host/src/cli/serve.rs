//! `mapwright serve`: seed the configured tenants and connections, load the rules, bind,
//! print the banner, serve until a signal.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;

use super::{Ctx, RULES_POLL, WATCH_POLL};
use crate::model::IdpConnection;
use crate::server;
use crate::service::Service;
use crate::service::guard::Guard;
use crate::service::rules::RuleManager;
use crate::store::SqlStore;

/// A configured connection as it exists in the store, with its token if it was just made.
struct Seeded<'a> {
    tenant: &'a crate::config::TenantConfig,
    config: &'a crate::config::IdpConfig,
    idp: IdpConnection,
    token: Option<String>,
}

/// Makes the tenants and IdP connections of the configuration exist as declared.
async fn seed(ctx: &Ctx) -> anyhow::Result<Vec<Seeded<'_>>> {
    let mut out = Vec::new();
    for t in &ctx.cfg.tenants {
        ctx.admin.declare_tenant(&t.name).await?;
        for i in &t.idps {
            let (idp, token) = ctx.admin.declare_connection(&t.name, &i.name, i.kind, i.rate(), i.settings()).await.with_context(|| format!("{}/{}", t.name, i.name))?;
            out.push(Seeded { tenant: t, config: i, idp, token });
        }
    }
    Ok(out)
}

/// Applies the chains the configuration declares (where it changed since last time), then
/// loads every connection's active version. A declared chain that fails to load stops the
/// server from starting, with the reason.
async fn load_chains(ctx: &Ctx, rules: &RuleManager<SqlStore>, seeded: &[Seeded<'_>]) -> anyhow::Result<()> {
    for s in seeded {
        let specs = s.config.chain_specs(&s.tenant.plugin_limits, &ctx.cfg.base_dir)?;
        let applied = rules.apply_config(&s.idp, &specs, s.config.matching.policy()).await.with_context(|| format!("loading the rule chain of {}/{}", s.tenant.name, s.config.name))?;
        if let Some(v) = applied {
            tracing::info!(tenant = %s.tenant.name, idp = %s.config.name, version = v.number, "configured rule chain changed: new version activated");
        }
    }
    rules.sync().await.context("loading the active rule chains")?;
    Ok(())
}

/// The guard of every configured connection that exists in the store (others get the
/// default cap).
pub(super) async fn configured_guards(ctx: &Ctx) -> anyhow::Result<Guard> {
    let mut policies = HashMap::new();
    for t in &ctx.cfg.tenants {
        for i in &t.idps {
            if let Ok(idp) = ctx.admin.connection(&t.name, &i.name).await {
                policies.insert(idp.id, i.guard.policy().with_context(|| format!("{}/{}", t.name, i.name))?);
            }
        }
    }
    Ok(Guard::new(policies))
}

pub(super) async fn serve(ctx: Ctx) -> anyhow::Result<()> {
    let shutdown = server::shutdown_signal();
    let seeded = seed(&ctx).await?;
    let rules = ctx.rules()?;
    load_chains(&ctx, &rules, &seeded).await?;
    let guard = Arc::new(configured_guards(&ctx).await?);
    let admin_token = ctx.admin.first_admin_token().await?;
    let delivery = Arc::new(ctx.delivery_with(rules.clone())?);
    let srv = server::Server::bind_with(&ctx.cfg.server, ctx.store.clone(), rules.registry().clone(), guard).await?.with_rules(rules.clone()).with_delivery(delivery);
    let public = srv.public_url().to_string();
    if ctx.store.backend() == crate::store::Backend::Postgres && std::env::var_os(crate::secrets::KEY_ENV).is_none() {
        tracing::warn!(
            "{} is not set: target secrets are sealed with a key in this replica's data directory, which other replicas cannot open; give every replica the same key",
            crate::secrets::KEY_ENV
        );
    }
    println!("Mapwright {}", env!("CARGO_PKG_VERSION"));
    println!("  database: {}", ctx.cfg.store.describe(&ctx.cfg.server));
    for s in &seeded {
        let idp = &s.idp;
        println!("IdP connection {}/{} ({})", idp.tenant, idp.name, idp.kind.as_str());
        println!("  SCIM base URL: {public}/scim/v2/{}/{}", idp.tenant, idp.name);
        match &s.token {
            Some(t) => println!("  Bearer token (shown once, store it now): {t}"),
            None => println!("  Bearer token: issued earlier (new one: mapwright idp rotate-token {} {})", idp.tenant, idp.name),
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
    for s in &seeded {
        if let Some(dir) = &s.config.watch {
            let dir = ctx.cfg.base_dir.join(dir);
            tracing::info!(tenant = %s.tenant.name, idp = %s.config.name, dir = %dir.display(), "watching a rules directory");
            watchers.push(rules.clone().watch_dir(s.idp.clone(), dir, s.tenant.plugin_limits, WATCH_POLL));
        }
    }
    let scheduler = Arc::new(Service::new(Arc::new(ctx.store.clone()), rules.registry().clone()));
    for s in &seeded {
        if let Some(secs) = s.config.reapply_every_secs {
            watchers.push(scheduler.clone().schedule_reapply(s.idp.clone(), std::time::Duration::from_secs(secs.max(1))));
        }
    }
    let served = srv.serve(shutdown).await;
    for w in watchers {
        w.abort();
    }
    rules.runtime().shutdown();
    served
}
