//! Tenants, IdP connections and tokens: JSON in and out of [`AdminService`](crate::service::admin::AdminService).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Admin, ApiError, ApiResult, Params, param};
use crate::http::AppState;
use crate::model::{ConnectionSettings, IdpConnection, IdpKind, TokenRole, UnknownMembers};
use crate::service::admin::{ConnectionChange, ConnectionRequest};

fn idp_json(state: &AppState, i: &IdpConnection) -> Value {
    json!({
        "tenant": i.tenant,
        "name": i.name,
        "kind": i.kind.as_str(),
        "base_url": state.scim_base(i),
        "rate_per_second": i.rate.per_second,
        "burst": i.rate.burst,
        "disabled": i.disabled,
        "created": i.created,
        "unknown_members": i.settings.unknown_members,
    })
}

type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

fn body<T>(b: JsonBody<T>) -> ApiResult<T> {
    b.map(|Json(v)| v).map_err(|e| ApiError::bad_request(e.body_text()))
}

pub async fn list(State(state): State<Arc<AppState>>, admin: Admin) -> ApiResult<Json<Value>> {
    let visible: Vec<Value> = state
        .admin
        .tenants()
        .await?
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

pub async fn create(State(state): State<Arc<AppState>>, admin: Admin, b: JsonBody<NewTenant>) -> ApiResult<(StatusCode, Json<Value>)> {
    admin.require_global()?;
    let t = state.admin.create_tenant(&body(b)?.name).await?;
    Ok((StatusCode::CREATED, Json(json!({"name": t.name, "created": t.created}))))
}

pub async fn list_idps(State(state): State<Arc<AppState>>, admin: Admin, p: Params) -> ApiResult<Json<Value>> {
    let tenant = admin.tenant(&state, param(&p, "tenant")?).await?;
    let idps = state.admin.connections(Some(&tenant.name)).await?;
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
    #[serde(default)]
    unknown_members: UnknownMembers,
}

fn kind(k: Option<&str>) -> ApiResult<Option<IdpKind>> {
    k.map(|k| IdpKind::parse(k).ok_or_else(|| ApiError::bad_request(format!("unknown IdP kind '{k}' ({})", IdpKind::names().join(", "))))).transpose()
}

/// Creates a connection; the answer carries its bearer token, shown this once.
pub async fn create_idp(State(state): State<Arc<AppState>>, admin: Admin, p: Params, b: JsonBody<NewIdpBody>) -> ApiResult<(StatusCode, Json<Value>)> {
    let tenant = admin.tenant(&state, param(&p, "tenant")?).await?;
    let b = body(b)?;
    let settings = ConnectionSettings { unknown_members: b.unknown_members, ..Default::default() };
    let req = ConnectionRequest { name: b.name, kind: kind(b.kind.as_deref())?, rate_per_second: b.rate_per_second, burst: b.burst, settings };
    let (idp, token) = state.admin.create_connection(&tenant.name, req).await?;
    let mut out = idp_json(&state, &idp);
    out["token"] = json!(token);
    tracing::info!(tenant = %idp.tenant, idp = %idp.name, by = %admin.actor(), "IdP connection created over the admin API");
    Ok((StatusCode::CREATED, Json(out)))
}

pub async fn get_idp(State(state): State<Arc<AppState>>, admin: Admin, p: Params) -> ApiResult<Json<Value>> {
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
    unknown_members: Option<UnknownMembers>,
}

/// Disables or enables a connection, changes its kind, rate limit or policies.
pub async fn update_idp(State(state): State<Arc<AppState>>, admin: Admin, p: Params, b: JsonBody<IdpUpdate>) -> ApiResult<Json<Value>> {
    let idp = admin.idp(&state, param(&p, "tenant")?, param(&p, "idp")?).await?;
    let b = body(b)?;
    let change = ConnectionChange { kind: kind(b.kind.as_deref())?, rate_per_second: b.rate_per_second, burst: b.burst, disabled: b.disabled, unknown_members: b.unknown_members };
    let idp = state.admin.update_connection(&idp, change).await?;
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
pub async fn rotate_token(State(state): State<Arc<AppState>>, admin: Admin, p: Params, body: Option<Json<Rotate>>) -> ApiResult<Json<Value>> {
    let idp = admin.idp(&state, param(&p, "tenant")?, param(&p, "idp")?).await?;
    let overlap = body.map(|b| b.0.overlap_secs).unwrap_or_else(day);
    let (token, until) = state.admin.rotate_token(&idp, overlap).await?;
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
pub async fn create_token(State(state): State<Arc<AppState>>, admin: Admin, p: Params, b: JsonBody<NewToken>) -> ApiResult<(StatusCode, Json<Value>)> {
    let tenant = admin.tenant(&state, param(&p, "tenant")?).await?;
    let b = body(b)?;
    let role = match b.role.as_deref().unwrap_or("directory") {
        "directory" => TokenRole::Directory,
        "admin" => TokenRole::Admin,
        "signin" => TokenRole::Signin,
        other => return Err(ApiError::bad_request(format!("role must be directory, signin or admin, not {other:?}"))),
    };
    let token = state.admin.create_access_token(&b.name, Some(&tenant), role).await?;
    tracing::info!(tenant = %tenant.name, name = %b.name, role = role.as_str(), by = %admin.actor(), "token created over the admin API");
    Ok((StatusCode::CREATED, Json(json!({"name": b.name, "role": role.as_str(), "tenant": tenant.name, "token": token}))))
}
