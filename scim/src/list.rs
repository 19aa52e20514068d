//! List and search parameters (RFC 7644 §3.4.2, §3.4.3) and attribute projection (§3.4.2.5).

use serde_json::{Map, Value};

use super::error::{ScimError, ScimResult};
use super::eval::get_ci;
use super::filter::{AttrPath, Filter, Target, Typed};
use super::schema::{self, AttrType, ResourceKind};

/// The largest page the server returns; larger `count`s are capped (announced in
/// `/ServiceProviderConfig` as `filter.maxResults`).
pub const MAX_RESULTS: usize = 1000;

#[derive(Debug, Clone)]
pub struct ListQuery {
    pub filter: Option<Typed>,
    pub sort_by: Option<Target>,
    pub descending: bool,
    /// 1-based.
    pub start_index: usize,
    pub count: usize,
    pub projection: Projection,
}

/// Raw list parameters, from a query string or a `SearchRequest` body.
#[derive(Debug, Default, Clone)]
pub struct ListParams {
    pub filter: Option<String>,
    pub sort_by: Option<String>,
    pub sort_order: Option<String>,
    pub start_index: Option<String>,
    pub count: Option<String>,
    pub attributes: Option<String>,
    pub excluded_attributes: Option<String>,
}

impl ListParams {
    /// Reads a query string, matching parameter names case-insensitively.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> ListParams {
        let mut p = ListParams::default();
        for (k, v) in pairs {
            let slot = match k.to_ascii_lowercase().as_str() {
                "filter" => &mut p.filter,
                "sortby" => &mut p.sort_by,
                "sortorder" => &mut p.sort_order,
                "startindex" => &mut p.start_index,
                "count" => &mut p.count,
                "attributes" => &mut p.attributes,
                "excludedattributes" => &mut p.excluded_attributes,
                _ => continue,
            };
            *slot = Some(v.to_string());
        }
        p
    }

    /// Reads a `SearchRequest` body (POST `/.search`).
    pub fn from_search_body(body: &Value) -> ScimResult<ListParams> {
        if !body.is_object() {
            return Err(ScimError::invalid_syntax("a search request must be a JSON object"));
        }
        let text = |k: &str| -> ScimResult<Option<String>> {
            match get_ci(body, k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Number(n)) => Ok(Some(n.to_string())),
                Some(Value::Array(a)) => Ok(Some(
                    a.iter().map(|x| x.as_str().map(str::to_string).ok_or_else(|| ScimError::invalid_syntax(format!("'{k}' must list strings")))).collect::<ScimResult<Vec<_>>>()?.join(","),
                )),
                Some(_) => Err(ScimError::invalid_syntax(format!("'{k}' has the wrong type"))),
            }
        };
        Ok(ListParams {
            filter: text("filter")?,
            sort_by: text("sortBy")?,
            sort_order: text("sortOrder")?,
            start_index: text("startIndex")?,
            count: text("count")?,
            attributes: text("attributes")?,
            excluded_attributes: text("excludedAttributes")?,
        })
    }

    pub fn resolve(&self, kind: ResourceKind) -> ScimResult<ListQuery> {
        let filter = match self.filter.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(f) => Some(Filter::parse(f)?.resolve(kind)?),
        };
        let sort_by = match self.sort_by.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(s) => {
                let p = AttrPath::parse(s).map_err(|e| ScimError::invalid_value(format!("sortBy: {}", e.detail)))?;
                let loc = schema::locate(kind, p.urn.as_deref(), &p.attr)
                    .ok_or_else(|| ScimError::invalid_value(format!("sortBy: unknown attribute '{s}'")))?;
                let sub = match &p.sub {
                    Some(n) => Some(schema::find(loc.def.sub, n).ok_or_else(|| ScimError::invalid_value(format!("sortBy: unknown attribute '{s}'")))?),
                    None if loc.def.ty == AttrType::Complex => schema::find(loc.def.sub, "value"),
                    None => None,
                };
                if sub.is_none() && loc.def.ty == AttrType::Complex {
                    return Err(ScimError::invalid_value(format!("sortBy: '{s}' is complex; name a sub-attribute")));
                }
                Some(Target { ext: loc.extension, attr: loc.def, sub })
            }
        };
        let descending = match self.sort_order.as_deref().map(|s| s.trim().to_ascii_lowercase()) {
            None => false,
            Some(s) if s.is_empty() || s == "ascending" => false,
            Some(s) if s == "descending" => true,
            Some(s) => return Err(ScimError::invalid_value(format!("sortOrder must be ascending or descending, not '{s}'"))),
        };
        let int = |name: &str, v: &Option<String>| -> ScimResult<Option<i64>> {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| s.parse::<i64>().map_err(|_| ScimError::invalid_value(format!("{name} must be an integer, not '{s}'"))))
                .transpose()
        };
        // RFC 7644 §3.4.2.4: startIndex < 1 is 1, negative count is 0.
        let start_index = int("startIndex", &self.start_index)?.unwrap_or(1).max(1) as usize;
        let count = int("count", &self.count)?.map(|c| c.max(0) as usize).unwrap_or(100).min(MAX_RESULTS);
        let projection = Projection::parse(kind, self.attributes.as_deref(), self.excluded_attributes.as_deref())?;
        Ok(ListQuery { filter, sort_by, descending, start_index, count, projection })
    }
}

/// One named attribute: (extension URN, attribute, sub-attribute), canonical names. An empty
/// attribute with an extension names the whole extension.
type Named = (Option<&'static str>, &'static str, Option<&'static str>);

/// `attributes` / `excludedAttributes`: which attributes a response carries.
#[derive(Debug, Clone, Default)]
pub struct Projection {
    include: Vec<Named>,
    exclude: Vec<Named>,
}

fn parse_list(kind: ResourceKind, list: Option<&str>, which: &str) -> ScimResult<Vec<Named>> {
    let mut out = Vec::new();
    for item in list.unwrap_or_default().split(',').map(str::trim).filter(|s| !s.is_empty()) {
        // A whole extension (`attributes=urn:...:enterprise:2.0:User`).
        if let Some(urn) = schema::extension_urn(kind, item) {
            out.push((Some(urn), "", None));
            continue;
        }
        let p = AttrPath::parse(item).map_err(|e| ScimError::invalid_value(format!("{which}: {}", e.detail)))?;
        let Some(loc) = schema::locate(kind, p.urn.as_deref(), &p.attr) else {
            return Err(ScimError::invalid_value(format!("{which}: unknown attribute '{item}'")));
        };
        let sub = match &p.sub {
            Some(n) => Some(schema::find(loc.def.sub, n).ok_or_else(|| ScimError::invalid_value(format!("{which}: unknown attribute '{item}'")))?.name),
            None => None,
        };
        out.push((loc.extension, loc.def.name, sub));
    }
    Ok(out)
}

impl Projection {
    pub fn parse(kind: ResourceKind, attributes: Option<&str>, excluded: Option<&str>) -> ScimResult<Projection> {
        Ok(Projection { include: parse_list(kind, attributes, "attributes")?, exclude: parse_list(kind, excluded, "excludedAttributes")? })
    }

    /// Whether a response needs the top-level attribute `name` (so a store can skip loading
    /// group members when they will not be returned).
    pub fn wants(&self, name: &str) -> bool {
        if self.exclude.iter().any(|(e, a, s)| e.is_none() && *a == name && s.is_none()) {
            return false;
        }
        self.include.is_empty() || self.include.iter().any(|(e, a, _)| e.is_none() && *a == name)
    }

    /// Applies the projection to a rendered resource.
    pub fn apply(&self, resource: Value) -> Value {
        let Value::Object(mut obj) = resource else { return resource };
        const ALWAYS: [&str; 2] = ["schemas", "id"];
        if !self.include.is_empty() {
            let mut out = Map::new();
            for k in ALWAYS {
                if let Some(v) = obj.remove(k) {
                    out.insert(k.to_string(), v);
                }
            }
            for (ext, attr, sub) in &self.include {
                let (src, dst) = match ext {
                    None => (Some(&obj), &mut out),
                    Some(u) => {
                        let d = out.entry(u.to_string()).or_insert_with(|| Value::Object(Map::new()));
                        let Value::Object(d) = d else { continue };
                        (obj.get(*u).and_then(Value::as_object), d)
                    }
                };
                let Some(src) = src else { continue };
                if attr.is_empty() {
                    for (k, v) in src {
                        dst.insert(k.clone(), v.clone());
                    }
                    continue;
                }
                let Some(v) = src.get(*attr) else { continue };
                match sub {
                    None => {
                        dst.insert(attr.to_string(), v.clone());
                    }
                    Some(sub) => merge_sub(dst, attr, v, sub),
                }
            }
            out.retain(|_, v| !matches!(v, Value::Object(o) if o.is_empty()));
            return Value::Object(out);
        }
        for (ext, attr, sub) in &self.exclude {
            let target = match ext {
                None => Some(&mut obj),
                Some(u) if attr.is_empty() => {
                    obj.remove(*u);
                    None
                }
                Some(u) => obj.get_mut(*u).and_then(Value::as_object_mut),
            };
            let Some(t) = target else { continue };
            if ALWAYS.contains(attr) && ext.is_none() {
                continue;
            }
            match sub {
                None => {
                    t.remove(*attr);
                }
                Some(sub) => match t.get_mut(*attr) {
                    Some(Value::Object(o)) => {
                        o.remove(*sub);
                    }
                    Some(Value::Array(items)) => items.iter_mut().filter_map(Value::as_object_mut).for_each(|o| {
                        o.remove(*sub);
                    }),
                    _ => {}
                },
            }
        }
        obj.retain(|_, v| !matches!(v, Value::Object(o) if o.is_empty()));
        Value::Object(obj)
    }
}

fn merge_sub(dst: &mut Map<String, Value>, attr: &str, v: &Value, sub: &str) {
    match v {
        Value::Object(o) => {
            if let Some(x) = o.get(sub) {
                let slot = dst.entry(attr.to_string()).or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(s) = slot {
                    s.insert(sub.to_string(), x.clone());
                }
            }
        }
        Value::Array(items) => {
            let picked: Vec<Value> = items
                .iter()
                .filter_map(|e| e.get(sub).map(|x| (sub, x)))
                .map(|(k, x)| {
                    let mut m = Map::new();
                    m.insert(k.to_string(), x.clone());
                    Value::Object(m)
                })
                .collect();
            if !picked.is_empty() {
                dst.insert(attr.to_string(), Value::Array(picked));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    #[test]
    fn projection() {
        let r = json!({"schemas": ["s"], "id": "1", "userName": "u", "name": {"givenName": "g", "familyName": "f"},
                       "emails": [{"value": "a", "type": "work"}],
                       "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "d", "division": "x"}, "meta": {"version": "v"}});
        let p = Projection::parse(ResourceKind::User, Some("userName,name.givenName,emails.value,urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"), None).unwrap();
        assert_eq!(p.apply(r.clone()), json!({"schemas": ["s"], "id": "1", "userName": "u", "name": {"givenName": "g"}, "emails": [{"value": "a"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "d"}}));
        let p = Projection::parse(ResourceKind::User, None, Some("emails,name.familyName,id")).unwrap();
        assert_eq!(p.apply(r), json!({"schemas": ["s"], "id": "1", "userName": "u", "name": {"givenName": "g"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "d", "division": "x"}, "meta": {"version": "v"}}));
        let p = Projection::parse(ResourceKind::Group, None, Some("members")).unwrap();
        assert!(!p.wants("members") && p.wants("displayName"));
        assert!(Projection::parse(ResourceKind::User, Some("bogus"), None).is_err());
    }

    #[test]
    fn paging_defaults() {
        let q = ListParams { start_index: Some("-3".into()), count: Some("5000".into()), ..Default::default() }.resolve(ResourceKind::User).unwrap();
        assert_eq!((q.start_index, q.count), (1, MAX_RESULTS));
        assert!(ListParams { count: Some("x".into()), ..Default::default() }.resolve(ResourceKind::User).is_err());
    }
}
