//! Expression rules (`builtin:expr`, issue 18): one CEL entry does what three first-party
//! plugins do, on the same IdP traffic; bad expressions are refused with their position, fail
//! one request at run time with the entry and expression named, and are contained like any
//! plugin when they blow up.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::harness::{Client, Server};

const CONFIG: &str = r#"
# The example Okta chain: three first-party plugins.
[[tenant]]
name = "three"
[[tenant.idp]]
name = "okta"
kind = "okta"
rate_per_second = 0
[[tenant.idp.chain]]
plugin = "builtin:username"
config = { source = "email", local_part = true, replace = [{ pattern = '^(.)[^.]*\.(.+)$', with = "$1$2" }], case = "lower" }
[[tenant.idp.chain]]
plugin = "builtin:groups"
config = { include = ['^eng-', '^Dev users$'], map = { "dev users" = "software_dev" }, rename = [{ pattern = '^eng-', with = "" }], defaults = { all_users = ["app-users"] } }
[[tenant.idp.chain]]
plugin = "builtin:attributes"
config = { mappings = [{ from = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", to = "urn:mapwright:custom:User:department" }] }

# The same as one expression entry.
[[tenant]]
name = "one"
[[tenant.idp]]
name = "okta"
kind = "okta"
rate_per_second = 0
[[tenant.idp.chain]]
plugin = "builtin:expr"
config = { username = "lower(regex_replace(local_part(primary_email(user)), r'^(.)[^.]*\\.(.+)$', '$1$2'))", groups = "lower(group.displayName) == 'dev users' ? 'software_dev' : (group.displayName.startsWith('eng-') ? substring(group.displayName, 4) : null)", memberships = [{ groups = ["app-users"] }], attributes = { "urn:mapwright:custom:User:department" = "attr(user, 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department')" } }

[[tenant]]
name = "bad"
[[tenant.idp]]
name = "okta"
kind = "okta"
rate_per_second = 0
[[tenant.idp.chain]]
plugin = "builtin:expr"
limits = { cpu_ms = 50 }
config = { username = "user.name.givenName + '.' + user.name.familyName", attributes = { "urn:mapwright:custom:User:combinations" = "size(user.emails.map(a, user.emails.map(b, user.emails.map(c, a.value + b.value + c.value))))" } }
"#;

/// The IdP traffic: users with departments, groups synced and not, a deactivation, a rename.
fn traffic(c: &Client) {
    let mut ids = BTreeMap::new();
    for (email, dept) in [("jane.doe@acme.com", "R&D"), ("bob.smith@acme.com", "Sales"), ("zoe.ng@acme.com", "R&D"), ("al.x@acme.com", "Ops")] {
        let r = c.post("/Users", &json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "userName": email, "active": true, "name": {"givenName": "G", "familyName": "F"},
            "emails": [{"value": email, "type": "work", "primary": true}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": dept},
        }));
        assert_eq!(r.status, 201, "{}", r.body);
        ids.insert(email, r.id());
    }
    let (jane, bob, zoe) = (&ids["jane.doe@acme.com"], &ids["bob.smith@acme.com"], &ids["zoe.ng@acme.com"]);
    c.group("Dev users", &[jane, zoe]);
    let g = c.group("eng-platform", &[jane]);
    c.group("Marketing", &[bob]);
    assert!(matches!(c.patch(&format!("/Groups/{g}"), json!([{"op": "add", "path": "members", "value": [{"value": bob}]}])).status, 200 | 204));
    assert_eq!(c.patch(&format!("/Users/{bob}"), json!([{"op": "replace", "value": {"active": false}}])).status, 200);
    let mut body = c.get(&format!("/Users/{zoe}")).body;
    body["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["department"] = json!("Platform");
    assert_eq!(c.put(&format!("/Users/{zoe}"), &body).status, 200);
}

/// A tenant's directory as the application reads it, without ids and times.
fn directory(s: &Server, tenant: &str) -> Value {
    let out = s.cli(&["admin-token", &format!("reader-{tenant}"), "--tenant", tenant, "--directory"]);
    let token = String::from_utf8_lossy(&out.stdout).trim().rsplit(' ').next().unwrap().to_string();
    let dir = Client::new(format!("{}/directory/v1/{tenant}", s.url), token);
    let mut users = BTreeMap::new();
    for u in dir.get("/Users?count=1000").body["Resources"].as_array().unwrap() {
        let mut u = u.clone();
        let o = u.as_object_mut().unwrap();
        o.remove("id");
        o.remove("meta");
        let mut groups: Vec<String> = o.remove("groups").unwrap_or_default().as_array().cloned().unwrap_or_default().iter().map(|g| g["display"].as_str().unwrap().to_string()).collect();
        groups.sort();
        o.insert("groups".into(), json!(groups));
        users.insert(o["userName"].as_str().unwrap().to_string(), u);
    }
    let mut groups = BTreeMap::new();
    for g in dir.get("/Groups?count=1000").body["Resources"].as_array().unwrap() {
        let mut members: Vec<String> = g["members"].as_array().cloned().unwrap_or_default().iter().map(|m| m["display"].as_str().unwrap().to_string()).collect();
        members.sort();
        groups.insert(g["displayName"].as_str().unwrap().to_string(), members);
    }
    json!({"users": users, "groups": groups})
}

#[test]
fn one_expression_entry_gives_the_same_directory_as_three_plugins() {
    let s = Server::start_with(CONFIG);
    traffic(&s.declared("three", "okta"));
    traffic(&s.declared("one", "okta"));
    let (three, one) = (directory(&s, "three"), directory(&s, "one"));
    assert_eq!(one, three);
    // And what that is, so the comparison is not of two empty directories.
    assert_eq!(three["users"]["jdoe"]["groups"], json!(["app-users", "platform", "software_dev"]));
    assert_eq!(three["users"]["jdoe"]["urn:mapwright:custom:User"]["department"], "R&D");
    assert_eq!(three["users"]["zng"]["urn:mapwright:custom:User"]["department"], "Platform");
    assert_eq!(three["users"]["bsmith"]["active"], false);
    assert!(three["groups"].get("Marketing").is_none());
}

#[test]
fn bad_expressions_are_refused_named_and_contained() {
    let s = Server::start_with(CONFIG);
    // Refused at activation, with the key and the position.
    let file = s.dir.path().join("bad.toml");
    std::fs::write(&file, "[[entry]]\nplugin = \"builtin:expr\"\nconfig = { attributes = { title = \"user.title +\" } }\n").unwrap();
    let out = s.cli(&["chain", "set", "bad", "okta", "--file", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("attributes.title: ERROR: <input>:1:13"), "{err}");

    let c = s.declared("bad", "okta");
    // Fails at run time on a user without a name: that request, named; the next one works.
    let r = c.post("/Users", &json!({"userName": "nameless@acme.com", "emails": [{"value": "a@acme.com"}]}));
    r.assert_error(400, Some("invalidValue"));
    let detail = r.body["detail"].as_str().unwrap();
    assert!(detail.contains("expr") && detail.contains("username: No such key: name") && detail.contains("user.name.givenName + '.'"), "{detail}");
    let r = c.post("/Users", &json!({"userName": "ok@acme.com", "name": {"givenName": "Ann", "familyName": "Lee"}, "emails": [{"value": "a@acme.com"}]}));
    assert_eq!((r.status, r.body["userName"].as_str()), (201, Some("ok@acme.com")), "{}", r.body);
    // Blows up (a billion combinations): stopped at the CPU limit like any plugin.
    let emails: Vec<Value> = (0..1000).map(|i| json!({"value": format!("e{i}@acme.com")})).collect();
    let r = c.post("/Users", &json!({"userName": "big@acme.com", "name": {"givenName": "Big", "familyName": "One"}, "emails": emails}));
    assert_eq!(r.status, 500, "{}", r.body);
    assert!(r.body["detail"].as_str().unwrap().contains("CPU time limit of 50 ms"), "{}", r.body);
    let r = c.post("/Users", &json!({"userName": "next@acme.com", "name": {"givenName": "N", "familyName": "X"}, "emails": [{"value": "n@acme.com"}]}));
    assert_eq!(r.status, 201, "{}", r.body);
}

const UNIQUE: &str = r#"
[[tenant]]
name = "acme"
[[tenant.idp]]
name = "okta"
kind = "okta"
rate_per_second = 0
[[tenant.idp.chain]]
plugin = "builtin:username"
config = { source = "email", local_part = true, replace = [{ pattern = '^(.)[^.]*\.(.+)$', with = "$1$2" }], case = "lower", unique = 9 }

[[tenant.idp]]
name = "entra"
kind = "entra"
rate_per_second = 0
[[tenant.idp.chain]]
plugin = "builtin:expr"
config = { username = "candidates(lower(local_part(primary_email(user))), 5)" }
"#;

fn create(c: &Client, email: &str) -> crate::harness::Resp {
    c.post("/Users", &json!({"userName": email, "active": true, "emails": [{"value": email, "primary": true}]}))
}

/// Usernames offered as candidates: two creates racing for the same name get different ones,
/// never the same; the audit says which was taken and why; a user keeps its name.
#[test]
fn unique_usernames_under_concurrency() {
    let s = Server::start_with(UNIQUE);
    let okta = s.declared("acme", "okta");
    for round in 0..8 {
        let (a, b) = (format!("ann.lee{round}@acme.com"), format!("al.lee{round}@acme.com"));
        let (c1, c2) = (okta.clone(), okta.clone());
        let t1 = std::thread::spawn(move || create(&c1, &a));
        let t2 = std::thread::spawn(move || create(&c2, &b));
        let (r1, r2) = (t1.join().unwrap(), t2.join().unwrap());
        assert_eq!((r1.status, r2.status), (201, 201), "{} {}", r1.body, r2.body);
        let base = format!("alee{round}");
        let mut names: Vec<String> = [&r1, &r2].iter().map(|r| crate::harness::directory_entry_of(&s.db(), "acme", &r.id()).unwrap().user_name).collect();
        names.sort();
        assert_eq!(names, [base.clone(), format!("{base}2")], "round {round}");
    }
    // The audit of the second says what it offered, what was taken, what it got.
    let out = s.cli(&["audit", "acme", "--user", "alee02", "--json"]);
    let recs: Value = serde_json::from_slice(&out.stdout).unwrap();
    let note = &recs.as_array().unwrap().iter().find(|r| r["operation"] == "create").unwrap()["changes"]["user_name_candidates"];
    assert_eq!((note["chosen"].as_str(), note["taken"].clone()), (Some("alee02"), json!(["alee0"])), "{recs:#}");
    // Expression candidates on another connection: the same rule, by CEL.
    let entra = s.declared("acme", "entra");
    assert_eq!(create(&entra, "alee0@x.io").status, 201);
    assert!(crate::harness::directory_entry(&s.db(), "acme", "alee03").is_some(), "alee0 and alee02 are taken");
    // A user keeps its name: the first candidate freed does not rename it.
    let first = okta.get(&format!("/Users?filter={}", crate::harness::enc("userName eq \"ann.lee1@acme.com\""))).body["Resources"][0]["id"].as_str().unwrap().to_string();
    let second = okta.get(&format!("/Users?filter={}", crate::harness::enc("userName eq \"al.lee1@acme.com\""))).body["Resources"][0]["id"].as_str().unwrap().to_string();
    let holder = if crate::harness::directory_entry_of(&s.db(), "acme", &first).unwrap().user_name == "alee1" { (first, second) } else { (second, first) };
    assert_eq!(okta.delete(&format!("/Users/{}", holder.0)).status, 204);
    let r = okta.patch(&format!("/Users/{}", holder.1), json!([{"op": "replace", "value": {"displayName": "Al"}}]));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(crate::harness::directory_entry_of(&s.db(), "acme", &holder.1).unwrap().user_name, "alee12");
}
