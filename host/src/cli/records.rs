//! Record commands: audit, explain, drift, held operations.

use anyhow::bail;

use super::{AuditArgs, Ctx, HeldCommand};
use crate::model::{AuditQuery, AuditRecord, OwnerKind};
use crate::service::admin::time_bound;

fn print_audit(r: &AuditRecord) {
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

pub(super) async fn audit(ctx: &Ctx, a: AuditArgs) -> anyhow::Result<()> {
    let tenant = ctx.tenant(&a.tenant).await?;
    let idp_id = match &a.idp {
        Some(i) => Some(ctx.idp(&a.tenant, i).await?.id),
        None => None,
    };
    let q = AuditQuery {
        tenant_id: tenant.id,
        idp_id,
        resource_id: a.resource,
        entry: a.user,
        since: time_bound("--since", a.since.as_deref())?,
        until: time_bound("--until", a.until.as_deref())?,
        before_id: a.before,
        limit: a.limit,
    };
    let records = ctx.admin.audit(q).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&records)?);
    } else {
        for r in &records {
            print_audit(r);
        }
    }
    Ok(())
}

pub(super) async fn explain(ctx: &Ctx, tenant: String, user: String, json: bool) -> anyhow::Result<()> {
    let t = ctx.tenant(&tenant).await?;
    let e = ctx.admin.explain(&t, &user).await?;
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
        match (m.kind, &m.via) {
            (OwnerKind::IdpGroup, Some(via)) => println!("  {:<24} via {} group '{via}'", m.group, m.idp),
            (OwnerKind::Local, _) => println!("  {:<24} granted locally (no sync removes it)", m.group),
            (OwnerKind::Held, _) => println!("  {:<24} removed by an IdP, held for an admin (mapwright held list)", m.group),
            _ => println!("  {:<24} granted by the rules of {}", m.group, m.idp),
        }
    }
    println!("history (newest first):");
    for r in &e.history {
        print_audit(r);
    }
    Ok(())
}

pub(super) async fn drift(ctx: &Ctx, tenant: String, idp: String, as_json: bool) -> anyhow::Result<()> {
    let idp = ctx.idp(&tenant, &idp).await?;
    let r = ctx.admin.drift(&idp).await?;
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
    println!("  members its groups name that it does not have (skipped): {}", r.skipped_members.len());
    for m in &r.skipped_members {
        println!("    {} in {} ({}, {})", m.member, m.group, m.reason, m.at);
    }
    Ok(())
}

pub(super) async fn held_list(ctx: &Ctx, tenant: String, all: bool, as_json: bool) -> anyhow::Result<()> {
    let t = ctx.tenant(&tenant).await?;
    let ops = ctx.admin.held(&t, all).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&ops)?);
    } else {
        for o in &ops {
            println!(
                "#{} {} {} {} ({}) via {} at {} [{}] request {}",
                o.id,
                o.status.as_str(),
                o.kind.as_str(),
                o.user_name,
                o.resource_id,
                o.idp,
                o.at,
                serde_json::to_string(&o.action)?,
                o.request_id
            );
        }
    }
    Ok(())
}

pub(super) async fn held_decide(ctx: &Ctx, cmd: HeldCommand) -> anyhow::Result<()> {
    if let HeldCommand::Approve { ids, .. } | HeldCommand::Reject { ids, .. } = &cmd
        && ids.is_empty()
    {
        bail!("give the ids of the held operations (mapwright held list)");
    }
    let approve = matches!(cmd, HeldCommand::Approve { .. });
    let (HeldCommand::Approve { tenant, ids, author } | HeldCommand::Reject { tenant, ids, author }) = cmd else { return Ok(()) };
    let t = ctx.tenant(&tenant).await?;
    for id in ids {
        let o = ctx.admin.decide_held(&t, id, approve, &format!("admin:{author}")).await?;
        println!("#{} {}: {} {}", o.id, o.status.as_str(), o.kind.as_str(), o.user_name);
    }
    Ok(())
}
