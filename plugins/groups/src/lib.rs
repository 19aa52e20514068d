//! # groups: which application groups IdP groups become, and default groups
//!
//! For each IdP group (its proposed names, the display name unless an earlier entry changed
//! them), in order:
//!
//! 1. `include`: regexes; if any are given, only names matching one are kept.
//! 2. `exclude`: regexes; names matching one are dropped.
//! 3. `map`: a manual table, IdP name (case-insensitive) → one or more app groups.
//! 4. Names not in the table: `unmapped = "keep"` (default: same name, created on the fly)
//!    or `"drop"` (only mapped groups sync); kept names go through `rename` regexes and `case`.
//!
//! Per user: `defaults.new_users` are granted when a user is created, `defaults.all_users`
//! to every user. `keep_existing_memberships = true` vetoes removals proposed for a user.
//! `deny`: `[{ groups = "^admins$", users = "^contractor" }]` drops additions to matching app
//! groups for users whose userName or primary email matches (the IdP's group still lists
//! them; the directory does not grant it).
//!
//! ```json
//! {"include": ["^eng-"], "map": {"eng-dev users": ["software_dev"]}, "rename": [{"pattern": "^eng-", "with": ""}],
//!  "defaults": {"all_users": ["app-users"]}}
//! ```

use std::collections::HashMap;

use mapwright_plugin_sdk::{Pattern, Context, Decision, Group, Hook, Memberships, Plugin, Rejection, User};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rename {
    pub pattern: Pattern,
    pub with: String,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unmapped {
    #[default]
    Keep,
    Drop,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Case {
    #[default]
    Keep,
    Lower,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Defaults {
    pub new_users: Vec<String>,
    pub all_users: Vec<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub include: Vec<Pattern>,
    pub exclude: Vec<Pattern>,
    pub map: HashMap<String, OneOrMany>,
    pub unmapped: Unmapped,
    pub rename: Vec<Rename>,
    pub case: Case,
    pub defaults: Defaults,
    pub keep_existing_memberships: bool,
    pub deny: Vec<Deny>,
}

/// App groups (`groups`) that users matching `users` are never added to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deny {
    pub groups: Pattern,
    pub users: Pattern,
}

/// A table value: one group name or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn names(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}


pub struct Groups;

impl Plugin for Groups {
    type Config = Config;
    const NAME: &'static str = "groups";
    const HOOKS: &'static [Hook] = &[Hook::Groups];

    fn validate(c: &Config) -> Result<(), String> {
        let targets = c.map.values().flat_map(OneOrMany::names).chain(c.defaults.new_users.iter().cloned()).chain(c.defaults.all_users.iter().cloned());
        for n in targets {
            if !mapwright_plugin_sdk::names::is_valid_name(&n) {
                return Err(format!("{n:?} is not a valid group name"));
            }
        }
        Ok(())
    }

    fn map_group(_ctx: &Context, c: &Config, group: &Group, proposed: Vec<String>) -> Result<Decision<Vec<String>>, Rejection> {
        let mut out: Vec<String> = Vec::new();
        let mut why: Vec<String> = Vec::new();
        for name in proposed {
            if !c.include.is_empty() && !c.include.iter().any(|p| p.is_match(&name)) {
                why.push(format!("'{name}' not included"));
                continue;
            }
            if let Some(p) = c.exclude.iter().find(|p| p.is_match(&name)) {
                why.push(format!("'{name}' excluded by {}", p.as_str()));
                continue;
            }
            if let Some(targets) = c.map.iter().find(|(k, _)| k.eq_ignore_ascii_case(&name) || k.to_lowercase() == name.to_lowercase()).map(|(_, v)| v.names()) {
                why.push(format!("'{name}' → {targets:?} (table)"));
                out.extend(targets);
                continue;
            }
            if c.unmapped == Unmapped::Drop {
                why.push(format!("'{name}' not in the table"));
                continue;
            }
            let mut n = name.clone();
            for r in &c.rename {
                n = r.pattern.replace_all(&n, &r.with);
            }
            if c.case == Case::Lower {
                n = n.to_lowercase();
            }
            if !mapwright_plugin_sdk::names::is_valid_name(&n) {
                return Err(Rejection::new("groups.rename", format!("renaming '{name}' gives the invalid group name {n:?}")));
            }
            if n != name {
                why.push(format!("'{name}' → '{n}'"));
            }
            out.push(n);
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|g| seen.insert(g.to_lowercase()));
        let reason = if why.is_empty() { format!("'{}' kept", group.display_name) } else { why.join("; ") };
        Ok(Decision::new(out).because("groups.map", reason))
    }

    fn user_memberships(_ctx: &Context, c: &Config, user: &User, is_new: bool, mut proposed: Memberships) -> Result<Decision<Memberships>, Rejection> {
        let mut why = Vec::new();
        for d in &c.deny {
            let who = [Some(user.user_name()), user.primary_email()];
            if who.iter().flatten().any(|n| d.users.is_match(n)) {
                let before = proposed.add.len();
                proposed.add.retain(|g| !d.groups.is_match(g));
                if proposed.add.len() < before {
                    why.push(format!("{} may not join groups matching {}", user.user_name(), d.groups.as_str()));
                }
            }
        }
        let mut grant = |names: &[String], label: &str| {
            for n in names {
                if !proposed.add.iter().any(|a| a.eq_ignore_ascii_case(n)) {
                    proposed.add.push(n.clone());
                }
            }
            if !names.is_empty() {
                why.push(format!("{label}: {}", names.join(", ")));
            }
        };
        if is_new {
            grant(&c.defaults.new_users, "default for new users");
        }
        grant(&c.defaults.all_users, "default for all users");
        if c.keep_existing_memberships && !proposed.remove.is_empty() {
            why.push(format!("kept {} (keep_existing_memberships)", proposed.remove.join(", ")));
            proposed.remove.clear();
        }
        let d = Decision::new(proposed);
        Ok(if why.is_empty() { d } else { d.because("groups.memberships", why.join("; ")) })
    }
}

mapwright_plugin_sdk::export_plugin!(Groups);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use mapwright_plugin_sdk::testing;

    fn map(config: &str, name: &str) -> Vec<String> {
        testing::map_group::<Groups>(config, name).unwrap().value
    }

    #[test]
    fn table_filters_and_renames() {
        let c = r#"{"include": ["^eng-", "^Dev"], "exclude": ["-test$"], "map": {"dev users": "software_dev", "eng-admins": ["admin", "ops"]},
                    "rename": [{"pattern": "^eng-", "with": ""}], "case": "lower"}"#;
        assert_eq!(map(c, "Dev users"), ["software_dev"]);
        assert_eq!(map(c, "eng-admins"), ["admin", "ops"]);
        assert_eq!(map(c, "eng-Platform"), ["platform"]);
        assert!(map(c, "eng-platform-test").is_empty());
        assert!(map(c, "Sales").is_empty());
        assert_eq!(map("{}", "Sales"), ["Sales"], "on the fly by default");
        assert!(map(r#"{"unmapped": "drop"}"#, "Sales").is_empty());
    }

    #[test]
    fn defaults_and_keeping_memberships() {
        let c = r#"{"defaults": {"new_users": ["onboarding"], "all_users": ["app-users"]}, "keep_existing_memberships": true}"#;
        let m = testing::user_memberships::<Groups>(c, "{}", true, Memberships::default()).unwrap().value;
        assert_eq!(m.add, ["onboarding", "app-users"]);
        let m = testing::user_memberships::<Groups>(c, "{}", false, Memberships { add: vec![], remove: vec!["x".into()] }).unwrap().value;
        assert_eq!((m.add, m.remove), (vec!["app-users".to_string()], vec![]));
    }

    #[test]
    fn bad_configs() {
        for c in [r#"{"include": ["("]}"#, r#"{"map": {"a": ""}}"#, r#"{"defaults": {"all_users": [" "]}}"#, r#"{"unmapped": "maybe"}"#, r#"{"nope": 1}"#] {
            assert!(testing::validate_config::<Groups>(c).is_err(), "{c}");
        }
    }
}

#[cfg(test)]
mod deny_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use mapwright_plugin_sdk::Context;

    #[test]
    fn deny_drops_additions_for_matching_users_only() {
        let c: Config = serde_json::from_str(r#"{"deny": [{"groups": "^admins$", "users": "^contractor"}]}"#).unwrap();
        let run = |user: &str| {
            let u = User::from_json(&format!(r#"{{"userName": "{user}"}}"#)).unwrap();
            let m = Memberships { add: vec!["admins".into(), "staff".into()], remove: vec![] };
            Groups::user_memberships(&Context::test(), &c, &u, false, m).unwrap()
        };
        let d = run("contractor.bob");
        assert_eq!(d.value.add, vec!["staff".to_string()]);
        assert!(d.provenance.unwrap().reason.contains("may not join"));
        assert_eq!(run("alice").value.add, vec!["admins".to_string(), "staff".to_string()]);
    }
}
