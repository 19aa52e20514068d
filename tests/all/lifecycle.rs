//! Deactivation, deletion and reactivation, with and without a deprovisioning rule.

use serde_json::json;

use crate::harness::{Server, directory_entry};

#[test]
fn identity_deactivation_disables_and_delete_deletes() {
    let s = Server::start();
    let c = s.idp("acme", "okta", "okta");
    let id = c.user("kim@acme.com");
    c.group("Staff", &[&id]);
    c.patch(&format!("/Users/{id}"), json!([{"op": "replace", "value": {"active": false}}]));
    let e = directory_entry(&s.db(), "acme", "kim@acme.com").unwrap();
    assert!(!e.active && !e.deleted);
    assert_eq!(e.groups, ["Staff"], "disable keeps memberships");
    c.patch(&format!("/Users/{id}"), json!([{"op": "replace", "path": "active", "value": true}]));
    assert!(directory_entry(&s.db(), "acme", "kim@acme.com").unwrap().active);
    assert_eq!(c.delete(&format!("/Users/{id}")).status, 204);
    assert!(directory_entry(&s.db(), "acme", "kim@acme.com").is_none());
}

const RULES: &str = r#"
[server]
purge_interval_secs = 1

[[tenant]]
name = "acme"

[[tenant.idp]]
name = "strip"
rate_per_second = 0
[[tenant.idp.chain]]
plugin = "builtin:groups"
config = { defaults = { new_users = ["onboarding"] } }
[[tenant.idp.chain]]
plugin = "builtin:deprovision"
config = { on_deactivate = "strip-groups", on_delete = "delete", retention_days = 0, restore_on_reactivate = true }

[[tenant.idp]]
name = "norestore"
rate_per_second = 0
[[tenant.idp.chain]]
plugin = "builtin:groups"
config = { defaults = { new_users = ["onboarding"] } }
[[tenant.idp.chain]]
plugin = "builtin:deprovision"
config = { on_deactivate = "strip-groups", on_delete = "disable", restore_on_reactivate = false }

[[tenant.idp]]
name = "softdelete"
rate_per_second = 0
[[tenant.idp.chain]]
plugin = "builtin:deprovision"
config = { on_deactivate = "delete", on_delete = "delete", retention_days = 0 }
"#;

#[test]
fn strip_groups_then_reactivate_restores_per_policy() {
    // The test config's [server] section is merged in front of RULES' own.
    let s = Server::start_with(&RULES.replace("[server]\npurge_interval_secs = 1\n", ""));
    for (idp, restored) in [("strip", true), ("norestore", false)] {
        let c = s.declared("acme", idp);
        let name = format!("{idp}@acme.com");
        let id = c.user(&name);
        c.group(&format!("{idp}-team"), &[&id]);
        let e = directory_entry(&s.db(), "acme", &name).unwrap();
        let mut both = vec!["onboarding".to_string(), format!("{idp}-team")];
        both.sort();
        assert_eq!(e.groups, both);
        c.patch(&format!("/Users/{id}"), json!([{"op": "replace", "path": "active", "value": false}]));
        let e = directory_entry(&s.db(), "acme", &name).unwrap();
        assert!(e.groups.is_empty(), "{idp}: strip-groups removes memberships: {:?}", e.groups);
        assert!(e.active, "{idp}: strip-groups keeps the entry active (the contract's word)");
        c.patch(&format!("/Users/{id}"), json!([{"op": "replace", "path": "active", "value": true}]));
        let e = directory_entry(&s.db(), "acme", &name).unwrap();
        assert!(e.active);
        let mut want = vec![format!("{idp}-team")];
        if restored {
            want.push("onboarding".to_string());
            want.sort();
        }
        assert_eq!(e.groups, want, "{idp}: the IdP's groups always return; rule grants only with restore");
    }
    // on_delete = "disable": deleting the IdP user keeps the directory entry, inactive.
    let c = s.declared("acme", "norestore");
    let id = c.user("kept@acme.com");
    assert_eq!(c.delete(&format!("/Users/{id}")).status, 204);
    c.get(&format!("/Users/{id}")).assert_error(404, None);
    let e = directory_entry(&s.db(), "acme", "kept@acme.com").unwrap();
    assert!(!e.active && !e.deleted);
}

#[test]
fn soft_delete_is_purged_after_retention() {
    let extra = RULES.replace("[server]\npurge_interval_secs = 1\n", "purge_interval_secs = 1\n");
    let s = Server::start_with(&extra);
    let c = s.declared("acme", "softdelete");
    let id = c.user("gone@acme.com");
    c.patch(&format!("/Users/{id}"), json!([{"op": "replace", "path": "active", "value": false}]));
    let e = directory_entry(&s.db(), "acme", "gone@acme.com").unwrap();
    assert!(e.deleted && e.purge_after.is_some());
    // The IdP user still exists (deactivated): after retention the entry is scrubbed to a
    // tombstone; once the IdP deletes the user, deletion removes it entirely.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let e = directory_entry(&s.db(), "acme", "gone@acme.com").unwrap();
        if e.purge_after.is_none() {
            assert_eq!(e.attributes, json!({}), "purged data is gone");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the purge did not run");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(c.delete(&format!("/Users/{id}")).status, 204);
    assert!(directory_entry(&s.db(), "acme", "gone@acme.com").is_none());
}
