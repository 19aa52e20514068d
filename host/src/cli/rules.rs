//! Rule commands: chain versions, preview, shadow, re-apply, stored plugins.

use std::sync::Arc;

use anyhow::{Context, bail};
use serde_json::json;

use super::{ChainCommand, Ctx, PluginCommand, ReapplyArgs, TestHook};
use crate::mapping::{GroupInput, MapContext, MappingPipeline, Operation};
use crate::model::{ChainVersion, IdpConnection, MatchPolicy, ReapplyJob, VersionNote, VersionSource};
use crate::plugins::chain::{Chain, EntrySpec, PluginSource, ShapeKind, ShapeTarget};
use crate::plugins::runtime::Runtime;
use crate::service::examples::ExampleFile;
use crate::service::reapply::{PassOptions, Report};

pub(super) async fn chain_command(ctx: &Ctx, cmd: ChainCommand) -> anyhow::Result<()> {
    match cmd {
        ChainCommand::Set { tenant, idp, file, note, author, candidate } => {
            let idp = ctx.idp(&tenant, &idp).await?;
            let rules = ctx.rules()?;
            let def = rules.define_from_file(&idp, &file, &tenant_limits(ctx, &idp)).await?;
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
            let idp = ctx.idp(&tenant, &idp).await?;
            let rules = ctx.rules()?;
            let candidate = match (file, number) {
                (Some(f), _) => rules.build(&rules.define_from_file(&idp, &f, &tenant_limits(ctx, &idp)).await?).await?,
                (None, Some(n)) => rules.candidate(&idp, n).await?,
                (None, None) => bail!("give --file or --number"),
            };
            let service = crate::service::Service::new(Arc::new(ctx.store.clone()), rules.registry().clone());
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
            let idp = ctx.idp(&tenant, &idp).await?;
            // Checked to load here, before a running server tries to.
            let rules = ctx.rules()?;
            let set = rules.set_shadow(&idp, if off { None } else { number }).await;
            rules.runtime().shutdown();
            set.context("the shadow version was refused")?;
            match number.filter(|_| !off) {
                Some(n) => println!("{}/{}: version {n} runs in shadow beside the active rules", idp.tenant, idp.name),
                None => println!("{}/{}: shadow evaluation stopped", idp.tenant, idp.name),
            }
            Ok(())
        }
        ChainCommand::ShadowReport { tenant, idp, number, limit, json } => {
            let idp = ctx.idp(&tenant, &idp).await?;
            let (number, diffs) = ctx.records().shadow_report(&idp, number, limit).await.context("give --number")?;
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
            let idp = ctx.idp(&tenant, &idp).await?;
            let rules = ctx.rules()?;
            let promoted = rules.promote_shadow(&idp, &author).await;
            rules.runtime().shutdown();
            let v = promoted.context("the promotion was refused; the active version is unchanged")?;
            println!("{}/{}: shadow version {} is now active", idp.tenant, idp.name, v.number);
            Ok(())
        }
        ChainCommand::Show { tenant, idp, number, json } => {
            let idp = ctx.idp(&tenant, &idp).await?;
            let (versions, _) = ctx.records().history(&idp).await?;
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
            let idp = ctx.idp(&tenant, &idp).await?;
            let (versions, activations) = ctx.records().history(&idp).await?;
            let changes = crate::model::history_changes(&versions);
            if json {
                let acts: Vec<_> = activations.iter().map(|a| json!({"version": a.number, "at": a.at, "author": a.author})).collect();
                let versions: Vec<_> = versions
                    .iter()
                    .map(|v| {
                        let mut j = version_json(v);
                        j["changes"] = json!(changes.get(&v.number));
                        j
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&json!({"versions": versions, "activations": acts}))?);
                return Ok(());
            }
            println!("versions of {}/{} (newest first):", idp.tenant, idp.name);
            for v in &versions {
                let names: Vec<&str> = v.definition.entries.iter().map(|e| e.name.as_str()).collect();
                println!("{} v{:<4} {}  {:<7} {:<12} [{}]  {}", if v.active { "*" } else { " " }, v.number, v.created, v.source.as_str(), v.author, names.join(" → "), v.note);
                for c in changes.get(&v.number).into_iter().flatten() {
                    println!("          {c}");
                }
            }
            println!("activations (newest first):");
            for a in &activations {
                println!("  v{:<4} {}  by {}", a.number, a.at, a.author);
            }
            Ok(())
        }
        ChainCommand::Rollback { tenant, idp, to, author } => {
            let idp = ctx.idp(&tenant, &idp).await?;
            let rules = ctx.rules()?;
            let rolled = rules.rollback(&idp, to, &author).await;
            rules.runtime().shutdown();
            let v = rolled.context("the rollback was refused; the active version is unchanged")?;
            println!("{}/{}: chain version {} is active again", idp.tenant, idp.name, v.number);
            Ok(())
        }
    }
}

/// The tenant's default plugin limits from the configuration.
fn tenant_limits(ctx: &Ctx, idp: &IdpConnection) -> crate::model::Limits {
    ctx.cfg.tenants.iter().find(|t| t.name == idp.tenant).map(|t| t.plugin_limits).unwrap_or_default()
}

fn print_report(r: &Report) {
    let s = &r.summary;
    println!("{} users and {} groups: {} would change, {} unchanged, {} skipped, {} refused", s.users, s.groups, s.changed, s.unchanged, s.skipped, s.failed);
    println!(
        "  usernames {} (collisions {}), memberships +{} -{}, attributes {}, deprovisioned {}, groups remapped {}",
        s.usernames_changed, s.collisions, s.memberships_added, s.memberships_removed, s.attributes_changed, s.deprovisioned, s.groups_remapped
    );
    for o in &r.items {
        let what = match &o.error {
            Some(e) => format!("{}: {e}", o.status.as_str()),
            None => o.changes.to_string(),
        };
        println!("  {:<5} {:<24} {}  {}", o.resource_type, o.name, o.id, what);
    }
}

fn print_job(j: &ReapplyJob) {
    println!(
        "re-apply job {} ({}): {}/{} seen, {} changed, {} failed, rules v{}{}",
        j.id,
        j.phase.as_str(),
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
    if v.definition.matching != MatchPolicy::Conflict {
        println!("  matching: {:?}", v.definition.matching);
    }
}

pub(super) async fn plugin_command(cmd: PluginCommand) -> anyhow::Result<()> {
    let cwd = std::env::current_dir()?;
    match cmd {
        PluginCommand::Builtins => {
            for n in crate::plugins::builtin::names() {
                println!("builtin:{n}");
            }
            Ok(())
        }
        PluginCommand::Add { .. } | PluginCommand::List { .. } => Ok(()),
        PluginCommand::New { name, lang, dir, sdk, json } => {
            let dir = dir.unwrap_or_else(|| cwd.join(&name));
            let p = super::scaffold::create(&name, lang, &dir, sdk.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&p)?);
                return Ok(());
            }
            println!("Created {} ({}): {}", p.dir.display(), p.lang.as_str(), p.files.join(", "));
            println!("Next, in {}:", p.dir.display());
            for step in &p.next {
                println!("  {step}");
            }
            println!("Then put it in a chain: mapwright plugin add <tenant> <the .wasm file>; README.md there is the manual.");
            Ok(())
        }
        PluginCommand::Inspect { plugin } => {
            let runtime = Runtime::new()?;
            let p = runtime.load(&PluginSource::parse(&plugin, &cwd).bytes()?).await?;
            let hooks: Vec<&str> = p.hooks.list().iter().map(|h| h.as_str()).collect();
            println!("name:      {}", p.name);
            println!("version:   {}", p.version);
            println!("contract:  mapwright:plugin@{}", p.contract().unwrap_or("unknown"));
            println!("hooks:     {}", if hooks.is_empty() { "none".to_string() } else { hooks.join(", ") });
            println!("sha256:    {}", p.hash);
            println!("size:      {} bytes", p.size);
            Ok(())
        }
        PluginCommand::Test { plugin, config, input, examples, json, hook, kind } => {
            let runtime = Arc::new(Runtime::new()?);
            let read_json = |p: &std::path::Path| -> anyhow::Result<serde_json::Value> {
                let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
                serde_json::from_str(&text).with_context(|| format!("{} is not JSON", p.display()))
            };
            let file = match &examples {
                Some(p) => {
                    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
                    let toml = p.extension().is_some_and(|e| e == "toml");
                    Some(ExampleFile::parse(&text, toml).with_context(|| p.display().to_string())?)
                }
                None => None,
            };
            let config = match (&config, &file) {
                (Some(p), _) => read_json(p)?,
                (None, Some(f)) => f.config.clone().unwrap_or(serde_json::Value::Null),
                (None, None) => serde_json::Value::Null,
            };
            let spec = EntrySpec { plugin: PluginSource::parse(&plugin, &cwd), config, limits: Default::default() };
            let chain = Chain::load(&runtime, &[spec]).await?;
            let idp = IdpConnection::detached(kind);
            if let Some(file) = file {
                let outcomes = crate::service::examples::run(&chain, &idp, &file.examples).await;
                let failed = outcomes.iter().filter(|o| !o.passed).count();
                if json {
                    println!("{}", serde_json::to_string_pretty(&outcomes)?);
                } else {
                    for o in &outcomes {
                        println!("{} {:>2}. {}", if o.passed { "ok  " } else { "FAIL" }, o.index, o.name);
                        for p in &o.problems {
                            println!("         {p}");
                        }
                    }
                    println!("{} passed, {failed} failed", outcomes.len() - failed);
                }
                if failed > 0 {
                    bail!("{failed} of {} examples failed", outcomes.len());
                }
                return Ok(());
            }
            let Some(input) = input else { bail!("give --input or --examples") };
            let raw = read_json(&input)?;
            let ctx = MapContext { idp: &idp, operation: Operation::Create, current: None };
            let show = |decisions: &[crate::model::Decision]| {
                for d in decisions {
                    println!("  because {}/{}: {}", d.plugin, d.rule, d.reason);
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
                TestHook::ShapeUser | TestHook::ShapeGroup => {
                    chain.check_shapes()?;
                    let kind = if matches!(hook, TestHook::ShapeUser) { ShapeKind::User } else { ShapeKind::Group };
                    let target = ShapeTarget { tenant: "test".into(), name: "test".into(), kind: "scim".into() };
                    let (sent, decisions) = chain.shape(&target, kind, raw).await?;
                    println!("sent: {}", serde_json::to_string_pretty(&sent)?);
                    show(&decisions);
                }
            }
            Ok(())
        }
    }
}

pub(super) async fn reapply(ctx: &Ctx, a: ReapplyArgs) -> anyhow::Result<()> {
    let idp = ctx.idp(&a.tenant, &a.idp).await?;
    let rules = ctx.rules()?;
    if a.status {
        let service = crate::service::Service::new(Arc::new(ctx.store.clone()), rules.registry().clone());
        match service.reapply_status(&idp).await.map_err(|e| anyhow::anyhow!("{}", e.detail))? {
            Some(j) if a.json => println!("{}", serde_json::to_string_pretty(&j)?),
            Some(j) => print_job(&j),
            None => println!("{}/{}: no re-apply has run", idp.tenant, idp.name),
        }
        return Ok(());
    }
    rules.sync().await?;
    // This process has a guard window of its own: the configured cap applies to the
    // re-apply on its own, besides what the server counts.
    let guard = Arc::new(super::serve::configured_guards(ctx).await?);
    let service = crate::service::Service::new(Arc::new(ctx.store.clone()), rules.registry().clone()).with_guard(guard);
    let actor = format!("admin:{}", a.author);
    let job = service.start_or_resume_reapply(&idp, &actor, a.resume).await.map_err(|e| anyhow::anyhow!("{}", e.detail))?;
    let opts = PassOptions { batch: a.batch.max(1), pause: std::time::Duration::from_millis(a.pause_ms), actor, guarded: true };
    let json_out = a.json;
    let mut on_batch = |j: &ReapplyJob, _: &Report| {
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

fn hook_list(p: &crate::model::PluginRecord, sep: &str) -> String {
    p.hooks.iter().map(|h| h.as_str()).collect::<Vec<_>>().join(sep)
}

pub(super) async fn plugin_add(ctx: &Ctx, tenant: String, plugin: String) -> anyhow::Result<()> {
    let t = ctx.tenant(&tenant).await?;
    let rules = ctx.rules()?;
    let bytes = PluginSource::parse(&plugin, &std::env::current_dir()?).bytes()?;
    let rec = rules.add_plugin(t.id, bytes).await;
    rules.runtime().shutdown();
    let rec = rec?;
    println!("stored {} {} (hooks: {}) as sha256:{}", rec.name, rec.version, hook_list(&rec, ", "), rec.hash);
    Ok(())
}

pub(super) async fn plugin_list(ctx: &Ctx, tenant: String) -> anyhow::Result<()> {
    let t = ctx.tenant(&tenant).await?;
    for p in ctx.records().plugins(t.id).await? {
        println!("sha256:{}  {} {}  contract {}  hooks {}  {} bytes", p.hash, p.name, p.version, p.contract, hook_list(&p, ","), p.size);
    }
    Ok(())
}
