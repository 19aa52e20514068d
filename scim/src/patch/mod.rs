//! RFC 7644 §3.5.2 PATCH: parse operations, resolve their paths, apply them to a resource.
//!
//! The operation-level IdP dialects are absorbed here for every IdP kind: operation names in
//! any case (Entra's `"Replace"`), path-less `add`/`replace` values whose keys are dotted
//! (`name.givenName`) or URN-qualified, Okta's `{"op":"replace","value":{"active":false}}`,
//! and `remove` with a `value` list on a multi-valued attribute (Entra's member removal),
//! which removes just those values. Group membership operations are split off as deltas
//! ([`MemberOp`]) so that a change costs what the change costs, never the size of the group.

mod apply;
mod members;
#[cfg(test)]
mod tests;

use serde_json::Value;

use super::error::{ScimError, ScimResult};
use super::eval;
use super::filter::{AttrPath, Filter, Typed};
use super::schema::{self, AttrDef, AttrType, Mutability, ResourceKind};

pub use apply::apply;
pub use members::{MemberOp, split_members};

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
        let is_extension_object = crate::schema::has_urn_prefix(&k) && v.is_object() && {
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
