//! Audit, explain, held operations, drift and local changes.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Admin, ApiError, ApiResult, Params, param};
use crate::http::AppState;
use crate::model::{AuditQuery, LocalChange};
use crate::service::admin::time_bound;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    idp: Option<String>,
    resource: Option<String>,
    user: Option<String>,
    since: Option<String>,
    until: Option<String>,
    before: Option<i64>,
    limit: Option<usize>,
}

/// Audit records, newest first; page with `before` (the last id seen).
pub async fn audit(State(state): State<Arc<AppState>>, admin: Admin, p: Params, q: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>) -> ApiResult<Json<Value>> {
    let tenant = admin.tenant(&state, param(&p, "tenant")?).await?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let idp_id = match &q.idp {
        Some(i) => Some(admin.idp(&state, &tenant.name, i).await?.id),
        None => None,
    };
    let query = AuditQuery {
        tenant_id: tenant.id,
        idp_id,
        resource_id: q.resource,
        entry: q.user,
        since: time_bound("since", q.since.as_deref())?,
        until: time_bound("until", q.until.as_deref())?,
        before_id: q.before,
        limit: q.limit.unwrap_or(100),
    };
    let records = state.admin.audit(query).await?;
    let next = records.last().map(|r| r.id);
    Ok(Json(json!({"records": records, "next_before": next})))
}

pub async fn explain(State(state): State<Arc<AppState>>, admin: Admin, p: Params) -> ApiResult<Json<Value>> {
    let tenant = admin.tenant(&state, param(&p, "tenant")?).await?;
    Ok(Json(json!(state.admin.explain(&tenant, param(&p, "user")?).await?)))
}

#[derive(Deserialize)]
pub struct HeldParams {
    #[serde(default)]
    all: bool,
}

pub async fn held(State(state): State<Arc<AppState>>, admin: Admin, p: Params, q: Query<HeldParams>) -> ApiResult<Json<Value>> {
    let tenant = admin.tenant(&state, param(&p, "tenant")?).await?;
    Ok(Json(json!(state.admin.held(&tenant, q.all).await?)))
}

/// `POST …/held/{id}/approve` or `…/reject`.
pub async fn decide(State(state): State<Arc<AppState>>, admin: Admin, p: Params) -> ApiResult<Json<Value>> {
    let tenant = admin.tenant(&state, param(&p, "tenant")?).await?;
    let id: i64 = param(&p, "id")?.parse().map_err(|_| ApiError::bad_request("the held operation id is a number"))?;
    let approve = match param(&p, "decision")? {
        "approve" => true,
        "reject" => false,
        other => return Err(ApiError::not_found(format!("'{other}': use approve or reject"))),
    };
    Ok(Json(json!(state.admin.decide_held(&tenant, id, approve, &admin.actor()).await?)))
}

pub async fn drift(State(state): State<Arc<AppState>>, admin: Admin, p: Params) -> ApiResult<Json<Value>> {
    let idp = admin.idp(&state, param(&p, "tenant")?, param(&p, "idp")?).await?;
    Ok(Json(json!(state.admin.drift(&idp).await?)))
}

/// A change made in the application to a directory entry: local attributes (`null` gives
/// one back to the IdPs) and local group memberships, which no sync removes.
pub async fn local_change(State(state): State<Arc<AppState>>, admin: Admin, p: Params, b: Result<Json<LocalChange>, axum::extract::rejection::JsonRejection>) -> ApiResult<Json<Value>> {
    let tenant = admin.tenant(&state, param(&p, "tenant")?).await?;
    let Json(change) = b.map_err(|e| ApiError::bad_request(e.body_text()))?;
    Ok(Json(json!(state.admin.local_change(&tenant, param(&p, "user")?, change, &admin.actor()).await?)))
}
