//! # scope: which users are provisioned at all
//!
//! A user out of scope is accepted and kept in the IdP's view (the IdP's reads and updates
//! keep working, it reports no error) but gets no directory entry; it appears when it comes
//! into scope, and the deprovision rules apply when it leaves. Every condition given must
//! hold; an empty configuration keeps everyone in scope.
//!
//! - `groups`: patterns (regex; `(?i)` makes one case-insensitive) of this connection's IdP
//!   groups' display names; the user must belong to a matching group. IdPs send a user before
//!   its memberships: such a user is out of scope at first and comes in when the membership
//!   arrives.
//! - `email_domains`: the primary email's domain (else the userName's) must be one of these.
//! - `attributes`: attribute path → accepted values (case-insensitive), e.g.
//!   `{ userType = ["Employee"], "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department" = ["R&D"] }`.
//! - `examples`: the rules' own tests, run before a chain version with this configuration goes
//!   live: `[{ user = { userName = "a", userType = "Contractor" }, groups = [], expect = false }]`.
//!
//! ```json
//! {"groups": ["^eng-", "^Dev users$"], "email_domains": ["acme.com"], "attributes": {"userType": ["Employee"]}}
//! ```

use std::collections::BTreeMap;

use mapwright_plugin_sdk::{Context, Decision, Hook, Pattern, Plugin, Rejection, User, Value};
use serde::Deserialize;

/// The plugin's configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// IdP group patterns; the user must belong to a group matching one.
    pub groups: Vec<Pattern>,
    /// Accepted email domains.
    pub email_domains: Vec<String>,
    /// Attribute path → accepted values.
    pub attributes: BTreeMap<String, Vec<String>>,
    /// The self-test.
    pub examples: Vec<Example>,
}

/// An example the configuration must satisfy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    /// The IdP's user.
    pub user: Value,
    /// The IdP groups it belongs to.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Whether it must be in scope.
    pub expect: bool,
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The first condition the user fails, as (rule, reason); `None`: it meets them all.
fn failed(c: &Config, user: &User, groups: &[String]) -> Option<(&'static str, String)> {
    if !c.groups.is_empty() && !groups.iter().any(|g| c.groups.iter().any(|p| p.is_match(g))) {
        let wanted: Vec<&str> = c.groups.iter().map(Pattern::as_str).collect();
        return Some(("scope.groups", format!("in no IdP group matching {}", wanted.join(", "))));
    }
    if !c.email_domains.is_empty() {
        let address = user.primary_email().unwrap_or(user.user_name());
        let domain = address.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).unwrap_or_default();
        if !c.email_domains.iter().any(|d| d.eq_ignore_ascii_case(&domain)) {
            return Some(("scope.email-domain", format!("'{address}' is not in {}", c.email_domains.join(", "))));
        }
    }
    for (path, accepted) in &c.attributes {
        let value = user.get(path).and_then(text);
        if !value.as_deref().is_some_and(|v| accepted.iter().any(|a| a.eq_ignore_ascii_case(v))) {
            return Some(("scope.attribute", format!("{path} is {} (accepted: {})", value.map_or("absent".to_string(), |v| format!("'{v}'")), accepted.join(", "))));
        }
    }
    None
}

/// The plugin.
pub struct Scope;

impl Plugin for Scope {
    type Config = Config;
    const NAME: &'static str = "scope";
    const HOOKS: &'static [Hook] = &[Hook::Scope];

    fn validate(c: &Config) -> Result<(), String> {
        if c.attributes.values().any(Vec::is_empty) {
            return Err("attributes: give each attribute at least one accepted value".into());
        }
        if c.email_domains.iter().any(|d| d.trim().is_empty() || d.contains('@')) {
            return Err("email_domains: give domains (acme.com), not addresses".into());
        }
        Ok(())
    }

    fn self_test(c: &Config) -> Result<(), String> {
        for (i, ex) in c.examples.iter().enumerate() {
            let user = User::from_value(ex.user.clone());
            let got = Self::in_scope(&Context::test(), c, &user, &ex.groups, true).map_err(|r| format!("example {}: refused: {}", i + 1, r.reason))?;
            if got.value != ex.expect {
                let why = got.provenance.map(|p| p.reason).unwrap_or_default();
                return Err(format!("example {}: {} is {} scope ({why}), expected {}", i + 1, user.user_name(), if got.value { "in" } else { "out of" }, if ex.expect { "in" } else { "out" }));
            }
        }
        Ok(())
    }

    fn in_scope(_ctx: &Context, c: &Config, user: &User, groups: &[String], proposed: bool) -> Result<Decision<bool>, Rejection> {
        if !proposed {
            return Ok(Decision::new(false));
        }
        Ok(match failed(c, user, groups) {
            Some((rule, reason)) => Decision::new(false).because(rule, reason),
            None if c.groups.is_empty() && c.email_domains.is_empty() && c.attributes.is_empty() => Decision::new(true),
            None => Decision::new(true).because("scope.match", "meets every scope condition"),
        })
    }
}

mapwright_plugin_sdk::export_plugin!(Scope);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use mapwright_plugin_sdk::testing;

    const CONFIG: &str = r#"{"groups": ["^eng-", "(?i)^dev users$"], "email_domains": ["acme.com"], "attributes": {"userType": ["Employee"]}}"#;

    fn user(email: &str, user_type: &str) -> String {
        format!(r#"{{"userName": "{email}", "userType": "{user_type}", "emails": [{{"value": "{email}", "primary": true}}]}}"#)
    }

    #[test]
    fn every_condition_must_hold() {
        let ok = testing::in_scope::<Scope>(CONFIG, &user("jane@acme.com", "employee"), &["Dev Users"]).unwrap();
        assert!(ok.value);
        let cases = [
            (user("jane@acme.com", "Employee"), vec![], "scope.groups"),
            (user("jane@partner.io", "Employee"), vec!["eng-platform"], "scope.email-domain"),
            (user("jane@acme.com", "Contractor"), vec!["eng-platform"], "scope.attribute"),
        ];
        for (u, groups, rule) in cases {
            let d = testing::in_scope::<Scope>(CONFIG, &u, &groups).unwrap();
            assert!(!d.value, "{u}");
            assert_eq!(d.provenance.unwrap().rule, rule);
        }
        let d = testing::in_scope::<Scope>(CONFIG, r#"{"userName": "x@acme.com"}"#, &["eng-x"]).unwrap();
        assert_eq!(d.provenance.unwrap().reason, "userType is absent (accepted: Employee)");
    }

    #[test]
    fn an_empty_configuration_keeps_everyone_and_a_previous_no_stands() {
        assert!(testing::in_scope::<Scope>("{}", r#"{"userName": "a"}"#, &[]).unwrap().value);
        let c: Config = serde_json::from_str("{}").unwrap();
        let u = User::from_json(r#"{"userName": "a"}"#).unwrap();
        assert!(!Scope::in_scope(&Context::test(), &c, &u, &[], false).unwrap().value);
    }

    #[test]
    fn bad_configurations_and_failing_examples_are_refused() {
        assert!(testing::validate_config::<Scope>(r#"{"attributes": {"userType": []}}"#).is_err());
        assert!(testing::validate_config::<Scope>(r#"{"email_domains": ["a@acme.com"]}"#).is_err());
        assert!(testing::validate_config::<Scope>(r#"{"groups": ["("]}"#).is_err());
        assert!(testing::validate_config::<Scope>(r#"{"domains": []}"#).is_err());
        let c: Config = serde_json::from_str(r#"{"groups": ["^eng-"], "examples": [{"user": {"userName": "a"}, "groups": ["eng-x"], "expect": false}]}"#).unwrap();
        assert_eq!(Scope::self_test(&c).unwrap_err(), "example 1: a is in scope (meets every scope condition), expected out");
    }
}
