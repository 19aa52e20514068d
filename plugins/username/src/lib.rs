//! # username: derive the directory's username from the IdP's user
//!
//! Steps, in order, each optional:
//!
//! 1. `source`: where the name starts: `"userName"` (default), `"email"` (primary email), or
//!    `"template"` with `template`, e.g. `"{name.givenName|first}{name.familyName}"`. A
//!    placeholder is an attribute path, optionally followed by filters: `first` (first
//!    character), `lower`, `upper`, `trim`, `localpart` (before `@`).
//! 2. `local_part`: keep only what is before `@`.
//! 3. `transliterate`: `Zoë Ångström` → `Zoe Angstrom`.
//! 4. `replace`: regex replacements in order, `[{"pattern": "\\s+", "with": "."}]`.
//! 5. `case`: `"lower"`, `"upper"` or `"keep"` (default).
//! 6. `domain`: append `@domain` (after removing any existing domain).
//! 7. `require`: a regex the result must match, else the user is rejected with 400.
//!
//! `keep_existing`: a user already in the directory keeps its username; the rules apply only
//! when the entry is created (stable usernames when an email changes).
//!
//! `unique`: offer up to this many usernames, `jdoe`, then `jdoe2`, `jdoe3`, … (before the
//! `@` of a name with a domain); the server takes the first no other entry has, atomically
//! with the write, and records which (Entra's `SelectUniqueValue`).
//!
//! `examples`: the rules' own tests, run before a chain version with this configuration goes
//! live (the plugin's self-test); a version whose examples fail is refused:
//! `[{ user = { userName = "x", emails = [{ value = "jane.doe@acme.com" }] }, expect = "jdoe" },
//!   { user = { userName = "bot" }, reject = true }]`.
//!
//! ```json
//! {"source": "email", "local_part": true, "replace": [{"pattern": "^(.)[^.]*\\.(.*)$", "with": "$1$2"}], "case": "lower"}
//! ```
//! turns `jane.doe@acme.com` into `jdoe`.

use mapwright_plugin_sdk::{Pattern, Context, Decision, Hook, Plugin, Rejection, User};
use serde::Deserialize;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Source {
    #[default]
    #[serde(rename = "userName")]
    UserName,
    #[serde(rename = "email")]
    Email,
    #[serde(rename = "template")]
    Template,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Case {
    #[default]
    Keep,
    Lower,
    Upper,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replace {
    pub pattern: Pattern,
    pub with: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub source: Source,
    pub template: Option<String>,
    pub local_part: bool,
    pub transliterate: bool,
    pub replace: Vec<Replace>,
    pub case: Case,
    pub domain: Option<String>,
    pub require: Option<Pattern>,
    pub keep_existing: bool,
    pub unique: u32,
    pub examples: Vec<Example>,
}

/// An example the configuration must satisfy: this IdP user becomes `expect`, or (`reject`)
/// is refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    pub user: mapwright_plugin_sdk::Value,
    #[serde(default)]
    pub expect: Option<String>,
    #[serde(default)]
    pub reject: bool,
}

/// One parsed piece of a template.
enum Piece<'a> {
    Text(&'a str),
    Field(&'a str, Vec<&'a str>),
}

const FILTERS: [&str; 5] = ["first", "lower", "upper", "trim", "localpart"];

fn parse_template(t: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            out.push(Piece::Text(&rest[..open]));
        }
        let close = rest[open..].find('}').ok_or_else(|| format!("template '{t}': '{{' without '}}'"))? + open;
        let mut parts = rest[open + 1..close].split('|').map(str::trim);
        let path = parts.next().filter(|p| !p.is_empty()).ok_or_else(|| format!("template '{t}': empty placeholder"))?;
        let filters: Vec<&str> = parts.collect();
        if let Some(bad) = filters.iter().find(|f| !FILTERS.contains(f)) {
            return Err(format!("template '{t}': unknown filter '{bad}' (known: {})", FILTERS.join(", ")));
        }
        out.push(Piece::Field(path, filters));
        rest = &rest[close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("template '{t}': '}}' without '{{'"));
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}

fn apply_filter(v: String, f: &str) -> String {
    match f {
        "first" => v.chars().next().map(String::from).unwrap_or_default(),
        "lower" => v.to_lowercase(),
        "upper" => v.to_uppercase(),
        "trim" => v.trim().to_string(),
        "localpart" => v.split('@').next().unwrap_or_default().to_string(),
        _ => v,
    }
}

fn render(t: &str, user: &User) -> Result<String, String> {
    let mut out = String::new();
    for piece in parse_template(t)? {
        match piece {
            Piece::Text(s) => out.push_str(s),
            Piece::Field(path, filters) => {
                let v = match path {
                    "email" => user.primary_email().map(str::to_string),
                    _ => user.get(path).and_then(|v| v.as_str().map(str::to_string)),
                }
                .ok_or_else(|| format!("the user has no '{path}'"))?;
                out.push_str(&filters.iter().fold(v, |v, f| apply_filter(v, f)));
            }
        }
    }
    Ok(out)
}

pub struct Username;

impl Plugin for Username {
    type Config = Config;
    const NAME: &'static str = "username";
    const HOOKS: &'static [Hook] = &[Hook::Username];

    fn self_test(c: &Config) -> Result<(), String> {
        for (i, ex) in c.examples.iter().enumerate() {
            let n = i + 1;
            let user = User::from_json(&ex.user.to_string()).map_err(|e| format!("example {n}: the user is not a SCIM user: {e}"))?;
            let got = Self::username(&Context::test(), c, &user, user.user_name());
            let shown = user.primary_email().unwrap_or(user.user_name()).to_string();
            match (got, &ex.expect, ex.reject) {
                (Ok(d), Some(want), false) if d.value == *want => {}
                (Err(_), None, true) => {}
                (Ok(d), _, true) => return Err(format!("example {n}: {shown} became '{}', expected a rejection", d.value)),
                (Ok(d), Some(want), false) => return Err(format!("example {n}: {shown} became '{}', expected '{want}'", d.value)),
                (Err(r), Some(want), _) => return Err(format!("example {n}: {shown} was rejected ({}), expected '{want}'", r.reason)),
                (_, None, false) => return Err(format!("example {n}: give `expect` or `reject = true`")),
            }
        }
        Ok(())
    }

    fn validate(c: &Config) -> Result<(), String> {
        match (c.source, &c.template) {
            (Source::Template, None) => return Err("source \"template\" needs a template".into()),
            (Source::Template, Some(t)) => {
                parse_template(t)?;
            }
            (_, Some(_)) => return Err("template is only used with source \"template\"".into()),
            _ => {}
        }
        if let Some(d) = &c.domain
            && (d.is_empty() || d.contains('@') || d.contains(char::is_whitespace))
        {
            return Err(format!("domain '{d}' is not a domain"));
        }
        if c.unique > 100 {
            return Err("unique: offer at most 100 usernames".into());
        }
        Ok(())
    }

    fn offers_candidates(c: &Config) -> bool {
        c.unique > 1
    }

    fn username_candidates(ctx: &Context, c: &Config, user: &User, proposed: &str) -> Result<Decision<Vec<String>>, Rejection> {
        let d = Self::username(ctx, c, user, proposed)?;
        let base = d.value;
        let numbered = |n: u32| match base.split_once('@') {
            Some((local, domain)) => format!("{local}{n}@{domain}"),
            None => format!("{base}{n}"),
        };
        let all: Vec<String> = std::iter::once(base.clone()).chain((2..=c.unique.max(1)).map(numbered)).collect();
        let reason = d.provenance.map(|p| p.reason).unwrap_or_default();
        let why = if all.len() > 1 { format!("{reason}; the first free of {} … {}", all[0], all[all.len() - 1]) } else { reason };
        Ok(Decision::new(all).because("username.unique", why))
    }

    fn username(ctx: &Context, c: &Config, user: &User, proposed: &str) -> Result<Decision<String>, Rejection> {
        if c.keep_existing
            && let Some(existing) = ctx.current.as_ref().and_then(|e| e.get("userName")).and_then(|v| v.as_str())
        {
            return Ok(Decision::new(existing.to_string()).because("username.keep_existing", format!("'{existing}' was assigned when the entry was created")));
        }
        let mut steps: Vec<String> = Vec::new();
        let mut name = match c.source {
            Source::UserName => proposed.to_string(),
            Source::Email => {
                steps.push("primary email".into());
                user.primary_email().ok_or_else(|| Rejection::new("username.source", "the user has no email address"))?.to_string()
            }
            Source::Template => {
                let t = c.template.as_deref().unwrap_or_default();
                steps.push(format!("template {t}"));
                render(t, user).map_err(|e| Rejection::new("username.template", e))?
            }
        };
        if c.local_part {
            name = name.split('@').next().unwrap_or_default().to_string();
            steps.push("local part".into());
        }
        if c.transliterate {
            name = deunicode::deunicode(&name);
            steps.push("transliterated".into());
        }
        for r in &c.replace {
            let next = r.pattern.replace_all(&name, &r.with);
            if next != name {
                steps.push(format!("s/{}/{}/", r.pattern.as_str(), r.with));
                name = next;
            }
        }
        match c.case {
            Case::Lower => name = name.to_lowercase(),
            Case::Upper => name = name.to_uppercase(),
            Case::Keep => {}
        }
        if let Some(d) = &c.domain {
            name = format!("{}@{d}", name.split('@').next().unwrap_or_default());
            steps.push(format!("domain {d}"));
        }
        if let Some(req) = &c.require
            && !req.is_match(&name)
        {
            return Err(Rejection::new("username.require", format!("username '{name}' does not match {}", req.as_str())));
        }
        if name.trim().is_empty() {
            return Err(Rejection::new("username", format!("the rules turned '{proposed}' into an empty username")));
        }
        let reason = if steps.is_empty() { format!("'{proposed}' kept") } else { format!("'{proposed}' → '{name}' ({})", steps.join(", ")) };
        Ok(Decision::new(name).because("username", reason))
    }
}

mapwright_plugin_sdk::export_plugin!(Username);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use mapwright_plugin_sdk::testing;

    const JANE: &str = r#"{"userName": "Jane.Doe@Acme.com", "name": {"givenName": "Jane", "familyName": "Doe"},
        "emails": [{"value": "jane.doe@acme.com", "type": "work", "primary": true}]}"#;

    fn run(config: &str, user: &str) -> Result<String, Rejection> {
        testing::username::<Username>(config, user).map(|d| d.value)
    }

    #[test]
    fn unique_offers_numbered_candidates() {
        let c = r#"{"source": "email", "local_part": true, "case": "lower", "unique": 3}"#;
        assert_eq!(testing::username_candidates::<Username>(c, JANE).unwrap().value, ["jane.doe", "jane.doe2", "jane.doe3"]);
        let c = r#"{"source": "email", "local_part": true, "domain": "acme.io", "unique": 2}"#;
        assert_eq!(testing::username_candidates::<Username>(c, JANE).unwrap().value, ["jane.doe@acme.io", "jane.doe2@acme.io"]);
        assert_eq!(testing::username_candidates::<Username>(r#"{"case": "lower"}"#, JANE).unwrap().value, ["jane.doe@acme.com"], "not asked: one name");
        assert!(testing::validate_config::<Username>(r#"{"unique": 1000}"#).is_err());
    }

    #[test]
    fn email_local_part_to_initial_and_surname() {
        let c = r#"{"source": "email", "local_part": true, "replace": [{"pattern": "^(.)[^.]*\\.(.*)$", "with": "$1$2"}], "case": "lower"}"#;
        assert_eq!(run(c, JANE).unwrap(), "jdoe");
    }

    #[test]
    fn template_with_filters() {
        let c = r#"{"source": "template", "template": "{name.givenName|first|lower}{name.familyName|lower}"}"#;
        assert_eq!(run(c, JANE).unwrap(), "jdoe");
        let c = r#"{"source": "template", "template": "{email|localpart}.ext"}"#;
        assert_eq!(run(c, JANE).unwrap(), "jane.doe.ext");
    }

    #[test]
    fn domain_case_and_transliteration() {
        assert_eq!(run(r#"{"domain": "acme.io", "case": "lower"}"#, JANE).unwrap(), "jane.doe@acme.io");
        let zoe = r#"{"userName": "Zoë Ångström"}"#;
        assert_eq!(run(r#"{"transliterate": true, "replace": [{"pattern": "\\s+", "with": "."}], "case": "lower"}"#, zoe).unwrap(), "zoe.angstrom");
        assert_eq!(run("{}", JANE).unwrap(), "Jane.Doe@Acme.com", "no rules: pass-through");
    }

    #[test]
    fn keep_existing_uses_the_current_entry() {
        let c: Config = serde_json::from_str(r#"{"source": "email", "local_part": true, "keep_existing": true}"#).unwrap_or_default();
        let user = User::from_json(JANE).unwrap();
        let mut ctx = Context::test();
        assert_eq!(Username::username(&ctx, &c, &user, "x").unwrap().value, "jane.doe");
        ctx.current = Some(mapwright_plugin_sdk::json!({"userName": "jdoe-original"}));
        assert_eq!(Username::username(&ctx, &c, &user, "x").unwrap().value, "jdoe-original");
    }

    #[test]
    fn rejections() {
        let e = run(r#"{"require": "^[a-z]+$"}"#, JANE).unwrap_err();
        assert_eq!(e.rule, "username.require");
        let e = run(r#"{"source": "template", "template": "{title}"}"#, JANE).unwrap_err();
        assert!(e.reason.contains("no 'title'"));
        assert!(run(r#"{"replace": [{"pattern": ".*", "with": ""}]}"#, JANE).is_err(), "empty result");
    }

    #[test]
    fn bad_configs_are_refused_at_load() {
        for c in [
            r#"{"source": "template"}"#,
            r#"{"source": "template", "template": "{name.givenName|shout}"}"#,
            r#"{"source": "template", "template": "{unclosed"}"#,
            r#"{"replace": [{"pattern": "(", "with": ""}]}"#,
            r#"{"domain": "a b"}"#,
            r#"{"unknown": 1}"#,
            r#"{"case": "title"}"#,
        ] {
            assert!(testing::validate_config::<Username>(c).is_err(), "{c}");
        }
        assert!(testing::validate_config::<Username>("{}").is_ok());
    }
}

#[cfg(test)]
mod self_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cfg(json: &str) -> Config {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn examples_are_the_self_test() {
        let ok = cfg(r#"{"source": "email", "local_part": true, "case": "lower", "require": "^[a-z.]+$",
            "examples": [{"user": {"userName": "x", "emails": [{"value": "Jane.Doe@acme.com"}]}, "expect": "jane.doe"},
                         {"user": {"userName": "x", "emails": [{"value": "j0@acme.com"}]}, "reject": true}]}"#);
        assert_eq!(Username::self_test(&ok), Ok(()));
        let wrong = cfg(r#"{"local_part": true, "examples": [{"user": {"userName": "Bob@x.com"}, "expect": "bob"}]}"#);
        assert_eq!(Username::self_test(&wrong), Err("example 1: Bob@x.com became 'Bob', expected 'bob'".into()));
        let vague = cfg(r#"{"examples": [{"user": {"userName": "a"}}]}"#);
        assert!(Username::self_test(&vague).unwrap_err().contains("give `expect`"));
    }
}
