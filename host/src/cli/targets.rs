//! Delivery target commands.

use anyhow::bail;

use super::{Ctx, DeadArgs, TargetAddArgs, TargetCommand};
use crate::model::{DeletePolicy, Target, TargetKind, TargetSettings, UpdateMode};
use crate::service::delivery::reconcile::{Action, Plan};
use crate::service::delivery::{CredentialRequest, DeliveryService, TargetRequest, TargetStatus};
use crate::store::SqlStore;

pub(super) async fn command(ctx: &Ctx, cmd: TargetCommand) -> anyhow::Result<()> {
    let delivery = ctx.delivery()?;
    let done = run(ctx, &delivery, cmd).await;
    // The engine of the shape rules: its ticker thread ends before the process does.
    delivery.shutdown();
    done
}

async fn run(ctx: &Ctx, delivery: &DeliveryService<SqlStore>, cmd: TargetCommand) -> anyhow::Result<()> {
    match cmd {
        TargetCommand::Add(a) => {
            let tenant = ctx.tenant(&a.tenant).await?;
            let json = a.json;
            let (target, secret) = delivery.add(&tenant, request(a)?).await?;
            if json {
                println!("{}", serde_json::json!({"target": target, "secret": secret}));
                return Ok(());
            }
            println!("{}/{}: {} target {} added", target.tenant, target.name, target.kind.as_str(), target.url);
            if let Some(s) = secret {
                println!("  Webhook signing secret (shown once, give it to the receiver): {s}");
            }
            if target.kind == TargetKind::Scim {
                println!("  A running server reconciles it with the directory first, then sends every change.");
            }
        }
        TargetCommand::List { tenant, json } => {
            let tenant = match &tenant {
                Some(t) => Some(ctx.tenant(t).await?),
                None => None,
            };
            let mut all = Vec::new();
            for t in delivery.targets(tenant.as_ref()).await? {
                all.push(delivery.status(t).await?);
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                for s in &all {
                    println!("{}", summary(s));
                }
            }
        }
        TargetCommand::Show { tenant, name, json } => {
            let t = target(ctx, delivery, &tenant, &name).await?;
            let s = delivery.status(t).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
                return Ok(());
            }
            println!("{}", summary(&s));
            println!("  url: {}", s.target.url);
            println!("  delivered {}, parked {}, cursor {}", s.target.delivered, s.target.parked, s.target.cursor);
            if let Some(at) = &s.target.last_success {
                println!("  last success: {at}");
            }
            if let Some((at, e)) = &s.target.last_error {
                println!("  last error ({at}): {e}");
            }
            for d in &s.dead_letters {
                println!("  #{} {} seq {} {} after {} attempts: {}", d.id, d.state.as_str(), d.seq, d.resource, d.attempts, d.answer.as_deref().unwrap_or("-"));
            }
        }
        TargetCommand::Remove { tenant, name } => {
            let t = target(ctx, delivery, &tenant, &name).await?;
            delivery.remove(&t).await?;
            println!("{}/{}: removed", t.tenant, t.name);
        }
        TargetCommand::Pause { tenant, name } => {
            let t = delivery.set_paused(&target(ctx, delivery, &tenant, &name).await?, true).await?;
            println!("{}/{}: paused at cursor {}", t.tenant, t.name, t.cursor);
        }
        TargetCommand::Resume { tenant, name } => {
            let t = delivery.set_paused(&target(ctx, delivery, &tenant, &name).await?, false).await?;
            println!("{}/{}: resumed from cursor {}", t.tenant, t.name, t.cursor);
        }
        TargetCommand::Sync { tenant, name, dry_run, json } => {
            let t = target(ctx, delivery, &tenant, &name).await?;
            match delivery.sync(&t, dry_run).await? {
                Some(plan) if json => println!("{}", serde_json::to_string_pretty(&plan)?),
                Some(plan) => print_plan(&t, &plan),
                None => println!("{}/{}: a reconciliation is due; the running server makes it next", t.tenant, t.name),
            }
        }
        TargetCommand::Shape(cmd) => super::shapes::command(ctx, delivery, cmd).await?,
        TargetCommand::Retry(a) => decide(ctx, delivery, a, true).await?,
        TargetCommand::Skip(a) => decide(ctx, delivery, a, false).await?,
        TargetCommand::RotateSecret { tenant, name, overlap_secs, token } => {
            let t = target(ctx, delivery, &tenant, &name).await?;
            match delivery.rotate(&t, overlap_secs, token).await? {
                Some(secret) => {
                    println!("{}/{}: new signing secret (shown once): {secret}", t.tenant, t.name);
                    println!("  The previous secret keeps signing beside it for {overlap_secs} s.");
                }
                None => println!("{}/{}: token replaced", t.tenant, t.name),
            }
        }
    }
    Ok(())
}

fn request(a: TargetAddArgs) -> anyhow::Result<TargetRequest> {
    let credential = match (a.kind, a.token, a.oauth_token_url, a.secret) {
        (_, Some(t), None, None) => CredentialRequest::Bearer(t),
        (_, None, Some(token_url), None) => CredentialRequest::OAuth {
            token_url,
            client_id: a.oauth_client_id.unwrap_or_default(),
            client_secret: a.oauth_client_secret.unwrap_or_default(),
            scope: a.oauth_scope,
        },
        (TargetKind::Webhook, None, None, Some(s)) => CredentialRequest::WebhookSecret(s),
        (_, None, None, None) => CredentialRequest::Default,
        _ => bail!("give a SCIM target --token or --oauth-*, a webhook target --secret (or nothing: a new one is made)"),
    };
    let d = TargetSettings::default();
    let settings = TargetSettings {
        update: if a.put { UpdateMode::Put } else { UpdateMode::Patch },
        delete: if a.delete_users { DeletePolicy::Delete } else { DeletePolicy::Deactivate },
        max_attempts: a.max_attempts.unwrap_or(d.max_attempts),
        retry_base_ms: a.retry_base_ms.unwrap_or(d.retry_base_ms),
        retry_max_ms: a.retry_max_ms.unwrap_or(d.retry_max_ms),
        timeout_ms: a.timeout_ms.unwrap_or(d.timeout_ms),
        sync_every_secs: a.sync_every_secs,
    };
    Ok(TargetRequest { name: a.name, kind: a.kind, url: a.url, credential, settings })
}

pub(super) async fn target(ctx: &Ctx, delivery: &DeliveryService<SqlStore>, tenant: &str, name: &str) -> anyhow::Result<Target> {
    let tenant = ctx.tenant(tenant).await?;
    Ok(delivery.target(&tenant, name).await?)
}

fn summary(s: &TargetStatus) -> String {
    let t = &s.target;
    let state = if t.paused {
        "paused"
    } else if t.needs_sync {
        "reconciling"
    } else if t.last_error.is_some() {
        "failing"
    } else {
        "delivering"
    };
    let open = s.dead_letters.len();
    format!("{}/{}\t{}\t{state}\tlag {} events\t{open} parked or held", t.tenant, t.name, t.kind.as_str(), s.lag_events)
}

fn print_plan(t: &Target, plan: &Plan) {
    println!("{}/{}: {} changes would be made ({} resources there are not Mapwright's and stay as they are)", t.tenant, t.name, plan.actions.len(), plan.unmanaged);
    for a in &plan.actions {
        match a {
            Action::CreateUser { user_name, .. } => println!("  + user {user_name}"),
            Action::UpdateUser { user_name, differences, adopt, .. } => {
                let what: Vec<&str> = differences.keys().map(String::as_str).collect();
                println!("  ~ user {user_name}{}: {}", if *adopt { " (adopt)" } else { "" }, what.join(", "));
            }
            Action::RemoveUser { user_name, how, .. } => println!("  - user {user_name} ({})", if *how == DeletePolicy::Delete { "delete" } else { "deactivate" }),
            Action::CreateGroup { name, .. } => println!("  + group {name}"),
            Action::AdoptGroup { name, .. } => println!("  ~ group {name} (adopt)"),
            Action::UpdateGroup { name, differences, .. } => {
                let what: Vec<&str> = differences.keys().map(String::as_str).collect();
                println!("  ~ group {name}: {}", what.join(", "));
            }
            Action::Members { name, add, remove, .. } => println!("  ~ members of {name}: +{} -{}", add.len(), remove.len()),
        }
    }
}

async fn decide(ctx: &Ctx, delivery: &DeliveryService<SqlStore>, a: DeadArgs, retry: bool) -> anyhow::Result<()> {
    if a.ids.is_empty() && !a.all {
        bail!("give the ids of the parked events (mapwright target show), or --all");
    }
    let t = target(ctx, delivery, &a.tenant, &a.name).await?;
    let ids = (!a.all).then_some(a.ids);
    let by = format!("admin:{}", a.author);
    let done = if retry { delivery.retry(&t, ids, &by).await? } else { delivery.skip(&t, ids, &by).await? };
    for d in &done {
        println!("#{} {} ({} seq {})", d.id, d.state.as_str(), d.resource, d.seq);
    }
    if done.is_empty() {
        println!("{}/{}: nothing parked", t.tenant, t.name);
    }
    Ok(())
}
