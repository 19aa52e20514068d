//! Where SCIM service providers differ, in one place (as the IdP dialects are on the way in):
//! how a target takes updates, what removing a user means there, and how a resource it
//! already had is compared with what Mapwright would send.

use serde_json::{Map, Value};

use crate::model::{DeletePolicy, Target, UpdateMode};

/// The switches of one SCIM target, from its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScimQuirks {
    /// PATCH deltas, or PUT of the whole user.
    pub update: UpdateMode,
    /// Deactivate or delete a user the directory no longer has.
    pub delete: DeletePolicy,
}

impl ScimQuirks {
    /// The quirks a target's settings ask for.
    pub fn for_target(t: &Target) -> ScimQuirks {
        ScimQuirks { update: t.settings.update, delete: t.settings.delete }
    }

    /// What an existing target resource amounts to when Mapwright takes it over: the
    /// attributes Mapwright would send, as the target has them. Attributes Mapwright does not
    /// send (the target's `id`, `meta`, `groups`, its own extras) are left out, so making it
    /// match never removes them.
    pub fn comparable(&self, existing: &Value, body: &Value) -> Value {
        let keys: Vec<&String> = body.as_object().map(|o| o.keys().collect()).unwrap_or_default();
        let out: Map<String, Value> = existing.as_object().into_iter().flatten().filter(|(k, _)| keys.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_adopted_resource_is_compared_on_what_would_be_sent_only() {
        let q = ScimQuirks { update: UpdateMode::Patch, delete: DeletePolicy::Deactivate };
        let existing = json!({"id": "7", "userName": "jdoe", "title": "Old", "meta": {"version": "1"}, "x-local": 1});
        let body = json!({"userName": "jdoe", "title": "New", "active": true});
        assert_eq!(q.comparable(&existing, &body), json!({"userName": "jdoe", "title": "Old"}));
    }
}
