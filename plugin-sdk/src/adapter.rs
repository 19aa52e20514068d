//! Glue between the generated bindings and a [`Plugin`]: parses inputs, caches the parsed
//! configuration, converts decisions. Plugin authors never see it.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;

use crate::bindings::exports::mapwright::plugin::{attributes, deprovision, groups, meta, scope, self_test, shape, username, username_candidates};
use crate::bindings::mapwright::plugin::types as wit;
use crate::{Action, Context, Group, Hook, Memberships, Operation, Plugin, Provenance, Rejection, ResourceType, Target, Trigger, User};

/// Implements the generated export traits for any [`Plugin`]; `V` carries the version of
/// the crate that exports it.
pub struct Adapter<P, V>(PhantomData<(P, V)>);

/// The version of the crate that calls [`export_plugin!`](crate::export_plugin), which the
/// macro implements for a type of that crate.
pub trait CrateVersion: 'static {
    /// That crate's `CARGO_PKG_VERSION`.
    const VERSION: &'static str;
}

/// The version a plugin reports: its own [`Plugin::VERSION`], or its crate's.
pub fn version<P: Plugin, V: CrateVersion>() -> &'static str {
    if P::VERSION.is_empty() { V::VERSION } else { P::VERSION }
}

/// A plugin type, the configuration text last seen for it, and its parsed value.
type CachedConfig = (TypeId, String, Rc<dyn Any>);

thread_local! {
    /// An instance is reused for one chain entry, whose configuration does not change, so
    /// each configuration is parsed (and its regexes compiled) once per instance.
    static CONFIGS: RefCell<Vec<CachedConfig>> = const { RefCell::new(Vec::new()) };
}

/// Parses (or returns the cached) configuration of `P`.
pub(crate) fn config<P: Plugin>(text: &str) -> Result<Rc<P::Config>, String> {
    let id = TypeId::of::<P>();
    let cached = CONFIGS.with(|c| {
        c.borrow().iter().find(|(t, s, _)| *t == id && s == text).and_then(|(_, _, v)| v.clone().downcast::<P::Config>().ok())
    });
    if let Some(c) = cached {
        return Ok(c);
    }
    let text_or_null = if text.trim().is_empty() { "null" } else { text };
    // Unprefixed: the host says whose configuration it is ("invalid configuration for …").
    let parsed: P::Config = serde_json::from_str(text_or_null).map_err(|e| e.to_string())?;
    P::validate(&parsed)?;
    let rc = Rc::new(parsed);
    CONFIGS.with(|c| {
        let mut c = c.borrow_mut();
        c.retain(|(t, _, _)| *t != id);
        c.push((id, text.to_string(), rc.clone() as Rc<dyn Any>));
    });
    Ok(rc)
}

fn context(c: wit::Context, current: Option<&str>) -> Context {
    let operation = match c.operation {
        wit::Operation::Create => Operation::Create,
        wit::Operation::Replace => Operation::Replace,
        wit::Operation::Patch => Operation::Patch,
        wit::Operation::Delete => Operation::Delete,
        wit::Operation::Reapply => Operation::Reapply,
    };
    let current = current.and_then(|s| serde_json::from_str(s).ok());
    Context { tenant: c.tenant, idp: c.idp, idp_kind: c.idp_kind, operation, current }
}

fn provenance(p: Option<Provenance>) -> Option<wit::Provenance> {
    p.map(|p| wit::Provenance { rule: p.rule, reason: p.reason })
}

fn rejection(r: Rejection) -> wit::Rejection {
    wit::Rejection { rule: r.rule, reason: r.reason }
}

/// Bad input from the host or a bad configuration surfaces as a rejection by the plugin.
fn input_error<P: Plugin>(what: &str, e: impl std::fmt::Display) -> wit::Rejection {
    wit::Rejection { rule: P::NAME.to_string(), reason: format!("{what}: {e}") }
}

/// The user the host sent, parsed only if the plugin looks at it.
fn user(json: String) -> User {
    User::lazy(json)
}

fn cfg<P: Plugin>(text: &str) -> Result<Rc<P::Config>, wit::Rejection> {
    config::<P>(text).map_err(|e| wit::Rejection { rule: P::NAME.to_string(), reason: format!("invalid configuration: {e}") })
}

impl<P: Plugin, V: CrateVersion> meta::Guest for Adapter<P, V> {
    fn describe() -> meta::Info {
        // Shaping is announced by its own interface (`shape.shapes`): the contract's hook
        // enum cannot grow without breaking plugins built before it.
        let hooks = P::HOOKS
            .iter()
            .filter_map(|h| match h {
                Hook::Username => Some(wit::Hook::Username),
                Hook::Groups => Some(wit::Hook::Groups),
                Hook::Attributes => Some(wit::Hook::Attributes),
                Hook::Deprovision => Some(wit::Hook::Deprovision),
                Hook::Shape | Hook::Scope => None,
            })
            .collect();
        meta::Info { name: P::NAME.to_string(), version: version::<P, V>().to_string(), hooks }
    }

    fn validate_config(config: String) -> Result<(), String> {
        self::config::<P>(&config).map(|_| ())
    }
}

impl<P: Plugin, V: CrateVersion> self_test::Guest for Adapter<P, V> {
    fn run(config: String) -> Result<(), String> {
        let c = self::config::<P>(&config)?;
        P::self_test(&c).map_err(|e| format!("self-test of {} failed: {e}", P::NAME))
    }
}

impl<P: Plugin, V: CrateVersion> username::Guest for Adapter<P, V> {
    fn decide(ctx: wit::Context, config: String, user_json: String, proposed: String, current: Option<String>) -> Result<username::Decision, wit::Rejection> {
        let c = cfg::<P>(&config)?;
        let u = user(user_json);
        let d = P::username(&context(ctx, current.as_deref()), &c, &u, &proposed).map_err(rejection)?;
        Ok(username::Decision { user_name: d.value, provenance: provenance(d.provenance) })
    }
}

impl<P: Plugin, V: CrateVersion> username_candidates::Guest for Adapter<P, V> {
    fn offers(config: String) -> bool {
        P::HOOKS.contains(&Hook::Username) && self::config::<P>(&config).is_ok_and(|c| P::offers_candidates(&c))
    }

    fn decide(ctx: wit::Context, config: String, user_json: String, proposed: String, current: Option<String>) -> Result<username_candidates::Decision, wit::Rejection> {
        let c = cfg::<P>(&config)?;
        let u = user(user_json);
        let d = P::username_candidates(&context(ctx, current.as_deref()), &c, &u, &proposed).map_err(rejection)?;
        Ok(username_candidates::Decision { candidates: d.value, provenance: provenance(d.provenance) })
    }
}

impl<P: Plugin, V: CrateVersion> groups::Guest for Adapter<P, V> {
    fn map_group(ctx: wit::Context, config: String, group: groups::IdpGroup, proposed: Vec<String>) -> Result<groups::GroupDecision, wit::Rejection> {
        let c = cfg::<P>(&config)?;
        let g = Group { id: group.id, display_name: group.display_name, external_id: group.external_id };
        let d = P::map_group(&context(ctx, None), &c, &g, proposed).map_err(rejection)?;
        Ok(groups::GroupDecision { groups: d.value, provenance: provenance(d.provenance) })
    }

    fn user_memberships(ctx: wit::Context, config: String, user_json: String, is_new: bool, proposed: groups::Memberships) -> Result<groups::Memberships, wit::Rejection> {
        let c = cfg::<P>(&config)?;
        let u = user(user_json);
        let m = Memberships { add: proposed.add, remove: proposed.remove };
        let d = P::user_memberships(&context(ctx, None), &c, &u, is_new, m).map_err(rejection)?;
        Ok(groups::Memberships { add: d.value.add, remove: d.value.remove, provenance: provenance(d.provenance) })
    }
}

impl<P: Plugin, V: CrateVersion> attributes::Guest for Adapter<P, V> {
    fn map_attributes(ctx: wit::Context, config: String, user_json: String, proposed: String, current: Option<String>) -> Result<attributes::Decision, wit::Rejection> {
        let c = cfg::<P>(&config)?;
        // The first entry of a chain is proposed the user itself: parse it once.
        let same = proposed == user_json;
        let u = user(user_json);
        let p: serde_json::Value = if same {
            u.json().clone()
        } else {
            serde_json::from_str(&proposed).map_err(|e| input_error::<P>("proposed attributes are not valid JSON", e))?
        };
        let d = P::attributes(&context(ctx, current.as_deref()), &c, &u, p).map_err(rejection)?;
        // Not `to_string()`: `Display` writes through `fmt::Write` a fragment at a time, which
        // costs a plugin call measurably more. A `Value` always serialises.
        Ok(attributes::Decision { attributes: serde_json::to_string(&d.value).unwrap_or_default(), provenance: provenance(d.provenance) })
    }
}

fn action_in(a: deprovision::Action) -> Action {
    match a {
        deprovision::Action::Disable => Action::Disable,
        deprovision::Action::Delete(days) => Action::Delete { retention_days: days },
        deprovision::Action::StripGroups => Action::StripGroups,
        deprovision::Action::Keep => Action::Keep,
    }
}

fn action_out(a: Action) -> deprovision::Action {
    match a {
        Action::Disable => deprovision::Action::Disable,
        Action::Delete { retention_days } => deprovision::Action::Delete(retention_days),
        Action::StripGroups => deprovision::Action::StripGroups,
        Action::Keep => deprovision::Action::Keep,
    }
}

impl<P: Plugin, V: CrateVersion> deprovision::Guest for Adapter<P, V> {
    fn on_deprovision(ctx: wit::Context, config: String, user_json: String, trigger: deprovision::Trigger, proposed: deprovision::Action) -> Result<deprovision::Decision, wit::Rejection> {
        let c = cfg::<P>(&config)?;
        let u = user(user_json);
        let t = match trigger {
            deprovision::Trigger::Deactivated => Trigger::Deactivated,
            deprovision::Trigger::Deleted => Trigger::Deleted,
        };
        let d = P::deprovision(&context(ctx, None), &c, &u, t, action_in(proposed)).map_err(rejection)?;
        Ok(deprovision::Decision { action: action_out(d.value), provenance: provenance(d.provenance) })
    }

    fn on_reactivate(ctx: wit::Context, config: String, user_json: String, proposed: bool) -> Result<deprovision::Reactivation, wit::Rejection> {
        let c = cfg::<P>(&config)?;
        let u = user(user_json);
        let d = P::reactivate(&context(ctx, None), &c, &u, proposed).map_err(rejection)?;
        Ok(deprovision::Reactivation { restore: d.value, provenance: provenance(d.provenance) })
    }
}

impl<P: Plugin, V: CrateVersion> scope::Guest for Adapter<P, V> {
    fn scopes(config: String) -> bool {
        P::HOOKS.contains(&Hook::Scope) && self::config::<P>(&config).is_ok_and(|c| P::scopes(&c))
    }

    fn user_in_scope(ctx: wit::Context, config: String, user_json: String, groups: Vec<String>, proposed: bool) -> Result<scope::Decision, wit::Rejection> {
        let c = cfg::<P>(&config)?;
        let u = user(user_json);
        let d = P::in_scope(&context(ctx, None), &c, &u, &groups, proposed).map_err(rejection)?;
        Ok(scope::Decision { in_scope: d.value, provenance: provenance(d.provenance) })
    }
}

impl<P: Plugin, V: CrateVersion> shape::Guest for Adapter<P, V> {
    fn shapes() -> bool {
        P::HOOKS.contains(&Hook::Shape)
    }

    fn shape(target: shape::Target, config: String, kind: shape::ResourceType, resource: String) -> Result<shape::Shaped, wit::Rejection> {
        let c = cfg::<P>(&config)?;
        let r: serde_json::Value = serde_json::from_str(&resource).map_err(|e| input_error::<P>("the resource is not valid JSON", e))?;
        let kind = match kind {
            shape::ResourceType::User => ResourceType::User,
            shape::ResourceType::Group => ResourceType::Group,
        };
        let t = Target { tenant: target.tenant, name: target.name, kind: target.kind };
        let s = P::shape(&t, &c, kind, r).map_err(rejection)?;
        let provenance = s.provenance.into_iter().map(|p| wit::Provenance { rule: p.rule, reason: p.reason }).collect();
        Ok(shape::Shaped { resource: serde_json::to_string(&s.resource).unwrap_or_default(), provenance })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Hook;

    struct Plain;
    impl Plugin for Plain {
        type Config = ();
        const NAME: &'static str = "plain";
        const HOOKS: &'static [Hook] = &[];
    }

    struct Pinned;
    impl Plugin for Pinned {
        type Config = ();
        const NAME: &'static str = "pinned";
        const VERSION: &'static str = "2.0.0";
        const HOOKS: &'static [Hook] = &[];
    }

    struct Crate;
    impl CrateVersion for Crate {
        const VERSION: &'static str = "1.4.2";
    }

    #[test]
    fn a_plugin_reports_its_crate_version_unless_it_names_one() {
        assert_eq!(version::<Plain, Crate>(), "1.4.2");
        assert_eq!(version::<Pinned, Crate>(), "2.0.0");
    }
}
