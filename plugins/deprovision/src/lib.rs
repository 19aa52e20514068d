//! # deprovision: what deactivation and deletion do, per IdP connection
//!
//! - `on_deactivate`: when the IdP sets `active` to false: `"disable"` (default: the entry
//!   stays, inactive), `"strip-groups"` (the entry stays active, its memberships are removed),
//!   `"delete"` (soft delete, purged after `retention_days`) or `"keep"` (stays active).
//! - `on_delete`: when the IdP deletes the user: same choices; default `"delete"`.
//! - `retention_days`: how long a soft-deleted entry is kept before it is purged (default 30).
//! - `restore_on_reactivate`: when the IdP reactivates the user, restore the memberships
//!   snapshotted at deactivation (default true); memberships of the IdP's groups always come
//!   back from the IdP's current view.
//!
//! ```json
//! {"on_deactivate": "disable", "on_delete": "delete", "retention_days": 30, "restore_on_reactivate": true}
//! ```

use mapwright_plugin_sdk::{Action, Context, Decision, Hook, Plugin, Rejection, Trigger, User};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    Disable,
    StripGroups,
    Delete,
    Keep,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub on_deactivate: Policy,
    pub on_delete: Policy,
    pub retention_days: u32,
    pub restore_on_reactivate: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config { on_deactivate: Policy::Disable, on_delete: Policy::Delete, retention_days: 30, restore_on_reactivate: true }
    }
}

pub struct Deprovision;

impl Plugin for Deprovision {
    type Config = Config;
    const NAME: &'static str = "deprovision";
    const HOOKS: &'static [Hook] = &[Hook::Deprovision];

    fn validate(c: &Config) -> Result<(), String> {
        if c.retention_days > 3650 {
            return Err(format!("retention_days {} is more than ten years", c.retention_days));
        }
        Ok(())
    }

    fn deprovision(_ctx: &Context, c: &Config, user: &User, trigger: Trigger, _proposed: Action) -> Result<Decision<Action>, Rejection> {
        let (policy, what) = match trigger {
            Trigger::Deactivated => (c.on_deactivate, "deactivated"),
            Trigger::Deleted => (c.on_delete, "deleted"),
        };
        let action = match policy {
            Policy::Disable => Action::Disable,
            Policy::StripGroups => Action::StripGroups,
            Policy::Delete => Action::Delete { retention_days: c.retention_days },
            Policy::Keep => Action::Keep,
        };
        let reason = format!("{} {what} by the IdP: {action:?}", user.user_name());
        Ok(Decision::new(action).because(format!("deprovision.on_{}", if trigger == Trigger::Deleted { "delete" } else { "deactivate" }), reason))
    }

    fn reactivate(_ctx: &Context, c: &Config, user: &User, _proposed: bool) -> Result<Decision<bool>, Rejection> {
        let reason = format!("{} reactivated: {}", user.user_name(), if c.restore_on_reactivate { "memberships restored" } else { "not restored" });
        Ok(Decision::new(c.restore_on_reactivate).because("deprovision.restore_on_reactivate", reason))
    }
}

mapwright_plugin_sdk::export_plugin!(Deprovision);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use mapwright_plugin_sdk::testing;

    #[test]
    fn policies() {
        let u = r#"{"userName": "u"}"#;
        let d = testing::deprovision::<Deprovision>("{}", u, Trigger::Deactivated).unwrap();
        assert_eq!(d.value, Action::Disable);
        let d = testing::deprovision::<Deprovision>("{}", u, Trigger::Deleted).unwrap();
        assert_eq!(d.value, Action::Delete { retention_days: 30 });
        let d = testing::deprovision::<Deprovision>(r#"{"on_deactivate": "strip-groups"}"#, u, Trigger::Deactivated).unwrap();
        assert_eq!(d.value, Action::StripGroups);
        assert!(testing::validate_config::<Deprovision>(r#"{"on_delete": "vanish"}"#).is_err());
        assert!(testing::validate_config::<Deprovision>(r#"{"retention_days": 99999}"#).is_err());
    }
}
