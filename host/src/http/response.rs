//! SCIM responses: `application/scim+json` bodies, errors as RFC 7644 §3.12 bodies.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::scim::error::ScimError;
use crate::scim::resource::{Meta, render};
use crate::scim::schema::ResourceKind;
use crate::model::{StoredGroup, StoredUser};

/// The content type of every SCIM body.
pub const SCIM_JSON: &str = "application/scim+json; charset=utf-8";

/// A SCIM JSON response.
pub fn scim_json(status: StatusCode, body: &Value) -> Response {
    let mut r = (status, crate::scim::resource::json_text(body)).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    r
}

/// A SCIM error on its way out: the RFC 7644 §3.12 body with its status and headers.
/// (A wrapper because the error type belongs to the protocol crate, which knows no HTTP.)
#[derive(Debug)]
pub struct ErrorReply(pub ScimError);

impl From<ScimError> for ErrorReply {
    fn from(e: ScimError) -> Self {
        ErrorReply(e)
    }
}

/// What a SCIM handler returns.
pub type Reply = Result<Response, ErrorReply>;

impl IntoResponse for ErrorReply {
    fn into_response(self) -> Response {
        let ErrorReply(this) = self;
        let status = StatusCode::from_u16(this.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = scim_json(status, &this.body());
        let h = r.headers_mut();
        if this.status == 401 {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"mapwright\""));
        }
        if let Some(s) = this.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            h.insert(header::RETRY_AFTER, v);
        }
        r
    }
}

/// A single resource with its `ETag` (and `Location` on create).
pub fn resource(status: StatusCode, kind: ResourceKind, body: Value, meta: &Meta, base: &str) -> Response {
    let mut r = scim_json(status, &body);
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&meta.etag()) {
        h.insert(header::ETAG, v);
    }
    if status == StatusCode::CREATED
        && let Ok(v) = HeaderValue::from_str(&format!("{base}/{}/{}", kind.endpoint(), meta.id))
    {
        h.insert(header::LOCATION, v);
    }
    r.headers_mut().extend(h);
    r
}

/// An IdP user as SCIM clients see it (with `meta`).
pub fn render_user(u: &StoredUser, base: &str) -> Value {
    let mut body = Value::clone(&u.body);
    if let (Some(groups), Some(o)) = (&u.groups, body.as_object_mut())
        && !groups.is_empty()
    {
        let refs: Vec<Value> = groups
            .iter()
            .map(|g| json!({"value": g.value, "display": g.display, "$ref": format!("{base}/Groups/{}", g.value), "type": "direct"}))
            .collect();
        o.insert("groups".into(), Value::Array(refs));
    }
    render(ResourceKind::User, body, &u.meta, base)
}

/// An IdP group as SCIM clients see it (with `meta`).
pub fn render_group(g: &StoredGroup, base: &str) -> Value {
    let mut body = g.body.clone();
    if let (Some(members), Some(o)) = (&g.members, body.as_object_mut())
        && !members.is_empty()
    {
        let refs: Vec<Value> = members
            .iter()
            .map(|m| json!({"value": m.value, "$ref": format!("{base}/Users/{}", m.value), "type": "User"}))
            .collect();
        o.insert("members".into(), Value::Array(refs));
    }
    render(ResourceKind::Group, body, &g.meta, base)
}

/// A SCIM ListResponse.
pub fn list_response(total: usize, start_index: usize, resources: Vec<Value>) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}
