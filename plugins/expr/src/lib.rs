//! # expr: rules as CEL expressions
//!
//! Every decision of the chain as an expression in the entry's configuration, in CEL (the
//! Common Expression Language of Kubernetes admission policies and Envoy), with the functions
//! admins know from Entra and Okta expressions (`functions.rs`). All keys are optional; a hook
//! without one passes its input through.
//!
//! - `username`: the userName, a string. Variables: `user` (the IdP's user), `proposed` (the
//!   userName so far), `current` (the directory entry, or null), `idp` (the IdP kind).
//! - `attributes`: target attribute path → expression; a null result removes the attribute.
//!   `keep_unmapped` (default true) starts from the attributes so far, false from nothing.
//!   Variables: `user`, `proposed` (the attributes so far), `current`.
//! - `groups`: what an IdP group becomes: a name, a list of names, or null (not synced).
//!   Variables: `group` (`displayName`, `externalId`, `id`), `proposed`.
//! - `memberships`: `[{ groups = [...], when = "expr", new_users_only = false }]`: app groups
//!   granted to users for whom `when` holds. Variables: `user`, `is_new`.
//! - `deprovision`: `[{ when = "expr", action = "disable" | "strip-groups" | "delete" |
//!   "keep", retention_days = 30 }]`, the first that holds. Variables: `user`, `trigger`
//!   (`"deactivated"` or `"deleted"`).
//! - `scope`: whether the user is provisioned at all, a bool. Variables: `user`, `groups`
//!   (names of the connection's IdP groups it is in).
//! - `examples`: the rules' own tests, run before a chain version goes live:
//!   `[{ user = {...}, user_name = "jdoe" }, { group = "Dev users", groups = ["software_dev"] }]`.
//!
//! ```toml
//! config = { username = "lower(local_part(primary_email(user)))",
//!            attributes = { "urn:mapwright:custom:User:department" = "attr(user, 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department')" },
//!            groups = "group.displayName == 'Dev users' ? 'software_dev' : (group.displayName.startsWith('eng-') ? group.displayName.substring(4) : null)",
//!            memberships = [{ groups = ["app-users"] }] }
//! ```

mod convert;
mod functions;

use std::cell::OnceCell;
use std::collections::BTreeMap;

use cel::{Program, Value};
use mapwright_plugin_sdk::{Action, AttrPath, Context, Decision, Group, Hook, Memberships, Plugin, Rejection, Trigger, User, Value as Json, json};
use serde::{Deserialize, Deserializer};

/// An expression, compiled once per instance (when the configuration is first checked).
pub struct Expr {
    source: String,
    program: OnceCell<Result<Program, String>>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Expr({:?})", self.source)
    }
}

impl<'de> Deserialize<'de> for Expr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Expr, D::Error> {
        Ok(Expr { source: String::deserialize(d)?, program: OnceCell::new() })
    }
}

impl Expr {
    /// The compiled program, or why it does not compile (the position in the message).
    fn program(&self) -> Result<&Program, String> {
        // The parser reports every error it recovers from; the first one says where it is.
        let first = |e: cel::ParseErrors| e.to_string().split("\nERROR: ").next().unwrap_or_default().to_string();
        self.program.get_or_init(|| Program::compile(&self.source).map_err(first)).as_ref().map_err(Clone::clone)
    }

    /// Evaluates with `vars`; the error names the key and the expression.
    fn eval(&self, key: &str, vars: &[(&str, Value)]) -> Result<Value, Rejection> {
        let fail = |why: String| Rejection::new(format!("expr.{}", key.split(['.', '[']).next().unwrap_or(key)), format!("{key}: {why} (in `{}`)", self.source));
        let program = self.program().map_err(fail)?;
        ROOT.with(|root| {
            let mut scope = root.new_inner_scope();
            for (name, v) in vars {
                scope.add_variable_from_value(*name, v.clone());
            }
            program.execute(&scope).map_err(|e| fail(e.to_string()))
        })
    }
}

thread_local! {
    /// CEL's standard library and ours, made once per instance.
    static ROOT: cel::Context<'static, 'static> = functions::root();
}

/// A grant of app groups by condition.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// The app groups granted.
    pub groups: Vec<String>,
    /// Granted to users for whom this holds (always, when absent).
    pub when: Option<Expr>,
    /// Only when the user is created.
    #[serde(default)]
    pub new_users_only: bool,
}

/// What deprovisioning does, by condition.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeprovisionRule {
    /// Applies to users for whom this holds (always, when absent).
    pub when: Option<Expr>,
    /// `disable`, `strip-groups`, `delete` or `keep`.
    pub action: String,
    /// For `delete`: days before the purge (default 30).
    #[serde(default = "thirty")]
    pub retention_days: u32,
}

fn thirty() -> u32 {
    30
}

/// One of the rules' own tests.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    /// The IdP's user (for the user hooks).
    pub user: Option<Json>,
    /// An IdP group's displayName (for the group mapping).
    pub group: Option<String>,
    /// The IdP groups the user is in (for scope).
    #[serde(default)]
    pub user_groups: Vec<String>,
    /// The userName it must get.
    pub user_name: Option<String>,
    /// Attributes it must have (the ones named; others may be there too).
    pub attributes: Option<BTreeMap<String, Json>>,
    /// The app groups the group must map to.
    pub groups: Option<Vec<String>>,
    /// Whether it must be in scope.
    pub in_scope: Option<bool>,
}

/// The plugin's configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    username: Option<Expr>,
    #[serde(default)]
    attributes: BTreeMap<String, Expr>,
    #[serde(default = "yes")]
    keep_unmapped: bool,
    #[serde(default)]
    groups: Option<Expr>,
    #[serde(default)]
    memberships: Vec<Grant>,
    #[serde(default)]
    deprovision: Vec<DeprovisionRule>,
    #[serde(default)]
    scope: Option<Expr>,
    #[serde(default)]
    examples: Vec<Example>,
}

fn yes() -> bool {
    true
}

impl Config {
    /// Every expression with the key it is under.
    fn expressions(&self) -> Vec<(String, &Expr)> {
        let mut all: Vec<(String, &Expr)> = Vec::new();
        all.extend(self.username.iter().map(|e| ("username".to_string(), e)));
        all.extend(self.attributes.iter().map(|(k, e)| (format!("attributes.{k}"), e)));
        all.extend(self.groups.iter().map(|e| ("groups".to_string(), e)));
        all.extend(self.memberships.iter().enumerate().filter_map(|(i, g)| g.when.as_ref().map(|e| (format!("memberships[{i}].when"), e))));
        all.extend(self.deprovision.iter().enumerate().filter_map(|(i, d)| d.when.as_ref().map(|e| (format!("deprovision[{i}].when"), e))));
        all.extend(self.scope.iter().map(|e| ("scope".to_string(), e)));
        all
    }
}

fn action(rule: &DeprovisionRule) -> Result<Action, String> {
    Ok(match rule.action.as_str() {
        "disable" => Action::Disable,
        "strip-groups" => Action::StripGroups,
        "delete" => Action::Delete { retention_days: rule.retention_days },
        "keep" => Action::Keep,
        other => return Err(format!("'{other}' is not an action: use disable, strip-groups, delete or keep")),
    })
}

fn truthy(key: &str, e: &Expr, v: Value) -> Result<bool, Rejection> {
    match v {
        Value::Bool(b) => Ok(b),
        other => Err(Rejection::new(format!("expr.{key}"), format!("{key}: gave {} where a bool is needed (in `{}`)", convert::kind(&other), e.source))),
    }
}

fn holds(key: &str, when: Option<&Expr>, vars: &[(&str, Value)]) -> Result<bool, Rejection> {
    match when {
        None => Ok(true),
        Some(e) => truthy(key, e, e.eval(key, vars)?),
    }
}

fn json_var(v: &Json) -> Value {
    convert::to_cel(v)
}

fn string_var(s: &str) -> Value {
    Value::String(std::sync::Arc::new(s.to_string()))
}

fn current_var(ctx: &Context) -> Value {
    ctx.current.as_ref().map_or(Value::Null, json_var)
}

/// The plugin.
pub struct Expressions;

impl Plugin for Expressions {
    type Config = Config;
    const NAME: &'static str = "expr";
    const HOOKS: &'static [Hook] = &[Hook::Username, Hook::Groups, Hook::Attributes, Hook::Deprovision, Hook::Scope];

    /// Compiles every expression: the error names the key and the position.
    fn validate(c: &Config) -> Result<(), String> {
        for (key, e) in c.expressions() {
            e.program().map_err(|why| format!("{key}: {why}"))?;
        }
        for key in c.attributes.keys() {
            AttrPath::parse(key).map_err(|why| format!("attributes: {why}"))?;
        }
        for (i, d) in c.deprovision.iter().enumerate() {
            action(d).map_err(|why| format!("deprovision[{i}].action: {why}"))?;
        }
        if c.memberships.iter().any(|g| g.groups.is_empty()) {
            return Err("memberships: every grant names at least one group".into());
        }
        Ok(())
    }

    fn self_test(c: &Config) -> Result<(), String> {
        for (i, ex) in c.examples.iter().enumerate() {
            let n = i + 1;
            let fail = |what: String| format!("example {n}: {what}");
            if let Some(u) = &ex.user {
                let user = User::from_value(u.clone());
                let ctx = Context::test();
                if let Some(want) = &ex.user_name {
                    let got = Self::username(&ctx, c, &user, user.user_name()).map_err(|r| fail(format!("refused: {}", r.reason)))?.value;
                    if got != *want {
                        return Err(fail(format!("userName became '{got}', expected '{want}'")));
                    }
                }
                if let Some(want) = &ex.attributes {
                    let got = Self::attributes(&ctx, c, &user, u.clone()).map_err(|r| fail(format!("refused: {}", r.reason)))?.value;
                    for (k, v) in want {
                        let path = AttrPath::parse(k).map_err(&fail)?;
                        let have = got.as_object().and_then(|o| path.get(o)).cloned().unwrap_or(Json::Null);
                        if have != *v {
                            return Err(fail(format!("{k} became {have}, expected {v}")));
                        }
                    }
                }
                if let Some(want) = ex.in_scope {
                    let got = Self::in_scope(&ctx, c, &user, &ex.user_groups, true).map_err(|r| fail(format!("refused: {}", r.reason)))?.value;
                    if got != want {
                        return Err(fail(format!("in scope: {got}, expected {want}")));
                    }
                }
            }
            if let (Some(g), Some(want)) = (&ex.group, &ex.groups) {
                let group = Group { id: "example".into(), display_name: g.clone(), external_id: None };
                let got = Self::map_group(&Context::test(), c, &group, vec![g.clone()]).map_err(|r| fail(format!("refused: {}", r.reason)))?.value;
                if got != *want {
                    return Err(fail(format!("group '{g}' became {got:?}, expected {want:?}")));
                }
            }
        }
        Ok(())
    }

    /// The first of the names the expression gives (see [`Plugin::username_candidates`]).
    fn username(ctx: &Context, c: &Config, user: &User, proposed: &str) -> Result<Decision<String>, Rejection> {
        let d = Self::username_candidates(ctx, c, user, proposed)?;
        let first = d.value.into_iter().next().unwrap_or_else(|| proposed.to_string());
        Ok(Decision { value: first, provenance: d.provenance })
    }

    fn offers_candidates(c: &Config) -> bool {
        c.username.is_some()
    }

    /// The username expression gives a name, or a list of names in order of preference (the
    /// host takes the first free one): `candidates(lower(local_part(primary_email(user))), 9)`.
    fn username_candidates(ctx: &Context, c: &Config, user: &User, proposed: &str) -> Result<Decision<Vec<String>>, Rejection> {
        let Some(e) = &c.username else { return Ok(Decision::new(vec![proposed.to_string()])) };
        let vars = [("user", json_var(user.json())), ("proposed", string_var(proposed)), ("current", current_var(ctx)), ("idp", string_var(&ctx.idp_kind))];
        let wrong = |what: &str| Rejection::new("expr.username", format!("username: gave {what} where a non-empty string or a list of them is needed (in `{}`)", e.source));
        let names: Vec<String> = match e.eval("username", &vars)? {
            Value::String(s) if !s.trim().is_empty() => vec![s.to_string()],
            Value::List(l) if !l.is_empty() => l
                .iter()
                .map(|v| match v {
                    Value::String(s) if !s.trim().is_empty() => Ok(s.to_string()),
                    other => Err(wrong(&format!("a list holding {}", convert::kind(other)))),
                })
                .collect::<Result<_, _>>()?,
            other => return Err(wrong(convert::kind(&other))),
        };
        let why = match names.as_slice() {
            [one] => format!("{proposed} → {one} by `{}`", e.source),
            many => format!("{proposed} → the first free of {} by `{}`", many.join(", "), e.source),
        };
        Ok(Decision::new(names).because("expr.username", why))
    }

    fn attributes(ctx: &Context, c: &Config, user: &User, proposed: Json) -> Result<Decision<Json>, Rejection> {
        if c.attributes.is_empty() {
            return Ok(Decision::new(proposed));
        }
        let vars = [("user", json_var(user.json())), ("proposed", json_var(&proposed)), ("current", current_var(ctx))];
        let mut out = if c.keep_unmapped { proposed.as_object().cloned().unwrap_or_default() } else { mapwright_plugin_sdk::Map::new() };
        let mut changed = Vec::new();
        for (key, e) in &c.attributes {
            let path = AttrPath::parse(key).map_err(|why| Rejection::new("expr.attributes", why))?;
            let v = e.eval(&format!("attributes.{key}"), &vars)?;
            let value = convert::to_json(&v).ok_or_else(|| Rejection::new("expr.attributes", format!("attributes.{key}: gave {} which no attribute can hold (in `{}`)", convert::kind(&v), e.source)))?;
            if value.is_null() {
                if path.take(&mut out).is_some() {
                    changed.push(format!("{key} removed"));
                }
            } else if path.get(&out) != Some(&value) {
                path.put(&mut out, value);
                changed.push(key.clone());
            }
        }
        let d = Decision::new(Json::Object(out));
        Ok(if changed.is_empty() { d } else { d.because("expr.attributes", format!("set by expression: {}", changed.join(", "))) })
    }

    fn map_group(_ctx: &Context, c: &Config, group: &Group, proposed: Vec<String>) -> Result<Decision<Vec<String>>, Rejection> {
        let Some(e) = &c.groups else { return Ok(Decision::new(proposed)) };
        let g = json!({"id": group.id, "displayName": group.display_name, "externalId": group.external_id});
        let vars = [("group", json_var(&g)), ("proposed", json_var(&json!(proposed)))];
        let names: Vec<String> = match e.eval("groups", &vars)? {
            Value::Null => Vec::new(),
            Value::String(s) => vec![s.to_string()],
            Value::List(l) => l
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.to_string()),
                    other => Err(Rejection::new("expr.groups", format!("groups: gave a list holding {} where names are needed (in `{}`)", convert::kind(other), e.source))),
                })
                .collect::<Result<_, _>>()?,
            other => return Err(Rejection::new("expr.groups", format!("groups: gave {} where a name, a list of names or null is needed (in `{}`)", convert::kind(&other), e.source))),
        };
        let names: Vec<String> = names.into_iter().filter(|n| !n.trim().is_empty()).collect();
        let why = if names.is_empty() { format!("'{}' is not synced", group.display_name) } else { format!("'{}' → {}", group.display_name, names.join(", ")) };
        Ok(Decision::new(names).because("expr.groups", why))
    }

    fn user_memberships(_ctx: &Context, c: &Config, user: &User, is_new: bool, mut proposed: Memberships) -> Result<Decision<Memberships>, Rejection> {
        if c.memberships.is_empty() {
            return Ok(Decision::new(proposed));
        }
        let vars = [("user", json_var(user.json())), ("is_new", Value::Bool(is_new))];
        let mut granted = Vec::new();
        for (i, g) in c.memberships.iter().enumerate() {
            if (g.new_users_only && !is_new) || !holds(&format!("memberships[{i}].when"), g.when.as_ref(), &vars)? {
                continue;
            }
            for name in &g.groups {
                proposed.remove.retain(|r| r != name);
                if !proposed.add.contains(name) {
                    proposed.add.push(name.clone());
                    granted.push(name.clone());
                }
            }
        }
        let d = Decision::new(proposed);
        Ok(if granted.is_empty() { d } else { d.because("expr.memberships", format!("granted {}", granted.join(", "))) })
    }

    fn deprovision(_ctx: &Context, c: &Config, user: &User, trigger: Trigger, proposed: Action) -> Result<Decision<Action>, Rejection> {
        let t = match trigger {
            Trigger::Deactivated => "deactivated",
            Trigger::Deleted => "deleted",
        };
        let vars = [("user", json_var(user.json())), ("trigger", string_var(t))];
        for (i, rule) in c.deprovision.iter().enumerate() {
            if holds(&format!("deprovision[{i}].when"), rule.when.as_ref(), &vars)? {
                let a = action(rule).map_err(|why| Rejection::new("expr.deprovision", why))?;
                return Ok(Decision::new(a).because("expr.deprovision", format!("rule {i}: {} when {t}", rule.action)));
            }
        }
        Ok(Decision::new(proposed))
    }

    fn scopes(c: &Config) -> bool {
        c.scope.is_some()
    }

    fn in_scope(_ctx: &Context, c: &Config, user: &User, groups: &[String], proposed: bool) -> Result<Decision<bool>, Rejection> {
        let Some(e) = &c.scope else { return Ok(Decision::new(proposed)) };
        let vars = [("user", json_var(user.json())), ("groups", json_var(&json!(groups)))];
        let inside = truthy("scope", e, e.eval("scope", &vars)?)?;
        Ok(Decision::new(proposed && inside).because("expr.scope", format!("`{}` is {inside}", e.source)))
    }
}

mapwright_plugin_sdk::export_plugin!(Expressions);

#[cfg(test)]
mod tests;
