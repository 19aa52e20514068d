//! `mapwright serve`: seed the configured tenants and connections, load the rules, bind,
//! print the banner, serve until a signal.

use std::sync::Arc;

use anyhow::Context;

use super::*;

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
pub(super) async fn configured_guards(cfg: &Config, store: &SqliteStore) -> anyhow::Result<crate::service::guard::Guard> {
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
    store.add_admin_token(&t.id, &t.secret_hash, None, "initial", crate::store::TokenRole::Admin).await.map_err(store_err)?;
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

pub(super) async fn serve(cfg: Config, store: SqliteStore) -> anyhow::Result<()> {
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
