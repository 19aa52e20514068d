//! RFC 7644 §3.5.2 PATCH: parse operations, resolve their paths, apply them to a resource.
//!
//! The operation-level IdP dialects are absorbed here for every IdP kind: operation names in
//! any case (Entra's `"Replace"`), path-less `add`/`replace` values whose keys are dotted
//! (`name.givenName`) or URN-qualified, Okta's `{"op":"replace","value":{"active":false}}`,
//! and `remove` with a `value` list on a multi-valued attribute (Entra's member removal),
//! which removes just those values. Group membership operations are split off as deltas
//! ([`MemberOp`]) so that a change costs what the change costs, never the size of the group.

use serde_json::{Map, Value};

use super::error::{ScimError, ScimResult};
use super::eval;
use super::filter::{AttrPath, CompareOp, Filter, Literal, Typed};
use super::resource::canonical_value;
use super::schema::{self, AttrDef, AttrType, Mutability, ResourceKind};

pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Remove,
    Replace,
}

/// A PATCH path: `[urn:]attr[.sub]` or `attr[filter][.sub]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub filter: Option<Filter>,
    pub sub: Option<String>,
}

impl std::fmt::Display for PatchPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.attr)?;
        if let Some(filter) = &self.filter {
            write!(f, "[{filter}]")?;
        }
        if let Some(s) = &self.sub {
            write!(f, ".{s}")?;
        }
        Ok(())
    }
}

impl PatchPath {
    pub fn parse(text: &str) -> ScimResult<PatchPath> {
        let text = text.trim();
        let Some(open) = text.find('[') else {
            return Ok(PatchPath { attr: AttrPath::parse(text)?, filter: None, sub: None });
        };
        // Find the matching ']' outside string literals.
        let bytes = text.as_bytes();
        let (mut i, mut in_str, mut esc) = (open + 1, false, false);
        let close = loop {
            let Some(&c) = bytes.get(i) else {
                return Err(ScimError::invalid_path(format!("'{text}': missing ']'")));
            };
            match (in_str, esc, c) {
                (true, true, _) => esc = false,
                (true, false, b'\\') => esc = true,
                (true, false, b'"') => in_str = false,
                (false, _, b'"') => in_str = true,
                (false, _, b']') => break i,
                _ => {}
            }
            i += 1;
        };
        let attr = AttrPath::parse(&text[..open])?;
        if attr.sub.is_some() {
            return Err(ScimError::invalid_path(format!("'{text}': a value filter applies to an attribute")));
        }
        let filter = Filter::parse_value_filter(&text[open + 1..close])?;
        let rest = &text[close + 1..];
        let sub = match rest.strip_prefix('.') {
            Some(s) if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '$' || c == '_') => Some(s.to_string()),
            None if rest.is_empty() => None,
            _ => return Err(ScimError::invalid_path(format!("'{text}': unexpected '{rest}' after the value filter"))),
        };
        Ok(PatchPath { attr, filter: Some(filter), sub })
    }
}

/// One operation as sent (after path-less expansion, every `add`/`replace` has a path).
#[derive(Debug, Clone)]
pub struct PatchOp {
    pub op: OpKind,
    pub path: Option<PatchPath>,
    pub value: Option<Value>,
    /// Expanded from a path-less value: unknown or read-only keys are skipped, as in a POST.
    pub lenient: bool,
}

/// Parses a PatchOp request body.
pub fn parse_request(body: &Value) -> ScimResult<Vec<PatchOp>> {
    let obj = body.as_object().ok_or_else(|| ScimError::invalid_syntax("the PATCH body must be a JSON object"))?;
    if let Some(schemas) = eval::get_ci(body, "schemas") {
        let ok = schemas.as_array().is_some_and(|a| a.iter().any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(PATCH_SCHEMA))));
        if !ok {
            return Err(ScimError::invalid_syntax(format!("a PATCH body must list the schema {PATCH_SCHEMA}")));
        }
    }
    let ops = obj
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Operations"))
        .and_then(|(_, v)| v.as_array())
        .ok_or_else(|| ScimError::invalid_syntax("a PATCH body needs an 'Operations' array"))?;
    let mut out = Vec::new();
    for op in ops {
        let op_name = eval::get_ci(op, "op").and_then(Value::as_str).unwrap_or_default();
        let kind = match op_name.to_ascii_lowercase().as_str() {
            "add" => OpKind::Add,
            "remove" => OpKind::Remove,
            "replace" => OpKind::Replace,
            _ => return Err(ScimError::invalid_syntax(format!("unknown PATCH operation '{op_name}'"))),
        };
        let path = match eval::get_ci(op, "path") {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) if p.trim().is_empty() => None,
            Some(Value::String(p)) => Some(PatchPath::parse(p)?),
            Some(_) => return Err(ScimError::invalid_path("'path' must be a string")),
        };
        let value = eval::get_ci(op, "value").cloned();
        // A path naming a whole extension (`urn:...:enterprise:2.0:User`): its attributes.
        if let Some((urn, attrs)) = path.as_ref().and_then(|p| whole_extension(p)) {
            match (kind, value) {
                (OpKind::Remove, _) => {
                    for a in attrs {
                        out.push(PatchOp { op: kind, path: Some(PatchPath::parse(&format!("{urn}:{}", a.name))?), value: None, lenient: false });
                    }
                }
                (_, Some(Value::Object(m))) => {
                    for (k, v) in m.into_iter().filter(|(k, _)| !k.eq_ignore_ascii_case("schemas")) {
                        out.push(PatchOp { op: kind, path: Some(PatchPath::parse(&format!("{urn}:{k}"))?), value: Some(v), lenient: false });
                    }
                }
                _ => return Err(ScimError::invalid_value(format!("'{urn}' takes an object of its attributes"))),
            }
            continue;
        }
        match (kind, path) {
            (OpKind::Remove, None) => return Err(ScimError::no_target("a remove operation needs a path")),
            (_, Some(path)) => {
                if kind != OpKind::Remove && value.is_none() {
                    return Err(ScimError::invalid_syntax(format!("operation '{op_name}' needs a value")));
                }
                out.push(PatchOp { op: kind, path: Some(path), value, lenient: false });
            }
            (_, None) => expand_pathless(kind, value, &mut out)?,
        }
    }
    Ok(out)
}

fn whole_extension(p: &PatchPath) -> Option<(&'static str, &'static [AttrDef])> {
    if p.filter.is_some() || p.sub.is_some() || p.attr.sub.is_some() {
        return None;
    }
    let full = p.attr.to_string();
    [ResourceKind::User, ResourceKind::Group]
        .iter()
        .flat_map(|k| k.extensions().iter())
        .find(|(u, _)| u.eq_ignore_ascii_case(&full))
        .map(|(u, a)| (*u, *a))
}

/// `{"op":"add","value":{"a":1,"name.givenName":"x","urn:..:User":{"department":"y"}}}` →
/// one operation per attribute.
fn expand_pathless(kind: OpKind, value: Option<Value>, out: &mut Vec<PatchOp>) -> ScimResult<()> {
    let Some(Value::Object(map)) = value else {
        return Err(ScimError::invalid_syntax("an add or replace without a path needs an object value"));
    };
    for (k, v) in map {
        if k.eq_ignore_ascii_case("schemas") {
            continue;
        }
        let is_extension_object = crate::scim::schema::has_urn_prefix(&k) && v.is_object() && {
            // `urn:...:enterprise:2.0:User` (an extension) vs `urn:...:2.0:User:department`.
            let last = k.rsplit(':').next().unwrap_or_default();
            last.eq_ignore_ascii_case("User") || last.eq_ignore_ascii_case("Group")
        };
        if is_extension_object {
            if let Value::Object(inner) = v {
                for (k2, v2) in inner {
                    let path = PatchPath::parse(&format!("{k}:{k2}"))?;
                    out.push(PatchOp { op: kind, path: Some(path), value: Some(v2), lenient: true });
                }
            }
            continue;
        }
        out.push(PatchOp { op: kind, path: Some(PatchPath::parse(&k)?), value: Some(v), lenient: true });
    }
    Ok(())
}

/// An operation whose path is resolved against the schema.
#[derive(Debug, Clone)]
pub struct ResolvedOp {
    pub op: OpKind,
    pub ext: Option<&'static str>,
    pub def: &'static AttrDef,
    pub filter: Option<Typed>,
    pub sub: Option<&'static AttrDef>,
    pub value: Option<Value>,
    /// The path as written, for error messages.
    pub shown: String,
    /// For an extension without a schema (kept verbatim): its URN and the attribute (empty:
    /// the whole extension). `def` is then a placeholder.
    pub opaque: Option<(String, String)>,
}

/// Placeholder definition for attributes of extensions without a schema.
static OPAQUE: AttrDef = AttrDef {
    name: "",
    ty: AttrType::Complex,
    multi: false,
    required: false,
    case_exact: true,
    mutability: Mutability::ReadWrite,
    returned: schema::Returned::Default,
    unique: false,
    canonical: &[],
    reference_types: &[],
    sub: &[],
    description: "",
};

/// Resolves operations. Unknown attributes in an explicit path are an error (`invalidPath`);
/// unknown or read-only keys of a path-less value are ignored, as in a POST body.
pub fn resolve(kind: ResourceKind, ops: Vec<PatchOp>) -> ScimResult<Vec<ResolvedOp>> {
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        let lenient = op.lenient;
        let Some(path) = op.path else { continue };
        let shown = match &path.filter {
            Some(f) => format!("{}[{f}]{}", path.attr, path.sub.as_ref().map(|s| format!(".{s}")).unwrap_or_default()),
            None => path.attr.to_string(),
        };
        let Some(loc) = schema::locate(kind, path.attr.urn.as_deref(), &path.attr.attr) else {
            // An attribute of an extension this server has no schema for, or that whole
            // extension: applied verbatim (see `resource::canonicalize`).
            let whole = path.attr.to_string();
            let opaque = match &path.attr.urn {
                _ if path.filter.is_none() && path.attr.sub.is_none() && schema::looks_like_extension(&whole) && !schema::is_known_schema(kind, &whole) => {
                    Some((whole, String::new()))
                }
                Some(urn) if path.filter.is_none() && path.attr.sub.is_none() && schema::looks_like_extension(urn) && !schema::is_known_schema(kind, urn) => {
                    Some((urn.clone(), path.attr.attr.clone()))
                }
                _ => None,
            };
            if let Some(o) = opaque {
                out.push(ResolvedOp { op: op.op, ext: None, def: &OPAQUE, filter: None, sub: None, value: op.value, shown, opaque: Some(o) });
                continue;
            }
            if lenient {
                continue;
            }
            return Err(ScimError::invalid_path(format!("unknown attribute '{shown}'")));
        };
        let sub_name = path.sub.as_deref().or(path.attr.sub.as_deref());
        let sub = match sub_name {
            None => None,
            Some(s) => match schema::find(loc.def.sub, s) {
                Some(d) => Some(d),
                None if lenient => continue,
                None => return Err(ScimError::invalid_path(format!("unknown sub-attribute '{shown}'"))),
            },
        };
        let read_only = loc.def.mutability == Mutability::ReadOnly || sub.is_some_and(|s| s.mutability == Mutability::ReadOnly);
        if read_only {
            if lenient {
                continue;
            }
            return Err(ScimError::mutability(format!("'{shown}' is read-only")));
        }
        let filter = match &path.filter {
            None => None,
            Some(f) => {
                if !(loc.def.multi && loc.def.ty == AttrType::Complex) {
                    return Err(ScimError::invalid_path(format!("'{shown}': only multi-valued complex attributes take a value filter")));
                }
                Some(f.resolve_element(kind, loc.def).map_err(|e| ScimError::invalid_path(e.detail))?)
            }
        };
        if loc.def.multi && filter.is_none() && sub.is_some() {
            return Err(ScimError::invalid_path(format!("'{shown}': select the values of a multi-valued attribute with a filter, e.g. {}[type eq \"work\"].{}", loc.def.name, sub.map(|s| s.name).unwrap_or_default())));
        }
        out.push(ResolvedOp { op: op.op, ext: loc.extension, def: loc.def, filter, sub, value: op.value, shown, opaque: None });
    }
    Ok(out)
}

/// Parses and resolves a PATCH body in one step.
pub fn parse_and_resolve(kind: ResourceKind, body: &Value) -> ScimResult<Vec<ResolvedOp>> {
    resolve(kind, parse_request(body)?)
}

// ---------------------------------------------------------------------------------------------
// Application

fn container<'a>(obj: &'a mut Map<String, Value>, ext: Option<&str>) -> Option<&'a mut Map<String, Value>> {
    let Some(urn) = ext else { return Some(obj) };
    let slot = obj.entry(urn.to_string()).or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
}

fn required_value(op: &ResolvedOp) -> ScimResult<&Value> {
    op.value.as_ref().ok_or_else(|| ScimError::invalid_syntax(format!("operation on '{}' needs a value", op.shown)))
}

fn single_element(def: &AttrDef, v: &Value, shown: &str) -> ScimResult<Option<Value>> {
    Ok(canonical_value(def, v, shown)?.and_then(|a| a.as_array().and_then(|a| a.first().cloned())))
}

fn sub_value(sub: &AttrDef, v: &Value, shown: &str) -> ScimResult<Option<Value>> {
    canonical_value(sub, v, shown)
}

/// If a value filter is a conjunction of `eq` comparisons, the element those describe
/// (`emails[type eq "work"]` → `{"type":"work"}`), so an add/replace can create it.
fn describe(filter: &Typed, out: &mut Map<String, Value>) -> bool {
    match filter {
        Typed::And(a, b) => describe(a, out) && describe(b, out),
        Typed::Cmp(t, CompareOp::Eq, lit) => {
            let v = match lit {
                Literal::Str(s) => Value::from(s.clone()),
                Literal::Bool(b) => Value::from(*b),
                Literal::Num(n) => serde_json::Number::from_f64(*n).map(Value::Number).unwrap_or(Value::Null),
                Literal::Null => return false,
            };
            out.insert(t.attr.name.to_string(), v);
            true
        }
        _ => false,
    }
}

fn clear_other_primaries(items: &mut [Value], keep: usize) {
    let keep_is_primary = items.get(keep).and_then(|e| e.get("primary")).and_then(Value::as_bool) == Some(true);
    if !keep_is_primary {
        return;
    }
    for (i, e) in items.iter_mut().enumerate() {
        if i != keep
            && let Some(o) = e.as_object_mut()
        {
            o.remove("primary");
        }
    }
}

fn same_value(def: &AttrDef, a: &Value, b: &Value) -> bool {
    if def.ty == AttrType::Complex {
        match (a.get("value"), b.get("value")) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        }
    } else {
        a == b
    }
}

/// Applies resolved operations to a canonical resource body, all or nothing: on error the
/// input is left untouched.
pub fn apply(body: &Value, ops: &[ResolvedOp]) -> ScimResult<Value> {
    let mut work = body.as_object().cloned().unwrap_or_default();
    for op in ops {
        apply_one(&mut work, op)?;
    }
    // Drop extension objects an operation emptied.
    work.retain(|_, v| !matches!(v, Value::Object(o) if o.is_empty()) && !matches!(v, Value::Array(a) if a.is_empty()));
    Ok(Value::Object(work))
}

fn apply_opaque(obj: &mut Map<String, Value>, op: &ResolvedOp, urn: &str, attr: &str) -> ScimResult<()> {
    let value = match op.op {
        OpKind::Remove => None,
        _ => Some(required_value(op)?.clone()).filter(|v| !v.is_null()),
    };
    if attr.is_empty() {
        match value {
            None => {
                obj.remove(urn);
            }
            Some(Value::Object(src)) => {
                let slot = obj.entry(urn.to_string()).or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(dst) = slot {
                    for (k, v) in src.into_iter().filter(|(k, _)| !k.eq_ignore_ascii_case("schemas")) {
                        dst.insert(k, v);
                    }
                }
            }
            Some(_) => return Err(ScimError::invalid_value(format!("'{urn}' takes an object of its attributes"))),
        }
        return Ok(());
    }
    let Some(c) = container(obj, Some(urn)) else {
        return Err(ScimError::internal("extension container is not an object"));
    };
    match value {
        None => c.remove(attr),
        Some(v) => c.insert(attr.to_string(), v),
    };
    Ok(())
}

fn apply_one(obj: &mut Map<String, Value>, op: &ResolvedOp) -> ScimResult<()> {
    if let Some((urn, attr)) = &op.opaque {
        return apply_opaque(obj, op, urn, attr);
    }
    let def = op.def;
    let Some(c) = container(obj, op.ext) else {
        return Err(ScimError::internal("extension container is not an object"));
    };
    let name = def.name;
    if let Some(filter) = &op.filter {
        return apply_filtered(c, op, filter);
    }
    match op.op {
        OpKind::Remove => {
            match (op.sub, &op.value) {
                (Some(sub), _) => {
                    if let Some(Value::Object(o)) = c.get_mut(name) {
                        o.remove(sub.name);
                        if o.is_empty() {
                            c.remove(name);
                        }
                    }
                }
                // Remove just the listed values of a multi-valued attribute.
                (None, Some(v)) if def.multi && !v.is_null() => {
                    let victims = canonical_value(def, v, &op.shown)?.and_then(|a| a.as_array().cloned()).unwrap_or_default();
                    if let Some(Value::Array(items)) = c.get_mut(name) {
                        items.retain(|e| !victims.iter().any(|x| same_value(def, e, x)));
                        if items.is_empty() {
                            c.remove(name);
                        }
                    }
                }
                _ => {
                    c.remove(name);
                }
            }
            Ok(())
        }
        OpKind::Add | OpKind::Replace => {
            let v = required_value(op)?;
            if let Some(sub) = op.sub {
                let nv = sub_value(sub, v, &op.shown)?;
                let slot = c.entry(name.to_string()).or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Value::Object(o) = slot {
                    match nv {
                        Some(nv) => o.insert(sub.name.to_string(), nv),
                        None => o.remove(sub.name),
                    };
                    if o.is_empty() {
                        c.remove(name);
                    }
                }
                return Ok(());
            }
            let Some(nv) = canonical_value(def, v, &op.shown)? else {
                c.remove(name);
                return Ok(());
            };
            match (op.op, def.multi, def.ty) {
                (OpKind::Add, true, _) => {
                    let mut items = match c.remove(name) {
                        Some(Value::Array(a)) => a,
                        _ => Vec::new(),
                    };
                    // A value already present is updated in place, not added twice.
                    for e in nv.as_array().cloned().unwrap_or_default() {
                        let at = match items.iter().position(|x| same_value(def, x, &e)) {
                            Some(i) => {
                                if let (Some(dst), Some(src)) = (items[i].as_object_mut(), e.as_object()) {
                                    for (k, x) in src {
                                        dst.insert(k.clone(), x.clone());
                                    }
                                } else {
                                    items[i] = e;
                                }
                                i
                            }
                            None => {
                                items.push(e);
                                items.len() - 1
                            }
                        };
                        clear_other_primaries(&mut items, at);
                    }
                    c.insert(name.to_string(), Value::Array(items));
                }
                // RFC 7644 §3.5.2.1/3: on a singular complex attribute, the given
                // sub-attributes are set and the others left as they are.
                (_, false, AttrType::Complex) => {
                    let slot = c.entry(name.to_string()).or_insert_with(|| Value::Object(Map::new()));
                    if let (Value::Object(dst), Value::Object(src)) = (slot, nv) {
                        for (k, x) in src {
                            dst.insert(k, x);
                        }
                    }
                }
                _ => {
                    c.insert(name.to_string(), nv);
                }
            }
            Ok(())
        }
    }
}

fn apply_filtered(c: &mut Map<String, Value>, op: &ResolvedOp, filter: &Typed) -> ScimResult<()> {
    let def = op.def;
    let mut items = match c.remove(def.name) {
        Some(Value::Array(a)) => a,
        Some(other) => vec![other],
        None => Vec::new(),
    };
    let hits: Vec<usize> = items.iter().enumerate().filter(|(_, e)| eval::matches(filter, e)).map(|(i, _)| i).collect();
    let result = (|| -> ScimResult<()> {
        match op.op {
            OpKind::Remove => {
                match op.sub {
                    Some(sub) => {
                        for &i in &hits {
                            if let Some(o) = items[i].as_object_mut() {
                                o.remove(sub.name);
                            }
                        }
                    }
                    None => {
                        let mut i = 0;
                        items.retain(|_| {
                            let keep = !hits.contains(&i);
                            i += 1;
                            keep
                        });
                    }
                }
                Ok(())
            }
            OpKind::Add | OpKind::Replace => {
                let v = required_value(op)?;
                let new_fields: Map<String, Value> = match op.sub {
                    Some(sub) => {
                        let mut m = Map::new();
                        if let Some(nv) = sub_value(sub, v, &op.shown)? {
                            m.insert(sub.name.to_string(), nv);
                        }
                        m
                    }
                    None => match single_element(def, v, &op.shown)? {
                        Some(Value::Object(m)) => m,
                        _ => Map::new(),
                    },
                };
                if hits.is_empty() {
                    // Entra replaces `emails[type eq "work"].value` on users with no work email:
                    // create the element the filter describes rather than fail.
                    let mut created = Map::new();
                    if !describe(filter, &mut created) {
                        return Err(ScimError::no_target(format!("no value of '{}' matches '{}'", def.name, op.shown)));
                    }
                    for (k, x) in new_fields {
                        created.insert(k, x);
                    }
                    let created = single_element(def, &Value::Object(created), &op.shown)?.unwrap_or(Value::Null);
                    if !created.is_null() {
                        items.push(created);
                        let last = items.len() - 1;
                        clear_other_primaries(&mut items, last);
                    }
                    return Ok(());
                }
                for &i in &hits {
                    if op.op == OpKind::Replace && op.sub.is_none() {
                        items[i] = Value::Object(new_fields.clone());
                    } else if let Some(o) = items[i].as_object_mut() {
                        for (k, x) in &new_fields {
                            o.insert(k.clone(), x.clone());
                        }
                    }
                    clear_other_primaries(&mut items, i);
                }
                Ok(())
            }
        }
    })();
    items.retain(|e| !matches!(e, Value::Object(o) if o.is_empty()));
    if !items.is_empty() {
        c.insert(def.name.to_string(), Value::Array(items));
    }
    result
}

// ---------------------------------------------------------------------------------------------
// Group membership deltas

/// A change to a group's member list, applied by the store without loading other members.
#[derive(Debug, Clone, PartialEq)]
pub enum MemberOp {
    Add(Vec<String>),
    Remove(Vec<String>),
    RemoveAll,
}

fn member_ids(v: &Value, shown: &str) -> ScimResult<Vec<String>> {
    let items: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        Value::Null => vec![],
        other => vec![other],
    };
    items
        .into_iter()
        .map(|m| match eval::get_ci(m, "value").or(Some(m)) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            _ => Err(ScimError::invalid_value(format!("'{shown}': each member needs a string 'value'"))),
        })
        .collect()
}

fn value_eq_ids(f: &Typed, out: &mut Vec<String>) -> bool {
    match f {
        Typed::Or(a, b) => value_eq_ids(a, out) && value_eq_ids(b, out),
        Typed::Cmp(t, CompareOp::Eq, Literal::Str(s)) if t.attr.name == "value" => {
            out.push(s.clone());
            true
        }
        _ => false,
    }
}

/// Splits the operations on `members` out of a group PATCH as deltas.
pub fn split_members(ops: Vec<ResolvedOp>) -> ScimResult<(Vec<ResolvedOp>, Vec<MemberOp>)> {
    let (mut rest, mut members) = (Vec::new(), Vec::new());
    for op in ops {
        if op.def.name != "members" {
            rest.push(op);
            continue;
        }
        if op.sub.is_some() {
            return Err(ScimError::invalid_path(format!("'{}': member sub-attributes cannot be changed; add or remove the member", op.shown)));
        }
        match (op.op, &op.filter, &op.value) {
            (OpKind::Add, None, Some(v)) => members.push(MemberOp::Add(member_ids(v, &op.shown)?)),
            (OpKind::Replace, None, Some(v)) => {
                members.push(MemberOp::RemoveAll);
                members.push(MemberOp::Add(member_ids(v, &op.shown)?));
            }
            (OpKind::Remove, None, None) | (OpKind::Remove, None, Some(Value::Null)) => members.push(MemberOp::RemoveAll),
            (OpKind::Remove, None, Some(v)) => members.push(MemberOp::Remove(member_ids(v, &op.shown)?)),
            (OpKind::Remove, Some(f), _) => {
                let mut ids = Vec::new();
                if !value_eq_ids(f, &mut ids) {
                    return Err(ScimError::invalid_filter(format!("'{}': members are selected by value, e.g. members[value eq \"id\"]", op.shown)));
                }
                members.push(MemberOp::Remove(ids));
            }
            (_, Some(_), _) => {
                return Err(ScimError::invalid_path(format!("'{}': members are immutable; add or remove them instead", op.shown)));
            }
            (_, None, None) => return Err(ScimError::invalid_syntax(format!("operation on '{}' needs a value", op.shown))),
        }
    }
    Ok((rest, members))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    fn patch(body: &Value, ops: Value) -> ScimResult<Value> {
        let req = json!({"schemas": [PATCH_SCHEMA], "Operations": ops});
        apply(body, &parse_and_resolve(ResourceKind::User, &req)?)
    }

    #[test]
    fn entra_dialect() {
        let u = json!({"userName": "a", "active": true, "emails": [{"value": "a@x.com", "type": "work", "primary": true}]});
        let out = patch(&u, json!([
            {"op": "Replace", "path": "active", "value": "False"},
            {"op": "Add", "value": {"name.givenName": "Ann", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Eng", "nonsense": 1}},
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "ann@x.com"},
            {"op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555"},
            {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": "boss-id"},
        ])).unwrap();
        assert_eq!(out, json!({
            "userName": "a", "active": false,
            "emails": [{"value": "ann@x.com", "type": "work", "primary": true}],
            "name": {"givenName": "Ann"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Eng", "manager": {"value": "boss-id"}},
            "phoneNumbers": [{"type": "mobile", "value": "+1 555"}],
        }));
    }

    #[test]
    fn okta_deactivation() {
        let out = patch(&json!({"userName": "a", "active": true}), json!([{"op": "replace", "value": {"active": false}}])).unwrap();
        assert_eq!(out["active"], json!(false));
    }

    #[test]
    fn multi_valued_add_merges_and_remove_filters() {
        let u = json!({"userName": "a", "emails": [{"value": "a@x.com", "type": "work", "primary": true}]});
        let out = patch(&u, json!([{"op": "add", "path": "emails", "value": [{"value": "b@y.com", "type": "home", "primary": true}, {"value": "a@x.com", "type": "work", "primary": true}]}])).unwrap();
        assert_eq!(out["emails"], json!([{"value": "a@x.com", "type": "work", "primary": true}, {"value": "b@y.com", "type": "home"}]));
        let out = patch(&out, json!([{"op": "add", "path": "emails", "value": {"value": "b@y.com", "type": "home", "primary": true}}])).unwrap();
        assert_eq!(out["emails"], json!([{"value": "a@x.com", "type": "work"}, {"value": "b@y.com", "type": "home", "primary": true}]));
        let out = patch(&out, json!([{"op": "remove", "path": "emails[type eq \"work\"]"}])).unwrap();
        assert_eq!(out["emails"], json!([{"value": "b@y.com", "type": "home", "primary": true}]));
        let out = patch(&out, json!([{"op": "remove", "path": "emails[type eq \"home\"].primary"}])).unwrap();
        assert_eq!(out["emails"], json!([{"value": "b@y.com", "type": "home"}]));
    }

    #[test]
    fn errors() {
        let u = json!({"userName": "a"});
        let e = patch(&u, json!([{"op": "remove"}])).unwrap_err();
        assert_eq!(e.scim_type, Some(crate::scim::error::ScimType::NoTarget));
        let e = patch(&u, json!([{"op": "replace", "path": "id", "value": "x"}])).unwrap_err();
        assert_eq!(e.scim_type, Some(crate::scim::error::ScimType::Mutability));
        let e = patch(&u, json!([{"op": "replace", "path": "bogus", "value": "x"}])).unwrap_err();
        assert_eq!(e.scim_type, Some(crate::scim::error::ScimType::InvalidPath));
        let e = patch(&u, json!([{"op": "replace", "path": "emails[type eq \"work\" or type eq \"home\"]", "value": {"value": "x"}}])).unwrap_err();
        assert_eq!(e.scim_type, Some(crate::scim::error::ScimType::NoTarget));
        let e = patch(&u, json!([{"op": "frobnicate", "path": "userName", "value": "x"}])).unwrap_err();
        assert_eq!(e.scim_type, Some(crate::scim::error::ScimType::InvalidSyntax));
        let e = patch(&u, json!([{"op": "replace", "path": "active", "value": "perhaps"}])).unwrap_err();
        assert_eq!(e.scim_type, Some(crate::scim::error::ScimType::InvalidValue));
    }

    #[test]
    fn member_ops() {
        let req = json!({"schemas": [PATCH_SCHEMA], "Operations": [
            {"op": "Add", "path": "members", "value": [{"value": "u1"}, {"value": "u2"}]},
            {"op": "Remove", "path": "members", "value": [{"value": "u1"}]},
            {"op": "remove", "path": "members[value eq \"u3\" or value eq \"u4\"]"},
            {"op": "replace", "value": {"displayName": "New", "members": [{"value": "u9"}]}},
        ]});
        let ops = parse_and_resolve(ResourceKind::Group, &req).unwrap();
        let (rest, members) = split_members(ops).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(members, vec![
            MemberOp::Add(vec!["u1".into(), "u2".into()]),
            MemberOp::Remove(vec!["u1".into()]),
            MemberOp::Remove(vec!["u3".into(), "u4".into()]),
            MemberOp::RemoveAll,
            MemberOp::Add(vec!["u9".into()]),
        ]);
    }

    #[test]
    fn whole_extension_paths() {
        let u = json!({"userName": "a", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"division": "D"}});
        let ext = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
        let out = patch(&u, json!([{"op": "add", "path": ext, "value": {"department": "Eng"}}, {"op": "replace", "path": "title", "value": "T"}])).unwrap();
        assert_eq!(out[ext], json!({"division": "D", "department": "Eng"}));
        assert_eq!(out["title"], "T");
        let out = patch(&out, json!([{"op": "remove", "path": ext}])).unwrap();
        assert!(out.get(ext).is_none());
        assert!(patch(&u, json!([{"op": "add", "path": ext, "value": {"bogus": 1}}])).is_err());
    }

    use proptest::prelude::*;

    fn arb_name() -> impl Strategy<Value = String> {
        "[a-zA-Z][a-zA-Z0-9_]{0,8}"
    }

    fn arb_patch_path() -> impl Strategy<Value = PatchPath> {
        let urn = proptest::option::of(proptest::sample::select(vec![
            "urn:ietf:params:scim:schemas:core:2.0:User".to_string(),
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".to_string(),
        ]));
        let value = prop_oneof![
            any::<String>().prop_map(crate::scim::filter::CompValue::Str),
            any::<bool>().prop_map(crate::scim::filter::CompValue::Bool),
            any::<i32>().prop_map(|n| crate::scim::filter::CompValue::Num(n.into())),
        ];
        let leaf = (arb_name(), value).prop_map(|(a, v)| Filter::Compare(AttrPath { urn: None, attr: a, sub: None }, crate::scim::filter::CompareOp::Eq, v));
        let filter = leaf.prop_recursive(2, 6, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::And(Box::new(a), Box::new(b))),
                (inner.clone(), inner).prop_map(|(a, b)| Filter::Or(Box::new(a), Box::new(b))),
            ]
        });
        (urn, arb_name(), proptest::option::of(filter), proptest::option::of(arb_name()), proptest::option::of(arb_name())).prop_map(|(urn, attr, filter, sub, attr_sub)| {
            match filter {
                // attr[filter].sub
                Some(f) => PatchPath { attr: AttrPath { urn, attr, sub: None }, filter: Some(f), sub },
                // attr.sub
                None => PatchPath { attr: AttrPath { urn, attr, sub: attr_sub }, filter: None, sub: None },
            }
        })
    }

    proptest! {
        #[test]
        fn patch_path_print_parse_round_trip(p in arb_patch_path()) {
            let printed = p.to_string();
            let back = PatchPath::parse(&printed).map_err(|e| TestCaseError::fail(format!("{printed}: {e}")))?;
            prop_assert_eq!(&back, &p);
        }

        #[test]
        fn patch_parsing_never_panics(path in "\\PC{0,40}", op in "(?i)add|remove|replace|x") {
            let body = json!({"schemas": [PATCH_SCHEMA], "Operations": [{"op": op, "path": path, "value": {"value": "x"}}]});
            for kind in [ResourceKind::User, ResourceKind::Group] {
                if let Ok(ops) = parse_and_resolve(kind, &body) {
                    let _ = apply(&json!({"userName": "u", "displayName": "g", "emails": [{"value": "a", "type": "work"}]}), &ops);
                }
            }
        }
    }

    #[test]
    fn unknown_extensions_are_patched_verbatim() {
        let custom = "urn:ietf:params:scim:schemas:extension:custom:2.0:User";
        let u = json!({"userName": "a"});
        let out = patch(&u, json!([
            {"op": "Add", "path": format!("{custom}:worksiteId"), "value": "180"},
            {"op": "Replace", "value": {format!("{custom}:badge"): "B-7"}},
        ])).unwrap();
        assert_eq!(out[custom], json!({"worksiteId": "180", "badge": "B-7"}));
        let out = patch(&out, json!([{"op": "Remove", "path": format!("{custom}:worksiteId")}])).unwrap();
        assert_eq!(out[custom], json!({"badge": "B-7"}));
        let out = patch(&out, json!([{"op": "remove", "path": custom}])).unwrap();
        assert!(out.get(custom).is_none());
        // An unknown core attribute is still an error.
        assert!(patch(&u, json!([{"op": "add", "path": "urn:ietf:params:scim:schemas:core:2.0:User:nope", "value": 1}])).is_err());
    }

    #[test]
    fn path_parsing() {
        let p = PatchPath::parse(r#"emails[type eq "wo]rk"].value"#).unwrap();
        assert_eq!(p.sub.as_deref(), Some("value"));
        assert!(PatchPath::parse(r#"emails[type eq "x"]junk"#).is_err());
        assert!(PatchPath::parse(r#"emails[type eq "x""#).is_err());
    }
}
