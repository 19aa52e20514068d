//! # shape: what a delivery target receives
//!
//! Put in a target's shape chain (`mapwright target shape set`), it shapes every user and
//! group on the way to that target. `users` and `groups` take the same steps, in this order,
//! each optional:
//!
//! 1. `allow`: the attributes sent; everything else is left out. `id`, `schemas`, `active` and
//!    `userName` (users) or `displayName` (groups) are always kept.
//! 2. `drop`: attributes never sent (say, an extension the application refuses).
//! 3. `rename`: `{ from = "to" }`, moving an attribute (`name.givenName`, an extension's
//!    attribute) to another name.
//! 4. `set`: fixed values, `{ userType = "Employee" }`, overwriting what is there.
//!
//! Groups also take `names`, `{ software_dev = "Developers" }` (the displayName the
//! application sees for a directory group), then `prefix`, prepended to every group name.
//!
//! An attribute is named as in SCIM filters: `emails`, `name.givenName`, or an extension's
//! attribute with its schema, `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department`.
//! A schema URN alone names the whole extension. Names match case-insensitively.
//!
//! `examples`: the rules' own tests, run before a shape version goes live (a version whose
//! examples fail is refused): `[{ kind = "user", resource = { userName = "jdoe", title = "x" },
//! expect = { userName = "jdoe" } }]`.
//!
//! ```json
//! {"users": {"allow": ["userName", "name", "emails"], "set": {"userType": "Employee"}},
//!  "groups": {"names": {"software_dev": "Developers"}}}
//! ```

use std::collections::BTreeMap;

use mapwright_plugin_sdk::{AttrPath, Hook, Map, Plugin, Rejection, ResourceType, Shaped, Target, Value};
use serde::Deserialize;

/// An attribute as configured (see [`AttrPath`]).
pub type Path = AttrPath;

/// The key of `map` equal to `name` ignoring case (SCIM attribute names are case-insensitive).
fn key_of(map: &Map<String, Value>, name: &str) -> Option<String> {
    map.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned()
}

fn take(root: &mut Map<String, Value>, p: &Path) -> Option<Value> {
    p.take(root)
}

fn put(root: &mut Map<String, Value>, p: &Path, v: Value) {
    p.put(root, v)
}

/// The steps for one kind of resource.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rules {
    /// Only these attributes are sent (besides those always kept).
    pub allow: Option<Vec<Path>>,
    /// These are never sent.
    pub drop: Vec<Path>,
    /// Attribute renames, from → to.
    pub rename: BTreeMap<String, Path>,
    /// Fixed values.
    pub set: BTreeMap<String, Value>,
    /// Groups only: directory group name → the application's.
    pub names: BTreeMap<String, String>,
    /// Groups only: prepended to every group name.
    pub prefix: String,
}

/// An example the configuration must satisfy: this resource is sent as `expect`, or (`reject`)
/// is held back.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    /// `user` or `group`.
    pub kind: Kind,
    /// What the directory has.
    pub resource: Value,
    /// What the target must receive.
    pub expect: Value,
}

/// `kind` of an example.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A user.
    User,
    /// A group.
    Group,
}

/// The plugin's configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// What users become.
    pub users: Rules,
    /// What groups become.
    pub groups: Rules,
    /// The self-test.
    pub examples: Vec<Example>,
}

/// Attributes no step may remove or rename: the resource would no longer be one.
fn essential(kind: ResourceType) -> &'static [&'static str] {
    match kind {
        ResourceType::User => &["id", "schemas", "userName", "active"],
        ResourceType::Group => &["id", "schemas", "displayName"],
    }
}

fn is_identity(kind: ResourceType, p: &Path) -> bool {
    let name = match kind {
        ResourceType::User => "userName",
        ResourceType::Group => "displayName",
    };
    p.schema.is_none() && p.attr.as_ref().is_some_and(|(a, sub)| sub.is_none() && (a.eq_ignore_ascii_case(name) || a.eq_ignore_ascii_case("id") || a.eq_ignore_ascii_case("schemas")))
}

impl Rules {
    fn check(&self, kind: ResourceType, what: &str) -> Result<(), String> {
        for p in &self.drop {
            if is_identity(kind, p) {
                return Err(format!("{what}.drop: '{p}' cannot be left out"));
            }
        }
        for (from, to) in &self.rename {
            let from = Path::parse(from).map_err(|e| format!("{what}.rename: {e}"))?;
            if is_identity(kind, &from) || is_identity(kind, to) {
                return Err(format!("{what}.rename: '{from}' → '{to}' would rename the resource's identity"));
            }
        }
        for path in self.set.keys() {
            let p = Path::parse(path).map_err(|e| format!("{what}.set: {e}"))?;
            if p.schema.is_none() && p.attr.as_ref().is_some_and(|(a, _)| a.eq_ignore_ascii_case("id") || a.eq_ignore_ascii_case("schemas")) {
                return Err(format!("{what}.set: '{p}' is the server's to set"));
            }
        }
        if kind == ResourceType::User && (!self.names.is_empty() || !self.prefix.is_empty()) {
            return Err("users: `names` and `prefix` are for groups".into());
        }
        Ok(())
    }

    fn apply(&self, kind: ResourceType, resource: Value) -> Result<Shaped, Rejection> {
        let Value::Object(mut o) = resource else { return Err(Rejection::new("shape", "the resource is not a JSON object")) };
        let mut why: Vec<(&str, String)> = Vec::new();
        if let Some(allow) = &self.allow {
            let mut kept = Map::new();
            for name in essential(kind) {
                if let Some(k) = key_of(&o, name)
                    && let Some(v) = o.remove(&k)
                {
                    kept.insert(k, v);
                }
            }
            for p in allow {
                if let Some(v) = take(&mut o, p) {
                    put(&mut kept, p, v);
                }
            }
            let mut left: Vec<String> = o.keys().cloned().collect();
            // Parts of an attribute kept in part (`name.familyName` without `name.givenName`).
            for p in allow.iter().filter(|p| p.attr.as_ref().is_some_and(|(_, sub)| sub.is_some()) || p.schema.is_some()) {
                if let Some(top) = p.top()
                    && let Some(k) = key_of(&o, top)
                    && let Some(rest) = o.get(&k).and_then(Value::as_object)
                {
                    left.retain(|l| *l != k);
                    left.extend(rest.keys().map(|r| format!("{k}.{r}")));
                }
            }
            if !left.is_empty() {
                left.sort();
                why.push(("shape.allow", format!("not sent: {}", left.join(", "))));
            }
            o = kept;
        }
        let mut dropped = Vec::new();
        for p in &self.drop {
            if take(&mut o, p).is_some() {
                dropped.push(p.to_string());
            }
        }
        if !dropped.is_empty() {
            why.push(("shape.drop", format!("not sent: {}", dropped.join(", "))));
        }
        for (from, to) in &self.rename {
            let Ok(from) = Path::parse(from) else { continue };
            if let Some(v) = take(&mut o, &from) {
                put(&mut o, to, v);
                why.push(("shape.rename", format!("{from} sent as {to}")));
            }
        }
        for (path, v) in &self.set {
            let Ok(p) = Path::parse(path) else { continue };
            let before = p.get(&o).cloned();
            if before.as_ref() != Some(v) {
                put(&mut o, &p, v.clone());
                why.push(("shape.set", format!("{p} = {v}")));
            }
        }
        if kind == ResourceType::Group
            && let Some(k) = key_of(&o, "displayName")
            && let Some(name) = o.get(&k).and_then(Value::as_str).map(str::to_string)
        {
            let mut shown = name.clone();
            if let Some(to) = self.names.iter().find(|(from, _)| from.eq_ignore_ascii_case(&name)).map(|(_, to)| to) {
                shown = to.clone();
            }
            shown = format!("{}{shown}", self.prefix);
            if shown != name {
                why.push(("shape.names", format!("group '{name}' sent as '{shown}'")));
                o.insert(k, Value::String(shown));
            }
        }
        let mut out = Shaped::new(Value::Object(o));
        for (rule, reason) in why {
            out = out.because(rule, reason);
        }
        Ok(out)
    }
}

/// The plugin.
pub struct Shape;

impl Plugin for Shape {
    type Config = Config;
    const NAME: &'static str = "shape";
    const HOOKS: &'static [Hook] = &[Hook::Shape];

    fn validate(c: &Config) -> Result<(), String> {
        c.users.check(ResourceType::User, "users")?;
        c.groups.check(ResourceType::Group, "groups")
    }

    fn self_test(c: &Config) -> Result<(), String> {
        for (i, ex) in c.examples.iter().enumerate() {
            let n = i + 1;
            let kind = match ex.kind {
                Kind::User => ResourceType::User,
                Kind::Group => ResourceType::Group,
            };
            match Self::shape(&Target::test(), c, kind, ex.resource.clone()) {
                Ok(s) if s.resource == ex.expect => {}
                Ok(s) => return Err(format!("example {n}: sent as {}, expected {}", s.resource, ex.expect)),
                Err(r) => return Err(format!("example {n}: held back ({}), expected {}", r.reason, ex.expect)),
            }
        }
        Ok(())
    }

    fn shape(_target: &Target, c: &Config, kind: ResourceType, resource: Value) -> Result<Shaped, Rejection> {
        match kind {
            ResourceType::User => c.users.apply(kind, resource),
            ResourceType::Group => c.groups.apply(kind, resource),
        }
    }
}

mapwright_plugin_sdk::export_plugin!(Shape);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use mapwright_plugin_sdk::{json, testing};

    const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    fn user() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
            "id": "u1", "userName": "jdoe", "active": true,
            "name": {"givenName": "Jane", "familyName": "Doe"},
            "emails": [{"value": "jane@acme.com", "primary": true}],
            "title": "Engineer",
            ENTERPRISE: {"department": "R&D", "employeeNumber": "42"}
        })
    }

    fn shape(config: &str, kind: ResourceType, r: Value) -> Result<Shaped, Rejection> {
        testing::shape::<Shape>(config, kind, &r.to_string())
    }

    #[test]
    fn an_allow_list_keeps_the_listed_and_the_essential_attributes() {
        let s = shape(r#"{"users": {"allow": ["name.givenName", "emails"]}}"#, ResourceType::User, user()).unwrap();
        assert_eq!(
            s.resource,
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE], "id": "u1", "userName": "jdoe", "active": true,
                   "name": {"givenName": "Jane"}, "emails": [{"value": "jane@acme.com", "primary": true}]})
        );
        assert_eq!(s.provenance.len(), 1);
        assert_eq!(s.provenance[0].rule, "shape.allow");
        assert_eq!(s.provenance[0].reason, format!("not sent: name.familyName, title, {ENTERPRISE}"));
    }

    #[test]
    fn drop_rename_and_set_apply_in_order_with_a_reason_each() {
        let config = json!({"users": {
            "drop": [format!("{ENTERPRISE}:department"), "title"],
            "rename": {format!("{ENTERPRISE}:employeeNumber"): "externalId", "name.givenName": "nickName"},
            "set": {"userType": "Employee", format!("{ENTERPRISE}:organization"): "Acme"}
        }});
        let s = shape(&config.to_string(), ResourceType::User, user()).unwrap();
        let r = &s.resource;
        assert_eq!(r["externalId"], "42");
        assert_eq!(r["nickName"], "Jane");
        assert_eq!(r["name"], json!({"familyName": "Doe"}));
        assert_eq!(r["userType"], "Employee");
        assert_eq!(r[ENTERPRISE], json!({"organization": "Acme"}));
        assert!(r.get("title").is_none());
        let rules: Vec<&str> = s.provenance.iter().map(|p| p.rule.as_str()).collect();
        assert_eq!(rules, ["shape.drop", "shape.rename", "shape.rename", "shape.set", "shape.set"]);
    }

    #[test]
    fn names_match_case_insensitively_and_an_absent_attribute_changes_nothing() {
        let s = shape(r#"{"users": {"drop": ["TITLE", "phoneNumbers"], "rename": {"nosuch": "other"}}}"#, ResourceType::User, user()).unwrap();
        assert!(s.resource.get("title").is_none());
        assert_eq!(s.provenance.len(), 1, "{:?}", s.provenance);
        let same = shape("{}", ResourceType::User, user()).unwrap();
        assert_eq!(same.resource, user());
        assert!(same.provenance.is_empty());
    }

    #[test]
    fn groups_get_their_application_names() {
        let c = r#"{"groups": {"names": {"software_dev": "Developers"}, "prefix": "mw-"}}"#;
        let s = shape(c, ResourceType::Group, json!({"id": "g1", "displayName": "Software_Dev"})).unwrap();
        assert_eq!(s.resource, json!({"id": "g1", "displayName": "mw-Developers"}));
        assert_eq!(s.provenance[0].reason, "group 'Software_Dev' sent as 'mw-Developers'");
        // Users are untouched by group rules.
        assert_eq!(shape(c, ResourceType::User, user()).unwrap().resource, user());
    }

    #[test]
    fn the_identity_cannot_be_dropped_or_renamed() {
        assert!(testing::validate_config::<Shape>(r#"{"users": {"drop": ["userName"]}}"#).unwrap_err().contains("cannot be left out"));
        assert!(testing::validate_config::<Shape>(r#"{"groups": {"rename": {"displayName": "name"}}}"#).unwrap_err().contains("identity"));
        assert!(testing::validate_config::<Shape>(r#"{"users": {"set": {"id": "x"}}}"#).unwrap_err().contains("server's to set"));
        assert!(testing::validate_config::<Shape>(r#"{"users": {"prefix": "x"}}"#).unwrap_err().contains("for groups"));
        assert!(testing::validate_config::<Shape>(r#"{"users": {"allow": ["bad name"]}}"#).unwrap_err().contains("not an attribute name"));
        assert!(testing::validate_config::<Shape>(r#"{"users": {"alow": []}}"#).is_err(), "unknown keys are refused");
    }

    #[test]
    fn examples_are_the_self_test() {
        let good: Config = serde_json::from_value(json!({"users": {"allow": ["emails"]},
            "examples": [{"kind": "user", "resource": {"userName": "a", "title": "x", "emails": []}, "expect": {"userName": "a", "emails": []}}]})).unwrap();
        assert_eq!(Shape::self_test(&good), Ok(()));
        let bad: Config = serde_json::from_value(json!({"examples": [{"kind": "group", "resource": {"displayName": "a"}, "expect": {"displayName": "b"}}]})).unwrap();
        assert_eq!(Shape::self_test(&bad), Err(r#"example 1: sent as {"displayName":"a"}, expected {"displayName":"b"}"#.to_string()));
    }
}
