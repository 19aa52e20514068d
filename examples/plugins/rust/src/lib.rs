//! A Mapwright rule plugin in Rust, the same rules as the JavaScript and Python templates:
//!
//! - the username is the primary email's local part, lower-cased, from one of the configured
//!   `domains` (others are refused);
//! - a group name listed in `groups` becomes that application group, any other is not synced
//!   (the names are the ones the previous chain entry proposed: the IdP group's name when this
//!   entry comes first);
//! - everyone gets the `defaults` groups.
//!
//! Configuration (the chain entry's `config`):
//!
//! ```json
//! {"domains": ["acme.com"], "groups": {"Dev users": "software_dev"}, "defaults": ["app-users"]}
//! ```

use std::collections::BTreeMap;

use mapwright_plugin_sdk::{Context, Decision, Group, Hook, Memberships, Plugin, Rejection, User};

/// The entry's configuration; unknown keys are refused when the chain is loaded.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Only users of these email domains are provisioned (none listed: any domain).
    #[serde(default)]
    domains: Vec<String>,
    /// Group name → application group name; groups not listed are not synced.
    #[serde(default)]
    groups: BTreeMap<String, String>,
    /// Application groups every user gets.
    #[serde(default)]
    defaults: Vec<String>,
}

/// The plugin: its hooks are the `Plugin` trait's methods it overrides.
pub struct AcmeRules;

impl Plugin for AcmeRules {
    type Config = Config;
    const NAME: &'static str = "acme-rules";
    const HOOKS: &'static [Hook] = &[Hook::Username, Hook::Groups];

    fn validate(c: &Config) -> Result<(), String> {
        if c.groups.values().chain(&c.defaults).any(|g| g.trim().is_empty()) {
            return Err("application group names cannot be empty".into());
        }
        Ok(())
    }

    fn username(_ctx: &Context, c: &Config, user: &User, proposed: &str) -> Result<Decision<String>, Rejection> {
        let email = user.primary_email().ok_or_else(|| Rejection::new("acme.email", "the user has no email address"))?;
        let (local, domain) = email.split_once('@').unwrap_or((email, ""));
        if !c.domains.is_empty() && !c.domains.iter().any(|d| d.eq_ignore_ascii_case(domain)) {
            return Err(Rejection::new("acme.domain", format!("{domain} is not an Acme domain")));
        }
        let name = local.to_lowercase();
        let why = format!("{proposed} → {name}");
        Ok(Decision::new(name).because("acme.local-part", why))
    }

    fn map_group(_ctx: &Context, c: &Config, group: &Group, proposed: Vec<String>) -> Result<Decision<Vec<String>>, Rejection> {
        let mut to: Vec<String> = Vec::new();
        for name in proposed.iter().filter_map(|n| c.groups.get(n)) {
            if !to.contains(name) {
                to.push(name.clone());
            }
        }
        let why = if to.is_empty() { format!("'{}' is not synced", group.display_name) } else { format!("{} → {}", proposed.join(", "), to.join(", ")) };
        Ok(Decision::new(to).because("acme.groups", why))
    }

    fn user_memberships(_ctx: &Context, c: &Config, _user: &User, _is_new: bool, proposed: Memberships) -> Result<Decision<Memberships>, Rejection> {
        let mut add = proposed.add;
        for g in &c.defaults {
            if !add.contains(g) {
                add.push(g.clone());
            }
        }
        let remove = proposed.remove.into_iter().filter(|g| !c.defaults.contains(g)).collect();
        Ok(Decision::new(Memberships { add, remove }))
    }
}

// The component's exports (the plugin's version is this crate's `version`).
mapwright_plugin_sdk::export_plugin!(AcmeRules);

#[cfg(test)]
mod tests {
    use super::*;
    use mapwright_plugin_sdk::testing;

    const CONFIG: &str = r#"{"domains": ["acme.com"], "groups": {"Dev users": "software_dev"}, "defaults": ["app-users"]}"#;

    fn user(email: &str) -> String {
        format!(r#"{{"userName": "x", "emails": [{{"value": "{email}", "primary": true}}]}}"#)
    }

    #[test]
    fn the_username_is_the_local_part_lower_cased() {
        let d = testing::username::<AcmeRules>(CONFIG, &user("Jane.Doe@acme.com")).map(|d| d.value);
        assert_eq!(d, Ok("jane.doe".to_string()));
    }

    #[test]
    fn other_domains_and_users_without_email_are_refused() {
        let rule = |u: &str| testing::username::<AcmeRules>(CONFIG, u).map_err(|r| r.rule);
        assert_eq!(rule(&user("jane@example.org")), Err("acme.domain".to_string()));
        assert_eq!(rule(r#"{"userName": "x"}"#), Err("acme.email".to_string()));
    }

    #[test]
    fn groups_map_by_name_and_everyone_gets_the_defaults() {
        let map = |name: &str| testing::map_group::<AcmeRules>(CONFIG, name).map(|d| d.value);
        assert_eq!(map("Dev users"), Ok(vec!["software_dev".to_string()]));
        assert_eq!(map("Marketing"), Ok(vec![]));
        let proposed = Memberships { add: vec!["x".into()], remove: vec!["app-users".into()] };
        let m = testing::user_memberships::<AcmeRules>(CONFIG, &user("a@acme.com"), true, proposed).map(|d| d.value);
        assert_eq!(m, Ok(Memberships { add: vec!["x".into(), "app-users".into()], remove: vec![] }));
    }

    #[test]
    fn a_bad_configuration_is_refused() {
        assert!(testing::validate_config::<AcmeRules>(r#"{"domain": "acme.com"}"#).unwrap_err().contains("unknown field `domain`"));
        assert!(testing::validate_config::<AcmeRules>(r#"{"defaults": [""]}"#).is_err());
    }
}
