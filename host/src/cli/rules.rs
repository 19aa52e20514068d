//! Rule commands: chain versions, preview, re-apply, stored plugins.

use std::sync::Arc;

use anyhow::{Context, bail};
use serde_json::json;

use super::*;

pub(super) async fn chain_command(cfg: &Config, store: &SqliteStore, cmd: ChainCommand) -> anyhow::Result<()> {
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

pub(super) async fn plugin_command(cmd: PluginCommand) -> anyhow::Result<()> {
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

pub(super) async fn reapply(cfg: &Config, store: &SqliteStore, a: ReapplyArgs) -> anyhow::Result<()> {
    let idp = find_idp(store, &a.tenant, &a.idp).await?;
    if a.status {
        match store.reapply_job(idp.id).await.map_err(store_err)? {
            Some(j) if a.json => println!("{}", serde_json::to_string_pretty(&j)?),
            Some(j) => print_job(&j),
            None => println!("{}/{}: no re-apply has run", idp.tenant, idp.name),
        }
        return Ok(());
    }
    let rules = rule_manager(cfg, store)?;
    rules.sync().await?;
    // This process has a guard window of its own: the configured cap applies to the
    // re-apply on its own, besides what the server counts.
    let guard = Arc::new(super::serve::configured_guards(cfg, store).await?);
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

pub(super) async fn plugin_add(cfg: &Config, store: &SqliteStore, tenant: String, plugin: String) -> anyhow::Result<()> {
    let t = find_tenant(store, &tenant).await?;
    let rules = rule_manager(cfg, store)?;
    let bytes = PluginSource::parse(&plugin, &std::env::current_dir()?).bytes()?;
    let rec = rules.add_plugin(t.id, bytes).await?;
    println!("stored {} {} (hooks: {}) as sha256:{}", rec.name, rec.version, rec.hooks.join(", "), rec.hash);
    rules.runtime().shutdown();
    Ok(())
}

pub(super) async fn plugin_list(store: &SqliteStore, tenant: String) -> anyhow::Result<()> {
    let t = find_tenant(store, &tenant).await?;
    for p in store.list_plugins(t.id).await.map_err(store_err)? {
        println!("sha256:{}  {} {}  contract {}  hooks {}  {} bytes", p.hash, p.name, p.version, p.contract, p.hooks.join(","), p.size);
    }
    Ok(())
}
