//! Run a plugin's hooks natively, through the same configuration parsing and validation as
//! in the sandbox, from plain `cargo test`.
//!
//! A helper refuses (panics) to run a hook the plugin does not list in [`Plugin::HOOKS`]:
//! the server would never call it, so a test passing through it would prove nothing.
//!
//! ```
//! use mapwright_plugin_sdk::{Decision, Hook, Plugin, Rejection, Context, User};
//!
//! struct Lower;
//! impl Plugin for Lower {
//!     type Config = ();
//!     const NAME: &'static str = "lower";
//!     const HOOKS: &'static [Hook] = &[Hook::Username];
//!     fn username(_: &Context, _: &(), _: &User, proposed: &str) -> Result<Decision<String>, Rejection> {
//!         Ok(Decision::new(proposed.to_lowercase()))
//!     }
//! }
//!
//! let d = mapwright_plugin_sdk::testing::username::<Lower>("null", r#"{"userName": "JDoe"}"#).unwrap();
//! assert_eq!(d.value, "jdoe");
//! ```

use crate::{Action, Context, Decision, Group, Hook, Memberships, Plugin, Rejection, ResourceType, Shaped, Target, Trigger, User, Value};

/// Stops a test that calls a hook the server would never call.
fn listed<P: Plugin>(hook: Hook) {
    assert!(
        P::HOOKS.contains(&hook),
        "{} does not list Hook::{hook:?} in HOOKS: the server never calls that hook, so testing it proves nothing (add it to HOOKS)",
        P::NAME
    );
}

fn setup<P: Plugin>(config: &str, user: &str) -> Result<(std::rc::Rc<P::Config>, User), Rejection> {
    let c = crate::adapter::config::<P>(config).map_err(|e| Rejection::new(P::NAME, e))?;
    let u = User::from_json(user).map_err(|e| Rejection::new(P::NAME, format!("the user is not valid JSON: {e}")))?;
    Ok((c, u))
}

/// Checks a configuration as the server does when it loads a chain.
pub fn validate_config<P: Plugin>(config: &str) -> Result<(), String> {
    crate::adapter::config::<P>(config).map(|_| ())
}

/// Runs the username hook with the user's own `userName` as the proposal.
pub fn username<P: Plugin>(config: &str, user: &str) -> Result<Decision<String>, Rejection> {
    listed::<P>(Hook::Username);
    let (c, u) = setup::<P>(config, user)?;
    let proposed = u.user_name().to_string();
    P::username(&Context::test(), &c, &u, &proposed)
}

/// Runs the username hook as the host does for this configuration: the candidates it offers
/// (one, when it offers none), with the user's own `userName` as the proposal.
pub fn username_candidates<P: Plugin>(config: &str, user: &str) -> Result<Decision<Vec<String>>, Rejection> {
    listed::<P>(Hook::Username);
    let (c, u) = setup::<P>(config, user)?;
    let proposed = u.user_name().to_string();
    if P::offers_candidates(&c) {
        P::username_candidates(&Context::test(), &c, &u, &proposed)
    } else {
        P::username(&Context::test(), &c, &u, &proposed).map(|d| Decision { value: vec![d.value], provenance: d.provenance })
    }
}

/// Runs the group-mapping hook with the group's display name as the proposal.
pub fn map_group<P: Plugin>(config: &str, display_name: &str) -> Result<Decision<Vec<String>>, Rejection> {
    listed::<P>(Hook::Groups);
    let c = crate::adapter::config::<P>(config).map_err(|e| Rejection::new(P::NAME, e))?;
    let g = Group { id: "test-group".into(), display_name: display_name.into(), external_id: None };
    P::map_group(&Context::test(), &c, &g, vec![display_name.to_string()])
}

/// Runs the memberships hook.
pub fn user_memberships<P: Plugin>(config: &str, user: &str, is_new: bool, proposed: Memberships) -> Result<Decision<Memberships>, Rejection> {
    listed::<P>(Hook::Groups);
    let (c, u) = setup::<P>(config, user)?;
    P::user_memberships(&Context::test(), &c, &u, is_new, proposed)
}

/// Runs the attributes hook with the user itself as the proposed attributes.
pub fn attributes<P: Plugin>(config: &str, user: &str) -> Result<Decision<Value>, Rejection> {
    listed::<P>(Hook::Attributes);
    let (c, u) = setup::<P>(config, user)?;
    let proposed = u.json().clone();
    P::attributes(&Context::test(), &c, &u, proposed)
}

/// Runs the deprovisioning hook with `disable` as the proposal.
pub fn deprovision<P: Plugin>(config: &str, user: &str, trigger: Trigger) -> Result<Decision<Action>, Rejection> {
    listed::<P>(Hook::Deprovision);
    let (c, u) = setup::<P>(config, user)?;
    P::deprovision(&Context::test(), &c, &u, trigger, Action::Disable)
}

/// Runs the scope hook for `user` as a member of the IdP groups `groups`, proposed in scope.
pub fn in_scope<P: Plugin>(config: &str, user: &str, groups: &[&str]) -> Result<Decision<bool>, Rejection> {
    listed::<P>(Hook::Scope);
    let (c, u) = setup::<P>(config, user)?;
    let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    P::in_scope(&Context::test(), &c, &u, &groups, true)
}

/// Runs the shaping hook for [`Target::test`] on `resource` (SCIM JSON).
pub fn shape<P: Plugin>(config: &str, kind: ResourceType, resource: &str) -> Result<Shaped, Rejection> {
    listed::<P>(Hook::Shape);
    let c = crate::adapter::config::<P>(config).map_err(|e| Rejection::new(P::NAME, e))?;
    let r: Value = serde_json::from_str(resource).map_err(|e| Rejection::new(P::NAME, format!("the resource is not valid JSON: {e}")))?;
    P::shape(&Target::test(), &c, kind, r)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Lower;
    impl Plugin for Lower {
        type Config = ();
        const NAME: &'static str = "lower";
        // Implements `attributes` below but does not list it.
        const HOOKS: &'static [Hook] = &[Hook::Username];
        fn attributes(_: &Context, _: &(), _: &User, proposed: Value) -> Result<Decision<Value>, Rejection> {
            Ok(Decision::new(proposed))
        }
    }

    #[test]
    fn a_listed_hook_runs() {
        assert_eq!(username::<Lower>("null", r#"{"userName": "Jo"}"#).map(|d| d.value), Ok("Jo".to_string()));
    }

    #[test]
    #[should_panic(expected = "does not list Hook::Attributes in HOOKS")]
    fn a_hook_not_listed_is_refused() {
        let _ = attributes::<Lower>("null", r#"{"userName": "Jo"}"#);
    }
}
