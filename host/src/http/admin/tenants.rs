//! Tenants and IdP connections.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Admin, AdminError, AdminResult, Params, param};
use crate::http::AppState;
use crate::store::{IdpConnection, IdpKind, NewIdp, RateLimit, Store};

fn idp_json(state: &AppState, i: &IdpConnection) -> Value {
    json!({
        "tenant": i.tenant,
        "name": i.name,
        "kind": i.kind.as_str(),
        "base_url": format!("{}/scim/v2/{}/{}", state.public_url, i.tenant, i.name),
        "rate_per_second": i.rate.per_second,
        "burst": i.rate.burst,
        "disabled": i.disabled,
        "created": i.created,
    })
}

pub async fn list(State(state): State<Arc<AppState>>, admin: Admin) -> AdminResult<Json<Value>> {
    let all = state.service.store().list_tenants().await?;
    let visible: Vec<Value> = all
        .into_iter()
        .filter(|t| admin.scope.as_ref().is_none_or(|s| s.id == t.id))
        .map(|t| json!({"name": t.name, "created": t.created}))
        .collect();
    Ok(Json(json!(visible)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    name: String,
}

pub async fn create(State(state): State<Arc<AppState>>, admin: Admin, body: Result<Json<NewTenant>, axum::extract::rejection::JsonRejection>) -> AdminResult<(StatusCode, Json<Value>)> {
    admin.require_global()?;
    let Json(b) = body.map_err(|e| AdminError::bad_request(e.body_text()))?;
    crate::config::validate_name("tenant", &b.name).map_err(|e| AdminError::bad_request(e.to_string()))?;
    let t = state.service.store().create_tenant(&b.name).await?;
    Ok((StatusCode::CREATED, Json(json!({"name": t.name, "created": t.created}))))
}

pub async fn list_idps(State(state): State<Arc<AppState>>, admin: Admin, p: Params) -> AdminResult<Json<Value>> {
    let tenant = admin.tenant(&state, param(&p, "tenant")?).await?;
    let idps = state.service.store().list_idps(Some(&tenant.name)).await?;
    Ok(Json(json!(idps.iter().map(|i| idp_json(&state, i)).collect::<Vec<_>>())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewIdpBody {
    name: String,
    #[serde(default)]
    kind: Option<String>,
    rate_per_second: Option<f64>,
    burst: Option<u32>,
}

fn kind(k: Option<&str>) -> AdminResult<Option<IdpKind>> {
    k.map(|k| IdpKind::parse(k).ok_or_else(|| AdminError::bad_request(format!("unknown IdP kind '{k}' (generic, entra, okta, onelogin, jumpcloud, ping, keycloak, idcs)")))).transpose()
}

fn rate(per_second: Option<f64>, burst: Option<u32>, current: RateLimit) -> AdminResult<RateLimit> {
    let r = RateLimit { per_second: per_second.unwrap_or(current.per_second), burst: burst.unwrap_or(current.burst) };
    if !r.per_second.is_finite() || r.per_second < 0.0 {
        return Err(AdminError::bad_request("rate_per_second must be 0 (unlimited) or positive"));
    }
    Ok(r)
}

async fn issue(state: &AppState, idp: &IdpConnection, expire_others_at: Option<String>) -> AdminResult<String> {
    let t = crate::tokens::generate().map_err(|e| AdminError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    state.service.store().add_token(idp.id, &t.id, &t.secret_hash, expire_others_at).await?;
    Ok(t.token)
}

/// Creates a connection; the answer carries its bearer token, shown this once.
pub async fn create_idp(State(state): State<Arc<AppState>>, admin: Admin, p: Params, body: Result<Json<NewIdpBody>, axum::extract::rejection::JsonRejection>) -> AdminResult<(StatusCode, Json<Value>)> {
    let tenant = admin.tenant(&state, param(&p, "tenant")?).await?;
    let Json(b) = body.map_err(|e| AdminError::bad_request(e.body_text()))?;
    crate::config::validate_name("IdP connection", &b.name).map_err(|e| AdminError::bad_request(e.to_string()))?;
    let new = NewIdp { name: b.name, kind: kind(b.kind.as_deref())?.unwrap_or(IdpKind::Generic), rate: rate(b.rate_per_second, b.burst, RateLimit::default())? };
    let idp = state.service.store().create_idp(&tenant.name, new).await?;
    let token = issue(&state, &idp, None).await?;
    let mut out = idp_json(&state, &idp);
    out["token"] = json!(token);
    tracing::info!(tenant = %idp.tenant, idp = %idp.name, by = %admin.actor(), "IdP connection created");
    Ok((StatusCode::CREATED, Json(out)))
}

pub async fn get_idp(State(state): State<Arc<AppState>>, admin: Admin, p: Params) -> AdminResult<Json<Value>> {
    let idp = admin.idp(&state, param(&p, "tenant")?, param(&p, "idp")?).await?;
    Ok(Json(idp_json(&state, &idp)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdpUpdate {
    disabled: Option<bool>,
    kind: Option<String>,
    rate_per_second: Option<f64>,
    burst: Option<u32>,
}

/// Disables or enables a connection, changes its kind or rate limit.
pub async fn update_idp(State(state): State<Arc<AppState>>, admin: Admin, p: Params, body: Result<Json<IdpUpdate>, axum::extract::rejection::JsonRejection>) -> AdminResult<Json<Value>> {
    let idp = admin.idp(&state, param(&p, "tenant")?, param(&p, "idp")?).await?;
    let Json(b) = body.map_err(|e| AdminError::bad_request(e.body_text()))?;
    let store = state.service.store();
    if b.kind.is_some() || b.rate_per_second.is_some() || b.burst.is_some() {
        store.update_idp(idp.id, kind(b.kind.as_deref())?.unwrap_or(idp.kind), rate(b.rate_per_second, b.burst, idp.rate)?).await?;
    }
    if let Some(d) = b.disabled {
        store.set_idp_disabled(idp.id, d).await?;
    }
    let idp = store.find_idp(&idp.tenant, &idp.name).await?.ok_or_else(|| AdminError::not_found("the connection vanished"))?;
    Ok(Json(idp_json(&state, &idp)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    #[serde(default = "day")]
    overlap_secs: u64,
}

fn day() -> u64 {
    86_400
}

/// A new token; the previous ones keep working for the overlap window.
pub async fn rotate_token(State(state): State<Arc<AppState>>, admin: Admin, p: Params, body: Option<Json<Rotate>>) -> AdminResult<Json<Value>> {
    let idp = admin.idp(&state, param(&p, "tenant")?, param(&p, "idp")?).await?;
    let overlap = body.map(|b| b.0.overlap_secs).unwrap_or_else(day).min(365 * 86_400);
    let until = (chrono::Utc::now() + chrono::Duration::seconds(overlap as i64)).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let token = issue(&state, &idp, Some(until.clone())).await?;
    Ok(Json(json!({"token": token, "previous_tokens_expire": until})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    name: String,
    role: Option<String>,
}

/// A token scoped to this tenant: by default a directory token, the one an application reads
/// its directory with. Shown once; only its hash is kept.
pub async fn create_token(State(state): State<Arc<AppState>>, admin: Admin, p: Params, body: Result<Json<NewToken>, axum::extract::rejection::JsonRejection>) -> AdminResult<(StatusCode, Json<Value>)> {
    let tenant = admin.tenant(&state, param(&p, "tenant")?).await?;
    let Json(b) = body.map_err(|e| AdminError::bad_request(e.body_text()))?;
    crate::config::validate_name("token", &b.name).map_err(|e| AdminError::bad_request(e.to_string()))?;
    let (t, role) = match b.role.as_deref().unwrap_or("directory") {
        "directory" => (crate::tokens::generate_directory(), crate::store::TokenRole::Directory),
        "admin" => (crate::tokens::generate_admin(), crate::store::TokenRole::Admin),
        other => return Err(AdminError::bad_request(format!("role must be directory or admin, not {other:?}"))),
    };
    let t = t.map_err(|e| AdminError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    state.service.store().add_admin_token(&t.id, &t.secret_hash, Some(tenant.id), &b.name, role).await?;
    tracing::info!(tenant = %tenant.name, name = %b.name, role = role.as_str(), by = %admin.actor(), "token created");
    Ok((StatusCode::CREATED, Json(json!({"name": b.name, "role": role.as_str(), "tenant": tenant.name, "token": t.token}))))
}
