//! Record commands: audit, explain, drift, held operations, admin tokens.

use anyhow::{Context, bail};

use super::*;

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

pub(super) async fn audit(store: &SqliteStore, a: AuditArgs) -> anyhow::Result<()> {
    let tenant = find_tenant(store, &a.tenant).await?;
    let idp_id = match &a.idp {
        Some(i) => Some(find_idp(store, &a.tenant, i).await?.id),
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

pub(super) async fn explain(store: &SqliteStore, tenant: String, user: String, json: bool) -> anyhow::Result<()> {
    let t = find_tenant(store, &tenant).await?;
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

pub(super) async fn drift(store: &SqliteStore, tenant: String, idp: String, as_json: bool) -> anyhow::Result<()> {
    let idp = find_idp(store, &tenant, &idp).await?;
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

pub(super) async fn held_list(store: &SqliteStore, tenant: String, all: bool, as_json: bool) -> anyhow::Result<()> {
    let t = find_tenant(store, &tenant).await?;
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

pub(super) async fn held_decide(store: &SqliteStore, cmd: HeldCommand) -> anyhow::Result<()> {
    if let HeldCommand::Approve { ids, .. } | HeldCommand::Reject { ids, .. } = &cmd
        && ids.is_empty()
    {
        bail!("give the ids of the held operations (mapwright held list)");
    }
    let approve = matches!(cmd, HeldCommand::Approve { .. });
    let (HeldCommand::Approve { tenant, ids, author } | HeldCommand::Reject { tenant, ids, author }) = cmd else { return Ok(()) };
    let t = find_tenant(store, &tenant).await?;
    for id in ids {
        let o = store.decide_held(t.id, id, approve, &format!("admin:{author}")).await.map_err(store_err)?;
        println!("#{} {}: {} {}", o.id, o.status, o.kind, o.user_name);
    }
    Ok(())
}

pub(super) async fn admin_token(store: &SqliteStore, name: String, tenant: Option<String>, directory: bool) -> anyhow::Result<()> {
    validate_name("admin token", &name)?;
    let tenant_id = match &tenant {
        Some(t) => Some(find_tenant(store, t).await?.id),
        None => None,
    };
    let (t, role) = if directory { (tokens::generate_directory()?, crate::store::TokenRole::Directory) } else { (tokens::generate_admin()?, crate::store::TokenRole::Admin) };
    store.add_admin_token(&t.id, &t.secret_hash, tenant_id, &name, role).await.map_err(store_err)?;
    let what = if directory { "directory token" } else { "admin token" };
    println!("{what} {name} ({}): {}", tenant.as_deref().map(|t| format!("tenant {t}")).unwrap_or_else(|| "global".into()), t.token);
    Ok(())
}
