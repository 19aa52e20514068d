//! The admin API (`/admin/v1`, JSON): tenants and IdP connections, plugins and chain
//! versions, preview and re-apply, held operations, drift, audit and explain.
//!
//! Authenticated with admin tokens (`mwa_…`, hashed at rest, never an IdP token). A token is
//! global or scoped to one tenant; a scoped token reaches only that tenant's resources and
//! none of the server-wide endpoints. Errors are `{"error": {"status", "message"}}`.

mod records;
mod rules;
mod targets;
mod tenants;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use serde_json::json;

use super::AppState;
use crate::model::{AdminTokenRecord, IdpConnection, Tenant, TokenRole};
use crate::service::admin::AdminError;
use crate::service::directory::ReadError;
use crate::service::rules::RulesError;
use crate::tokens;

/// An error of the admin or directory API: a status and a message for people.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for people.
    pub message: String,
    /// Seconds to wait before trying again (429, 503), sent as `Retry-After`.
    pub retry_after: Option<u64>,
    /// The chain entry (from 0) the error is about, when it is about one.
    pub entry: Option<usize>,
}

impl ApiError {
    /// An error with this status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), retry_after: None, entry: None }
    }
    /// 400
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    /// 404
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
    fn forbidden() -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "this admin token is scoped to another tenant, or the endpoint needs a global admin token")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"status": self.status.as_u16(), "message": self.message});
        if let Some(i) = self.entry {
            error["entry"] = json!(i);
        }
        let mut r = (self.status, axum::Json(json!({ "error": error }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer realm=\"mapwright-admin\""));
        }
        if let Some(secs) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        r
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::NotFound(m) => ApiError::not_found(m),
            AdminError::Invalid(m) => ApiError::bad_request(m),
            AdminError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
            AdminError::Failed(e) => {
                tracing::error!(error = format!("{e:#}"), "admin operation failed");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the server failed to do it")
            }
        }
    }
}

impl From<RulesError> for ApiError {
    fn from(e: RulesError) -> Self {
        match e {
            RulesError::Plugin(p) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("refused: {p}")),
            RulesError::Entry { index, error } => ApiError { entry: Some(index), ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("refused: entry {}: {error}", index + 1)) },
            RulesError::NotFound(m) => ApiError::not_found(m),
            RulesError::Refused(m) => ApiError::new(StatusCode::CONFLICT, m),
            RulesError::Store(s) => AdminError::from(s).into(),
        }
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Invalid(m) => ApiError::bad_request(m),
            e @ ReadError::Expired { .. } => ApiError::new(StatusCode::GONE, e.to_string()),
            ReadError::Store(s) => AdminError::from(s).into(),
        }
    }
}

/// Errors of the SCIM-speaking services (re-apply, preview) keep their status.
impl From<crate::scim::error::ScimError> for ApiError {
    fn from(e: crate::scim::error::ScimError) -> Self {
        ApiError { retry_after: e.retry_after, ..ApiError::new(StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), e.detail) }
    }
}

/// What an API handler returns.
pub type ApiResult<T> = Result<T, ApiError>;

/// The authenticated admin: global, or scoped to one tenant.
pub struct Admin {
    /// The token's name.
    pub name: String,
    /// The tenant it is scoped to (`None`: global).
    pub scope: Option<Tenant>,
}

impl Admin {
    /// `admin:<token name>`, as recorded in the audit trail.
    pub fn actor(&self) -> String {
        format!("admin:{}", self.name)
    }

    /// Refuses a tenant-scoped token.
    pub fn require_global(&self) -> ApiResult<()> {
        if self.scope.is_some() { Err(ApiError::forbidden()) } else { Ok(()) }
    }

    /// The tenant named in the path, if this admin may reach it.
    async fn tenant(&self, state: &AppState, name: &str) -> ApiResult<Tenant> {
        scoped_tenant(state, self.scope.as_ref(), name).await
    }

    /// A connection of a tenant this admin may reach.
    async fn idp(&self, state: &AppState, tenant: &str, idp: &str) -> ApiResult<IdpConnection> {
        self.tenant(state, tenant).await?;
        Ok(state.admin.connection(tenant, idp).await?)
    }
}

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let rec = authenticate(parts, state, tokens::parse_admin, "an admin bearer token is required").await?;
        // A directory token shares the table (and id space) but only ever reads the directory.
        if rec.role != TokenRole::Admin {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "an admin bearer token is required"));
        }
        Ok(Admin { name: rec.name, scope: rec.tenant })
    }
}

/// The stored admin-table token the request presents (parsed with `parse`), its secret
/// checked in constant time; the span gets the token's tenant. `required` says what to send.
pub async fn authenticate(
    parts: &Parts,
    state: &AppState,
    parse: fn(&str) -> Option<(&str, &str)>,
    required: &'static str,
) -> ApiResult<AdminTokenRecord> {
    let unauthorized = || ApiError::new(StatusCode::UNAUTHORIZED, required);
    let (id, secret) = super::auth::bearer(&parts.headers).and_then(parse).ok_or_else(unauthorized)?;
    let rec = state.admin.access_token(id).await?.ok_or_else(unauthorized)?;
    if !tokens::verify(secret, &rec.secret_hash) {
        return Err(unauthorized());
    }
    tracing::Span::current().record("tenant", rec.tenant.as_ref().map(|t| t.name.as_str()).unwrap_or("*"));
    Ok(rec)
}

/// The tenant named in a path, for a token scoped to `scope` (or global): the one check that
/// keeps a tenant's token in its tenant, for the admin and the directory APIs alike.
pub async fn scoped_tenant(state: &AppState, scope: Option<&Tenant>, name: &str) -> ApiResult<Tenant> {
    if let Some(t) = scope {
        return if t.name == name { Ok(t.clone()) } else { Err(ApiError::forbidden()) };
    }
    Ok(state.admin.tenant(name).await?)
}

/// Path parameters of the admin routes.
pub type Params = Path<HashMap<String, String>>;

/// A path parameter.
pub fn param<'a>(p: &'a Params, name: &str) -> ApiResult<&'a str> {
    p.get(name).map(String::as_str).ok_or_else(|| ApiError::bad_request(format!("missing {name}")))
}

/// Every admin route, `(path, methods)`: the router is built from this table, and a test
/// checks the OpenAPI document against it, so neither can drift from the other.
pub const ROUTES: &[(&str, &[&str])] = &[
    ("/tenants", &["GET", "POST"]),
    ("/tenants/{tenant}/idps", &["GET", "POST"]),
    ("/tenants/{tenant}/idps/{idp}", &["GET", "PATCH"]),
    ("/tenants/{tenant}/idps/{idp}/rotate-token", &["POST"]),
    ("/tenants/{tenant}/tokens", &["POST"]),
    ("/tenants/{tenant}/plugins", &["GET", "POST"]),
    ("/tenants/{tenant}/plugins/builtins", &["GET"]),
    ("/tenants/{tenant}/idps/{idp}/chain", &["GET", "POST"]),
    ("/tenants/{tenant}/idps/{idp}/chain/activate", &["POST"]),
    ("/tenants/{tenant}/idps/{idp}/chain/preview", &["POST"]),
    ("/tenants/{tenant}/idps/{idp}/chain/try", &["POST"]),
    ("/tenants/{tenant}/idps/{idp}/chain/shadow", &["GET", "PUT"]),
    ("/tenants/{tenant}/idps/{idp}/reapply", &["GET", "POST"]),
    ("/tenants/{tenant}/idps/{idp}/drift", &["GET"]),
    ("/tenants/{tenant}/audit", &["GET"]),
    ("/tenants/{tenant}/explain/{user}", &["GET"]),
    ("/tenants/{tenant}/directory/{user}", &["GET", "PATCH"]),
    ("/tenants/{tenant}/held", &["GET"]),
    ("/tenants/{tenant}/held/{id}/{decision}", &["POST"]),
    ("/tenants/{tenant}/targets", &["GET", "POST"]),
    ("/tenants/{tenant}/targets/{target}", &["GET", "PATCH", "DELETE"]),
    ("/tenants/{tenant}/targets/{target}/sync", &["POST"]),
    ("/tenants/{tenant}/targets/{target}/rotate-secret", &["POST"]),
    ("/tenants/{tenant}/targets/{target}/dead-letters", &["GET"]),
    ("/tenants/{tenant}/targets/{target}/dead-letters/{decision}", &["POST"]),
    ("/tenants/{tenant}/targets/{target}/shape", &["GET", "POST"]),
    ("/tenants/{tenant}/targets/{target}/shape/activate", &["POST"]),
    ("/tenants/{tenant}/targets/{target}/shape/preview", &["POST"]),
    ("/tenants/{tenant}/targets/{target}/shape/explain", &["GET"]),
];

/// The OpenAPI 3.1 description of the admin API (served at `/admin/v1/openapi.json`).
pub const OPENAPI: &str = include_str!("openapi.json");

fn handler(path: &str, method: &str) -> Option<MethodRouter<Arc<AppState>>> {
    Some(match (path, method) {
        ("/tenants", "GET") => get(tenants::list),
        ("/tenants", "POST") => post(tenants::create),
        ("/tenants/{tenant}/idps", "GET") => get(tenants::list_idps),
        ("/tenants/{tenant}/idps", "POST") => post(tenants::create_idp),
        ("/tenants/{tenant}/idps/{idp}", "GET") => get(tenants::get_idp),
        ("/tenants/{tenant}/idps/{idp}", "PATCH") => patch(tenants::update_idp),
        ("/tenants/{tenant}/idps/{idp}/rotate-token", "POST") => post(tenants::rotate_token),
        ("/tenants/{tenant}/tokens", "POST") => post(tenants::create_token),
        ("/tenants/{tenant}/plugins", "GET") => get(rules::list_plugins),
        ("/tenants/{tenant}/plugins", "POST") => post(rules::add_plugin),
        ("/tenants/{tenant}/plugins/builtins", "GET") => get(rules::builtins),
        ("/tenants/{tenant}/idps/{idp}/chain", "GET") => get(rules::chain),
        ("/tenants/{tenant}/idps/{idp}/chain", "POST") => post(rules::set_chain),
        ("/tenants/{tenant}/idps/{idp}/chain/activate", "POST") => post(rules::activate),
        ("/tenants/{tenant}/idps/{idp}/chain/preview", "POST") => post(rules::preview),
        ("/tenants/{tenant}/idps/{idp}/chain/try", "POST") => post(rules::try_chain),
        ("/tenants/{tenant}/idps/{idp}/chain/shadow", "GET") => get(rules::shadow_report),
        ("/tenants/{tenant}/idps/{idp}/chain/shadow", "PUT") => put(rules::set_shadow),
        ("/tenants/{tenant}/idps/{idp}/reapply", "GET") => get(rules::reapply_status),
        ("/tenants/{tenant}/idps/{idp}/reapply", "POST") => post(rules::start_reapply),
        ("/tenants/{tenant}/idps/{idp}/drift", "GET") => get(records::drift),
        ("/tenants/{tenant}/audit", "GET") => get(records::audit),
        ("/tenants/{tenant}/explain/{user}", "GET") => get(records::explain),
        ("/tenants/{tenant}/directory/{user}", "GET") => get(records::explain),
        ("/tenants/{tenant}/directory/{user}", "PATCH") => patch(records::local_change),
        ("/tenants/{tenant}/held", "GET") => get(records::held),
        ("/tenants/{tenant}/held/{id}/{decision}", "POST") => post(records::decide),
        ("/tenants/{tenant}/targets", "GET") => get(targets::list),
        ("/tenants/{tenant}/targets", "POST") => post(targets::create),
        ("/tenants/{tenant}/targets/{target}", "GET") => get(targets::get),
        ("/tenants/{tenant}/targets/{target}", "PATCH") => patch(targets::update),
        ("/tenants/{tenant}/targets/{target}", "DELETE") => delete(targets::remove),
        ("/tenants/{tenant}/targets/{target}/sync", "POST") => post(targets::sync),
        ("/tenants/{tenant}/targets/{target}/rotate-secret", "POST") => post(targets::rotate),
        ("/tenants/{tenant}/targets/{target}/dead-letters", "GET") => get(targets::dead_letters),
        ("/tenants/{tenant}/targets/{target}/dead-letters/{decision}", "POST") => post(targets::decide),
        ("/tenants/{tenant}/targets/{target}/shape", "GET") => get(targets::shape_history),
        ("/tenants/{tenant}/targets/{target}/shape", "POST") => post(targets::set_shape),
        ("/tenants/{tenant}/targets/{target}/shape/activate", "POST") => post(targets::activate_shape),
        ("/tenants/{tenant}/targets/{target}/shape/preview", "POST") => post(targets::preview_shape),
        ("/tenants/{tenant}/targets/{target}/shape/explain", "GET") => get(targets::explain_shape),
        _ => return None,
    })
}

/// The admin API's router.
pub fn router() -> Router<Arc<AppState>> {
    let r = Router::new().route(
        "/openapi.json",
        get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
    );
    routes(r, ROUTES, handler).fallback(|| async { ApiError::not_found("no such admin endpoint") })
}

/// Adds a route table to `r`: each path with the handlers `handler` gives for its methods.
pub fn routes(
    mut r: Router<Arc<AppState>>,
    table: &[(&str, &[&str])],
    handler: fn(&str, &str) -> Option<MethodRouter<Arc<AppState>>>,
) -> Router<Arc<AppState>> {
    for (path, methods) in table {
        let mut mr = MethodRouter::new();
        for m in *methods {
            match handler(path, m) {
                Some(h) => mr = mr.merge(h),
                // A route in a table without a handler is a programming error caught by the
                // router test below; at run time it is simply not served.
                None => tracing::error!(path, method = m, "route without a handler"),
            }
        }
        r = r.route(path, mr);
    }
    r
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn every_route_has_a_handler_and_the_openapi_document_matches_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        // (server, path, method): a path item names its own server when it is not the admin API.
        let mut documented: Vec<(String, String, String)> = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            let server = item["servers"][0]["url"].as_str().or(doc["servers"][0]["url"].as_str()).unwrap().to_string();
            for method in item.as_object().unwrap().keys().filter(|k| *k != "parameters" && *k != "servers") {
                documented.push((server.clone(), path.clone(), method.to_uppercase()));
            }
        }
        let table = |server: &str, routes: &[(&str, &[&str])]| -> Vec<(String, String, String)> {
            routes.iter().flat_map(|(p, ms)| ms.iter().map(move |m| (server.to_string(), p.to_string(), m.to_string()))).collect::<Vec<_>>()
        };
        let mut routed = table("/admin/v1", ROUTES);
        routed.extend(table("/directory/v1", crate::http::directory::ROUTES));
        routed.push(("/admin/v1".into(), "/openapi.json".into(), "GET".into()));
        documented.sort();
        routed.sort();
        assert_eq!(documented, routed, "the OpenAPI document and the routes differ");
        for (p, ms) in ROUTES {
            for m in *ms {
                assert!(handler(p, m).is_some(), "{m} {p} has no handler");
            }
        }
        for (p, ms) in crate::http::directory::ROUTES {
            for m in *ms {
                assert!(crate::http::directory::handler(p, m).is_some(), "{m} /directory/v1{p} has no handler");
            }
        }
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap().iter().filter(|(k, _)| *k != "parameters" && *k != "servers") {
                assert!(op["summary"].as_str().is_some_and(|s| !s.is_empty()), "{method} {path} needs a summary");
                assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path} needs responses");
            }
        }
    }
}
