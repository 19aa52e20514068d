#![cfg(target_arch = "wasm32")]
//! A plugin as a third party built it for contract 0.1.0, directly on the WIT (no SDK): its
//! username hook appends `-legacy`; every other hook passes its input through.

wit_bindgen::generate!({
    world: "rules",
    path: "../../../plugin-sdk/wit-archive/0.1.0",
});

use exports::mapwright::plugin::{attributes, deprovision, groups, meta, username};
use mapwright::plugin::types::{Context, Hook, Rejection};

struct Legacy;

impl meta::Guest for Legacy {
    fn describe() -> meta::Info {
        meta::Info { name: "legacy".into(), version: "0.1.0".into(), hooks: vec![Hook::Username] }
    }
    fn validate_config(_config: String) -> Result<(), String> {
        Ok(())
    }
}

impl username::Guest for Legacy {
    fn decide(_: Context, _: String, _: String, proposed: String, _: Option<String>) -> Result<username::Decision, Rejection> {
        Ok(username::Decision { user_name: format!("{proposed}-legacy"), provenance: None })
    }
}

impl groups::Guest for Legacy {
    fn map_group(_: Context, _: String, _: groups::IdpGroup, proposed: Vec<String>) -> Result<groups::GroupDecision, Rejection> {
        Ok(groups::GroupDecision { groups: proposed, provenance: None })
    }
    fn user_memberships(_: Context, _: String, _: String, _: bool, proposed: groups::Memberships) -> Result<groups::Memberships, Rejection> {
        Ok(proposed)
    }
}

impl attributes::Guest for Legacy {
    fn map_attributes(_: Context, _: String, _: String, proposed: String, _: Option<String>) -> Result<attributes::Decision, Rejection> {
        Ok(attributes::Decision { attributes: proposed, provenance: None })
    }
}

impl deprovision::Guest for Legacy {
    fn on_deprovision(_: Context, _: String, _: String, _: deprovision::Trigger, proposed: deprovision::Action) -> Result<deprovision::Decision, Rejection> {
        Ok(deprovision::Decision { action: proposed, provenance: None })
    }
    fn on_reactivate(_: Context, _: String, _: String, proposed: bool) -> Result<deprovision::Reactivation, Rejection> {
        Ok(deprovision::Reactivation { restore: proposed, provenance: None })
    }
}

export!(Legacy);
