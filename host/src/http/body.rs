//! The request body extractor: size-limited (413), JSON (400 invalidSyntax), and accepting
//! both `application/scim+json` and `application/json`.

use std::sync::Arc;

use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde_json::Value;

use super::AppState;
use crate::http::response::ErrorReply;
use crate::scim::error::ScimError;

/// Bodies up to this many times the limit are read to the end before the 413 is sent.
const DRAIN_FACTOR: usize = 4;

pub struct ScimBody(pub Value);

impl FromRequest<Arc<AppState>> for ScimBody {
    type Rejection = ErrorReply;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let limit = state.body_limit;
        let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > limit) {
            // Read (and drop) a bounded amount so the client, still sending, sees the 413
            // rather than a reset connection.
            if declared.is_some_and(|n| n <= limit.saturating_mul(DRAIN_FACTOR)) {
                let _ = axum::body::to_bytes(req.into_body(), limit.saturating_mul(DRAIN_FACTOR)).await;
            }
            return Err(ScimError::payload_too_large(limit).into());
        }
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
            let mime = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
            if !(mime.is_empty() || mime == "application/scim+json" || mime == "application/json" || mime.ends_with("+json")) {
                return Err(ScimError::new(415, None, format!("unsupported content type '{mime}'; send application/scim+json")).into());
            }
        }
        let bytes = axum::body::to_bytes(req.into_body(), limit).await.map_err(|_| ScimError::payload_too_large(limit))?;
        if bytes.is_empty() {
            return Err(ScimError::invalid_syntax("the request needs a JSON body").into());
        }
        serde_json::from_slice(&bytes).map(ScimBody).map_err(|e| ScimError::invalid_syntax(format!("the body is not valid JSON: {e}"))).map_err(ErrorReply)
    }
}
