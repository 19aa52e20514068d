//! Authentication of IdP connections, and the request scope every SCIM handler runs in.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Path};
use axum::http::header;
use axum::http::request::Parts;

use super::AppState;
use crate::http::response::ErrorReply;
use crate::model::{IdpConnection, Timestamp, TokenRecord};
use crate::scim::error::ScimError;
use crate::tokens;

/// How long a token record is trusted without re-reading it. Bounded so that a token
/// revoked or rotated from the CLI (another process) stops working within this time.
const CACHE_TTL: Duration = Duration::from_secs(2);

#[derive(Default)]
pub struct AuthCache {
    records: Mutex<HashMap<String, (TokenRecord, Instant)>>,
}

/// The authenticated IdP connection of a request and its SCIM base URL.
pub struct Scope {
    pub idp: IdpConnection,
    pub base: String,
    pub request_id: String,
}

impl Scope {
    /// The request as the service sees it.
    pub fn call(&self) -> crate::service::Call<'_> {
        crate::service::Call::new(&self.idp, &self.request_id)
    }
}

/// The token of an `Authorization: Bearer …` header (any case of the scheme).
pub(super) fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
}

async fn token_record(state: &AppState, id: &str) -> Result<Option<TokenRecord>, ScimError> {
    if let Ok(cache) = state.auth_cache.records.lock()
        && let Some((rec, at)) = cache.get(id)
        && at.elapsed() < CACHE_TTL
    {
        return Ok(Some(rec.clone()));
    }
    let rec = state.admin.connection_token(id).await.map_err(|e| {
        tracing::error!(error = %e, "token lookup failed");
        ScimError::internal("authentication is unavailable")
    })?;
    if let (Some(r), Ok(mut cache)) = (&rec, state.auth_cache.records.lock()) {
        // Bounded: past 10,000 tokens the expired ones go (they are read again anyway), and
        // only if that is not enough all of them. Clearing at once made a node with more
        // connections than that read every busy connection's token again.
        if cache.len() > 10_000 {
            cache.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
            if cache.len() > 10_000 {
                cache.clear();
            }
        }
        cache.insert(id.to_string(), (r.clone(), Instant::now()));
    }
    Ok(rec)
}

impl FromRequestParts<Arc<AppState>> for Scope {
    type Rejection = ErrorReply;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|_| ScimError::not_found("no such SCIM endpoint"))?;
        let (Some(tenant), Some(idp)) = (params.get("tenant"), params.get("idp")) else {
            return Err(ScimError::not_found("no such SCIM endpoint").into());
        };
        let Some((id, secret)) = bearer(&parts.headers).and_then(tokens::parse) else {
            return Err(ScimError::unauthorized().into());
        };
        let Some(rec) = token_record(state, id).await? else {
            return Err(ScimError::unauthorized().into());
        };
        let now = Timestamp::now();
        let valid = tokens::verify(secret, &rec.secret_hash)
            && rec.idp.tenant == *tenant
            && rec.idp.name == *idp
            && !rec.idp.disabled
            && rec.expires.as_ref().is_none_or(|e| *e > now);
        if !valid {
            return Err(ScimError::unauthorized().into());
        }
        if rec.idp.kind == crate::model::IdpKind::Signin {
            return Err(ScimError::new(403, None, format!("{}/{} is a sign-in connection: it takes sign-ins (POST /directory/v1/{}/signins), not SCIM", rec.idp.tenant, rec.idp.name, rec.idp.tenant)).into());
        }
        if let Some(who) = parts.extensions.get::<super::Authenticated>() {
            let _ = who.0.set((rec.idp.tenant.clone(), rec.idp.name.clone()));
        }
        let span = tracing::Span::current();
        span.record("tenant", rec.idp.tenant.as_str());
        span.record("idp", rec.idp.name.as_str());
        state.limiter.check(rec.idp.id, rec.idp.rate).map_err(ScimError::too_many_requests)?;
        let base = state.scim_base(&rec.idp);
        let request_id = parts.extensions.get::<super::RequestId>().map(|r| r.0.clone()).unwrap_or_default();
        Ok(Scope { idp: rec.idp, base, request_id })
    }
}
