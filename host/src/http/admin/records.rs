//! Audit, explain, held operations and drift.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Admin, AdminError, AdminResult, Params, param};
use crate::http::AppState;
use crate::store::{AuditQuery, Store};

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

fn time(what: &str, t: Option<String>) -> AdminResult<Option<String>> {
    t.map(|t| {
        chrono::DateTime::parse_from_rfc3339(&t)
            .map(|d| d.with_timezone(&chrono::Utc).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
            .map_err(|_| AdminError::bad_request(format!("{what} {t:?} is not an RFC 3339 time")))
    })
    .transpose()
}

/// Audit records, newest first; page with `before` (the last id seen).
pub async fn audit(State(state): State<Arc<AppState>>, admin: Admin, p: Params, q: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>) -> AdminResult<Json<Value>> {
    let tenant = admin.tenant(&state, param(&p, "tenant")?).await?;
    let Query(q) = q.map_err(|e| AdminError::bad_request(e.body_text()))?;
    let idp_id = match &q.idp {
        Some(i) => Some(admin.idp(&state, &tenant.name, i).await?.id),
        None => None,
    };
    let query = AuditQuery {
        tenant_id: tenant.id,
        idp_id,
        resource_id: q.resource,
        entry: q.user,
        since: time("since", q.since)?,
        until: time("until", q.until)?,
        before_id: q.before,
        limit: q.limit.unwrap_or(100).clamp(1, 10_000),
    };
    let records = state.service.store().audit(query).await?;
    let next = records.last().map(|r| r.id);
    Ok(Json(json!({"records": records, "next_before": next})))
}

pub async fn explain(State(state): State<Arc<AppState>>, admin: Admin, p: Params) -> AdminResult<Json<Value>> {
    let tenant = admin.tenant(&state, param(&p, "tenant")?).await?;
    let user = param(&p, "user")?;
    let e = state.service.store().explain(tenant.id, user).await?.ok_or_else(|| AdminError::not_found(format!("no directory entry '{user}'")))?;
    Ok(Json(json!(e)))
}

#[derive(Deserialize)]
pub struct HeldParams {
    #[serde(default)]
    all: bool,
}

pub async fn held(State(state): State<Arc<AppState>>, admin: Admin, p: Params, q: Query<HeldParams>) -> AdminResult<Json<Value>> {
    let tenant = admin.tenant(&state, param(&p, "tenant")?).await?;
    Ok(Json(json!(state.service.store().held_ops(tenant.id, if q.all { None } else { Some("held") }).await?)))
}

/// `POST …/held/{id}/approve` or `…/reject`.
pub async fn decide(State(state): State<Arc<AppState>>, admin: Admin, p: Params) -> AdminResult<Json<Value>> {
    let tenant = admin.tenant(&state, param(&p, "tenant")?).await?;
    let id: i64 = param(&p, "id")?.parse().map_err(|_| AdminError::bad_request("the held operation id is a number"))?;
    let approve = match param(&p, "decision")? {
        "approve" => true,
        "reject" => false,
        other => return Err(AdminError::not_found(format!("'{other}': use approve or reject"))),
    };
    Ok(Json(json!(state.service.store().decide_held(tenant.id, id, approve, &admin.actor()).await?)))
}

pub async fn drift(State(state): State<Arc<AppState>>, admin: Admin, p: Params) -> AdminResult<Json<Value>> {
    let idp = admin.idp(&state, param(&p, "tenant")?, param(&p, "idp")?).await?;
    Ok(Json(json!(state.service.store().drift(&idp).await?)))
}

/// A change made in the application to a directory entry: local attributes (`null` gives
/// one back to the IdPs) and local group memberships, which no sync removes.
pub async fn local_change(State(state): State<Arc<AppState>>, admin: Admin, p: Params, b: Result<Json<crate::store::LocalChange>, axum::extract::rejection::JsonRejection>) -> AdminResult<Json<Value>> {
    let tenant = admin.tenant(&state, param(&p, "tenant")?).await?;
    let Json(change) = b.map_err(|e| AdminError::bad_request(e.body_text()))?;
    let user = param(&p, "user")?;
    state.service.store().local_change(tenant.id, user, change, &admin.actor()).await?;
    let e = state.service.store().explain(tenant.id, user).await?.ok_or_else(|| AdminError::not_found(format!("no directory entry '{user}'")))?;
    Ok(Json(json!(e)))
}
