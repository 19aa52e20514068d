//! The HTTP surface: routing, authentication, rate limiting, request ids and SCIM responses.
//! Handlers only translate between HTTP and [`crate::service`].

pub mod admin;
mod auth;
mod body;
mod console;
pub mod directory;
mod discovery;
pub mod ratelimit;
mod resources;
pub mod response;
pub mod tls;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tracing::Instrument;

use crate::model::IdpConnection;
use crate::scim::error::ScimError;
use crate::scim::schema::ResourceKind;
use crate::service::Service;
use crate::service::admin::AdminService;
use crate::service::directory::DirectoryReader;
use crate::store::SqlStore;
use response::ErrorReply;

/// The store backend the server runs on.
pub type AppStore = SqlStore;

/// What every handler shares: the services, and the HTTP layer's own state.
pub struct AppState {
    /// Provisioning: one operation per SCIM request.
    pub service: Service<AppStore>,
    /// Tenants, connections, tokens and records.
    pub admin: AdminService<AppStore>,
    /// The application's reads of the directory.
    pub directory: DirectoryReader<AppStore>,
    /// Per-connection request rates.
    pub limiter: ratelimit::RateLimiter,
    /// Recently checked connection tokens.
    pub auth_cache: auth::AuthCache,
    /// Scheme, host and port clients reach the server at (no trailing slash).
    pub public_url: String,
    /// The largest request body accepted, in bytes.
    pub body_limit: usize,
    /// The rule lifecycle (plugins, chain versions) for the admin API.
    pub rules: Option<Arc<crate::service::rules::RuleManager<AppStore>>>,
    /// Delivery targets for the admin API (and the engine that runs them).
    pub delivery: Option<Arc<crate::service::delivery::DeliveryService<AppStore>>>,
    /// Turns true when the server starts draining: long polls answer at once.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// The database the store runs on (`/readyz` names it).
    pub backend: crate::store::Backend,
}

impl AppState {
    /// The SCIM base URL of a connection, as clients reach this server.
    pub fn scim_base(&self, idp: &IdpConnection) -> String {
        format!("{}/scim/v2/{}/{}", self.public_url, idp.tenant, idp.name)
    }
}

macro_rules! kind_routes {
    ($kind:expr) => {{
        use ResourceKind as K;
        let k: K = $kind;
        Router::new()
            .route(
                "/",
                get(move |s, sc, q| resources::list(k, s, sc, q)).post(move |s, sc, q, b| resources::create(k, s, sc, q, b)),
            )
            .route("/.search", post(move |s, sc, b| resources::search(k, s, sc, b)))
            .route(
                "/{id}",
                get(move |s, sc, p, q| resources::get_one(k, s, sc, p, q))
                    .put(move |s, sc, p, q, h, b| resources::replace(k, s, sc, p, q, h, b))
                    .patch(move |s, sc, p, q, h, b| resources::patch(k, s, sc, p, q, h, b))
                    .delete(move |s, sc, p, h| resources::delete(k, s, sc, p, h)),
            )
    }};
}

/// Every route of the server.
pub fn router(state: Arc<AppState>) -> Router {
    let scim = Router::new()
        .nest("/Users", kind_routes!(ResourceKind::User))
        .nest("/Groups", kind_routes!(ResourceKind::Group))
        .route("/.search", post(resources::search_all))
        .route("/ServiceProviderConfig", get(discovery::service_provider_config))
        .route("/Schemas", get(discovery::schemas))
        .route("/Schemas/{id}", get(discovery::schemas))
        .route("/ResourceTypes", get(discovery::resource_types))
        .route("/ResourceTypes/{id}", get(discovery::resource_types))
        .route("/Bulk", post(|| async { ErrorReply(ScimError::new(501, None, "bulk operations are not supported")) }))
        .method_not_allowed_fallback(|| async { ErrorReply(ScimError::method_not_allowed()) });
    // Plugin uploads are components of up to a few MiB.
    let admin = admin::router().layer(axum::extract::DefaultBodyLimit::max(32 << 20));
    Router::new()
        .nest("/scim/v2/{tenant}/{idp}", scim)
        .nest("/admin/v1", admin)
        .nest("/directory/v1", directory::router())
        .merge(console::router())
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/readyz", get(readyz))
        .fallback(|| async { ErrorReply(ScimError::not_found("no such endpoint")) })
        .layer(middleware::from_fn(request_context))
        .with_state(state)
}

/// Prometheus metrics, for a global admin token (labels name tenants and connections).
async fn metrics(State(state): State<Arc<AppState>>, admin: admin::Admin) -> Result<Response, admin::ApiError> {
    admin.require_global()?;
    let m = crate::metrics::get();
    if let Some(rules) = &state.rules {
        for idp in state.admin.connections(None).await? {
            let v = rules.registry().version_of(idp.id).unwrap_or(0);
            m.active_chain.get_or_create(&[("tenant", idp.tenant.clone()), ("idp", idp.name.clone())]).set(v);
        }
    }
    if let Some(delivery) = &state.delivery {
        for (t, events, seconds) in delivery.lags().await? {
            let labels = [("tenant", t.tenant.clone()), ("target", t.name.clone())];
            m.delivery_lag_events.get_or_create(&labels).set(events as i64);
            m.delivery_lag_seconds.get_or_create(&labels).set(seconds as i64);
        }
    }
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], m.render()).into_response())
}

/// Ready when the store answers and every connection's active rules are loaded as stored.
/// A connection whose rules failed to load is reported (`degraded`, still 200): failing the
/// whole instance would take every tenant off a load balancer for one tenant's plugin; its
/// own writes fail with 500 naming the reason. `pending` lists activations not picked up yet.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let active = async {
        match &state.rules {
            Some(rules) => rules.records().active_versions().await.map_err(|e| e.to_string()),
            None => Ok(Vec::new()),
        }
    };
    let (idps, active) = match tokio::try_join!(async { state.admin.connections(None).await.map_err(|e| e.to_string()) }, active) {
        Ok(both) => both,
        Err(e) => {
            tracing::error!(error = %e, "readiness check failed");
            return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({"status": "unavailable", "store": {"status": "failed", "backend": state.backend.name()}}))).into_response();
        }
    };
    let (mut unavailable, mut pending, mut loaded) = (Vec::new(), Vec::new(), 0);
    if let Some(rules) = &state.rules {
        let name = |id: i64| idps.iter().find(|i| i.id == id).map(|i| format!("{}/{}", i.tenant, i.name)).unwrap_or_else(|| id.to_string());
        for v in &active {
            if let Some(reason) = rules.registry().unavailable(v.idp_id) {
                unavailable.push(serde_json::json!({"connection": name(v.idp_id), "version": v.number, "reason": reason}));
            } else if rules.registry().version_of(v.idp_id) == Some(v.number) {
                loaded += 1;
            } else {
                pending.push(serde_json::json!({"connection": name(v.idp_id), "version": v.number}));
            }
        }
    }
    let status = if unavailable.is_empty() { "ready" } else { "degraded" };
    axum::Json(serde_json::json!({
        "status": status,
        "store": {"status": "ok", "backend": state.backend.name()},
        "chains": {"loaded": loaded, "unavailable": unavailable, "pending": pending},
    }))
    .into_response()
}

/// A request id (the client's `X-Request-Id` if it is sane, else a new one), a span with the
/// tenant and IdP once authenticated, and one access-log line. Never the token.
/// The request id, for handlers (recorded with every change a request makes).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Filled by authentication with the request's (tenant, IdP connection), so the request is
/// counted under a connection that exists, never under names a client made up.
#[derive(Debug, Clone, Default)]
pub struct Authenticated(pub Arc<std::sync::OnceLock<(String, String)>>);

async fn request_context(mut req: Request, next: Next) -> Response {
    let incoming = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .map(str::to_string);
    let request_id = incoming.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %req.method(),
        path = %req.uri().path(),
        tenant = tracing::field::Empty,
        idp = tracing::field::Empty,
    );
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let who = Authenticated::default();
    req.extensions_mut().insert(who.clone());
    let method = req.method().as_str().to_string();
    let started = Instant::now();
    let scim_path = req.uri().path().starts_with("/scim/");
    async move {
        let mut resp = next.run(req).await;
        if scim_path {
            resp = ensure_scim_error_body(resp).await;
        }
        let status = resp.status().as_u16();
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        if let Some((tenant, idp)) = who.0.get() {
            crate::metrics::get().request(tenant, idp, &method, status, ms / 1000.0);
        }
        if status >= 500 {
            tracing::warn!(status, latency_ms = ms, "request failed");
        } else {
            tracing::info!(status, latency_ms = ms, "request");
        }
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert("x-request-id", v);
        }
        resp
    }
    .instrument(span)
    .await
}

/// Every error under `/scim/` is an RFC 7644 body, including rejections produced by the
/// framework rather than our handlers (malformed requests it refuses before they reach us).
async fn ensure_scim_error_body(resp: Response) -> Response {
    let status = resp.status();
    let is_scim = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/scim+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_scim {
        return resp;
    }
    let headers = resp.headers().clone();
    let text = axum::body::to_bytes(resp.into_body(), 16 * 1024).await.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let detail = if text.trim().is_empty() { status.canonical_reason().unwrap_or("request failed").to_string() } else { text };
    let mut fixed = ErrorReply(ScimError::new(status.as_u16(), None, detail)).into_response();
    for (k, v) in headers.iter().filter(|(k, _)| *k != axum::http::header::CONTENT_TYPE && *k != axum::http::header::CONTENT_LENGTH) {
        fixed.headers_mut().insert(k.clone(), v.clone());
    }
    fixed
}

/// Sends each write at once: a response written in more than one part must not wait for the
/// client's acknowledgement of the first (Nagle's algorithm against a delayed ACK: up to 40 ms).
pub(crate) fn no_delay(stream: &tokio::net::TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY not set");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[tokio::test]
    async fn framework_errors_become_scim_bodies() {
        let plain = (StatusCode::BAD_REQUEST, [("x-keep", "1")], "Failed to deserialize query string").into_response();
        let fixed = ensure_scim_error_body(plain).await;
        assert_eq!(fixed.status(), StatusCode::BAD_REQUEST);
        assert_eq!(fixed.headers()["x-keep"], "1");
        assert!(fixed.headers()["content-type"].to_str().unwrap().starts_with("application/scim+json"));
        let body = axum::body::to_bytes(fixed.into_body(), 1 << 16).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!((v["status"].as_str(), v["detail"].as_str()), (Some("400"), Some("Failed to deserialize query string")));
        let ok = ensure_scim_error_body((StatusCode::OK, "fine").into_response()).await;
        assert_eq!(axum::body::to_bytes(ok.into_body(), 64).await.unwrap(), "fine");
    }
}
