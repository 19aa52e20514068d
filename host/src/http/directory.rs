//! The directory API (`/directory/v1/{tenant}`, JSON): what the application reads. Effective
//! users and groups (after the rules), listed and filtered like SCIM lists, and a change feed
//! to follow them without listing everything again.
//!
//! Read with a directory token (`mwd_…`, given to the application) or an admin token; a
//! tenant-scoped token reads only its tenant. IdP tokens never reach it.
//!
//! Following the directory: list (`GET /Users`, `GET /Groups`), keep the `cursor` the first
//! page returned, then `GET /changes?since=<cursor>` for ever, each time from the `cursor` the
//! last answer gave. Changes come oldest first, each exactly once; `wait=N` holds an empty
//! answer up to N seconds until something changes (long poll).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::routing::{MethodRouter, get};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::admin::{ApiError, ApiResult, Params, param};
use crate::model::{DirGroup, DirUser, IdpKind, Tenant, Timestamp, TokenRole};
use crate::scim::list::{ListParams, Projection};
use crate::scim::schema::{GROUP_SCHEMA, ResourceKind};
use crate::service::directory::{change_event, user_resource};
use crate::tokens;

/// Who reads: an admin or directory token, global or scoped to a tenant.
pub struct Reader {
    scope: Option<Tenant>,
    role: TokenRole,
    name: String,
}

impl Reader {
    async fn tenant(&self, state: &AppState, name: &str) -> ApiResult<Tenant> {
        super::admin::scoped_tenant(state, self.scope.as_ref(), name).await
    }
}

impl FromRequestParts<Arc<AppState>> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let rec = super::admin::authenticate(parts, state, tokens::parse_reader, "a directory or admin bearer token is required").await?;
        Ok(Reader { scope: rec.tenant, role: rec.role, name: rec.name })
    }
}

/// Every directory route, `(path, methods)`, like the admin API's table (and checked against
/// the same OpenAPI document).
pub const ROUTES: &[(&str, &[&str])] = &[
    ("/{tenant}/Users", &["GET"]),
    ("/{tenant}/Users/{id}", &["GET"]),
    ("/{tenant}/Groups", &["GET"]),
    ("/{tenant}/Groups/{id}", &["GET"]),
    ("/{tenant}/changes", &["GET"]),
    ("/{tenant}/signins", &["POST"]),
];

pub(super) fn handler(path: &str, method: &str) -> Option<MethodRouter<Arc<AppState>>> {
    Some(match (path, method) {
        ("/{tenant}/Users", "GET") => get(list_users),
        ("/{tenant}/Users/{id}", "GET") => get(get_user),
        ("/{tenant}/Groups", "GET") => get(list_groups),
        ("/{tenant}/Groups/{id}", "GET") => get(get_group),
        ("/{tenant}/changes", "GET") => get(changes),
        ("/{tenant}/signins", "POST") => axum::routing::post(signin),
        _ => return None,
    })
}

/// The directory API's router.
pub fn router() -> axum::Router<Arc<AppState>> {
    super::admin::routes(axum::Router::new(), ROUTES, handler).fallback(|| async { ApiError::not_found("no such directory endpoint") })
}

fn base(state: &AppState, tenant: &str) -> String {
    format!("{}/directory/v1/{tenant}", state.public_url)
}

fn meta(kind: ResourceKind, base: &str, id: &str, created: &Timestamp, modified: &Timestamp) -> Value {
    json!({"resourceType": kind.name(), "created": created, "lastModified": modified, "location": format!("{base}/{}/{id}", kind.endpoint())})
}

fn render_user(u: &DirUser, base: &str) -> Value {
    let mut out = user_resource(&u.id, &u.user_name, u.active, &u.attributes, Some(&u.groups));
    out.insert("meta".into(), meta(ResourceKind::User, base, &u.id, &u.created, &u.modified));
    Value::Object(out)
}

fn render_group(g: &DirGroup, base: &str) -> Value {
    let mut out = json!({"schemas": [GROUP_SCHEMA], "id": g.id, "displayName": g.name});
    if let Some(members) = &g.members {
        out["members"] = members.iter().map(|m| json!({"value": m.id, "display": m.name, "type": "User"})).collect();
    }
    out["meta"] = meta(ResourceKind::Group, base, &g.id, &g.created, &g.created);
    out
}

type Pairs = Query<Vec<(String, String)>>;

fn list_params(q: &Pairs) -> ListParams {
    ListParams::from_pairs(q.0.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// A SCIM ListResponse with the change-feed position it was read at.
fn list_body(total: usize, start: usize, cursor: i64, resources: Vec<Value>) -> Json<Value> {
    let mut body = super::response::list_response(total, start, resources);
    body["cursor"] = json!(cursor.to_string());
    Json(body)
}

async fn list_users(State(state): State<Arc<AppState>>, r: Reader, p: Params, q: Pairs) -> ApiResult<Json<Value>> {
    let tenant = r.tenant(&state, param(&p, "tenant")?).await?;
    let q = list_params(&q).resolve(ResourceKind::User)?;
    let page = state.directory.users(&tenant, &q).await?;
    let base = base(&state, &tenant.name);
    let items = page.items.iter().map(|u| q.projection.apply(render_user(u, &base))).collect();
    Ok(list_body(page.total, q.start_index, page.cursor, items))
}

async fn get_user(State(state): State<Arc<AppState>>, r: Reader, p: Params, q: Pairs) -> ApiResult<Json<Value>> {
    let tenant = r.tenant(&state, param(&p, "tenant")?).await?;
    let lp = list_params(&q);
    let proj = Projection::parse(ResourceKind::User, lp.attributes.as_deref(), lp.excluded_attributes.as_deref())?;
    let id = param(&p, "id")?;
    let u = state.directory.user(&tenant, id).await?.ok_or_else(|| ApiError::not_found(format!("no user '{id}' in the directory")))?;
    Ok(Json(proj.apply(render_user(&u, &base(&state, &tenant.name)))))
}

async fn list_groups(State(state): State<Arc<AppState>>, r: Reader, p: Params, q: Pairs) -> ApiResult<Json<Value>> {
    let tenant = r.tenant(&state, param(&p, "tenant")?).await?;
    let q = list_params(&q).resolve(ResourceKind::Group)?;
    let page = state.directory.groups(&tenant, &q).await?;
    let base = base(&state, &tenant.name);
    let items = page.items.iter().map(|g| q.projection.apply(render_group(g, &base))).collect();
    Ok(list_body(page.total, q.start_index, page.cursor, items))
}

async fn get_group(State(state): State<Arc<AppState>>, r: Reader, p: Params, q: Pairs) -> ApiResult<Json<Value>> {
    let tenant = r.tenant(&state, param(&p, "tenant")?).await?;
    let lp = list_params(&q);
    let proj = Projection::parse(ResourceKind::Group, lp.attributes.as_deref(), lp.excluded_attributes.as_deref())?;
    let id = param(&p, "id")?;
    let g = state
        .directory
        .group(&tenant, id, proj.wants("members"))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no group '{id}' in the directory")))?;
    Ok(Json(proj.apply(render_group(&g, &base(&state, &tenant.name)))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedParams {
    since: Option<String>,
    limit: Option<usize>,
    wait: Option<u64>,
}

/// The tenant's changes after `since`. Without `since`: no changes, and the cursor of now
/// (to follow from here on without listing first).
async fn changes(State(state): State<Arc<AppState>>, r: Reader, p: Params, q: Result<Query<FeedParams>, axum::extract::rejection::QueryRejection>) -> ApiResult<Json<Value>> {
    let tenant = r.tenant(&state, param(&p, "tenant")?).await?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let Some(since) = q.since else {
        let cursor = state.directory.cursor(&tenant).await?;
        return Ok(Json(json!({"changes": [], "cursor": cursor.to_string(), "more": false})));
    };
    let since: i64 = since.trim().parse().ok().filter(|s| *s >= 0).ok_or_else(|| ApiError::bad_request(format!("since {since:?} is not a cursor this server gave")))?;
    let wait = Duration::from_secs(q.wait.unwrap_or(0));
    let page = state.directory.changes(&tenant, since, q.limit.unwrap_or(100), wait, state.stopping.clone()).await?;
    Ok(Json(json!({"changes": page.changes.iter().map(change_event).collect::<Vec<_>>(), "cursor": page.next.to_string(), "more": page.more})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SigninBody {
    /// The sign-in connection (needed only when the tenant has several).
    connection: Option<String>,
    /// The claims the application verified (ID token claims, SAML attributes).
    claims: Value,
}

/// A sign-in the application verified: the user created or updated from its claims through
/// the tenant's `signin` connection, answered with the directory user (201 when new).
async fn signin(
    State(state): State<Arc<AppState>>,
    r: Reader,
    p: Params,
    req: axum::Extension<super::RequestId>,
    b: Result<Json<SigninBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(axum::http::StatusCode, Json<Value>)> {
    if !matches!(r.role, TokenRole::Signin | TokenRole::Admin) {
        return Err(ApiError::new(axum::http::StatusCode::FORBIDDEN, "posting sign-ins needs a directory token made for it (mapwright admin-token NAME --tenant T --signin) or an admin token"));
    }
    let tenant = r.tenant(&state, param(&p, "tenant")?).await?;
    let Json(b) = b.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let signins: Vec<_> = state.admin.connections(Some(&tenant.name)).await?.into_iter().filter(|i| i.kind == IdpKind::Signin).collect();
    let idp = match &b.connection {
        Some(name) => signins.into_iter().find(|i| i.name == *name).ok_or_else(|| ApiError::not_found(format!("{} has no sign-in connection named '{name}'", tenant.name)))?,
        None if signins.len() == 1 => signins.into_iter().next().ok_or_else(|| ApiError::not_found("no sign-in connection"))?,
        None if signins.is_empty() => return Err(ApiError::not_found(format!("{} has no sign-in connection (mapwright idp add {} NAME --kind signin)", tenant.name, tenant.name))),
        None => return Err(ApiError::bad_request(format!("{} has several sign-in connections: name one in \"connection\"", tenant.name))),
    };
    if idp.disabled {
        return Err(ApiError::new(axum::http::StatusCode::FORBIDDEN, format!("{}/{} is disabled", idp.tenant, idp.name)));
    }
    state.limiter.check(idp.id, idp.rate).map_err(|secs| ApiError { retry_after: Some(secs), ..ApiError::new(axum::http::StatusCode::TOO_MANY_REQUESTS, "too many sign-ins for this connection; retry later") })?;
    tracing::Span::current().record("idp", idp.name.as_str());
    let done = state.service.sign_in(&idp, &req.0.0, &b.claims).await?;
    tracing::debug!(by = %r.name, "sign-in posted");
    let status = if done.created { axum::http::StatusCode::CREATED } else { axum::http::StatusCode::OK };
    Ok((status, Json(render_user(&done.user, &base(&state, &tenant.name)))))
}
