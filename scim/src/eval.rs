//! In-memory evaluation of typed filters over a JSON resource (PATCH value paths).
//!
//! Semantics shared with the store's SQL compiler (`store::sqlite::filter_sql`):
//! a comparison on a multi-valued attribute holds if any value matches; `ne` is the negation of
//! `eq` (so an absent attribute is `ne` anything); `eq null` means absent; strings of
//! `caseExact=false` attributes compare after Unicode lower-casing.

use std::cmp::Ordering;

use serde_json::Value;

use super::filter::{CompareOp, Literal, Target, Typed, canonical_datetime};
use super::schema::AttrType;

/// Case folding for caseExact=false comparisons (also used to build index columns).
pub fn fold(s: &str) -> String {
    s.to_lowercase()
}

/// Case-insensitive object key lookup (SCIM attribute names are case-insensitive).
pub fn get_ci<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    let o = obj.as_object()?;
    o.get(key).or_else(|| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
}

fn push_values<'a>(v: &'a Value, sub: Option<&str>, out: &mut Vec<&'a Value>) {
    match (v, sub) {
        (Value::Array(items), _) => {
            for item in items {
                match sub {
                    Some(s) => out.extend(get_ci(item, s)),
                    None => out.push(item),
                }
            }
        }
        (_, Some(s)) => out.extend(get_ci(v, s)),
        (_, None) => out.push(v),
    }
}

/// The values a target names in `resource` (or, for `element` targets, in one element).
fn values<'a>(resource: &'a Value, t: &Target) -> Vec<&'a Value> {
    let container = match t.ext {
        Some(urn) => get_ci(resource, urn),
        None => Some(resource),
    };
    let mut out = Vec::new();
    if let Some(v) = container.and_then(|c| get_ci(c, t.attr.name)) {
        push_values(v, t.sub.map(|s| s.name), &mut out);
    }
    out.retain(|v| !v.is_null());
    out
}

fn is_present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

fn compare_one(actual: &Value, op: CompareOp, lit: &Literal, ty: AttrType, case_exact: bool) -> bool {
    match lit {
        Literal::Bool(l) => match actual.as_bool() {
            Some(a) => (a == *l) == (op != CompareOp::Ne),
            None => false,
        },
        Literal::Num(l) => match actual.as_f64() {
            Some(a) => order_holds(op, a.partial_cmp(l)),
            None => false,
        },
        Literal::Str(l) => {
            let Some(a) = actual.as_str() else { return false };
            let (a, l) = if ty == AttrType::DateTime && !matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew) {
                match canonical_datetime(a) {
                    Some(a) => (a, l.clone()),
                    None => return false,
                }
            } else if case_exact {
                (a.to_string(), l.clone())
            } else {
                (fold(a), fold(l))
            };
            match op {
                CompareOp::Co => a.contains(&l),
                CompareOp::Sw => a.starts_with(&l),
                CompareOp::Ew => a.ends_with(&l),
                _ => order_holds(op, Some(a.as_str().cmp(l.as_str()))),
            }
        }
        Literal::Null => false,
    }
}

fn order_holds(op: CompareOp, ord: Option<Ordering>) -> bool {
    let Some(ord) = ord else { return false };
    match op {
        CompareOp::Eq => ord == Ordering::Equal,
        CompareOp::Ne => ord != Ordering::Equal,
        CompareOp::Gt => ord == Ordering::Greater,
        CompareOp::Ge => ord != Ordering::Less,
        CompareOp::Lt => ord == Ordering::Less,
        CompareOp::Le => ord != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

/// Does `resource` (a whole resource, or one element inside a value filter) match `f`?
pub fn matches(f: &Typed, resource: &Value) -> bool {
    match f {
        Typed::And(a, b) => matches(a, resource) && matches(b, resource),
        Typed::Or(a, b) => matches(a, resource) || matches(b, resource),
        Typed::Not(a) => !matches(a, resource),
        Typed::Present(t) => values(resource, t).into_iter().any(is_present),
        Typed::Any(t, inner) => {
            let container = match t.ext {
                Some(urn) => get_ci(resource, urn),
                None => Some(resource),
            };
            match container.and_then(|c| get_ci(c, t.attr.name)) {
                Some(Value::Array(items)) => items.iter().any(|e| matches(inner, e)),
                Some(v @ Value::Object(_)) => matches(inner, v),
                _ => false,
            }
        }
        Typed::Cmp(t, op, lit) => {
            let vals = values(resource, t);
            let leaf = t.leaf();
            match (op, lit) {
                (CompareOp::Eq, Literal::Null) => !vals.into_iter().any(is_present),
                (CompareOp::Ne, Literal::Null) => vals.into_iter().any(is_present),
                (CompareOp::Ne, _) => {
                    !vals.iter().any(|v| compare_one(v, CompareOp::Eq, lit, leaf.ty, leaf.case_exact))
                }
                _ => vals.iter().any(|v| compare_one(v, *op, lit, leaf.ty, leaf.case_exact)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::filter::Filter;
    use crate::schema::ResourceKind;
    use serde_json::json;

    fn m(filter: &str, v: &Value) -> bool {
        matches(&Filter::parse(filter).unwrap().resolve(ResourceKind::User).unwrap(), v)
    }

    #[test]
    fn evaluates() {
        let u = json!({
            "userName": "Jane.Doe@Acme.com", "active": true, "title": "",
            "name": {"familyName": "Doe"},
            "emails": [{"value": "jane@acme.com", "type": "work"}, {"value": "j@home.org", "type": "home"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Eng"},
            "meta": {"created": "2026-01-02T03:04:05.000Z"}
        });
        assert!(m(r#"userName eq "jane.doe@acme.com""#, &u), "caseExact=false");
        assert!(m(r#"emails[type eq "work" and value co "@ACME"]"#, &u));
        assert!(!m(r#"emails[type eq "home" and value co "@acme"]"#, &u));
        assert!(m(r#"emails.value ew ".org""#, &u));
        assert!(m(r#"emails co "home""#, &u));
        assert!(m(r#"not (title pr) and name.familyName sw "d""#, &u));
        assert!(m(r#"nickName ne "x""#, &u), "absent is ne");
        assert!(m("nickName eq null", &u));
        assert!(m("active eq true and active ne false", &u));
        assert!(m(r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "eng""#, &u));
        assert!(m(r#"meta.created gt "2026-01-02T04:04:05+02:00""#, &u), "compares instants");
        assert!(!m(r#"emails.value ne "jane@acme.com""#, &u), "ne is the negation of eq over all values");
    }
}
