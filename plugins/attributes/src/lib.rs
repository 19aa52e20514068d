//! # attributes: the directory entry's attributes, declared as mappings
//!
//! The entry starts from the proposed attributes (the IdP's user, or the previous entry's
//! output), or from `{}` with `keep_unmapped = false`. Each mapping then sets one target:
//!
//! - `from`: a source path (`title`, `name.givenName`, `emails.0.value`, a URN path such as
//!   `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department`), or a list of
//!   paths (for `join`); or `constant`: a fixed value.
//! - `to`: the target path; dotted paths create objects; URN paths write into that extension.
//! - `transform`: applied in order: `"lower"`, `"upper"`, `"trim"`, `"e164"` (phone numbers,
//!   with `default_country`), `{"replace": {"pattern": "…", "with": "…"}}`, `{"join": " "}`,
//!   `{"split": ","}`, `{"default": "…"}`.
//! - `remove_source`: also delete the source attribute (a move rather than a copy).
//!
//! ```json
//! {"mappings": [
//!   {"from": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "to": "urn:mapwright:custom:User:department", "transform": ["trim"]},
//!   {"from": ["name.givenName", "name.familyName"], "to": "displayName", "transform": [{"join": " "}]},
//!   {"from": "phoneNumbers.0.value", "to": "urn:mapwright:custom:User:mobile", "transform": ["e164"]},
//!   {"constant": "okta", "to": "urn:mapwright:custom:User:source"}
//! ], "default_country": "44"}
//! ```

use mapwright_plugin_sdk::{Pattern, Context, Decision, Hook, Map, Plugin, Rejection, User, Value};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaceSpec {
    pub pattern: Pattern,
    pub with: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transform {
    Lower,
    Upper,
    Trim,
    E164,
    Replace(ReplaceSpec),
    Join(String),
    Split(String),
    Default(Value),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Source {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    pub from: Option<Source>,
    pub constant: Option<Value>,
    pub to: String,
    #[serde(default)]
    pub transform: Vec<Transform>,
    #[serde(default)]
    pub remove_source: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub mappings: Vec<Mapping>,
    pub keep_unmapped: bool,
    /// Country calling code for phone numbers without one (digits, e.g. "1" or "44").
    pub default_country: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config { mappings: Vec::new(), keep_unmapped: true, default_country: None }
    }
}

/// Splits `urn:...:Schema:a.b` into (Some(urn), ["a", "b"]), `a.b` into (None, ["a", "b"]).
fn split_path(p: &str) -> (Option<&str>, Vec<&str>) {
    if p.len() > 4 && p.get(..4).is_some_and(|x| x.eq_ignore_ascii_case("urn:"))
        && let Some(i) = p.rfind(':')
    {
        return (Some(&p[..i]), p[i + 1..].split('.').collect());
    }
    (None, p.split('.').collect())
}

fn get<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    let (urn, parts) = split_path(path);
    let start = match urn {
        Some(u) => root.get(u)?,
        None => root,
    };
    parts.iter().try_fold(start, |v, k| match (v, k.parse::<usize>()) {
        (Value::Array(a), Ok(i)) => a.get(i),
        _ => v.get(k),
    })
}

fn set(root: &mut Value, path: &str, value: Value) {
    let (urn, parts) = split_path(path);
    let Some((last, parents)) = parts.split_last() else { return };
    let mut cur = root;
    for key in urn.into_iter().chain(parents.iter().copied()) {
        let Some(obj) = ensure_object(cur) else { return };
        cur = obj.entry(key.to_string()).or_insert_with(|| Value::Object(Map::new()));
    }
    if let Some(obj) = ensure_object(cur) {
        obj.insert(last.to_string(), value);
    }
}

fn remove(root: &mut Value, path: &str) {
    let (urn, parts) = split_path(path);
    let mut cur = root;
    if let Some(u) = urn {
        let Some(next) = cur.get_mut(u) else { return };
        cur = next;
    }
    let Some((last, parents)) = parts.split_last() else { return };
    for p in parents {
        let Some(next) = cur.get_mut(*p) else { return };
        cur = next;
    }
    if let Some(o) = cur.as_object_mut() {
        o.remove(*last);
    }
}

/// Makes `v` an object (replacing a scalar in the way) and returns it.
fn ensure_object(v: &mut Value) -> Option<&mut Map<String, Value>> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    v.as_object_mut()
}

fn e164(s: &str, default_country: Option<&str>) -> Result<String, String> {
    let t = s.trim();
    let digits: String = t.chars().filter(char::is_ascii_digit).collect();
    let full = if t.starts_with('+') {
        digits
    } else if let Some(rest) = digits.strip_prefix("00") {
        rest.to_string()
    } else {
        let cc = default_country.ok_or_else(|| format!("'{s}' has no country code and no default_country is configured"))?;
        format!("{cc}{}", digits.trim_start_matches('0'))
    };
    if !(8..=15).contains(&full.len()) {
        return Err(format!("'{s}' is not a valid phone number"));
    }
    Ok(format!("+{full}"))
}

fn apply(t: &Transform, v: Value, c: &Config) -> Result<Value, String> {
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    Ok(match t {
        Transform::Default(d) => if v.is_null() || v == Value::String(String::new()) { d.clone() } else { v },
        _ if v.is_null() => Value::Null,
        Transform::Lower => text(&v).map(|s| Value::String(s.to_lowercase())).unwrap_or(v),
        Transform::Upper => text(&v).map(|s| Value::String(s.to_uppercase())).unwrap_or(v),
        Transform::Trim => text(&v).map(|s| Value::String(s.trim().to_string())).unwrap_or(v),
        Transform::E164 => match text(&v) {
            Some(s) => Value::String(e164(&s, c.default_country.as_deref())?),
            None => v,
        },
        Transform::Replace(r) => text(&v).map(|s| Value::String(r.pattern.replace_all(&s, &r.with))).unwrap_or(v),
        Transform::Join(sep) => match &v {
            Value::Array(items) => Value::String(items.iter().filter_map(text).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(sep)),
            _ => v,
        },
        Transform::Split(sep) => match text(&v) {
            Some(s) => Value::Array(s.split(sep.as_str()).map(|p| Value::String(p.trim().to_string())).filter(|p| p != &Value::String(String::new())).collect()),
            None => v,
        },
    })
}

pub struct Attributes;

impl Plugin for Attributes {
    type Config = Config;
    const NAME: &'static str = "attributes";
    const HOOKS: &'static [Hook] = &[Hook::Attributes];

    fn validate(c: &Config) -> Result<(), String> {
        for m in &c.mappings {
            if m.from.is_some() == m.constant.is_some() {
                return Err(format!("mapping to '{}' needs exactly one of 'from' and 'constant'", m.to));
            }
            if m.to.trim().is_empty() || split_path(&m.to).1.iter().any(|p| p.is_empty()) {
                return Err(format!("'{}' is not a target path", m.to));
            }
        }
        if let Some(cc) = &c.default_country
            && (cc.is_empty() || cc.len() > 3 || !cc.chars().all(|c| c.is_ascii_digit()))
        {
            return Err(format!("default_country '{cc}' must be 1-3 digits"));
        }
        Ok(())
    }

    fn attributes(_ctx: &Context, c: &Config, user: &User, proposed: Value) -> Result<Decision<Value>, Rejection> {
        let mut out = if c.keep_unmapped { proposed } else { Value::Object(Map::new()) };
        let mut why = Vec::new();
        for m in &c.mappings {
            let mut v = match (&m.from, &m.constant) {
                (_, Some(k)) => k.clone(),
                (Some(Source::One(p)), _) => get(user.json(), p).cloned().unwrap_or(Value::Null),
                (Some(Source::Many(ps)), _) => Value::Array(ps.iter().map(|p| get(user.json(), p).cloned().unwrap_or(Value::Null)).collect()),
                (None, None) => Value::Null,
            };
            for t in &m.transform {
                v = apply(t, v, c).map_err(|e| Rejection::new("attributes.transform", format!("{} → {}: {e}", source_name(m), m.to)))?;
            }
            if m.remove_source
                && let Some(Source::One(p)) = &m.from
            {
                remove(&mut out, p);
            }
            if v.is_null() {
                remove(&mut out, &m.to);
            } else {
                set(&mut out, &m.to, v);
            }
            why.push(format!("{} → {}", source_name(m), m.to));
        }
        let d = Decision::new(out);
        Ok(if why.is_empty() { d } else { d.because("attributes.map", why.join("; ")) })
    }
}

fn source_name(m: &Mapping) -> String {
    match (&m.from, &m.constant) {
        (Some(Source::One(p)), _) => p.clone(),
        (Some(Source::Many(ps)), _) => ps.join("+"),
        (_, Some(k)) => format!("constant {k}"),
        _ => String::new(),
    }
}

mapwright_plugin_sdk::export_plugin!(Attributes);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use mapwright_plugin_sdk::{json, testing};

    const USER: &str = r#"{"userName": "j", "title": "  Engineer ", "name": {"givenName": "Jane", "familyName": "Doe"},
        "phoneNumbers": [{"value": "(020) 7946 0018", "type": "work"}], "emails": [{"value": "J@Acme.com"}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Engineering"}}"#;
    const CUSTOM: &str = "urn:mapwright:custom:User";

    fn run(config: &str) -> Result<Value, Rejection> {
        testing::attributes::<Attributes>(config, USER).map(|d| d.value)
    }

    #[test]
    fn maps_transforms_and_constants() {
        let c = format!(r#"{{"keep_unmapped": false, "default_country": "44", "mappings": [
            {{"from": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "to": "{CUSTOM}:department", "transform": ["lower"]}},
            {{"from": ["name.givenName", "name.familyName"], "to": "displayName", "transform": [{{"join": " "}}]}},
            {{"from": "phoneNumbers.0.value", "to": "{CUSTOM}:phone", "transform": ["e164"]}},
            {{"from": "title", "to": "title", "transform": ["trim", "upper"]}},
            {{"from": "emails.0.value", "to": "contact.email", "transform": ["lower", {{"replace": {{"pattern": "@acme\\.com$", "with": "@acme.io"}}}}]}},
            {{"from": "nickName", "to": "nickName", "transform": [{{"default": "none"}}]}},
            {{"constant": "okta", "to": "{CUSTOM}:source"}},
            {{"constant": "a, b,,c", "to": "tags", "transform": [{{"split": ","}}]}}
        ]}}"#);
        let v = run(&c).unwrap();
        assert_eq!(v, json!({
            CUSTOM: {"department": "engineering", "phone": "+442079460018", "source": "okta"},
            "displayName": "Jane Doe", "title": "ENGINEER", "contact": {"email": "j@acme.io"}, "nickName": "none", "tags": ["a", "b", "c"],
        }));
    }

    #[test]
    fn keeps_unmapped_and_moves() {
        let v = run(r#"{"mappings": [{"from": "title", "to": "jobTitle", "remove_source": true}]}"#).unwrap();
        assert_eq!(v["jobTitle"], "  Engineer ");
        assert!(v.get("title").is_none() && v["userName"] == "j");
    }

    #[test]
    fn bad_phone_is_a_rejection_and_bad_configs_refused() {
        let e = run(r#"{"mappings": [{"from": "phoneNumbers.0.value", "to": "p", "transform": ["e164"]}]}"#).unwrap_err();
        assert!(e.reason.contains("default_country"));
        for c in [r#"{"mappings": [{"to": "x"}]}"#, r#"{"mappings": [{"from": "a", "constant": 1, "to": "x"}]}"#,
                  r#"{"mappings": [{"from": "a", "to": "x..y"}]}"#, r#"{"default_country": "+1"}"#,
                  r#"{"mappings": [{"from": "a", "to": "x", "transform": ["shout"]}]}"#] {
            assert!(testing::validate_config::<Attributes>(c).is_err(), "{c}");
        }
    }
}
