//! The functions admins reach for in Entra and Okta expressions, added to CEL's own (`size`,
//! `startsWith`, `endsWith`, `contains`, `matches`, `has()`, `filter`, `map`, `exists`, the
//! ternary `?:`, `in`). Called as functions: `lower(user.userName)`. Each returns null when
//! its text argument is null, so `coalesce` can pick what is there.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use cel::extractors::Arguments;
use cel::{Context, ExecutionError, Value};

type Result = std::result::Result<Value, ExecutionError>;

/// A function as CEL calls it: its arguments, evaluated.
type Function = fn(Arguments) -> Result;

fn err(function: &str, message: impl Into<String>) -> ExecutionError {
    ExecutionError::function_error(function, message.into())
}

fn text<'a>(function: &str, args: &'a [Value], i: usize) -> std::result::Result<Option<&'a str>, ExecutionError> {
    match args.get(i) {
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(Value::Null) => Ok(None),
        Some(other) => Err(err(function, format!("argument {} must be a string, not {}", i + 1, super::convert::kind(other)))),
        None => Err(err(function, format!("needs at least {} arguments", i + 1))),
    }
}

fn int(function: &str, args: &[Value], i: usize) -> std::result::Result<Option<i64>, ExecutionError> {
    match args.get(i) {
        Some(Value::Int(n)) => Ok(Some(*n)),
        Some(Value::UInt(n)) => Ok(i64::try_from(*n).ok()),
        None => Ok(None),
        Some(other) => Err(err(function, format!("argument {} must be an int, not {}", i + 1, super::convert::kind(other)))),
    }
}

fn string(s: impl Into<String>) -> Value {
    Value::String(Arc::new(s.into()))
}

/// A text function of one string argument.
fn unary(name: &'static str, args: &[Value], f: impl Fn(&str) -> String) -> Result {
    Ok(text(name, args, 0)?.map_or(Value::Null, |s| string(f(s))))
}

fn lower(Arguments(a): Arguments) -> Result {
    unary("lower", &a, str::to_lowercase)
}
fn upper(Arguments(a): Arguments) -> Result {
    unary("upper", &a, str::to_uppercase)
}
fn trim(Arguments(a): Arguments) -> Result {
    unary("trim", &a, |s| s.trim().to_string())
}
fn strip_spaces(Arguments(a): Arguments) -> Result {
    unary("strip_spaces", &a, |s| s.chars().filter(|c| !c.is_whitespace()).collect())
}
/// Diacritics and other scripts to plain ASCII: `José Müller` → `Jose Muller`.
fn normalize(Arguments(a): Arguments) -> Result {
    unary("normalize", &a, deunicode::deunicode)
}
fn local_part(Arguments(a): Arguments) -> Result {
    unary("local_part", &a, |s| s.rsplit_once('@').map_or(s, |(l, _)| l).to_string())
}
fn domain(Arguments(a): Arguments) -> Result {
    Ok(text("domain", &a, 0)?.and_then(|s| s.rsplit_once('@')).map_or(Value::Null, |(_, d)| string(d)))
}

fn replace(Arguments(a): Arguments) -> Result {
    let (Some(s), Some(from)) = (text("replace", &a, 0)?, text("replace", &a, 1)?) else { return Ok(Value::Null) };
    let to = text("replace", &a, 2)?.unwrap_or_default();
    if from.is_empty() {
        return Err(err("replace", "the text to replace is empty"));
    }
    Ok(string(s.replace(from, to)))
}

thread_local! {
    /// Patterns compiled once per instance (an entry's expressions use a handful).
    static PATTERNS: RefCell<HashMap<String, regex::Regex>> = RefCell::new(HashMap::new());
}

fn regex_replace(Arguments(a): Arguments) -> Result {
    let (Some(s), Some(pattern)) = (text("regex_replace", &a, 0)?, text("regex_replace", &a, 1)?) else { return Ok(Value::Null) };
    let with = text("regex_replace", &a, 2)?.unwrap_or_default();
    PATTERNS.with(|p| {
        let mut p = p.borrow_mut();
        if !p.contains_key(pattern) {
            let re = regex::Regex::new(pattern).map_err(|e| err("regex_replace", format!("bad pattern '{pattern}': {e}")))?;
            if p.len() > 64 {
                p.clear();
            }
            p.insert(pattern.to_string(), re);
        }
        let re = p.get(pattern).ok_or_else(|| err("regex_replace", "pattern cache"))?;
        Ok(string(re.replace_all(s, with).into_owned()))
    })
}

fn split(Arguments(a): Arguments) -> Result {
    let (Some(s), Some(sep)) = (text("split", &a, 0)?, text("split", &a, 1)?) else { return Ok(Value::Null) };
    let parts: Vec<Value> = if sep.is_empty() { s.chars().map(|c| string(c.to_string())).collect() } else { s.split(sep).map(string).collect() };
    Ok(Value::List(Arc::new(parts)))
}

fn join(Arguments(a): Arguments) -> Result {
    let sep = text("join", &a, 1)?.unwrap_or_default();
    match a.first() {
        Some(Value::List(items)) => {
            let parts: Vec<String> = items
                .iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s.to_string()),
                    Value::Int(i) => Some(i.to_string()),
                    Value::Null => None,
                    other => super::convert::to_json(other).map(|j| j.to_string()),
                })
                .collect();
            Ok(string(parts.join(sep)))
        }
        Some(Value::Null) => Ok(Value::Null),
        _ => Err(err("join", "argument 1 must be a list")),
    }
}

/// `substring(s, start)` or `substring(s, start, end)`, in characters, clamped to the text.
fn substring(Arguments(a): Arguments) -> Result {
    let Some(s) = text("substring", &a, 0)? else { return Ok(Value::Null) };
    let n = s.chars().count() as i64;
    let start = int("substring", &a, 1)?.unwrap_or(0).clamp(0, n);
    let end = int("substring", &a, 2)?.unwrap_or(n).clamp(start, n);
    Ok(string(s.chars().skip(start as usize).take((end - start) as usize).collect::<String>()))
}

fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.trim().is_empty(),
        Value::List(l) => !l.is_empty(),
        _ => true,
    }
}

/// The first argument that is there (not null, not empty): `coalesce(a, b, c)` or a list.
fn coalesce(Arguments(a): Arguments) -> Result {
    let items: &[Value] = match a.as_slice() {
        [Value::List(l)] => l,
        all => all,
    };
    Ok(items.iter().find(|v| present(v)).cloned().unwrap_or(Value::Null))
}

/// `switch(value, {'Sales': 'sales', ...}, default)`: the map's value for `value`, else the
/// default.
fn switch(Arguments(a): Arguments) -> Result {
    let key = match a.first() {
        Some(Value::String(s)) => s.to_string(),
        Some(Value::Int(i)) => i.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    };
    let default = a.get(2).cloned().unwrap_or(Value::Null);
    match a.get(1) {
        Some(Value::Map(m)) => Ok(m.map.iter().find(|(k, _)| matches!(k, cel::objects::Key::String(s) if s.as_str() == key)).map(|(_, v)| v.clone()).unwrap_or(default)),
        _ => Err(err("switch", "argument 2 must be a map of cases")),
    }
}

/// The user's primary email, else its first, else null.
fn primary_email(Arguments(a): Arguments) -> Result {
    let Some(Value::Map(user)) = a.first() else { return Ok(Value::Null) };
    let Some(Value::List(emails)) = user.map.get(&cel::objects::Key::String(Arc::new("emails".into()))) else { return Ok(Value::Null) };
    let value = |e: &Value| match e {
        Value::Map(m) => m.map.get(&cel::objects::Key::String(Arc::new("value".into()))).cloned(),
        _ => None,
    };
    let primary = emails.iter().find(|e| matches!(e, Value::Map(m) if m.map.get(&cel::objects::Key::String(Arc::new("primary".into()))) == Some(&Value::Bool(true))));
    Ok(primary.or(emails.first()).and_then(value).unwrap_or(Value::Null))
}

/// `attr(user, 'name.givenName')`: an attribute by path, or null when any part is missing
/// (CEL's own `user.name.givenName` fails when `name` is absent).
fn attr(Arguments(a): Arguments) -> Result {
    let Some(path) = text("attr", &a, 1)? else { return Ok(Value::Null) };
    let p = mapwright_plugin_sdk::AttrPath::parse(path).map_err(|e| err("attr", e))?;
    // Walked in place (no conversion of the whole user), names matched case-insensitively.
    let mut steps: Vec<&str> = Vec::with_capacity(3);
    steps.extend(p.schema.as_deref());
    if let Some((attr, sub)) = &p.attr {
        steps.push(attr);
        steps.extend(sub.as_deref());
    }
    let mut at = match a.first() {
        Some(v) => v,
        None => return Ok(Value::Null),
    };
    for step in steps {
        let Value::Map(m) = at else { return Ok(Value::Null) };
        let found = m.map.iter().find(|(k, _)| matches!(k, cel::objects::Key::String(s) if s.eq_ignore_ascii_case(step)));
        match found {
            Some((_, v)) => at = v,
            None => return Ok(Value::Null),
        }
    }
    Ok(at.clone())
}

/// `candidates(base, n)`: `[base, base2, …, base<n>]`, the usernames to try in order.
fn candidates(Arguments(a): Arguments) -> Result {
    let Some(base) = text("candidates", &a, 0)? else { return Ok(Value::Null) };
    let n = int("candidates", &a, 1)?.unwrap_or(1).clamp(1, 100);
    let list = std::iter::once(base.to_string()).chain((2..=n).map(|i| format!("{base}{i}"))).map(string).collect();
    Ok(Value::List(Arc::new(list)))
}

/// CEL's context with these functions added.
pub fn root() -> Context<'static, 'static> {
    let mut c = Context::default();
    let all: [(&str, Function); 17] = [
        ("lower", lower),
        ("upper", upper),
        ("trim", trim),
        ("strip_spaces", strip_spaces),
        ("normalize", normalize),
        ("local_part", local_part),
        ("domain", domain),
        ("replace", replace),
        ("regex_replace", regex_replace),
        ("split", split),
        ("join", join),
        ("substring", substring),
        ("coalesce", coalesce),
        ("switch", switch),
        ("primary_email", primary_email),
        ("attr", attr),
        ("candidates", candidates),
    ];
    for (name, f) in all {
        // Every name is free in CEL's standard library (a conflict would be a build error of
        // this plugin, caught by its tests).
        let _ = c.add_function(name, f);
    }
    c
}
