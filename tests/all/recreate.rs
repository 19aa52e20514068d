//! A user the IdP deleted and creates again (issue 17, point 1): the connection that sent the
//! deletion takes its entry back, whether the deletion was held by the guard or soft (within
//! its retention); another connection follows its matching policy; a purged entry frees the
//! name. Through every IdP kind, as each sends its create.

use serde_json::{Value, json};

use crate::harness::{Server, directory_entry, enc};

const KINDS: [&str; 5] = ["okta", "entra", "onelogin", "jumpcloud", "generic"];

fn config() -> String {
    let mut c = String::from("[[tenant]]\nname = \"acme\"\n");
    for kind in KINDS {
        // One deletion per hour passes the guard; the next is held. A deletion is soft, kept
        // 30 days; a reactivation restores what deprovisioning snapshotted.
        c.push_str(&format!(
            "\n[[tenant.idp]]\nname = \"{kind}\"\nkind = \"{kind}\"\nrate_per_second = 0\nguard = {{ max_destructive = 1, window_secs = 3600 }}\n\
             [[tenant.idp.chain]]\nplugin = \"builtin:deprovision\"\nconfig = {{ on_delete = \"delete\", retention_days = 30, restore_on_reactivate = true }}\n"
        ));
    }
    c.push_str(
        "\n[[tenant.idp]]\nname = \"other\"\nkind = \"generic\"\nrate_per_second = 0\n\n\
         [[tenant.idp]]\nname = \"adopter\"\nkind = \"generic\"\nrate_per_second = 0\n[tenant.idp.matching]\npolicy = \"adopt\"\n\n\
         [[tenant.idp]]\nname = \"purging\"\nkind = \"generic\"\nrate_per_second = 0\n\
         [[tenant.idp.chain]]\nplugin = \"builtin:deprovision\"\nconfig = { on_delete = \"delete\", retention_days = 0 }\n",
    );
    c
}

fn json_of(s: &Server, args: &[&str]) -> Value {
    let out = s.cli(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The create as the IdP sends it: Okta and Entra look the user up first.
fn create(c: &crate::harness::Client, kind: &str, user_name: &str) -> crate::harness::Resp {
    if matches!(kind, "okta" | "entra") {
        let r = c.get(&format!("/Users?filter={}", enc(&format!("userName eq \"{user_name}\""))));
        assert_eq!((r.status, r.body["totalResults"].as_u64()), (200, Some(0)), "{kind}: the IdP view no longer has {user_name}");
    }
    c.post("/Users", &json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name, "active": true,
        "name": {"givenName": "Again", "familyName": kind},
        "emails": [{"value": user_name, "type": "work", "primary": true}],
    }))
}

fn taken_back(s: &Server, user_name: &str) -> Value {
    let history = json_of(s, &["audit", "acme", "--user", user_name, "--json"]);
    history.as_array().unwrap().iter().find(|r| r["operation"] == "create" && r["changes"].get("taken_back").is_some()).map(|r| r["changes"]["taken_back"].clone()).unwrap_or(Value::Null)
}

#[test]
fn a_user_deleted_and_created_again_takes_its_entry_back() {
    let s = Server::start_with(&config());
    let admin = s.admin(&s.admin_token());
    for kind in KINDS {
        let c = s.declared("acme", kind);
        let (soft, held) = (format!("soft-{kind}@acme.com"), format!("held-{kind}@acme.com"));
        let soft_id = c.user(&soft);
        let held_id = c.user(&held);
        // The application gave the first one a group of its own: a reactivation restores it.
        let r = admin.send("PATCH", &format!("/tenants/acme/directory/{soft}"), Some(&json!({"add_groups": ["local-admins"]})), &[]);
        assert_eq!(r.status, 200, "{}", r.body);

        // The first deletion is soft (within the guard's cap), the second held.
        assert_eq!(c.delete(&format!("/Users/{soft_id}")).status, 204);
        assert_eq!(c.delete(&format!("/Users/{held_id}")).status, 204);
        let e = directory_entry(&s.db(), "acme", &soft).unwrap();
        assert!(e.deleted && e.groups.is_empty(), "{kind}: {e:?}");
        assert!(!directory_entry(&s.db(), "acme", &held).unwrap().deleted, "{kind}: the held deletion left the entry as it was");
        let pending = json_of(&s, &["held", "list", "acme", "--json"]);
        let held_op = pending.as_array().unwrap().iter().find(|h| h["user_name"] == held.as_str()).unwrap_or_else(|| panic!("{kind}: {pending:#}")).clone();

        // Created again by the same connection: both entries come back, no 409.
        for (name, from) in [(&soft, "a soft deletion"), (&held, "a held deletion")] {
            let r = create(&c, kind, name);
            assert_eq!(r.status, 201, "{kind} {name}: {}", r.body);
            let e = directory_entry(&s.db(), "acme", name).unwrap();
            assert!(e.active && !e.deleted && e.purge_after.is_none(), "{kind} {name}: {e:?}");
            let tb = taken_back(&s, name);
            assert_eq!((tb["from"].as_str(), tb["by"].as_str()), (Some(from), Some("the connection that deleted its user")), "{kind} {name}: {tb:#}");
            let found = c.get(&format!("/Users?filter={}", enc(&format!("userName eq \"{name}\""))));
            assert_eq!(found.body["totalResults"], 1, "{kind}: the IdP view has it again");
        }
        assert_eq!(directory_entry(&s.db(), "acme", &soft).unwrap().groups, ["local-admins"], "{kind}: restored per the deprovision policy");
        assert_eq!(taken_back(&s, &soft)["restored"], true);
        // The held deletion is superseded: nothing left for an admin to approve.
        assert_eq!(taken_back(&s, &held)["superseded"], json!([held_op["id"]]));
        let all = json_of(&s, &["held", "list", "acme", "--all", "--json"]);
        let op = all.as_array().unwrap().iter().find(|h| h["id"] == held_op["id"]).unwrap();
        assert_eq!(op["status"], "superseded", "{kind}: {op:#}");
        assert!(json_of(&s, &["held", "list", "acme", "--json"]).as_array().unwrap().iter().all(|h| h["user_name"] != held.as_str()));
    }
}

#[test]
fn another_connection_follows_its_matching_policy_and_a_purged_entry_frees_the_name() {
    let s = Server::start_with(&config());
    let okta = s.declared("acme", "okta");
    let id = okta.user("left@acme.com");
    assert_eq!(okta.delete(&format!("/Users/{id}")).status, 204);
    assert!(directory_entry(&s.db(), "acme", "left@acme.com").unwrap().deleted);
    // Another connection with the default policy: the name is taken (409 uniqueness).
    let other = s.declared("acme", "other");
    other.post("/Users", &json!({"userName": "left@acme.com", "active": true})).assert_error(409, Some("uniqueness"));
    // One whose policy adopts: it takes the soft-deleted entry over, said as such.
    let adopter = s.declared("acme", "adopter");
    let r = adopter.post("/Users", &json!({"userName": "left@acme.com", "active": true, "emails": [{"value": "left@acme.com", "primary": true}]}));
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(!directory_entry(&s.db(), "acme", "left@acme.com").unwrap().deleted);
    assert_eq!(taken_back(&s, "left@acme.com")["by"], "the matching policy");

    // Deleted with no retention: the entry is gone, the name free for anyone.
    let purging = s.declared("acme", "purging");
    let id = purging.user("purged@acme.com");
    assert_eq!(purging.delete(&format!("/Users/{id}")).status, 204);
    assert!(directory_entry(&s.db(), "acme", "purged@acme.com").is_none());
    let r = other.post("/Users", &json!({"userName": "purged@acme.com", "active": true}));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(taken_back(&s, "purged@acme.com"), Value::Null, "a new entry, nothing taken back");
}
