//! Group membership operations, split off as deltas for the store.

use serde_json::Value;

use super::{OpKind, ResolvedOp};
use crate::error::{ScimError, ScimResult};
use crate::eval;
use crate::filter::{CompareOp, Literal, Typed};

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

