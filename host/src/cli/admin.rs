//! Tenants, IdP connections and access tokens.

use serde_json::json;

use super::{Ctx, IdpCommand, TenantCommand};
use crate::model::{IdpConnection, TokenRole};
use crate::service::admin::ConnectionRequest;

pub(super) async fn tenant(ctx: &Ctx, cmd: TenantCommand) -> anyhow::Result<()> {
    match cmd {
        TenantCommand::Add { name } => {
            let t = ctx.admin.create_tenant(&name).await?;
            println!("tenant {} created", t.name);
        }
        TenantCommand::List => {
            for t in ctx.admin.tenants().await? {
                println!("{}\t{}", t.name, t.created);
            }
        }
    }
    Ok(())
}

pub(super) async fn idp(ctx: &Ctx, cmd: IdpCommand) -> anyhow::Result<()> {
    match cmd {
        IdpCommand::Add { tenant, name, kind, rate_per_second, burst, unknown_members, json } => {
            let settings = crate::model::ConnectionSettings { unknown_members, ..Default::default() };
            let req = ConnectionRequest { name, kind: Some(kind), rate_per_second, burst, settings };
            let (idp, token) = ctx.admin.create_connection(&tenant, req).await?;
            print_token(ctx, &idp, &token, json);
        }
        IdpCommand::Set { tenant, name, kind, rate_per_second, burst, unknown_members } => {
            let idp = ctx.idp(&tenant, &name).await?;
            let change = crate::service::admin::ConnectionChange { kind, rate_per_second, burst, disabled: None, unknown_members };
            let i = ctx.admin.update_connection(&idp, change).await?;
            println!("{}/{}\t{}\t{}/s burst {}\tunknown members: {}", i.tenant, i.name, i.kind.as_str(), i.rate.per_second, i.rate.burst, serde_json::to_value(i.settings.unknown_members)?.as_str().unwrap_or_default());
        }
        IdpCommand::List { tenant } => {
            for i in ctx.admin.connections(tenant.as_deref()).await? {
                println!("{}/{}\t{}\t{}/s burst {}\t{}", i.tenant, i.name, i.kind.as_str(), i.rate.per_second, i.rate.burst, ctx.public.scim_base(&i));
            }
            where_urls_point(ctx);
        }
        IdpCommand::RotateToken { tenant, name, overlap_secs, json } => {
            let idp = ctx.idp(&tenant, &name).await?;
            let (token, until) = ctx.admin.rotate_token(&idp, overlap_secs).await?;
            print_token(ctx, &idp, &token, json);
            if !json {
                println!("  Previous tokens stop working at {}", until.to_seconds());
            }
        }
    }
    Ok(())
}

/// A connection's base URL and its new token (shown this once).
pub(super) fn print_token(ctx: &Ctx, idp: &IdpConnection, token: &str, as_json: bool) {
    if as_json {
        println!("{}", json!({"tenant": idp.tenant, "idp": idp.name, "kind": idp.kind.as_str(), "base_url": ctx.public.scim_base(idp), "token": token}));
        return;
    }
    println!("IdP connection {}/{} ({})", idp.tenant, idp.name, idp.kind.as_str());
    println!("  SCIM base URL: {}", ctx.public.scim_base(idp));
    println!("  Bearer token (shown once, store it now): {token}");
    where_urls_point(ctx);
}

/// Says where a printed base URL comes from when it is a guess from the configuration.
fn where_urls_point(ctx: &Ctx) {
    if ctx.public.guessed {
        println!("  (URLs are built on the configured listen address {}; if the server runs elsewhere, give --public-url)", ctx.cfg.server.listen);
    }
}

pub(super) async fn access_token(ctx: &Ctx, name: String, tenant: Option<String>, role: TokenRole) -> anyhow::Result<()> {
    let tenant = match &tenant {
        Some(t) => Some(ctx.tenant(t).await?),
        None => None,
    };
    let token = ctx.admin.create_access_token(&name, tenant.as_ref(), role).await?;
    let what = match role {
        TokenRole::Admin => "admin token",
        TokenRole::Directory => "directory token",
        TokenRole::Signin => "directory token for sign-ins",
    };
    let scope = tenant.as_ref().map(|t| format!("tenant {}", t.name)).unwrap_or_else(|| "global".into());
    println!("{what} {name} ({scope}): {token}");
    Ok(())
}
