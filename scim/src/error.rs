//! RFC 7644 §3.12 errors: every failure a client can see is one of these.

use serde_json::{Value, json};

/// The `scimType` values of RFC 7644 §3.12 (table 9) that this server emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimType {
    InvalidFilter,
    TooMany,
    Uniqueness,
    Mutability,
    InvalidSyntax,
    InvalidPath,
    NoTarget,
    InvalidValue,
    InvalidVers,
    Sensitive,
}

impl ScimType {
    pub fn as_str(self) -> &'static str {
        match self {
            ScimType::InvalidFilter => "invalidFilter",
            ScimType::TooMany => "tooMany",
            ScimType::Uniqueness => "uniqueness",
            ScimType::Mutability => "mutability",
            ScimType::InvalidSyntax => "invalidSyntax",
            ScimType::InvalidPath => "invalidPath",
            ScimType::NoTarget => "noTarget",
            ScimType::InvalidValue => "invalidValue",
            ScimType::InvalidVers => "invalidVers",
            ScimType::Sensitive => "sensitive",
        }
    }
}

/// A SCIM error: an HTTP status, an optional `scimType` and a human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {}: {detail}", scim_type.map(ScimType::as_str).unwrap_or("-"))]
pub struct ScimError {
    pub status: u16,
    pub scim_type: Option<ScimType>,
    pub detail: String,
    /// Seconds a client should wait before retrying (429 and 503 only).
    pub retry_after: Option<u64>,
}

impl ScimError {
    pub fn new(status: u16, scim_type: Option<ScimType>, detail: impl Into<String>) -> Self {
        ScimError { status, scim_type, detail: detail.into(), retry_after: None }
    }
    pub fn bad_request(t: ScimType, detail: impl Into<String>) -> Self {
        Self::new(400, Some(t), detail)
    }
    pub fn invalid_filter(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidFilter, detail)
    }
    pub fn invalid_syntax(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidSyntax, detail)
    }
    pub fn invalid_path(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidPath, detail)
    }
    pub fn invalid_value(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidValue, detail)
    }
    pub fn no_target(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::NoTarget, detail)
    }
    pub fn mutability(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::Mutability, detail)
    }
    pub fn uniqueness(detail: impl Into<String>) -> Self {
        Self::new(409, Some(ScimType::Uniqueness), detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(404, None, detail)
    }
    pub fn unauthorized() -> Self {
        Self::new(401, None, "a valid bearer token for this IdP connection is required")
    }
    pub fn precondition_failed() -> Self {
        Self::new(412, None, "the resource has changed: If-Match does not match its current version")
    }
    pub fn too_many_requests(retry_after: u64) -> Self {
        ScimError { retry_after: Some(retry_after), ..Self::new(429, None, "rate limit exceeded for this IdP connection") }
    }
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(413, None, format!("request body exceeds the limit of {limit} bytes"))
    }
    pub fn method_not_allowed() -> Self {
        Self::new(405, None, "method not allowed on this endpoint")
    }
    /// 503 with `Retry-After`: try again later (IdPs retry these).
    pub fn unavailable(detail: impl Into<String>, retry_after: u64) -> Self {
        ScimError { retry_after: Some(retry_after), ..Self::new(503, None, detail) }
    }
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(500, None, detail)
    }

    /// The RFC 7644 §3.12 JSON body.
    pub fn body(&self) -> Value {
        let mut v = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let (Some(t), Some(obj)) = (self.scim_type, v.as_object_mut()) {
            obj.insert("scimType".into(), Value::from(t.as_str()));
        }
        v
    }
}

pub type ScimResult<T> = Result<T, ScimError>;
