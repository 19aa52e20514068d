//! The guard: past a connection's cap, deactivations and deletions are answered as usual but
//! held for an admin; protected principals are never deprovisioned by an IdP.

use serde_json::{Value, json};

use crate::harness::{Server, directory_entry};

const GUARDED: &str = r#"
[[tenant]]
name = "acme"

[[tenant.idp]]
name = "okta"
kind = "okta"
rate_per_second = 0
guard = { max_destructive = 3, window_secs = 3600, protected = ['^breakglass'] }
"#;

fn held(s: &Server) -> Vec<Value> {
    let out = s.cli(&["held", "list", "acme", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<Value>(&out.stdout).unwrap().as_array().unwrap().clone()
}

fn deactivate(c: &crate::harness::Client, id: &str) {
    let r = c.patch(&format!("/Users/{id}"), json!([{"op": "replace", "value": {"active": false}}]));
    assert_eq!(r.status, 200, "the IdP always gets a success: {}", r.body);
    assert_eq!(r.body["active"], false, "the IdP view records what the IdP did");
}

#[test]
fn a_runaway_idp_cannot_empty_the_directory() {
    let s = Server::start_with(GUARDED);
    let okta = s.declared("acme", "okta");
    let ids: Vec<String> = (0..6).map(|i| okta.user(&format!("user{i}@acme.com"))).collect();
    let admin = okta.user("breakglass-admin@acme.com");

    // A protected principal: the IdP's deactivation and deletion leave the entry alone.
    deactivate(&okta, &admin);
    assert!(directory_entry(&s.db(), "acme", "breakglass-admin@acme.com").unwrap().active);
    assert_eq!(okta.delete(&format!("/Users/{admin}")).status, 204);
    let e = directory_entry(&s.db(), "acme", "breakglass-admin@acme.com").expect("kept");
    assert!(e.active && !e.deleted);

    // Three deactivations pass, the next ones are held: success for the IdP, the entry unchanged.
    for id in &ids[..5] {
        deactivate(&okta, id);
    }
    let active: Vec<bool> = (0..5).map(|i| directory_entry(&s.db(), "acme", &format!("user{i}@acme.com")).unwrap().active).collect();
    assert_eq!(active, vec![false, false, false, true, true]);
    // A deletion past the cap: the IdP's user is gone, the entry waits.
    assert_eq!(okta.delete(&format!("/Users/{}", ids[5])).status, 204);
    okta.get(&format!("/Users/{}", ids[5])).assert_error(404, None);
    assert!(directory_entry(&s.db(), "acme", "user5@acme.com").is_some());

    let pending = held(&s);
    assert_eq!(pending.len(), 3, "{pending:#?}");
    let by_user = |u: &str| pending.iter().find(|h| h["user_name"] == u).unwrap()["id"].as_i64().unwrap().to_string();
    assert_eq!(pending.iter().filter(|h| h["kind"] == "delete").count(), 1);

    // The admin approves one deactivation and the deletion, rejects the other.
    for id in [by_user("user3@acme.com"), by_user("user5@acme.com")] {
        assert!(s.cli(&["held", "approve", "acme", &id, "--author", "alice"]).status.success());
    }
    assert!(s.cli(&["held", "reject", "acme", &by_user("user4@acme.com"), "--author", "alice"]).status.success());
    assert!(!directory_entry(&s.db(), "acme", "user3@acme.com").unwrap().active);
    assert!(directory_entry(&s.db(), "acme", "user4@acme.com").unwrap().active, "rejected: the entry stays");
    assert!(directory_entry(&s.db(), "acme", "user5@acme.com").is_none(), "approved deletion applied");
    assert!(held(&s).is_empty());
    let again = s.cli(&["held", "approve", "acme", &by_user("user3@acme.com")]);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("already approved"));

    // Every decision is in the audit trail, by whom.
    let out = s.cli(&["audit", "acme", "--json", "--limit", "3"]);
    let recs: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ops: Vec<(&str, &str)> = recs.as_array().unwrap().iter().map(|r| (r["operation"].as_str().unwrap(), r["actor"].as_str().unwrap())).collect();
    assert_eq!(ops, vec![("rejected-deactivate", "admin:alice"), ("approved-delete", "admin:alice"), ("approved-deactivate", "admin:alice")]);
    let out = s.cli(&["audit", "acme", "--resource", &ids[4], "--json"]);
    let recs: Value = serde_json::from_slice(&out.stdout).unwrap();
    let held_rec = recs.as_array().unwrap().iter().find(|r| r["operation"] == "patch").unwrap();
    assert!(held_rec["decisions"].as_array().unwrap().iter().any(|d| d["plugin"] == "guard" && d["rule"] == "threshold"), "{held_rec}");
}

#[test]
fn reactivation_supersedes_a_held_deactivation() {
    let s = Server::start_with(&GUARDED.replace("max_destructive = 3", "max_destructive = 1"));
    let okta = s.declared("acme", "okta");
    let a = okta.user("a@acme.com");
    let b = okta.user("b@acme.com");
    deactivate(&okta, &a);
    deactivate(&okta, &b);
    assert_eq!(held(&s).len(), 1);
    let r = okta.patch(&format!("/Users/{b}"), json!([{"op": "replace", "value": {"active": true}}]));
    assert_eq!(r.status, 200);
    assert!(held(&s).is_empty(), "the IdP changed its mind before the admin did");
    assert!(directory_entry(&s.db(), "acme", "b@acme.com").unwrap().active);
}

#[test]
fn membership_removals_past_the_cap_are_held() {
    let s = Server::start_with(GUARDED);
    let okta = s.declared("acme", "okta");
    let ids: Vec<String> = (0..5).map(|i| okta.user(&format!("m{i}@acme.com"))).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let gid = okta.group("Engineers", &refs);
    let groups_of = |i: usize| directory_entry(&s.db(), "acme", &format!("m{i}@acme.com")).unwrap().groups;

    // Two removals fit in the cap of 3.
    let r = okta.patch(&format!("/Groups/{gid}"), json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", ids[0])},
                                                         {"op": "remove", "path": format!("members[value eq \"{}\"]", ids[1])}]));
    assert!(r.status == 204 || r.status == 200, "{}", r.body);
    assert!(groups_of(0).is_empty() && groups_of(1).is_empty());
    // Emptying the group would remove three more: more than the one left, so all are held.
    let r = okta.put(&format!("/Groups/{gid}"), &json!({"displayName": "Engineers", "members": []}));
    assert_eq!(r.status, 200, "{}", r.body);
    let g = okta.get(&format!("/Groups/{gid}"));
    assert!(g.body["members"].as_array().is_none_or(Vec::is_empty), "the IdP view says empty: {}", g.body);
    assert_eq!(groups_of(2), vec!["Engineers".to_string()], "the directory keeps the memberships");
    let pending = held(&s);
    assert_eq!(pending.len(), 1, "{pending:#?}");
    assert_eq!(pending[0]["kind"], "remove-members");
    assert!(pending[0]["user_name"].as_str().unwrap().starts_with("3 members of 'Engineers'"));

    // While held, the memberships belong to the held operation, not to the group.
    let x = s.admin(&s.admin_token()).get("/tenants/acme/explain/m2@acme.com");
    assert_eq!(x.body["memberships"][0]["kind"], "held", "{}", x.body);
    // Approval applies them, each recorded.
    let id = pending[0]["id"].to_string();
    assert!(s.cli(&["held", "approve", "acme", &id]).status.success());
    assert!((2..5).all(|i| groups_of(i).is_empty()));
    let out = s.cli(&["audit", "acme", "--user", "m3@acme.com", "--json"]);
    let recs: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(recs[0]["operation"], "approved-remove-members");
    assert_eq!(recs[0]["changes"]["groups"]["removed"], json!(["Engineers"]));
}

#[test]
fn a_bad_rule_change_cannot_empty_groups_through_a_reapply() {
    let s = Server::start_with(GUARDED);
    let okta = s.declared("acme", "okta");
    let ids: Vec<String> = (0..5).map(|i| okta.user(&format!("t{i}@acme.com"))).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    okta.group("team", &refs);
    // A rule that syncs no group at all: re-applying it would take "team" from everyone.
    let file = s.dir.path().join("bad.toml");
    std::fs::write(&file, "[[entry]]\nplugin = \"builtin:groups\"\nconfig = { include = ['^eng-'] }\n").unwrap();
    assert!(s.cli(&["chain", "set", "acme", "okta", "--file", file.to_str().unwrap()]).status.success());
    let out = s.cli(&["reapply", "acme", "okta", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!((0..5).all(|i| directory_entry(&s.db(), "acme", &format!("t{i}@acme.com")).unwrap().groups == vec!["team".to_string()]), "memberships kept");
    let pending = held(&s);
    assert_eq!(pending.len(), 1, "{pending:#?}");
    assert_eq!(pending[0]["kind"], "remove-members");
    let id = pending[0]["id"].to_string();
    assert!(s.cli(&["held", "reject", "acme", &id]).status.success());
    // Rejected: the memberships stay, owned by the application from now on.
    let x = s.admin(&s.admin_token()).get("/tenants/acme/explain/t0@acme.com");
    assert_eq!((x.body["memberships"][0]["group"].as_str(), x.body["memberships"][0]["kind"].as_str()), (Some("team"), Some("local")), "{}", x.body);
    assert!((0..5).all(|i| directory_entry(&s.db(), "acme", &format!("t{i}@acme.com")).unwrap().groups == vec!["team".to_string()]));
}
