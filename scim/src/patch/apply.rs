//! Applying resolved operations to a canonical resource, all or nothing.

use serde_json::{Map, Value};

use super::{OpKind, ResolvedOp};
use crate::error::{ScimError, ScimResult};
use crate::eval;
use crate::filter::{CompareOp, Literal, Typed};
use crate::resource::canonical_value;
use crate::schema::{AttrDef, AttrType};

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

