use mapwright_plugin_sdk::{Context, Decision, Hook, Plugin, Rejection, User};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Only users of these email domains are provisioned.
    domains: Vec<String>,
}

pub struct AcmeRules;

impl Plugin for AcmeRules {
    type Config = Config;
    const NAME: &'static str = "acme-rules";
    const HOOKS: &'static [Hook] = &[Hook::Username];

    // Called once when the chain is loaded: a bad configuration never reaches a request.
    fn validate(c: &Config) -> Result<(), String> {
        if c.domains.is_empty() {
            return Err("list at least one domain".into());
        }
        Ok(())
    }

    fn username(_ctx: &Context, c: &Config, user: &User, proposed: &str) -> Result<Decision<String>, Rejection> {
        let email = user.primary_email().ok_or_else(|| Rejection::new("acme.email", "no email"))?;
        let (local, domain) = email.split_once('@').unwrap_or((email, ""));
        if !c.domains.iter().any(|d| d.eq_ignore_ascii_case(domain)) {
            return Err(Rejection::new("acme.domain", format!("{domain} is not an Acme domain")));
        }
        Ok(Decision::new(local.to_lowercase()).because("acme.local-part", format!("{proposed} → {local}")))
    }
}

// The component's exports (the plugin's version is this crate's `version`).
mapwright_plugin_sdk::export_plugin!(AcmeRules);

#[cfg(test)]
mod tests {
    use super::*;
    use mapwright_plugin_sdk::testing;

    const CONFIG: &str = r#"{"domains": ["acme.com"]}"#;

    #[test]
    fn local_part_of_an_acme_address() {
        let user = r#"{"userName": "x", "emails": [{"value": "Jane@acme.com", "primary": true}]}"#;
        assert_eq!(testing::username::<AcmeRules>(CONFIG, user).map(|d| d.value), Ok("jane".to_string()));
    }

    #[test]
    fn other_domains_and_empty_configurations_are_refused() {
        let user = r#"{"userName": "x", "emails": [{"value": "jane@example.org", "primary": true}]}"#;
        assert_eq!(testing::username::<AcmeRules>(CONFIG, user).map_err(|r| r.rule), Err("acme.domain".to_string()));
        assert!(testing::validate_config::<AcmeRules>(r#"{"domains": []}"#).is_err());
    }
}
