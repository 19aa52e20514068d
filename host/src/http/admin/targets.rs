//! Delivery targets: JSON in and out of [`DeliveryService`](crate::service::delivery::DeliveryService).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Admin, ApiError, ApiResult, Params, param};
use crate::http::{AppState, AppStore};
use crate::model::{Target, TargetKind, TargetSettings, VersionNote, VersionSource};
use crate::service::delivery::shape_versions::ShapeCandidate;
use crate::service::delivery::{CredentialRequest, DeliveryService, TargetRequest};

type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

fn body<T>(b: JsonBody<T>) -> ApiResult<T> {
    b.map(|Json(v)| v).map_err(|e| ApiError::bad_request(e.body_text()))
}

fn delivery(state: &AppState) -> ApiResult<&Arc<DeliveryService<AppStore>>> {
    state.delivery.as_ref().ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "this server runs without delivery"))
}

async fn target(state: &AppState, admin: &Admin, p: &Params) -> ApiResult<Target> {
    let tenant = admin.tenant(state, param(p, "tenant")?).await?;
    Ok(delivery(state)?.target(&tenant, param(p, "target")?).await?)
}

/// The OAuth client credentials of a SCIM target.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthBody {
    token_url: String,
    client_id: String,
    client_secret: String,
    scope: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTargetBody {
    name: String,
    kind: TargetKind,
    url: String,
    token: Option<String>,
    oauth: Option<OAuthBody>,
    secret: Option<String>,
    #[serde(default)]
    settings: TargetSettings,
}

pub async fn list(State(state): State<Arc<AppState>>, admin: Admin, p: Params) -> ApiResult<Json<Value>> {
    let tenant = admin.tenant(&state, param(&p, "tenant")?).await?;
    let d = delivery(&state)?;
    let mut out = Vec::new();
    for t in d.targets(Some(&tenant)).await? {
        out.push(d.status(t).await?);
    }
    Ok(Json(json!(out)))
}

/// Adds a target; a webhook target's new signing secret is in the answer, this once.
pub async fn create(State(state): State<Arc<AppState>>, admin: Admin, p: Params, b: JsonBody<NewTargetBody>) -> ApiResult<(StatusCode, Json<Value>)> {
    let tenant = admin.tenant(&state, param(&p, "tenant")?).await?;
    let b = body(b)?;
    let credential = match (b.token, b.oauth, b.secret) {
        (Some(t), None, None) => CredentialRequest::Bearer(t),
        (None, Some(o), None) => CredentialRequest::OAuth { token_url: o.token_url, client_id: o.client_id, client_secret: o.client_secret, scope: o.scope },
        (None, None, Some(s)) => CredentialRequest::WebhookSecret(s),
        (None, None, None) => CredentialRequest::Default,
        _ => return Err(ApiError::bad_request("give one of token, oauth (SCIM) or secret (webhook)")),
    };
    let req = TargetRequest { name: b.name, kind: b.kind, url: b.url, credential, settings: b.settings };
    let (target, secret) = delivery(&state)?.add(&tenant, req).await?;
    tracing::info!(tenant = %tenant.name, target = %target.name, by = %admin.actor(), "delivery target added over the admin API");
    Ok((StatusCode::CREATED, Json(json!({"target": target, "secret": secret}))))
}

pub async fn get(State(state): State<Arc<AppState>>, admin: Admin, p: Params) -> ApiResult<Json<Value>> {
    let t = target(&state, &admin, &p).await?;
    Ok(Json(json!(delivery(&state)?.status(t).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetUpdate {
    paused: Option<bool>,
    settings: Option<TargetSettings>,
}

/// Pauses or resumes a target, or changes its settings.
pub async fn update(State(state): State<Arc<AppState>>, admin: Admin, p: Params, b: JsonBody<TargetUpdate>) -> ApiResult<Json<Value>> {
    let mut t = target(&state, &admin, &p).await?;
    let b = body(b)?;
    let d = delivery(&state)?;
    if let Some(s) = b.settings {
        t = d.set_settings(&t, s).await?;
    }
    if let Some(paused) = b.paused {
        t = d.set_paused(&t, paused).await?;
    }
    Ok(Json(json!(d.status(t).await?)))
}

pub async fn remove(State(state): State<Arc<AppState>>, admin: Admin, p: Params) -> ApiResult<StatusCode> {
    let t = target(&state, &admin, &p).await?;
    delivery(&state)?.remove(&t).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SyncBody {
    #[serde(default)]
    dry_run: bool,
}

/// Asks for a reconciliation, or (`dry_run`) answers what it would change.
pub async fn sync(State(state): State<Arc<AppState>>, admin: Admin, p: Params, b: Option<Json<SyncBody>>) -> ApiResult<(StatusCode, Json<Value>)> {
    let t = target(&state, &admin, &p).await?;
    let dry_run = b.map(|Json(b)| b.dry_run).unwrap_or(false);
    match delivery(&state)?.sync(&t, dry_run).await? {
        Some(plan) => Ok((StatusCode::OK, Json(json!(plan)))),
        None => Ok((StatusCode::ACCEPTED, Json(json!({"reconciliation": "due"})))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    #[serde(default = "day")]
    overlap_secs: u64,
    token: Option<String>,
}

fn day() -> u64 {
    86_400
}

/// A new credential (a webhook target's new secret is in the answer, this once).
pub async fn rotate(State(state): State<Arc<AppState>>, admin: Admin, p: Params, b: JsonBody<RotateBody>) -> ApiResult<Json<Value>> {
    let t = target(&state, &admin, &p).await?;
    let b = body(b)?;
    let secret = delivery(&state)?.rotate(&t, b.overlap_secs, b.token).await?;
    Ok(Json(json!({"secret": secret})))
}

pub async fn dead_letters(State(state): State<Arc<AppState>>, admin: Admin, p: Params) -> ApiResult<Json<Value>> {
    let t = target(&state, &admin, &p).await?;
    Ok(Json(json!(delivery(&state)?.status(t).await?.dead_letters)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DecideBody {
    /// Parked events; none: all of the target's.
    ids: Option<Vec<i64>>,
}

/// `POST …/dead-letters/retry` or `…/skip`.
pub async fn decide(State(state): State<Arc<AppState>>, admin: Admin, p: Params, b: Option<Json<DecideBody>>) -> ApiResult<Json<Value>> {
    let t = target(&state, &admin, &p).await?;
    let ids = b.and_then(|Json(b)| b.ids);
    let d = delivery(&state)?;
    let done = match param(&p, "decision")? {
        "retry" => d.retry(&t, ids, &admin.actor()).await?,
        "skip" => d.skip(&t, ids, &admin.actor()).await?,
        other => return Err(ApiError::not_found(format!("'{other}': use retry or skip"))),
    };
    Ok(Json(json!(done)))
}

/// A target's shape versions and activations.
pub async fn shape_history(State(state): State<Arc<AppState>>, admin: Admin, p: Params) -> ApiResult<Json<Value>> {
    let t = target(&state, &admin, &p).await?;
    let (versions, activations) = delivery(&state)?.shape_history(&t).await?;
    Ok(Json(json!({"active": t.shape_version, "versions": versions, "activations": activations})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShapeBody {
    entries: Vec<super::rules::EntryBody>,
    #[serde(default)]
    note: String,
    /// Store without activating (a candidate to preview).
    #[serde(default)]
    candidate: bool,
}

/// Stores a new shape version (checked to load first) and activates it unless `candidate`.
pub async fn set_shape(State(state): State<Arc<AppState>>, admin: Admin, p: Params, b: JsonBody<ShapeBody>) -> ApiResult<(StatusCode, Json<Value>)> {
    let t = target(&state, &admin, &p).await?;
    let b = body(b)?;
    let specs = super::rules::entry_specs(b.entries)?;
    let note = VersionNote { author: admin.actor(), note: b.note, source: VersionSource::Admin };
    let v = delivery(&state)?.set_shape(&t, &specs, note, !b.candidate).await?;
    Ok((StatusCode::CREATED, Json(json!(v))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivateShapeBody {
    /// The version to run; `null`: none.
    version: Option<i64>,
}

/// Makes a stored version the one the target runs (`null`: none).
pub async fn activate_shape(State(state): State<Arc<AppState>>, admin: Admin, p: Params, b: JsonBody<ActivateShapeBody>) -> ApiResult<Json<Value>> {
    let t = target(&state, &admin, &p).await?;
    let b = body(b)?;
    let d = delivery(&state)?;
    let t = d.activate_shape(&t, b.version, &admin.actor()).await?;
    Ok(Json(json!(d.status(t).await?)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ShapePreviewBody {
    /// A stored version…
    version: Option<i64>,
    /// …or entries given inline…
    entries: Option<Vec<super::rules::EntryBody>>,
    /// …or no shaping at all.
    #[serde(default)]
    off: bool,
    /// Only this user.
    user: Option<String>,
    /// How many users and groups to look at (default 20, at most 500).
    limit: Option<usize>,
}

/// What a candidate would change for the target, on a sample of the directory.
pub async fn preview_shape(State(state): State<Arc<AppState>>, admin: Admin, p: Params, b: JsonBody<ShapePreviewBody>) -> ApiResult<Json<Value>> {
    let t = target(&state, &admin, &p).await?;
    let b = body(b)?;
    let candidate = match (b.version, b.entries, b.off) {
        (Some(n), None, false) => ShapeCandidate::Version(n),
        (None, Some(e), false) => ShapeCandidate::Entries(super::rules::entry_specs(e)?),
        (None, None, true) => ShapeCandidate::Off,
        _ => return Err(ApiError::bad_request("give one of version, entries, or off")),
    };
    Ok(Json(json!(delivery(&state)?.preview_shape(&t, candidate, b.user.as_deref(), b.limit.unwrap_or(20)).await?)))
}

/// What the target receives of one user (`?user=`), and which rules made it so.
pub async fn explain_shape(State(state): State<Arc<AppState>>, admin: Admin, p: Params, q: axum::extract::Query<std::collections::HashMap<String, String>>) -> ApiResult<Json<Value>> {
    let t = target(&state, &admin, &p).await?;
    let user = q.get("user").ok_or_else(|| ApiError::bad_request("give ?user=<userName>"))?;
    Ok(Json(json!(delivery(&state)?.explain_shape(&t, user).await?)))
}
