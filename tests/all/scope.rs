//! Scoping (issue 17, point 4): which users are provisioned at all. An out-of-scope user is
//! accepted and kept in the IdP's view with no directory entry; it comes in when the rules
//! say so (an attribute changes, or it joins a group: IdPs send users first and memberships
//! after), and leaving deprovisions it per the rules. Preview and re-apply show it.

use serde_json::{Value, json};

use crate::harness::{Server, directory_entry, enc, test_plugins};

const CONFIG: &str = r#"
[[tenant]]
name = "acme"

# Only members of an eng- group are provisioned; everyone provisioned gets app-users.
[[tenant.idp]]
name = "entra"
kind = "entra"
rate_per_second = 0
[[tenant.idp.chain]]
plugin = "builtin:scope"
config = { groups = ['^eng-'] }
[[tenant.idp.chain]]
plugin = "builtin:groups"
config = { defaults = { all_users = ["app-users"] } }

# Only employees with an acme.com address.
[[tenant.idp]]
name = "okta"
kind = "okta"
rate_per_second = 0
[[tenant.idp.chain]]
plugin = "builtin:scope"
config = { email_domains = ["acme.com"], attributes = { userType = ["Employee"] } }
"#;

fn cli_json(s: &Server, args: &[&str]) -> Value {
    let out = s.cli(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn last_audit(s: &Server, id: &str) -> Value {
    cli_json(s, &["audit", "acme", "--resource", id, "--json"]).as_array().unwrap()[0].clone()
}

#[test]
fn group_scoped_users_arrive_before_their_group_and_come_in_with_it() {
    let s = Server::start_with(CONFIG);
    let entra = s.declared("acme", "entra");
    // Users first, as Entra sends them: accepted, in the IdP's view, not in the directory.
    let jane = entra.user("jane@acme.com");
    let bob = entra.user("bob@acme.com");
    assert!(directory_entry(&s.db(), "acme", "jane@acme.com").is_none());
    assert_eq!(entra.get(&format!("/Users?filter={}", enc("userName eq \"jane@acme.com\""))).body["totalResults"], 1, "the IdP's reads work");
    assert_eq!(last_audit(&s, &jane)["changes"]["scope"], "out");
    // Its updates work too, and change nothing in the directory.
    let r = entra.patch(&format!("/Users/{bob}"), json!([{"op": "Replace", "path": "displayName", "value": "Bob B"}]));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(directory_entry(&s.db(), "acme", "bob@acme.com").is_none());

    // The group comes with jane as member: her entry appears with its memberships.
    let g = entra.group("eng-platform", &[&jane]);
    let e = directory_entry(&s.db(), "acme", "jane@acme.com").expect("jane came into scope");
    assert!(e.active);
    assert_eq!(e.groups, ["app-users", "eng-platform"]);
    let rec = last_audit(&s, &jane);
    assert_eq!((rec["operation"].as_str(), rec["changes"]["scope"].as_str()), (Some("scope"), Some("entered")), "{rec:#}");
    assert!(rec["decisions"].as_array().unwrap().iter().any(|d| d["plugin"] == "scope" && d["rule"] == "scope.match"), "{rec:#}");
    // A group outside the pattern brings nobody in.
    entra.group("Marketing", &[&bob]);
    assert!(directory_entry(&s.db(), "acme", "bob@acme.com").is_none());
    // Added by PATCH, as Entra adds members: bob comes in.
    let r = entra.patch(&format!("/Groups/{g}"), json!([{"op": "Add", "path": "members", "value": [{"value": bob}]}]));
    assert!(matches!(r.status, 200 | 204), "{}", r.body);
    // It comes in with every membership its IdP groups give, Marketing included.
    assert_eq!(directory_entry(&s.db(), "acme", "bob@acme.com").unwrap().groups, ["Marketing", "app-users", "eng-platform"]);

    // Removed from the group: out of scope, deprovisioned per the rules (disabled, by default).
    let r = entra.patch(&format!("/Groups/{g}"), json!([{"op": "Remove", "path": "members", "value": [{"value": jane}]}]));
    assert!(matches!(r.status, 200 | 204), "{}", r.body);
    let e = directory_entry(&s.db(), "acme", "jane@acme.com").unwrap();
    assert!(!e.active, "{e:?}");
    assert_eq!(last_audit(&s, &jane)["changes"]["scope"], "left");
    // And back: reactivated, its memberships restored.
    let r = entra.patch(&format!("/Groups/{g}"), json!([{"op": "Add", "path": "members", "value": [{"value": jane}]}]));
    assert!(matches!(r.status, 200 | 204), "{}", r.body);
    let e = directory_entry(&s.db(), "acme", "jane@acme.com").unwrap();
    assert!(e.active && e.groups == ["app-users", "eng-platform"], "{e:?}");
}

#[test]
fn attribute_scope_follows_the_user_and_preview_and_reapply_show_scope_changes() {
    let s = Server::start_with(CONFIG);
    let okta = s.declared("acme", "okta");
    let user = |name: &str, user_type: &str| {
        let r = okta.post("/Users", &json!({"userName": name, "userType": user_type, "active": true, "emails": [{"value": name, "primary": true}]}));
        assert_eq!(r.status, 201, "{}", r.body);
        r.id()
    };
    let ann = user("ann@acme.com", "Contractor");
    user("cy@acme.com", "Employee");
    let dee = user("dee@partner.io", "Employee");
    assert!(directory_entry(&s.db(), "acme", "ann@acme.com").is_none());
    assert!(directory_entry(&s.db(), "acme", "cy@acme.com").is_some());
    assert!(directory_entry(&s.db(), "acme", "dee@partner.io").is_none());
    // An attribute change brings ann in, as Okta sends it (PUT of the whole user).
    let mut body = okta.get(&format!("/Users/{ann}")).body;
    body["userType"] = json!("Employee");
    assert_eq!(okta.put(&format!("/Users/{ann}"), &body).status, 200);
    assert!(directory_entry(&s.db(), "acme", "ann@acme.com").unwrap().active);

    // A candidate that scopes on partner.io: the preview says who would enter and leave.
    let file = s.dir.path().join("partner.toml");
    std::fs::write(&file, "[[entry]]\nplugin = \"builtin:scope\"\nconfig = { email_domains = [\"partner.io\"] }\n").unwrap();
    assert!(s.cli(&["chain", "set", "acme", "okta", "--file", file.to_str().unwrap(), "--candidate"]).status.success());
    let versions = cli_json(&s, &["chain", "history", "acme", "okta", "--json"]);
    let candidate = versions["versions"].as_array().unwrap().iter().find(|v| v["active"] == false).unwrap()["version"].as_i64().unwrap().to_string();
    let preview = cli_json(&s, &["chain", "preview", "acme", "okta", "--number", &candidate, "--json"]);
    let scope_of = |name: &str| preview["items"].as_array().unwrap().iter().find(|i| i["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)) || i["changes"]["user_name"].as_array().is_some_and(|a| a.iter().any(|v| v == name))).map(|i| i["changes"]["scope"].clone()).unwrap_or(Value::Null);
    assert_eq!(scope_of("cy@acme.com"), "left", "{preview:#}");
    assert_eq!(scope_of("dee@partner.io"), "entered", "{preview:#}");
    assert!(directory_entry(&s.db(), "acme", "dee@partner.io").is_none(), "a preview writes nothing");
    // Activated and re-applied: it happens.
    assert!(s.cli(&["chain", "rollback", "acme", "okta", "--to", &candidate]).status.success());
    cli_json(&s, &["reapply", "acme", "okta", "--json"]);
    assert!(directory_entry(&s.db(), "acme", "dee@partner.io").unwrap().active);
    assert!(!directory_entry(&s.db(), "acme", "cy@acme.com").unwrap().active);
    // The server remembers dee as it created it, out of scope; the re-apply (another
    // process) brought it in without a new version. Its deactivation must see it in scope,
    // and deprovision it.
    let r = okta.patch(&format!("/Users/{dee}"), json!([{"op": "replace", "path": "active", "value": false}]));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!directory_entry(&s.db(), "acme", "dee@partner.io").unwrap().active, "deprovisioned");
    assert_eq!(last_audit(&s, &dee)["operation"], "patch");
}

#[test]
fn a_scope_rule_that_fails_writes_nothing() {
    let s = Server::start_with(&format!(
        "[[tenant]]\nname = \"acme\"\n[[tenant.idp]]\nname = \"h\"\nkind = \"generic\"\nrate_per_second = 0\n[[tenant.idp.chain]]\nplugin = {:?}\nlimits = {{ cpu_ms = 20 }}\n",
        test_plugins::HOSTILE
    ));
    let c = s.declared("acme", "h");
    let r = c.post("/Users", &json!({"userName": "scope-reject", "active": true}));
    r.assert_error(400, Some("invalidValue"));
    assert!(r.body["detail"].as_str().unwrap().contains("scope-reject is refused"), "{}", r.body);
    let r = c.post("/Users", &json!({"userName": "scope-loop", "active": true}));
    assert_eq!(r.status, 500, "{}", r.body);
    assert!(r.body["detail"].as_str().unwrap().contains("CPU time limit"), "{}", r.body);
    assert_eq!(c.get("/Users").body["totalResults"], 0, "nothing was written");
    // A plugin that keeps one out: accepted, no entry.
    let r = c.post("/Users", &json!({"userName": "scope-out", "active": true}));
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(directory_entry(&s.db(), "acme", "scope-out").is_none());
    // A scope configuration its own examples refute is refused before it goes live.
    let file = s.dir.path().join("bad.toml");
    std::fs::write(&file, "[[entry]]\nplugin = \"builtin:scope\"\nconfig = { groups = ['^eng-'], examples = [{ user = { userName = \"a\" }, groups = [\"eng-x\"], expect = false }] }\n").unwrap();
    let out = s.cli(&["chain", "set", "acme", "h", "--file", file.to_str().unwrap()]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("example 1"), "{}", String::from_utf8_lossy(&out.stderr));
}
