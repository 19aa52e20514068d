//! A peer for `mapwright-bench`: the Rust `scim-server` crate (0.5.3, crates.io) with its
//! in-memory storage, behind the smallest axum server that speaks the SCIM the load tool
//! sends: Users and Groups (POST, GET, PUT, PATCH, DELETE), `userName eq "…"` /
//! `displayName eq "…"` filters, a bearer token. Everything SCIM is the crate's; this file only
//! maps HTTP to its operation handler and back.
//!
//! It takes scim2-server's flags, so the load tool starts either the same way:
//!
//! ```sh
//! mapwright-bench-peer-rs --hostname 127.0.0.1 --port 8081 --bearer-token secret
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use scim_server::multi_tenant::ScimOperation;
use scim_server::operation_handler::{ScimOperationHandler, ScimOperationRequest, ScimOperationResponse, ScimOperationType, ScimQuery};
use scim_server::providers::StandardResourceProvider;
use scim_server::resource_handlers::{create_group_resource_handler, create_user_resource_handler};
use scim_server::storage::InMemoryStorage;
use scim_server::ScimServer;
use serde_json::{Value, json};

type Handler = ScimOperationHandler<StandardResourceProvider<InMemoryStorage>>;

struct App {
    handler: Handler,
    token: String,
}

const ALL: [ScimOperation; 7] = [ScimOperation::Create, ScimOperation::Read, ScimOperation::Update, ScimOperation::Patch, ScimOperation::Delete, ScimOperation::List, ScimOperation::Search];

fn server() -> Result<Handler, String> {
    let mut server = ScimServer::new(StandardResourceProvider::new(InMemoryStorage::new())).map_err(|e| e.to_string())?;
    let user = server.get_schema_by_id("urn:ietf:params:scim:schemas:core:2.0:User").ok_or("no User schema")?.clone();
    server.register_resource_type("User", create_user_resource_handler(user), ALL.to_vec()).map_err(|e| e.to_string())?;
    let group = server.get_schema_by_id("urn:ietf:params:scim:schemas:core:2.0:Group").ok_or("no Group schema")?.clone();
    server.register_resource_type("Group", create_group_resource_handler(group), ALL.to_vec()).map_err(|e| e.to_string())?;
    Ok(ScimOperationHandler::new(server))
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let port = arg("--port").unwrap_or_else(|| "8081".into());
    let token = arg("--bearer-token").ok_or("--bearer-token is required")?;
    // Loopback only: it is a benchmark fixture.
    let host: std::net::IpAddr = arg("--hostname").unwrap_or_else(|| "127.0.0.1".into()).parse().map_err(|e| format!("--hostname: {e}"))?;
    if !host.is_loopback() {
        return Err("--hostname must be a loopback address".into());
    }
    let app = Arc::new(App { handler: server()?, token });
    let router = Router::new()
        .route("/{kind}", get(list).post(create))
        .route("/{kind}/{id}", get(read).put(replace).patch(patch).delete(remove))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind((host, port.parse::<u16>().map_err(|e| e.to_string())?)).await.map_err(|e| e.to_string())?;
    axum::serve(listener, router).await.map_err(|e| e.to_string())
}

/// `Users` → `User`, `Groups` → `Group`.
fn resource_type(kind: &str) -> Option<&'static str> {
    match kind {
        "Users" => Some("User"),
        "Groups" => Some("Group"),
        _ => None,
    }
}

fn error(status: StatusCode, detail: &str) -> Response {
    let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": status.as_u16().to_string(), "detail": detail});
    (status, [(header::CONTENT_TYPE, "application/scim+json")], body.to_string()).into_response()
}

fn scim(status: StatusCode, body: Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/scim+json")], body.to_string()).into_response()
}

/// The handler's answer as HTTP: `ok` on success, the status its error code means otherwise.
fn answer(r: ScimOperationResponse, ok: StatusCode) -> Response {
    if r.success {
        return match ok {
            StatusCode::NO_CONTENT => ok.into_response(),
            _ => scim(ok, r.data.unwrap_or(Value::Null)),
        };
    }
    let status = match r.error_code.as_deref() {
        Some("RESOURCE_NOT_FOUND") => StatusCode::NOT_FOUND,
        Some("VALIDATION_ERROR" | "INVALID_REQUEST" | "SCHEMA_NOT_FOUND") => StatusCode::BAD_REQUEST,
        Some("UNSUPPORTED_RESOURCE_TYPE" | "UNSUPPORTED_OPERATION") => StatusCode::NOT_IMPLEMENTED,
        _ if r.error.as_deref().is_some_and(|e| e.contains("exists") || e.contains("uplicate")) => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, r.error.as_deref().unwrap_or("error"))
}

/// The bearer token, or the response refusing the request.
fn authorised(app: &App, headers: &HeaderMap) -> Result<(), Response> {
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if given == Some(app.token.as_str()) { Ok(()) } else { Err(error(StatusCode::UNAUTHORIZED, "bad token")) }
}

/// What one request asks of the handler, checked.
fn request(app: &App, headers: &HeaderMap, kind: &str) -> Result<&'static str, Response> {
    authorised(app, headers)?;
    resource_type(kind).ok_or_else(|| error(StatusCode::NOT_FOUND, "no such endpoint"))
}

fn body(bytes: &[u8]) -> Result<Value, Response> {
    serde_json::from_slice(bytes).map_err(|e| error(StatusCode::BAD_REQUEST, &e.to_string()))
}

async fn create(State(app): State<Arc<App>>, headers: HeaderMap, Path(kind): Path<String>, bytes: axum::body::Bytes) -> Response {
    let (rt, data) = match request(&app, &headers, &kind).and_then(|rt| Ok((rt, body(&bytes)?))) {
        Ok(v) => v,
        Err(r) => return r,
    };
    answer(app.handler.handle_operation(ScimOperationRequest::create(rt, data)).await, StatusCode::CREATED)
}

async fn read(State(app): State<Arc<App>>, headers: HeaderMap, Path((kind, id)): Path<(String, String)>) -> Response {
    match request(&app, &headers, &kind) {
        Ok(rt) => answer(app.handler.handle_operation(ScimOperationRequest::get(rt, id)).await, StatusCode::OK),
        Err(r) => r,
    }
}

async fn replace(State(app): State<Arc<App>>, headers: HeaderMap, Path((kind, id)): Path<(String, String)>, bytes: axum::body::Bytes) -> Response {
    let (rt, data) = match request(&app, &headers, &kind).and_then(|rt| Ok((rt, body(&bytes)?))) {
        Ok(v) => v,
        Err(r) => return r,
    };
    answer(app.handler.handle_operation(ScimOperationRequest::update(rt, id, data)).await, StatusCode::OK)
}

async fn patch(State(app): State<Arc<App>>, headers: HeaderMap, Path((kind, id)): Path<(String, String)>, bytes: axum::body::Bytes) -> Response {
    let (rt, data) = match request(&app, &headers, &kind).and_then(|rt| Ok((rt, body(&bytes)?))) {
        Ok(v) => v,
        Err(r) => return r,
    };
    // The crate has no builder for PATCH: the request by hand, the PatchOp body as its data.
    let mut req = ScimOperationRequest::get(rt, id);
    req.operation = ScimOperationType::Patch;
    req.data = Some(data);
    let ok = if rt == "Group" { StatusCode::NO_CONTENT } else { StatusCode::OK };
    answer(app.handler.handle_operation(req).await, ok)
}

async fn remove(State(app): State<Arc<App>>, headers: HeaderMap, Path((kind, id)): Path<(String, String)>) -> Response {
    match request(&app, &headers, &kind) {
        Ok(rt) => answer(app.handler.handle_operation(ScimOperationRequest::delete(rt, id)).await, StatusCode::NO_CONTENT),
        Err(r) => r,
    }
}

/// `GET /Users[?filter=attr eq "value"]`: a filter goes to the crate's attribute search (the
/// only filtering it offers), without one the crate's list.
async fn list(State(app): State<Arc<App>>, headers: HeaderMap, Path(kind): Path<String>, Query(q): Query<HashMap<String, String>>) -> Response {
    let rt = match request(&app, &headers, &kind) {
        Ok(rt) => rt,
        Err(r) => return r,
    };
    let req = match q.get("filter") {
        Some(f) => {
            let Some((attr, value)) = equality(f) else { return error(StatusCode::BAD_REQUEST, "only `attribute eq \"value\"` filters") };
            let mut req = ScimOperationRequest::list(rt);
            req.operation = ScimOperationType::Search;
            req.query = Some(ScimQuery {
                count: None,
                start_index: None,
                filter: None,
                attributes: None,
                excluded_attributes: None,
                search_attribute: Some(attr),
                search_value: Some(Value::String(value)),
            });
            req
        }
        None => ScimOperationRequest::list(rt),
    };
    let r = app.handler.handle_operation(req).await;
    if !r.success {
        return answer(r, StatusCode::OK);
    }
    let resources = match r.data {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    };
    scim(StatusCode::OK, json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": resources.len(), "startIndex": 1, "itemsPerPage": resources.len(), "Resources": resources,
    }))
}

/// `attr eq "value"` → (attr, value).
fn equality(filter: &str) -> Option<(String, String)> {
    let (attr, rest) = filter.trim().split_once(char::is_whitespace)?;
    let value = rest.trim_start().strip_prefix("eq")?.trim().strip_prefix('"')?.strip_suffix('"')?;
    Some((attr.to_string(), value.replace("\\\"", "\"")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equality_filters_only() {
        assert_eq!(equality(r#"userName eq "a@b.c""#), Some(("userName".into(), "a@b.c".into())));
        assert_eq!(equality(r#"userName  eq  "x""#), Some(("userName".into(), "x".into())));
        assert_eq!(equality(r#"userName co "x""#), None);
        assert_eq!(equality("userName eq x"), None);
    }
}
