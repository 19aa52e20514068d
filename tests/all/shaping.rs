//! What a delivery target receives is itself a rule: a target's shape versions (chains of
//! shaping plugins), previewed, activated, explained and rolled back, against the real
//! receivers of `delivery.rs` (scim2-server, the Standard Webhooks receiver).

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::delivery::{DELIVERY, Receiver, Scim2Server, TENANTS, cli_ok, eventually, okta_user, secret};
use crate::harness::{Server, test_plugins};

const SHAPE: &str = r#"
[[entry]]
plugin = "builtin:shape"
config = { users = { allow = ["name", "emails"], rename = { "name.givenName" = "nickName" }, set = { userType = "Employee" } }, groups = { names = { software_dev = "Developers" } } }
"#;

fn json_of(s: &Server, args: &[&str]) -> Value {
    serde_json::from_str(&cli_ok(s, args)).unwrap()
}

fn reconciled(s: &Server, target: &str) {
    eventually(30, "the reconciliation", || (json_of(s, &["target", "show", "acme", target, "--json"])["needs_sync"] == json!(false)).then_some(()));
}

/// A SCIM target's shape version: stored as a candidate, previewed on the directory, activated
/// (the target is reconciled: what it has takes the new shape, groups renamed in place with
/// their members), applied to the changes that follow, explained, and rolled back (what the
/// rules added is removed again).
#[test]
fn a_targets_shape_rules_decide_what_it_receives() {
    let scim = Scim2Server::start();
    let s = Server::start_with(&format!("{DELIVERY}{TENANTS}"));
    cli_ok(&s, &["target", "add", "acme", "app", "--kind", "scim", "--url", &scim.base("acme"), "--token", &scim.token, "--retry-base-ms", "50"]);
    reconciled(&s, "app");
    let okta = s.declared("acme", "okta");
    let jane = okta_user(&okta, "jane.doe@acme.com", "Engineering");
    okta.group("Dev users", &[&jane]);
    let before = eventually(30, "jdoe unshaped in the target", || {
        let u = scim.users("acme");
        let g = scim.groups("acme");
        (u.contains_key("jdoe") && g.get("software_dev").is_some_and(|m| m.len() == 1)).then_some(u)
    });
    assert_eq!(before["jdoe"]["name"]["givenName"], "G");
    assert!(before["jdoe"].get("userType").is_none());

    // Bad rules are refused before anything is stored: a plugin that does not shape, a
    // configuration the plugin refuses, examples that fail.
    let file = s.dir.path().join("shape.toml");
    for (bad, why) in [
        ("[[entry]]\nplugin = \"builtin:username\"\n", "does not shape deliveries"),
        ("[[entry]]\nplugin = \"builtin:shape\"\nconfig = { users = { drop = [\"userName\"] } }\n", "cannot be left out"),
        ("[[entry]]\nplugin = \"builtin:shape\"\nconfig = { examples = [{ kind = \"group\", resource = { displayName = \"a\" }, expect = { displayName = \"b\" } }] }\n", "example 1"),
        ("[[entry]]\nplugin = \"builtin:shape\"\n[matching]\npolicy = \"adopt\"\n", "unknown field"),
    ] {
        std::fs::write(&file, bad).unwrap();
        let out = s.cli(&["target", "shape", "set", "acme", "app", "--file", file.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(why), "{bad}: {err}");
    }
    assert_eq!(json_of(&s, &["target", "shape", "history", "acme", "app", "--json"])["versions"], json!([]));

    // A candidate, previewed: what jdoe and software_dev would become, and why.
    std::fs::write(&file, SHAPE).unwrap();
    let out = cli_ok(&s, &["target", "shape", "set", "acme", "app", "--file", file.to_str().unwrap(), "--candidate", "--note", "Jira takes no enterprise data"]);
    assert!(out.contains("shape version 1 stored, not active"), "{out}");
    let p = json_of(&s, &["target", "shape", "preview", "acme", "app", "1", "--json"]);
    assert_eq!((p["active_version"].clone(), p["proposed_version"].clone(), p["changed"].clone(), p["held_back"].clone()), (Value::Null, json!(1), json!(2), json!(0)), "{p:#}");
    let row = |name: &str| p["rows"].as_array().unwrap().iter().find(|r| r["name"] == name).cloned().unwrap();
    let jdoe = row("jdoe");
    assert_eq!(jdoe["proposed"]["resource"], json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "jdoe", "active": true, "name": {"familyName": "F"}, "nickName": "G", "emails": [{"value": "jane.doe@acme.com", "type": "work", "primary": true}], "userType": "Employee"}), "{jdoe:#}");
    let rules: Vec<&str> = jdoe["proposed"]["decisions"].as_array().unwrap().iter().map(|d| d["rule"].as_str().unwrap()).collect();
    assert_eq!(rules, ["shape.allow", "shape.rename", "shape.set"]);
    assert!(jdoe["proposed"]["decisions"][0]["reason"].as_str().unwrap().contains("urn:mapwright:custom:User"), "{jdoe:#}");
    assert_eq!(row("software_dev")["proposed"]["resource"]["displayName"], "Developers");
    // Nothing changed in the target yet.
    assert!(scim.users("acme")["jdoe"].get("userType").is_none());

    // Activated: the target is reconciled into the new shape; the group keeps its id and
    // members under its new name.
    let group_id = scim.client("acme").get("/Groups?filter=displayName%20eq%20%22software_dev%22").body["Resources"][0]["id"].as_str().unwrap().to_string();
    cli_ok(&s, &["target", "shape", "activate", "acme", "app", "1"]);
    let after = eventually(30, "jdoe reshaped in the target", || {
        let u = scim.users("acme");
        (u["jdoe"]["userType"] == "Employee").then_some(u)
    });
    assert_eq!(after["jdoe"]["nickName"], "G");
    assert!(after["jdoe"]["name"].get("givenName").is_none(), "{:#}", after["jdoe"]);
    let groups = eventually(30, "the group renamed", || {
        let g = scim.groups("acme");
        g.contains_key("Developers").then_some(g)
    });
    assert!(!groups.contains_key("software_dev"), "{groups:?}");
    assert_eq!(groups["Developers"], HashSet::from([after["jdoe"]["id"].as_str().unwrap().to_string()]));
    assert_eq!(scim.client("acme").get(&format!("/Groups/{group_id}")).body["displayName"], "Developers", "renamed in place");

    // A change after the activation goes out shaped, without a reconciliation.
    let bob = okta_user(&okta, "bob.smith@acme.com", "Sales");
    okta.group("Dev users", &[&jane, &bob]);
    eventually(30, "bsmith shaped, in Developers", || {
        let u = scim.users("acme");
        let g = scim.groups("acme");
        (u.get("bsmith").is_some_and(|b| b["userType"] == "Employee" && b["nickName"] == "G") && g.get("Developers").is_some_and(|m| m.len() == 2)).then_some(())
    });

    // Why jdoe is sent as it is.
    let e = json_of(&s, &["target", "shape", "explain", "acme", "app", "jdoe", "--json"]);
    assert_eq!(e["version"], 1);
    assert_eq!(e["input"]["name"]["givenName"], "G", "the directory's resource, before the rules");
    assert!(e["outcome"]["decisions"].as_array().unwrap().iter().any(|d| d["plugin"] == "shape" && d["rule"] == "shape.set" && d["reason"] == "userType = \"Employee\""), "{e:#}");
    let text = cli_ok(&s, &["target", "shape", "explain", "acme", "app", "jdoe"]);
    assert!(text.contains("shape.rename (shape): name.givenName sent as nickName"), "{text}");

    // Rolled back: no shaping; what the rules added goes, what they left out comes back.
    cli_ok(&s, &["target", "shape", "activate", "acme", "app", "none"]);
    let back = eventually(30, "jdoe unshaped again", || {
        let u = scim.users("acme");
        (u["jdoe"].get("userType").is_none() && u["jdoe"]["name"]["givenName"] == "G").then_some(u)
    });
    assert!(back["jdoe"].get("nickName").is_none(), "{:#}", back["jdoe"]);
    eventually(30, "the group's directory name back", || scim.groups("acme").contains_key("software_dev").then_some(()));
    let history = json_of(&s, &["target", "shape", "history", "acme", "app", "--json"]);
    let activations: Vec<Value> = history["activations"].as_array().unwrap().iter().map(|a| a["number"].clone()).collect();
    assert_eq!(activations, [Value::Null, json!(1)]);
    assert_eq!(history["versions"][0]["note"], "Jira takes no enterprise data");
    let status = json_of(&s, &["target", "show", "acme", "app", "--json"]);
    assert_eq!(status["dead_letters"], json!([]), "{status:#}");

    // The README's example loads, passes its own examples, and renames the group.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/shape.toml");
    let out = cli_ok(&s, &["target", "shape", "set", "acme", "app", "--file", example, "--candidate"]);
    assert!(out.contains("shape version 2 stored"), "{out}");
    let p = json_of(&s, &["target", "shape", "preview", "acme", "app", "2", "--json"]);
    assert_eq!(p["held_back"], 0, "{p:#}");
    let dev = p["rows"].as_array().unwrap().iter().find(|r| r["name"] == "software_dev").unwrap();
    assert_eq!(dev["proposed"]["resource"]["displayName"], "Developers");
}

/// A webhook target's shape rules, set and previewed over the admin API: events carry the
/// shaped user and group; the directory's ids stay, whatever the rules do.
#[test]
fn a_webhook_targets_events_are_shaped() {
    let secret = secret();
    let rx = Receiver::start(&secret);
    let s = Server::start_with(&format!("{DELIVERY}{TENANTS}"));
    let admin = s.admin(&s.admin_token());
    let r = admin.post("/tenants/acme/targets", &json!({"name": "hooks", "kind": "webhook", "url": rx.url(), "secret": secret, "settings": {"retry_base_ms": 50}}));
    assert_eq!(r.status, 201, "{}", r.body);
    let entries = json!([{"plugin": "builtin:shape", "config": {"users": {"drop": ["urn:mapwright:custom:User", "emails"], "set": {"id": "x"}}}}]);
    let r = admin.post("/tenants/acme/targets/hooks/shape", &json!({"entries": entries}));
    assert_eq!(r.status, 400, "a rule may not set the id: {}", r.body);
    assert_eq!(r.body["error"]["message"], "entry 1: invalid configuration for shape: users.set: 'id' is the server's to set");
    let entries = json!([{"plugin": "builtin:shape", "config": {"users": {"drop": ["urn:mapwright:custom:User", "emails"]}, "groups": {"prefix": "acme-"}}}]);
    let r = admin.post("/tenants/acme/targets/hooks/shape", &json!({"entries": entries.clone()}));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!((r.body["number"].clone(), r.body["active"].clone()), (json!(1), json!(true)));
    // The server's delivery workers pick up a target's change within a quarter second.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let okta = s.declared("acme", "okta");
    let jane = okta_user(&okta, "jane.doe@acme.com", "Engineering");
    okta.group("Dev users", &[&jane]);
    let events = eventually(30, "the user and its memberships", || {
        let e = rx.events();
        (e.iter().filter(|e| e["body"]["type"] == "membership.added").count() == 2).then_some(e)
    });
    let created = events.iter().find(|e| e["body"]["type"] == "user.created").unwrap();
    let user = &created["body"]["data"]["user"];
    assert_eq!(user["id"], jane_dir_id(&s), "the directory's id");
    assert!(user.get("emails").is_none() && user.get("urn:mapwright:custom:User").is_none(), "{user:#}");
    let schemas: Vec<&str> = user["schemas"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let present: Vec<&str> = user.as_object().unwrap().keys().filter(|k| k.starts_with("urn:")).map(String::as_str).collect();
    assert_eq!(schemas[1..], present[..], "schemas follow what is sent: {user:#}");
    assert!(!schemas.contains(&"urn:mapwright:custom:User"));
    let groups: HashSet<&str> = events.iter().filter(|e| e["body"]["type"] == "membership.added").map(|e| e["body"]["data"]["group"]["displayName"].as_str().unwrap()).collect();
    assert_eq!(groups, HashSet::from(["acme-software_dev", "acme-app-users"]));

    // Preview over the API: entries not stored, against the active version.
    let r = admin.post("/tenants/acme/targets/hooks/shape/preview", &json!({"off": true, "user": "jdoe"}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["rows"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["rows"][0]["proposed"]["resource"]["emails"][0]["value"], "jane.doe@acme.com");
    assert_eq!(r.body["changed"], 1);
    let r = admin.get("/tenants/acme/targets/hooks/shape/explain?user=jdoe");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["outcome"]["decisions"][0]["rule"], "shape.drop");
    assert_eq!(admin.get("/tenants/acme/targets/hooks/shape/explain?user=nobody").status, 404);
    let r = admin.post("/tenants/acme/targets/hooks/shape/activate", &json!({"version": 1}));
    assert_eq!(r.status, 409, "already active: {}", r.body);
    let r = admin.get("/tenants/acme/targets/hooks/shape");
    assert_eq!(r.body["active"], 1, "{}", r.body);
}

fn jane_dir_id(s: &Server) -> String {
    let admin = s.admin(&s.admin_token());
    let token = admin.post("/tenants/acme/tokens", &json!({"name": "reader"})).body["token"].as_str().unwrap().to_string();
    let r = crate::harness::Client::new(format!("{}/directory/v1/acme", s.url), token).get("/Users?filter=userName%20eq%20%22jdoe%22");
    r.body["Resources"][0]["id"].as_str().unwrap_or_else(|| panic!("{}", r.body)).to_string()
}

/// Shape rules run in the plugin sandbox: a rule that refuses a resource, loops, or returns
/// something that is not a resource parks that change for that target only (with the reason),
/// and every other change flows.
#[test]
fn a_shape_rule_that_fails_parks_only_its_change() {
    let secret = secret();
    let rx = Receiver::start(&secret);
    let s = Server::start_with(&format!("{DELIVERY}{TENANTS}"));
    let admin = s.admin(&s.admin_token());
    let r = admin.post("/tenants/globex/targets", &json!({"name": "hooks", "kind": "webhook", "url": rx.url(), "secret": secret, "settings": {"retry_base_ms": 20, "max_attempts": 2}}));
    assert_eq!(r.status, 201, "{}", r.body);
    let file = s.dir.path().join("hostile.toml");
    std::fs::write(&file, format!("[[entry]]\nplugin = {:?}\nlimits = {{ cpu_ms = 20 }}\n", test_plugins::HOSTILE)).unwrap();
    cli_ok(&s, &["target", "shape", "set", "globex", "hooks", "--file", file.to_str().unwrap()]);
    // The server's delivery workers pick up a target's change within a quarter second.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let idp = s.declared("globex", "scim");
    for name in ["shape-reject", "shape-loop", "shape-drop-name"] {
        idp.user(name);
    }
    for i in 0..5 {
        idp.user(&format!("fine{i}"));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let dead = loop {
        let status = json_of(&s, &["target", "show", "globex", "hooks", "--json"]);
        let d = status["dead_letters"].as_array().cloned().unwrap_or_default();
        if d.len() == 3 {
            break d;
        }
        assert!(std::time::Instant::now() < deadline, "the three changes did not park: {status:#}\n{}", s.log());
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let answers: Vec<&str> = dead.iter().map(|d| d["answer"].as_str().unwrap()).collect();
    assert!(answers[0].contains("rejected by rule hostile.shape: this application must never receive shape-reject"), "{answers:?}");
    assert!(answers[1].contains("exceeded its CPU time limit of 20 ms"), "{answers:?}");
    assert!(answers[2].contains("a resource without userName"), "{answers:?}");
    let names = eventually(30, "the other users", || {
        let n: HashSet<String> = rx.events().iter().filter_map(|e| e["body"]["data"]["user"]["userName"].as_str().map(str::to_string)).collect();
        (n.len() == 5).then_some(n)
    });
    assert!(names.iter().all(|n| n.starts_with("fine")), "{names:?}");
}
