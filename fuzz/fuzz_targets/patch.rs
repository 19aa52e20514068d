//! PATCH (RFC 7644 §3.5.2) from arbitrary JSON: parsing, resolving and applying the operations
//! to a stored user and group must never panic. The server canonicalises what a PATCH
//! produced before storing it (refusing, say, a group whose displayName was removed), so a
//! result that passes must have a stable canonical form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mapwright_scim::patch;
use mapwright_scim::resource::canonicalize;
use mapwright_scim::schema::ResourceKind;
use serde_json::{Value, json};

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else { return };
    let user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "jane", "active": true, "name": {"givenName": "Jane"},
        "emails": [{"value": "jane@acme.com", "type": "work", "primary": true}, {"value": "j@home.example", "type": "home"}],
        "phoneNumbers": [{"value": "+1 555 0100", "type": "work"}],
    });
    let group = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "Dev users", "members": [{"value": "1"}, {"value": "2"}],
    });
    for (kind, stored) in [(ResourceKind::User, user), (ResourceKind::Group, group)] {
        let Ok(stored) = canonicalize(kind, &stored) else { panic!("fixture is valid") };
        let Ok(ops) = patch::parse_and_resolve(kind, &body) else { continue };
        let Ok((attr_ops, _members)) = patch::split_members(ops) else { continue };
        let Ok(patched) = patch::apply(&stored, &attr_ops) else { continue };
        if let Ok(accepted) = canonicalize(kind, &patched) {
            assert_eq!(canonicalize(kind, &accepted).ok().as_ref(), Some(&accepted), "unstable after a PATCH: {patched}");
        }
    }
});
