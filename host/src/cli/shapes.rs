//! `mapwright target shape`: what a delivery target receives, as versioned rules.

use anyhow::bail;

use super::{Ctx, ShapeCommand};
use crate::model::{Target, VersionNote, VersionSource};
use crate::service::chain_file::ShapeFile;
use crate::service::delivery::DeliveryService;
use crate::service::delivery::shape_versions::{Outcome, ShapeCandidate, ShapePreview};
use crate::store::SqlStore;

pub(super) async fn command(ctx: &Ctx, delivery: &DeliveryService<SqlStore>, cmd: ShapeCommand) -> anyhow::Result<()> {
    match cmd {
        ShapeCommand::Set { tenant, name, file, note, candidate, author } => {
            let t = super::targets::target(ctx, delivery, &tenant, &name).await?;
            let specs = ShapeFile::load(&file)?.specs(&tenant_limits(ctx, &t), &file)?;
            let v = delivery.set_shape(&t, &specs, VersionNote { author, note, source: VersionSource::Admin }, !candidate).await?;
            if v.active {
                println!("{}/{}: shape version {} is active ({} entries)", t.tenant, t.name, v.number, v.entries.len());
                if t.kind == crate::model::TargetKind::Scim {
                    println!("  A running server reconciles the target next, so what it has takes the new shape.");
                }
            } else {
                println!("{}/{}: shape version {} stored, not active (preview it: mapwright target shape preview {} {} {})", t.tenant, t.name, v.number, t.tenant, t.name, v.number);
            }
        }
        ShapeCommand::History { tenant, name, json } => {
            let t = super::targets::target(ctx, delivery, &tenant, &name).await?;
            let (versions, activations) = delivery.shape_history(&t).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&serde_json::json!({"versions": versions, "activations": activations}))?);
                return Ok(());
            }
            if versions.is_empty() {
                println!("{}/{}: no shape versions (resources go out as the directory has them)", t.tenant, t.name);
            }
            for v in &versions {
                let plugins: Vec<&str> = v.entries.iter().map(|e| e.name.as_str()).collect();
                println!("{}{}\t{}\t{}\t{}\t{}", v.number, if v.active { " (active)" } else { "" }, v.created, v.author, plugins.join(" → "), v.note);
            }
            for a in &activations {
                println!("  activated {} at {} by {}", a.number.map_or("none".to_string(), |n| n.to_string()), a.at, a.author);
            }
        }
        ShapeCommand::Activate { tenant, name, number, author } => {
            let t = super::targets::target(ctx, delivery, &tenant, &name).await?;
            let number = version_arg(&number)?;
            let t = delivery.activate_shape(&t, number, &author).await?;
            match t.shape_version {
                Some(n) => println!("{}/{}: shape version {n} is active", t.tenant, t.name),
                None => println!("{}/{}: no shape version is active; resources go out as the directory has them", t.tenant, t.name),
            }
        }
        ShapeCommand::Preview { tenant, name, number, file, user, limit, json } => {
            let t = super::targets::target(ctx, delivery, &tenant, &name).await?;
            let candidate = match (number, file) {
                (_, Some(f)) => ShapeCandidate::Entries(ShapeFile::load(&f)?.specs(&tenant_limits(ctx, &t), &f)?),
                (Some(v), None) => version_arg(&v)?.map_or(ShapeCandidate::Off, ShapeCandidate::Version),
                (None, None) => bail!("give a stored version, `none`, or --file"),
            };
            let p = delivery.preview_shape(&t, candidate, user.as_deref(), limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&p)?);
            } else {
                print_preview(&t, &p);
            }
        }
        ShapeCommand::Explain { tenant, name, user, json } => {
            let t = super::targets::target(ctx, delivery, &tenant, &name).await?;
            let e = delivery.explain_shape(&t, &user).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&e)?);
                return Ok(());
            }
            match e.version {
                Some(n) => println!("{}/{}: {user} under shape version {n}", t.tenant, t.name),
                None => println!("{}/{}: {user} (no shape version: sent as the directory has it)", t.tenant, t.name),
            }
            println!("  directory: {}", e.input);
            print_outcome("sent", &e.outcome);
        }
    }
    Ok(())
}

fn version_arg(s: &str) -> anyhow::Result<Option<i64>> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    match s.parse::<i64>() {
        Ok(n) if n > 0 => Ok(Some(n)),
        _ => bail!("'{s}' is neither a version number nor `none`"),
    }
}

fn tenant_limits(ctx: &Ctx, t: &Target) -> crate::model::Limits {
    ctx.cfg.tenants.iter().find(|c| c.name == t.tenant).map(|c| c.plugin_limits).unwrap_or_default()
}

fn print_outcome(label: &str, o: &Outcome) {
    match (&o.resource, &o.error) {
        (Some(r), _) => println!("  {label}: {r}"),
        (None, e) => println!("  {label}: held back: {}", e.as_deref().unwrap_or("?")),
    }
    for d in &o.decisions {
        println!("    {} ({}): {}", d.rule, d.plugin, d.reason);
    }
}

fn print_preview(t: &Target, p: &ShapePreview) {
    let now = p.active_version.map_or("no shaping".to_string(), |n| format!("version {n}"));
    let then = p.proposed_version.map_or("the candidate".to_string(), |n| format!("version {n}"));
    println!("{}/{}: {then} instead of {now}: {} of {} resources sent differently, {} held back", t.tenant, t.name, p.changed, p.rows.len(), p.held_back);
    for r in p.rows.iter().filter(|r| r.changed) {
        println!("{} {}", serde_json::to_value(r.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(), r.name);
        print_outcome("now", &r.active);
        print_outcome("then", &r.proposed);
    }
}
