//! Attribute paths in plugin configurations: read, set and remove SCIM attributes by name.

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// An attribute as a configuration names it: a core attribute (`title`), a sub-attribute
/// (`name.givenName`), an extension's attribute with its schema URN first
/// (`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department`), or a whole
/// extension (its URN alone). Names match case-insensitively, as SCIM attribute names do.
///
/// ```
/// use mapwright_plugin_sdk::{AttrPath, json};
/// let mut user = json!({"name": {"givenName": "Jane", "familyName": "Doe"}});
/// let o = user.as_object_mut().unwrap();
/// let given = AttrPath::parse("name.givenname").unwrap();
/// assert_eq!(given.get(o), Some(&json!("Jane")));
/// assert_eq!(given.take(o), Some(json!("Jane")));
/// AttrPath::parse("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department").unwrap().put(o, json!("R&D"));
/// assert_eq!(user, json!({"name": {"familyName": "Doe"}, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"}}));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    /// The extension's schema URN, or `None` for a core attribute.
    pub schema: Option<String>,
    /// The attribute and its sub-attribute; `None` for a whole extension.
    pub attr: Option<(String, Option<String>)>,
}

impl AttrPath {
    /// Parses `name`, `name.sub`, `urn:…:Resource:name[.sub]` or `urn:…:Resource`.
    pub fn parse(s: &str) -> Result<AttrPath, String> {
        let s = s.trim();
        let (schema, rest) = if s.len() > 4 && s.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:")) {
            // An attribute name starts with a letter in lower case; a schema URN ends in a
            // resource type (`User`), so the last `:` splits them only before a lower case.
            match s.rsplit_once(':') {
                Some((urn, attr)) if attr.starts_with(|c: char| c.is_ascii_lowercase()) => (Some(urn.to_string()), attr),
                _ => return Ok(AttrPath { schema: Some(s.to_string()), attr: None }),
            }
        } else {
            (None, s)
        };
        let (attr, sub) = match rest.split_once('.') {
            Some((a, b)) => (a, Some(b)),
            None => (rest, None),
        };
        let valid = |n: &str| !n.is_empty() && n.starts_with(|c: char| c.is_ascii_alphabetic() || c == '$') && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$');
        if !valid(attr) || sub.is_some_and(|s| !valid(s)) {
            return Err(format!("'{s}' is not an attribute name (`name`, `name.sub`, or an extension's `urn:…:attribute`)"));
        }
        Ok(AttrPath { schema, attr: Some((attr.to_string(), sub.map(str::to_string))) })
    }

    /// The top-level attribute this path is under (`name` for `name.givenName`).
    pub fn top(&self) -> Option<&str> {
        match (&self.schema, &self.attr) {
            (Some(s), _) => Some(s),
            (None, Some((a, _))) => Some(a),
            (None, None) => None,
        }
    }

    fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::with_capacity(3);
        if let Some(s) = &self.schema {
            names.push(s);
        }
        if let Some((a, sub)) = &self.attr {
            names.push(a);
            if let Some(sub) = sub {
                names.push(sub);
            }
        }
        names
    }

    /// The value at this path, if there is one.
    pub fn get<'a>(&self, root: &'a Map<String, Value>) -> Option<&'a Value> {
        let names = self.names();
        let (last, steps) = names.split_last()?;
        let mut obj = root;
        for step in steps {
            obj = obj.get(&key_of(obj, step)?)?.as_object()?;
        }
        obj.get(&key_of(obj, last)?)
    }

    /// Removes the value at this path and returns it; objects it leaves empty go too.
    pub fn take(&self, root: &mut Map<String, Value>) -> Option<Value> {
        let (obj, key) = self.parent(root, false)?;
        let v = obj.remove(&key);
        prune(root);
        v
    }

    /// Sets the value at this path, making the objects on the way.
    pub fn put(&self, root: &mut Map<String, Value>, v: Value) {
        if let Some((obj, key)) = self.parent(root, true) {
            obj.insert(key, v);
        }
    }

    /// The object holding this path's attribute, and that attribute's name in it.
    fn parent<'a>(&self, root: &'a mut Map<String, Value>, create: bool) -> Option<(&'a mut Map<String, Value>, String)> {
        let names = self.names();
        let (last, steps) = names.split_last()?;
        let mut obj = root;
        for step in steps {
            let key = match key_of(obj, step) {
                Some(k) => k,
                None if create => {
                    obj.insert(step.to_string(), Value::Object(Map::new()));
                    step.to_string()
                }
                None => return None,
            };
            obj = obj.get_mut(&key)?.as_object_mut()?;
        }
        let key = key_of(obj, last).unwrap_or_else(|| last.to_string());
        Some((obj, key))
    }
}

impl std::fmt::Display for AttrPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.schema, &self.attr) {
            (Some(s), None) => write!(f, "{s}"),
            (schema, Some((a, sub))) => {
                if let Some(s) = schema {
                    write!(f, "{s}:")?;
                }
                write!(f, "{a}")?;
                if let Some(sub) = sub {
                    write!(f, ".{sub}")?;
                }
                Ok(())
            }
            (None, None) => Ok(()),
        }
    }
}

impl<'de> Deserialize<'de> for AttrPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<AttrPath, D::Error> {
        let s = String::deserialize(d)?;
        AttrPath::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The key of `map` equal to `name` ignoring case.
fn key_of(map: &Map<String, Value>, name: &str) -> Option<String> {
    map.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned()
}

/// Removes objects left empty (an extension whose attributes all went).
fn prune(root: &mut Map<String, Value>) {
    for v in root.values_mut() {
        if let Value::Object(o) = v {
            o.retain(|_, v| !matches!(v, Value::Object(x) if x.is_empty()));
        }
    }
    root.retain(|_, v| !matches!(v, Value::Object(x) if x.is_empty()));
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    #[test]
    fn paths_parse_core_sub_and_extension_attributes() {
        assert_eq!(AttrPath::parse("emails"), Ok(AttrPath { schema: None, attr: Some(("emails".into(), None)) }));
        assert_eq!(AttrPath::parse("name.givenName").map(|p| p.to_string()), Ok("name.givenName".to_string()));
        let p = AttrPath::parse(&format!("{ENTERPRISE}:department"));
        assert_eq!(p.as_ref().map(|p| p.schema.as_deref()), Ok(Some(ENTERPRISE)));
        assert_eq!(AttrPath::parse(ENTERPRISE), Ok(AttrPath { schema: Some(ENTERPRISE.into()), attr: None }));
        for bad in ["na me", "", "a.", "1a"] {
            assert!(AttrPath::parse(bad).is_err(), "{bad}");
        }
    }
}
