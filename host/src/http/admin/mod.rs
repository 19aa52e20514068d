//! The admin API (`/admin/v1`, JSON): tenants and IdP connections, plugins and chain
//! versions, preview and re-apply, held operations, drift, audit and explain.
//!
//! Authenticated with admin tokens (`mwa_…`, hashed at rest, never an IdP token). A token is
//! global or scoped to one tenant; a scoped token reaches only that tenant's resources and
//! none of the server-wide endpoints. Errors are `{"error": {"status", "message"}}`.

mod records;
mod rules;
mod tenants;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::json;

use super::AppState;
use crate::service::rules::RulesError;
use crate::store::{IdpConnection, Store, StoreError, Tenant};
use crate::tokens;

/// An admin API error: a status and a message for people.
#[derive(Debug)]
pub struct AdminError {
    pub status: StatusCode,
    pub message: String,
}

impl AdminError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> AdminError {
        AdminError { status, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> AdminError {
        AdminError::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> AdminError {
        AdminError::new(StatusCode::NOT_FOUND, message)
    }
    fn forbidden() -> AdminError {
        AdminError::new(StatusCode::FORBIDDEN, "this admin token is scoped to another tenant, or the endpoint needs a global admin token")
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(json!({"error": {"status": self.status.as_u16(), "message": self.message}}))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer realm=\"mapwright-admin\""));
        }
        r
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => AdminError::not_found("not found"),
            StoreError::Conflict(m) => AdminError::new(StatusCode::CONFLICT, m),
            StoreError::InvalidReference(m) => AdminError::bad_request(m),
            StoreError::VersionMismatch => AdminError::new(StatusCode::CONFLICT, "changed concurrently; retry"),
            StoreError::Backend(m) => {
                tracing::error!(error = %m, "store failure in the admin API");
                AdminError::new(StatusCode::INTERNAL_SERVER_ERROR, "the store failed")
            }
        }
    }
}

impl From<RulesError> for AdminError {
    fn from(e: RulesError) -> Self {
        match e {
            RulesError::Plugin(p) => AdminError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("refused: {p}")),
            RulesError::NotFound(m) => AdminError::not_found(m),
            RulesError::Store(s) => s.into(),
        }
    }
}

impl From<crate::scim::error::ScimError> for AdminError {
    fn from(e: crate::scim::error::ScimError) -> Self {
        AdminError::new(StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), e.detail)
    }
}

pub type AdminResult<T> = Result<T, AdminError>;

/// The authenticated admin: global, or scoped to one tenant.
pub struct Admin {
    pub name: String,
    pub scope: Option<Tenant>,
}

impl Admin {
    /// `admin:<token name>`, as recorded in the audit trail.
    pub fn actor(&self) -> String {
        format!("admin:{}", self.name)
    }

    fn require_global(&self) -> AdminResult<()> {
        if self.scope.is_some() { Err(AdminError::forbidden()) } else { Ok(()) }
    }

    /// The tenant named in the path, if this admin may reach it.
    async fn tenant(&self, state: &AppState, name: &str) -> AdminResult<Tenant> {
        if let Some(t) = &self.scope {
            return if t.name == name { Ok(t.clone()) } else { Err(AdminError::forbidden()) };
        }
        state.service.store().list_tenants().await?.into_iter().find(|t| t.name == name).ok_or_else(|| AdminError::not_found(format!("no tenant '{name}'")))
    }

    /// A connection of a tenant this admin may reach.
    async fn idp(&self, state: &AppState, tenant: &str, idp: &str) -> AdminResult<IdpConnection> {
        self.tenant(state, tenant).await?;
        state.service.store().find_idp(tenant, idp).await?.ok_or_else(|| AdminError::not_found(format!("no IdP connection '{tenant}/{idp}'")))
    }
}

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let unauthorized = || AdminError::new(StatusCode::UNAUTHORIZED, "an admin bearer token is required");
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim());
        let (id, secret) = presented.and_then(tokens::parse_admin).ok_or_else(unauthorized)?;
        let rec = state.service.store().find_admin_token(id).await?.ok_or_else(unauthorized)?;
        if !tokens::verify(secret, &rec.secret_hash) {
            return Err(unauthorized());
        }
        tracing::Span::current().record("tenant", rec.tenant.as_ref().map(|t| t.name.as_str()).unwrap_or("*"));
        Ok(Admin { name: rec.name, scope: rec.tenant })
    }
}

/// Path parameters of the admin routes.
pub type Params = Path<HashMap<String, String>>;

pub fn param<'a>(p: &'a Params, name: &str) -> AdminResult<&'a str> {
    p.get(name).map(String::as_str).ok_or_else(|| AdminError::bad_request(format!("missing {name}")))
}

pub fn router() -> Router<Arc<AppState>> {
    let idp = "/tenants/{tenant}/idps/{idp}";
    Router::new()
        .route("/tenants", get(tenants::list).post(tenants::create))
        .route("/tenants/{tenant}/idps", get(tenants::list_idps).post(tenants::create_idp))
        .route(idp, get(tenants::get_idp).patch(tenants::update_idp))
        .route(&format!("{idp}/rotate-token"), post(tenants::rotate_token))
        .route("/tenants/{tenant}/plugins", get(rules::list_plugins).post(rules::add_plugin))
        .route(&format!("{idp}/chain"), get(rules::chain).post(rules::set_chain))
        .route(&format!("{idp}/chain/activate"), post(rules::activate))
        .route(&format!("{idp}/chain/preview"), post(rules::preview))
        .route(&format!("{idp}/chain/shadow"), put(rules::set_shadow).get(rules::shadow_report))
        .route(&format!("{idp}/reapply"), get(rules::reapply_status).post(rules::start_reapply))
        .route(&format!("{idp}/drift"), get(records::drift))
        .route("/tenants/{tenant}/audit", get(records::audit))
        .route("/tenants/{tenant}/explain/{user}", get(records::explain))
        .route("/tenants/{tenant}/directory/{user}", get(records::explain).patch(records::local_change))
        .route("/tenants/{tenant}/held", get(records::held))
        .route("/tenants/{tenant}/held/{id}/{decision}", post(records::decide))
        .fallback(|| async { AdminError::not_found("no such admin endpoint") })
}
