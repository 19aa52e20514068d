//! What a target receives: its active shape version (a chain of shaping plugins) run over
//! each user and group on the way out, then the checks that keep the result a resource of
//! the directory. No rule may change a resource's `id` (it is restored), drop its `userName`
//! or `displayName`, or leave `schemas` naming extensions it no longer has (recomputed).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::client::Failure;
use crate::model::{Decision, Target};
use crate::plugins::PluginError;
use crate::plugins::chain::{Chain, ShapeKind, ShapeTarget};
use crate::scim::schema::{GROUP_SCHEMA, USER_SCHEMA};

/// A resource as a target receives it, and why it differs from the directory's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shaped {
    /// The resource sent.
    pub resource: Value,
    /// The rules that changed it, in order.
    pub decisions: Vec<Decision>,
}

/// Why a resource could not be shaped.
#[derive(Debug, thiserror::Error)]
pub enum ShapeError {
    /// A shaping plugin refused the resource, failed, or is suspended.
    #[error("shaping: {0}")]
    Plugin(#[from] PluginError),
    /// The shape rules returned something that is not a resource.
    #[error("shaping: the rules returned {0}")]
    Invalid(String),
}

impl ShapeError {
    /// As a delivery failure: a suspended plugin pauses the target like a busy one; anything
    /// else counts toward parking the event (a rule that refuses a resource refuses it every
    /// time: it waits, parked with the rule's reason, until the rules change).
    pub fn failure(self) -> Failure {
        match self {
            ShapeError::Plugin(PluginError::Suspended { retry_after, .. }) => Failure::Busy { retry_after: Some(Duration::from_secs(retry_after)), why: self.to_string() },
            other => Failure::Refused { answer: other.to_string() },
        }
    }
}

/// A target's shaping: nothing, or its active shape version.
#[derive(Clone)]
pub struct Shaper {
    chain: Option<Arc<Chain>>,
    version: Option<i64>,
    target: ShapeTarget,
}

/// The kind of resource shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A directory user.
    User,
    /// An application group.
    Group,
}

impl Shaper {
    /// No shaping: resources go out as the directory has them.
    pub fn none(target: &Target) -> Shaper {
        Shaper { chain: None, version: None, target: shape_target(target) }
    }

    /// Shaping by `chain`, stored as the target's version `version`.
    pub fn new(target: &Target, version: i64, chain: Chain) -> Shaper {
        Shaper { chain: Some(Arc::new(chain)), version: Some(version), target: shape_target(target) }
    }

    /// The shape version applied, if any.
    pub fn version(&self) -> Option<i64> {
        self.version
    }

    /// What the target receives of `resource`.
    pub async fn shape(&self, kind: Kind, resource: Value) -> Result<Shaped, ShapeError> {
        let Some(chain) = &self.chain else { return Ok(Shaped { resource, decisions: Vec::new() }) };
        let wit = match kind {
            Kind::User => ShapeKind::User,
            Kind::Group => ShapeKind::Group,
        };
        let (out, decisions) = chain.shape(&self.target, wit, resource.clone()).await?;
        Ok(Shaped { resource: settle(kind, &resource, out)?, decisions })
    }
}

fn shape_target(t: &Target) -> ShapeTarget {
    ShapeTarget { tenant: t.tenant.clone(), name: t.name.clone(), kind: t.kind.as_str().to_string() }
}

/// Restores what no rule may change and checks what every target needs.
pub fn settle(kind: Kind, input: &Value, out: Value) -> Result<Value, ShapeError> {
    let Value::Object(mut o) = out else { return Err(ShapeError::Invalid("something other than a JSON object".into())) };
    match input.get("id") {
        Some(id) => {
            o.insert("id".into(), id.clone());
        }
        None => {
            o.remove("id");
        }
    }
    let (name, core) = match kind {
        Kind::User => ("userName", USER_SCHEMA),
        Kind::Group => ("displayName", GROUP_SCHEMA),
    };
    match o.get(name).and_then(Value::as_str) {
        Some(s) if !s.trim().is_empty() => {}
        _ => return Err(ShapeError::Invalid(format!("a resource without {name}"))),
    }
    if input.get("schemas").is_some() {
        let extensions = o.keys().filter(|k| k.starts_with("urn:")).map(|k| Value::from(k.as_str()));
        let schemas: Vec<Value> = std::iter::once(Value::from(core)).chain(extensions).collect();
        o.insert("schemas".into(), Value::Array(schemas));
    }
    Ok(Value::Object(o))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    #[test]
    fn the_id_is_restored_and_schemas_follow_the_extensions_sent() {
        let input = json!({"schemas": [USER_SCHEMA, ENTERPRISE], "id": "u1", "userName": "jdoe", ENTERPRISE: {"department": "R&D"}});
        let out = settle(Kind::User, &input, json!({"schemas": [USER_SCHEMA, ENTERPRISE], "id": "other", "userName": "jdoe", "userType": "Employee"})).unwrap();
        assert_eq!(out, json!({"schemas": [USER_SCHEMA], "id": "u1", "userName": "jdoe", "userType": "Employee"}));
        // A body sent to a SCIM target has no id: a rule cannot add one.
        let out = settle(Kind::User, &json!({"userName": "a"}), json!({"userName": "a", "id": "x"})).unwrap();
        assert_eq!(out, json!({"userName": "a"}));
    }

    #[test]
    fn a_resource_without_its_name_or_not_an_object_is_refused() {
        let e = settle(Kind::Group, &json!({"displayName": "g"}), json!({"displayName": " "})).unwrap_err();
        assert_eq!(e.to_string(), "shaping: the rules returned a resource without displayName");
        assert!(settle(Kind::User, &json!({"userName": "a"}), json!(["a"])).is_err());
        assert!(matches!(e.failure(), Failure::Refused { .. }));
        let suspended = ShapeError::Plugin(PluginError::Suspended { plugin: "p".into(), retry_after: 3 });
        assert!(matches!(suspended.failure(), Failure::Busy { retry_after: Some(d), .. } if d == Duration::from_secs(3)));
    }
}
