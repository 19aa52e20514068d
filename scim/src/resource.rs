//! Canonical resources: incoming JSON → schema-checked JSON with canonical attribute names.
//!
//! Every body an IdP sends (POST, PUT, the result of a PATCH) goes through [`canonicalize`],
//! which is where the value-level IdP quirks are absorbed for every IdP kind: attribute names
//! in any case, booleans sent as `"True"`/`"False"`, a single value where an array belongs,
//! an enterprise `manager` sent as a bare id string. Read-only attributes a client sends are
//! ignored (RFC 7643 §2.2), unknown attributes are dropped, `null` means unassigned.

use serde_json::{Map, Value};

use super::error::{ScimError, ScimResult};
use super::filter::canonical_datetime;
use super::schema::{self, AttrDef, AttrType, Mutability, ResourceKind};

/// An attribute's name as an error message shows it (`emails.value`,
/// `urn:...:User:manager`), put together only when an error is raised: naming every
/// attribute of every body up front was an allocation per attribute on each write.
#[derive(Clone, Copy)]
struct Shown<'a> {
    prefix: &'a str,
    name: &'a str,
    sub: Option<&'a str>,
}

impl<'a> Shown<'a> {
    fn new(prefix: &'a str, name: &'a str) -> Self {
        Shown { prefix, name, sub: None }
    }
    fn sub(self, sub: &'a str) -> Self {
        Shown { sub: Some(sub), ..self }
    }
}

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.prefix, self.name)?;
        match self.sub {
            Some(s) => write!(f, ".{s}"),
            None => Ok(()),
        }
    }
}

fn coerce_simple(def: &AttrDef, v: &Value, shown: Shown<'_>) -> ScimResult<Option<Value>> {
    let bad = |want: &str| ScimError::invalid_value(format!("'{shown}' must be {want}"));
    Ok(Some(match (def.ty, v) {
        (_, Value::Null) => return Ok(None),
        (AttrType::Boolean, Value::Bool(_)) => v.clone(),
        (AttrType::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("true") => Value::Bool(true),
        (AttrType::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("false") => Value::Bool(false),
        (AttrType::Boolean, _) => return Err(bad("a boolean")),
        (AttrType::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => v.clone(),
        (AttrType::Integer, _) => return Err(bad("an integer")),
        (AttrType::Decimal, Value::Number(_)) => v.clone(),
        (AttrType::Decimal, _) => return Err(bad("a number")),
        (AttrType::DateTime, Value::String(s)) => {
            Value::String(canonical_datetime(s).ok_or_else(|| bad("an RFC 3339 dateTime"))?)
        }
        (AttrType::DateTime, _) => return Err(bad("an RFC 3339 dateTime string")),
        (AttrType::String | AttrType::Reference | AttrType::Binary, Value::String(_)) => v.clone(),
        // IdPs send employee numbers and the like as JSON numbers.
        (AttrType::String, Value::Number(n)) => Value::String(n.to_string()),
        (AttrType::String | AttrType::Reference | AttrType::Binary, _) => return Err(bad("a string")),
        (AttrType::Complex, _) => return Err(bad("an object")),
    }))
}

fn canonical_complex(def: &AttrDef, v: &Value, shown: Shown<'_>, keep_read_only: bool) -> ScimResult<Option<Value>> {
    let obj = match v {
        Value::Null => return Ok(None),
        Value::Object(o) => o,
        // Entra sends the enterprise manager as a bare id; any complex attribute with a
        // `value` sub-attribute accepts that shorthand.
        Value::String(_) | Value::Number(_) | Value::Bool(_) if schema::find(def.sub, "value").is_some() => {
            let mut m = Map::new();
            m.insert("value".into(), v.clone());
            return canonical_complex(def, &Value::Object(m), shown, keep_read_only);
        }
        _ => return Err(ScimError::invalid_value(format!("'{shown}' must be an object"))),
    };
    let mut out = Map::new();
    for (k, sv) in obj {
        let Some(sd) = schema::find(def.sub, k) else { continue };
        if sd.mutability == Mutability::ReadOnly && !keep_read_only {
            continue;
        }
        if let Some(c) = coerce_simple(sd, sv, shown.sub(sd.name))? {
            out.insert(sd.name.to_string(), c);
        }
    }
    Ok(if out.is_empty() { None } else { Some(Value::Object(out)) })
}

/// `value` as JSON text. Faster than `value.to_string()`, which goes through `fmt::Display`
/// and its per-fragment `fmt::Write` calls; serialising a `Value` cannot fail (its map keys
/// are strings), so this returns the text directly.
pub fn json_text(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Canonicalises one attribute value; `None` means "unassigned". `shown` names the
/// attribute in an error.
pub fn canonical_value(def: &AttrDef, v: &Value, shown: &str) -> ScimResult<Option<Value>> {
    canonical_value_at(def, v, Shown::new("", shown))
}

/// Above this many values, duplicates are found through a set of their texts; below it, by
/// comparing each with the ones kept, which allocates nothing.
const DEDUP_BY_SET: usize = 16;

/// The same JSON text: [`Value`]'s own equality ignores the order of an object's keys, the
/// text (which the set of long lists compares) does not.
fn same_text(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => x.len() == y.len() && x.iter().zip(y).all(|((k, v), (l, w))| k == l && same_text(v, w)),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same_text(v, w)),
        _ => a == b,
    }
}

fn canonical_value_at(def: &AttrDef, v: &Value, shown: Shown<'_>) -> ScimResult<Option<Value>> {
    if def.multi {
        let items: &[Value] = match v {
            Value::Null => return Ok(None),
            Value::Array(a) => a,
            other => std::slice::from_ref(other),
        };
        let mut out: Vec<Value> = Vec::with_capacity(items.len());
        // Duplicates are dropped; a set keeps that linear for 100k-member groups.
        let mut seen = (items.len() > DEDUP_BY_SET).then(|| std::collections::HashSet::with_capacity(items.len()));
        for item in items {
            let c = if def.ty == AttrType::Complex {
                canonical_complex(def, item, shown, false)?
            } else {
                coerce_simple(def, item, shown)?
            };
            let Some(c) = c else { continue };
            let fresh = match &mut seen {
                Some(seen) => seen.insert(json_text(&c)),
                None => !out.iter().any(|o| same_text(o, &c)),
            };
            if fresh {
                out.push(c);
            }
        }
        return Ok(if out.is_empty() { None } else { Some(Value::Array(out)) });
    }
    if def.ty == AttrType::Complex { canonical_complex(def, v, shown, false) } else { coerce_simple(def, v, shown) }
}

/// Canonicalises the attribute `k` of `attrs` into `out` (`prefix` names its schema in an
/// error); an unknown or read-only one is skipped.
fn canonical_attr(attrs: &'static [AttrDef], k: &str, v: &Value, out: &mut Map<String, Value>, prefix: &str) -> ScimResult<()> {
    let Some(def) = schema::find(attrs, k) else {
        tracing::debug!(attribute = %k, "dropping unknown attribute");
        return Ok(());
    };
    if def.mutability == Mutability::ReadOnly {
        return Ok(());
    }
    if let Some(c) = canonical_value_at(def, v, Shown::new(prefix, def.name))? {
        out.insert(def.name.to_string(), c);
    }
    Ok(())
}

fn canonical_attrs(attrs: &'static [AttrDef], input: &Map<String, Value>, out: &mut Map<String, Value>, prefix: &str) -> ScimResult<()> {
    for (k, v) in input {
        canonical_attr(attrs, k, v, out, prefix)?;
    }
    Ok(())
}

/// Canonicalises a whole resource body. The result holds no `schemas`, `id`, `meta` or other
/// read-only attributes: those are the server's, added by [`render`].
pub fn canonicalize(kind: ResourceKind, input: &Value) -> ScimResult<Value> {
    let obj = input.as_object().ok_or_else(|| ScimError::invalid_syntax("the request body must be a JSON object"))?;
    let mut out = Map::new();
    let mut core = Map::new();
    for (k, v) in obj {
        if k.eq_ignore_ascii_case("schemas") {
            continue;
        }
        if let Some(urn) = schema::extension_urn(kind, k) {
            let attrs = kind.extensions().iter().find(|(u, _)| *u == urn).map(|(_, a)| *a).unwrap_or(&[]);
            let Some(ext_obj) = v.as_object() else {
                if v.is_null() {
                    continue;
                }
                return Err(ScimError::invalid_value(format!("'{urn}' must be an object")));
            };
            let mut ext = match out.remove(urn) {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            };
            canonical_attrs(attrs, ext_obj, &mut ext, &format!("{urn}:"))?;
            if !ext.is_empty() {
                out.insert(urn.to_string(), Value::Object(ext));
            }
        } else if crate::schema::has_urn_prefix(k) {
            // A URN-qualified attribute name at the top level (`urn:...:User:userName`).
            let Some(i) = k.rfind(':') else { continue };
            let (urn, name) = (&k[..i], &k[i + 1..]);
            if schema::looks_like_extension(k) && v.is_object() && !schema::is_known_schema(kind, k) {
                let e = out.entry(k.clone()).or_insert_with(|| Value::Object(Map::new()));
                if let (Value::Object(dst), Value::Object(src)) = (e, v) {
                    for (a, x) in src.iter().filter(|(a, _)| !a.eq_ignore_ascii_case("schemas")) {
                        dst.insert(a.clone(), x.clone());
                    }
                }
                continue;
            }
            match schema::locate(kind, Some(urn), name) {
                Some(loc) if loc.def.mutability == Mutability::ReadOnly => {}
                Some(loc) => {
                    let c = canonical_value(loc.def, v, k)?;
                    let target = match loc.extension {
                        None => &mut core,
                        Some(ext) => {
                            let e = out.entry(ext.to_string()).or_insert_with(|| Value::Object(Map::new()));
                            match e.as_object_mut() {
                                Some(m) => m,
                                None => continue,
                            }
                        }
                    };
                    match c {
                        Some(c) => target.insert(loc.def.name.to_string(), c),
                        None => target.remove(loc.def.name),
                    };
                }
                // An extension this server has no schema for (Entra's
                // `urn:...:extension:custom:2.0:User`): kept verbatim, never lost, so rules can
                // map its attributes. Not described in /Schemas, not filterable.
                None if v.is_object() && schema::looks_like_extension(k) && !schema::is_known_schema(kind, k) => {
                    let e = out.entry(k.clone()).or_insert_with(|| Value::Object(Map::new()));
                    if let (Value::Object(dst), Value::Object(src)) = (e, v) {
                        for (a, x) in src.iter().filter(|(a, _)| !a.eq_ignore_ascii_case("schemas")) {
                            dst.insert(a.clone(), x.clone());
                        }
                    }
                }
                None if schema::looks_like_extension(urn) && !schema::is_known_schema(kind, urn) => {
                    let e = out.entry(urn.to_string()).or_insert_with(|| Value::Object(Map::new()));
                    if let Value::Object(dst) = e {
                        match v {
                            Value::Null => dst.remove(name),
                            _ => dst.insert(name.to_string(), v.clone()),
                        };
                    }
                }
                None => tracing::debug!(attribute = %k, "dropping unknown attribute"),
            }
        } else {
            // Looked up where `schema::locate` looks (common, then core), once: asking both
            // logged every attribute as dropped by the list it was not in.
            let attrs = if schema::find(schema::COMMON_ATTRS, k).is_some() { schema::COMMON_ATTRS } else { kind.core_attrs() };
            canonical_attr(attrs, k, v, &mut core, "")?;
        }
    }
    // Core attributes first, extensions after: the order a reader expects.
    let mut result = core;
    for (k, v) in out {
        if v.as_object().is_some_and(|o| !o.is_empty()) {
            result.insert(k, v);
        }
    }
    let required = kind.core_attrs().iter().filter(|a| a.required);
    for def in required {
        let ok = result.get(def.name).and_then(Value::as_str).is_some_and(|s| !s.trim().is_empty());
        if !ok {
            return Err(ScimError::invalid_value(format!("'{}' is required and must be a non-empty string", def.name)));
        }
    }
    Ok(Value::Object(result))
}

/// Checks that the attributes of a directory entry (a rule's output) have their schema types:
/// known core and enterprise attributes must canonicalise; attributes of other extensions are
/// the tenant's own and pass as they are. Returns the first violation.
pub fn check_entry_attributes(attrs: &Value) -> Result<(), String> {
    let Some(obj) = attrs.as_object() else { return Err("attributes must be a JSON object".into()) };
    let kind = ResourceKind::User;
    for (k, v) in obj {
        if let Some(urn) = schema::extension_urn(kind, k) {
            let ext_attrs = kind.extensions().iter().find(|(u, _)| *u == urn).map(|(_, a)| *a).unwrap_or(&[]);
            let Some(ext) = v.as_object() else { return Err(format!("'{k}' must be an object")) };
            for (a, x) in ext {
                if let Some(def) = schema::find(ext_attrs, a) {
                    canonical_value(def, x, &format!("{urn}:{a}")).map_err(|e| e.detail)?;
                }
            }
        } else if let Some(def) = schema::find(schema::COMMON_ATTRS, k).or_else(|| schema::find(kind.core_attrs(), k)) {
            if def.mutability == Mutability::ReadOnly {
                continue;
            }
            canonical_value(def, v, k).map_err(|e| e.detail)?;
        }
    }
    Ok(())
}

/// `{key: [before, after]}` for each top-level key whose value differs between two JSON
/// objects (a missing key reads as `null`); non-objects compare as empty.
pub fn object_diff(before: &Value, after: &Value) -> Map<String, Value> {
    let empty = Map::new();
    let (b, a) = (before.as_object().unwrap_or(&empty), after.as_object().unwrap_or(&empty));
    let mut out = Map::new();
    for k in b.keys().chain(a.keys()) {
        if out.contains_key(k) {
            continue;
        }
        let (x, y) = (b.get(k).cloned().unwrap_or(Value::Null), a.get(k).cloned().unwrap_or(Value::Null));
        if x != y {
            out.insert(k.clone(), Value::Array(vec![x, y]));
        }
    }
    out
}

/// The `meta` block and identity of a stored resource.
#[derive(Debug, Clone)]
pub struct Meta {
    pub id: String,
    pub created: String,
    pub last_modified: String,
    pub version: i64,
}

impl Meta {
    pub fn etag(&self) -> String {
        format!("W/\"{}\"", self.version)
    }
}

/// Turns a stored canonical resource into the representation a client receives. Takes the
/// body by value: its attributes move into the result rather than being copied again.
pub fn render(kind: ResourceKind, body: Value, meta: &Meta, base_url: &str) -> Value {
    let attrs = match body {
        Value::Object(o) => o,
        _ => Map::new(),
    };
    let mut schemas = vec![Value::from(kind.core_schema())];
    for (urn, _) in kind.extensions() {
        if attrs.contains_key(*urn) {
            schemas.push(Value::from(*urn));
        }
    }
    for k in attrs.keys().filter(|k| schema::has_urn_prefix(k) && !schema::is_known_schema(kind, k)) {
        schemas.push(Value::from(k.clone()));
    }
    let mut out = Map::with_capacity(attrs.len() + 3);
    out.insert("schemas".into(), Value::Array(schemas));
    out.insert("id".into(), Value::from(meta.id.clone()));
    out.extend(attrs);
    let mut m = Map::new();
    m.insert("resourceType".into(), kind.name().into());
    m.insert("created".into(), meta.created.clone().into());
    m.insert("lastModified".into(), meta.last_modified.clone().into());
    m.insert("location".into(), format!("{base_url}/{}/{}", kind.endpoint(), meta.id).into());
    m.insert("version".into(), meta.etag().into());
    out.insert("meta".into(), Value::Object(m));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    #[test]
    fn canonicalizes_idp_quirks() {
        let c = canonicalize(
            ResourceKind::User,
            &json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "id": "client-chosen", "UserName": "jdoe", "active": "False",
                "emails": {"Value": "j@x.com", "primary": "True"},
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"manager": "m-1", "employeeNumber": 42},
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Eng",
                "groups": [{"value": "g"}], "unknownThing": 1, "nickName": null,
            }),
        )
        .unwrap();
        assert_eq!(
            c,
            json!({
                "userName": "jdoe", "active": false,
                "emails": [{"value": "j@x.com", "primary": true}],
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                    "manager": {"value": "m-1"}, "employeeNumber": "42", "department": "Eng"
                }
            })
        );
    }

    #[test]
    fn keeps_unknown_extensions_verbatim() {
        let custom = "urn:ietf:params:scim:schemas:extension:custom:2.0:User";
        let c = canonicalize(ResourceKind::User, &json!({
            "userName": "a", custom: {"worksiteId": "180", "nested": {"x": [1, 2]}},
            "urn:ietf:params:scim:schemas:extension:other:2.0:User:costCode": "C1",
        })).unwrap();
        assert_eq!(c[custom], json!({"worksiteId": "180", "nested": {"x": [1, 2]}}));
        assert_eq!(c["urn:ietf:params:scim:schemas:extension:other:2.0:User"], json!({"costCode": "C1"}));
        let meta = Meta { id: "i".into(), created: "c".into(), last_modified: "m".into(), version: 1 };
        let r = render(ResourceKind::User, c, &meta, "http://x");
        assert!(r["schemas"].as_array().unwrap().contains(&json!(custom)));
    }

    #[test]
    fn errors_name_the_attribute_as_sent_under_its_schema() {
        let user = |extra: serde_json::Value| {
            let mut b = json!({"userName": "a"});
            b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            canonicalize(ResourceKind::User, &b).unwrap_err().detail
        };
        assert_eq!(user(json!({"emails": [{"value": "a@b.c", "primary": "often"}]})), "'emails.primary' must be a boolean");
        assert_eq!(user(json!({"active": 3})), "'active' must be a boolean");
        assert_eq!(user(json!({"name": "x"})), "'name' must be an object");
        let ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
        assert_eq!(user(json!({ent: {"manager": {"value": true}}})), format!("'{ent}:manager.value' must be a string"));
        assert_eq!(user(json!({format!("{ent}:department"): [1]})), format!("'{ent}:department' must be a string"));
    }

    #[test]
    fn duplicate_values_are_dropped_in_short_and_long_lists() {
        // Short lists compare values in place, long ones their texts through a set: the same
        // answer (key order counts in both).
        let short = canonicalize(
            ResourceKind::User,
            &json!({"userName": "a", "emails": [{"value": "x@y.z", "type": "work"}, {"value": "x@y.z", "type": "work"}, {"type": "work", "value": "x@y.z"}, {"value": "w@y.z"}]}),
        )
        .unwrap();
        let texts: Vec<_> = short["emails"].as_array().unwrap().iter().map(json_text).collect();
        assert_eq!(texts, [r#"{"value":"x@y.z","type":"work"}"#, r#"{"type":"work","value":"x@y.z"}"#, r#"{"value":"w@y.z"}"#]);
        let many: Vec<_> = (0..40).map(|i| json!({"value": format!("e{}@y.z", i % 25)})).collect();
        let long = canonicalize(ResourceKind::User, &json!({"userName": "a", "emails": many})).unwrap();
        let kept: Vec<_> = long["emails"].as_array().unwrap().iter().map(|e| e["value"].as_str().unwrap().to_string()).collect();
        assert_eq!(kept, (0..25).map(|i| format!("e{i}@y.z")).collect::<Vec<_>>());
        let roles = canonical_value(schema::find(ResourceKind::User.core_attrs(), "roles").unwrap(), &json!([{"value": "r"}, {"value": "r"}]), "roles").unwrap();
        assert_eq!(roles, Some(json!([{"value": "r"}])));
    }

    #[test]
    fn entry_attributes_are_type_checked() {
        assert!(check_entry_attributes(&json!({"title": "T", "active": true, "emails": [{"value": "a@b.c"}], "urn:x:custom:User": {"any": [1, {"thing": null}]}})).is_ok());
        assert!(check_entry_attributes(&json!({"active": "sometimes"})).unwrap_err().contains("active"));
        assert!(check_entry_attributes(&json!({"name": 5})).is_err());
        assert!(check_entry_attributes(&json!({"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": {"x": 1}}})).is_err());
        assert!(check_entry_attributes(&json!([1])).is_err());
    }

    #[test]
    fn requires_user_name() {
        let e = canonicalize(ResourceKind::User, &json!({"userName": "  "})).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(canonicalize(ResourceKind::User, &json!({"active": "maybe", "userName": "x"})).is_err());
        assert!(canonicalize(ResourceKind::User, &json!([1])).is_err());
    }
}
