//! Rule examples: inputs and the decisions expected of them, run through a chain the way the
//! server runs it, so rules ship with their tests whatever language they are written in
//! (`mapwright plugin test --examples FILE`).
//!
//! The file (JSON, or TOML when it ends in `.toml`):
//!
//! ```json
//! {"config": {"domains": ["acme.com"]},
//!  "examples": [
//!    {"name": "an Acme address", "user": {"userName": "jane@acme.com", "emails": [{"value": "jane@acme.com"}]},
//!     "expect": {"userName": "jane", "groups": ["app-users"]}},
//!    {"name": "other domains are refused", "user": {"userName": "x@example.org"}, "expect": {"refused": "acme.domain"}},
//!    {"group": {"displayName": "Dev users"}, "expect": {"groups": ["software_dev"]}}]}
//! ```
//!
//! Only what `expect` names is checked: `userName`, `active`, `groups` (the app groups the
//! rules grant a user, or what an IdP group becomes; compared as sets), `revoke`,
//! `attributes` (a part of the entry's attributes: every key given must be there with that
//! value, nested objects compared the same way) and `refused` (`true`, or the rule that must
//! refuse: `rule` or `plugin/rule`).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::mapping::{GroupInput, MapContext, MappingError, MappingPipeline, Operation};
use crate::model::IdpConnection;
use crate::scim::resource::canonicalize;
use crate::scim::schema::ResourceKind;

/// Why an examples file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ExamplesError {
    /// Not JSON (or TOML) of the expected shape.
    #[error("the examples are not valid: {0}")]
    Syntax(String),
    /// An example that cannot be run as written.
    #[error("example {index} ({name}): {why}")]
    Example {
        /// Its position, from 1.
        index: usize,
        /// Its name, or `unnamed`.
        name: String,
        /// What is wrong.
        why: String,
    },
}

/// An examples file: the configuration they are written for, and the examples.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExampleFile {
    /// The chain entry's configuration the examples assume (a `--config` given beside them
    /// takes its place).
    #[serde(default)]
    pub config: Option<Value>,
    /// The examples, run in order.
    pub examples: Vec<Example>,
}

/// One input and what the rules must make of it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    /// What it shows (reported with its outcome).
    #[serde(default)]
    pub name: Option<String>,
    /// A SCIM User as an IdP sends it.
    #[serde(default)]
    pub user: Option<Value>,
    /// A SCIM Group as an IdP sends it (members are ignored).
    #[serde(default)]
    pub group: Option<Value>,
    /// The expected decisions.
    pub expect: Expect,
}

/// What an example expects; anything not given is not checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Expect {
    /// The mapped userName.
    pub user_name: Option<String>,
    /// Whether the entry is active.
    pub active: Option<bool>,
    /// App groups: granted to the user, or what the IdP group becomes.
    pub groups: Option<Vec<String>>,
    /// App groups the rules take back from the user.
    pub revoke: Option<Vec<String>>,
    /// A part of the mapped attributes.
    pub attributes: Option<Map<String, Value>>,
    /// The input is refused: `true`, or by this rule.
    pub refused: Option<Refusal>,
}

/// Which refusal an example expects.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Refusal {
    /// Refused (`true`), or accepted (`false`).
    Any(bool),
    /// Refused by this rule (`rule` or `plugin/rule`).
    Rule(String),
}

/// How one example went.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Its position, from 1.
    pub index: usize,
    /// Its name, or what it ran on.
    pub name: String,
    /// Whether every expectation held.
    pub passed: bool,
    /// Each expectation that did not hold.
    pub problems: Vec<String>,
    /// What the rules decided (the mapped entry, the group's app groups, or the refusal).
    pub got: Value,
}

impl ExampleFile {
    /// Parses a file's text; `toml` for a `.toml` file. Each example must give exactly one of
    /// `user` and `group`, and expect only what applies to it.
    pub fn parse(text: &str, toml: bool) -> Result<ExampleFile, ExamplesError> {
        let file: ExampleFile = if toml {
            ::toml::from_str(text).map_err(|e| ExamplesError::Syntax(e.to_string()))?
        } else {
            serde_json::from_str(text).map_err(|e| ExamplesError::Syntax(e.to_string()))?
        };
        for (i, ex) in file.examples.iter().enumerate() {
            let bad = |why: &str| ExamplesError::Example { index: i + 1, name: ex.name.clone().unwrap_or_else(|| "unnamed".into()), why: why.into() };
            let e = &ex.expect;
            match (&ex.user, &ex.group) {
                (Some(_), Some(_)) | (None, None) => return Err(bad("give either `user` or `group`")),
                (None, Some(_)) if e.user_name.is_some() || e.active.is_some() || e.revoke.is_some() || e.attributes.is_some() => {
                    return Err(bad("a group example can expect only `groups` and `refused`"));
                }
                _ => {}
            }
            if !ex.user.as_ref().or(ex.group.as_ref()).is_some_and(Value::is_object) {
                return Err(bad("the input must be a JSON object"));
            }
        }
        Ok(file)
    }
}

/// Runs every example through `pipeline` as connection `idp`'s rules, creating (nothing is
/// written anywhere).
pub async fn run(pipeline: &dyn MappingPipeline, idp: &IdpConnection, examples: &[Example]) -> Vec<Outcome> {
    let mut out = Vec::with_capacity(examples.len());
    for (i, ex) in examples.iter().enumerate() {
        let ctx = MapContext { idp, operation: Operation::Create, current: None };
        let (got, mut problems) = match (&ex.user, &ex.group) {
            (Some(user), _) => run_user(pipeline, ctx, user, &ex.expect).await,
            (None, Some(group)) => run_group(pipeline, ctx, group, &ex.expect).await,
            (None, None) => (Value::Null, vec!["nothing to run: give `user` or `group`".to_string()]),
        };
        problems.retain(|p| !p.is_empty());
        let input = ex.user.as_ref().or(ex.group.as_ref());
        let name = ex.name.clone().unwrap_or_else(|| {
            input.and_then(|v| v.get("userName").or_else(|| v.get("displayName"))).and_then(Value::as_str).unwrap_or("unnamed").to_string()
        });
        out.push(Outcome { index: i + 1, name, passed: problems.is_empty(), problems, got });
    }
    out
}

async fn run_user(pipeline: &dyn MappingPipeline, ctx: MapContext<'_>, user: &Value, e: &Expect) -> (Value, Vec<String>) {
    let body = match canonicalize(ResourceKind::User, user) {
        Ok(b) => b,
        Err(err) => return (Value::Null, vec![format!("the user is not a SCIM User: {}", err.detail)]),
    };
    match pipeline.map_user(ctx, &body).await {
        Ok((entry, _)) => {
            let got = json!({"userName": entry.user_name, "active": entry.active, "groups": entry.grant, "revoke": entry.revoke, "attributes": entry.attributes});
            let mut problems = vec![accepted(e)];
            if let Some(want) = e.user_name.as_ref().filter(|w| **w != entry.user_name) {
                problems.push(format!("userName is '{}', expected '{want}'", entry.user_name));
            }
            if let Some(want) = e.active.filter(|w| *w != entry.active) {
                problems.push(format!("active is {}, expected {want}", entry.active));
            }
            problems.push(same_set("groups", &entry.grant, e.groups.as_deref()));
            problems.push(same_set("revoke", &entry.revoke, e.revoke.as_deref()));
            if let Some(want) = &e.attributes {
                let mut diffs = Vec::new();
                contains(&entry.attributes, want, "", &mut diffs);
                problems.extend(diffs.into_iter().map(|d| format!("attributes: {d}")));
            }
            (got, problems)
        }
        Err(err) => refused_outcome(err, e),
    }
}

async fn run_group(pipeline: &dyn MappingPipeline, ctx: MapContext<'_>, group: &Value, e: &Expect) -> (Value, Vec<String>) {
    let mut group = group.clone();
    if let Some(o) = group.as_object_mut() {
        o.remove("members");
    }
    let body = match canonicalize(ResourceKind::Group, &group) {
        Ok(b) => b,
        Err(err) => return (Value::Null, vec![format!("the group is not a SCIM Group: {}", err.detail)]),
    };
    match pipeline.map_group(ctx, GroupInput { id: "example", body: &body }).await {
        Ok((groups, _)) => (json!({"groups": groups}), vec![accepted(e), same_set("groups", &groups, e.groups.as_deref())]),
        Err(err) => refused_outcome(err, e),
    }
}

/// The problem with an accepted input, if the example expected a refusal.
fn accepted(e: &Expect) -> String {
    match &e.refused {
        Some(Refusal::Any(true)) => "accepted, expected a refusal".into(),
        Some(Refusal::Rule(r)) => format!("accepted, expected a refusal by {r}"),
        _ => String::new(),
    }
}

fn refused_outcome(err: MappingError, e: &Expect) -> (Value, Vec<String>) {
    let problem = match (&err, &e.refused) {
        (MappingError::Rejected { .. }, Some(Refusal::Any(true))) => String::new(),
        (MappingError::Rejected { rule, .. }, Some(Refusal::Rule(want))) if rule == want || rule.rsplit('/').next() == Some(want) => String::new(),
        (MappingError::Rejected { rule, reason }, Some(Refusal::Rule(want))) => format!("refused by {rule} ({reason}), expected a refusal by {want}"),
        (MappingError::Rejected { rule, reason }, _) => format!("refused by {rule}: {reason}"),
        (other, _) => format!("failed: {other}"),
    };
    let got = match &err {
        MappingError::Rejected { rule, reason } => json!({"refused": {"rule": rule, "reason": reason}}),
        other => json!({"error": other.to_string()}),
    };
    (got, vec![problem])
}

fn same_set(what: &str, got: &[String], want: Option<&[String]>) -> String {
    let Some(want) = want else { return String::new() };
    let (g, w): (BTreeSet<&String>, BTreeSet<&String>) = (got.iter().collect(), want.iter().collect());
    if g == w { String::new() } else { format!("{what} are {got:?}, expected {want:?}") }
}

/// Records in `diffs` each key of `want` that `got` lacks or holds another value under.
fn contains(got: &Value, want: &Map<String, Value>, at: &str, diffs: &mut Vec<String>) {
    for (k, w) in want {
        let path = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
        let g = got.get(k).unwrap_or(&Value::Null);
        match (g, w) {
            (Value::Object(_), Value::Object(inner)) => contains(g, inner, &path, diffs),
            _ if g == w => {}
            _ => diffs.push(format!("{path} is {g}, expected {w}")),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::mapping::IdentityMapping;

    fn idp() -> IdpConnection {
        IdpConnection::detached(crate::model::IdpKind::Okta)
    }

    #[tokio::test]
    async fn each_expectation_is_checked_and_reported() {
        let file = ExampleFile::parse(
            r#"{"examples": [
                {"name": "as sent", "user": {"userName": "jane", "title": "Eng", "name": {"givenName": "Jane"}},
                 "expect": {"userName": "jane", "active": true, "attributes": {"title": "Eng", "name": {"givenName": "Jane"}}}},
                {"user": {"userName": "bob", "title": "Ops"}, "expect": {"userName": "robert", "attributes": {"title": "Eng"}, "refused": true}},
                {"group": {"displayName": "Dev"}, "expect": {"groups": ["Dev"]}},
                {"group": {"displayName": "Ops"}, "expect": {"groups": []}},
                {"user": {"userName": "  "}, "expect": {"refused": "identity"}}
            ]}"#,
            false,
        )
        .unwrap();
        let got = run(&IdentityMapping, &idp(), &file.examples).await;
        let passed: Vec<bool> = got.iter().map(|o| o.passed).collect();
        assert_eq!(passed, [true, false, true, false, false], "{got:#?}");
        assert_eq!(got[1].name, "bob");
        assert_eq!(got[1].problems, ["accepted, expected a refusal", "userName is 'bob', expected 'robert'", "attributes: title is \"Ops\", expected \"Eng\""]);
        assert_eq!(got[3].problems, [r#"groups are ["Ops"], expected []"#]);
        // An input the server would refuse before any rule runs is the example's mistake.
        assert_eq!(got[4].problems, ["the user is not a SCIM User: 'userName' is required and must be a non-empty string"]);
    }

    #[test]
    fn a_refusal_matches_by_rule_with_or_without_its_plugin() {
        let refusal = || MappingError::Rejected { rule: "acme-rules/acme.domain".into(), reason: "example.org".into() };
        let expect = |r: Refusal| Expect { refused: Some(r), ..Expect::default() };
        for ok in [Refusal::Any(true), Refusal::Rule("acme.domain".into()), Refusal::Rule("acme-rules/acme.domain".into())] {
            assert_eq!(refused_outcome(refusal(), &expect(ok)).1, [""]);
        }
        assert_eq!(refused_outcome(refusal(), &expect(Refusal::Rule("acme.email".into()))).1, ["refused by acme-rules/acme.domain (example.org), expected a refusal by acme.email"]);
        assert_eq!(refused_outcome(refusal(), &Expect::default()).1, ["refused by acme-rules/acme.domain: example.org"]);
        let (got, _) = refused_outcome(refusal(), &Expect::default());
        assert_eq!(got["refused"]["rule"], "acme-rules/acme.domain");
    }

    #[test]
    fn examples_that_cannot_run_are_refused_with_their_position() {
        let err = |text: &str| ExampleFile::parse(text, false).unwrap_err().to_string();
        assert_eq!(err(r#"{"examples": [{"expect": {}}]}"#), "example 1 (unnamed): give either `user` or `group`");
        assert_eq!(
            err(r#"{"examples": [{"user": {"userName": "a"}, "expect": {}}, {"name": "g", "group": {"displayName": "G"}, "expect": {"userName": "x"}}]}"#),
            "example 2 (g): a group example can expect only `groups` and `refused`"
        );
        assert!(err(r#"{"examples": [{"user": {"userName": "a"}, "expect": {"username": "a"}}]}"#).contains("unknown field `username`"));
        let toml = ExampleFile::parse("config = { a = 1 }\n[[examples]]\nuser = { userName = \"a\" }\nexpect = { userName = \"a\" }\n", true).unwrap();
        assert_eq!(toml.config, Some(json!({"a": 1})));
    }
}
