//! The audit trail and `explain` on the real server: every change recorded with its request,
//! its rules and what changed; nothing recorded for a refused request; records append-only.

use serde_json::{Value, json};

use crate::harness::Server;

const RULES: &str = r#"
[[tenant]]
name = "acme"

[[tenant.idp]]
name = "okta"
kind = "okta"
rate_per_second = 0

[[tenant.idp.chain]]
plugin = "builtin:username"
config = { source = "email", local_part = true, replace = [{ pattern = '^(.)[^.]*\.(.*)$', with = "$1$2" }], case = "lower" }

[[tenant.idp.chain]]
plugin = "builtin:groups"
config = { map = { "dev users" = "software_dev" }, defaults = { all_users = ["app-users"] } }
"#;

fn cli_json(s: &Server, args: &[&str]) -> Value {
    let out = s.cli(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn every_change_is_recorded_with_its_request_rules_and_effect() {
    let s = Server::start_with(RULES);
    let okta = s.declared("acme", "okta");
    let user = json!({"userName": "jane.doe@acme.com", "emails": [{"value": "jane.doe@acme.com", "primary": true}], "title": "Engineer"});
    let r = okta.send("POST", "/Users", Some(&user), &[("x-request-id", "req-create-1")]);
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.id();
    // A refused request (the same user again) records nothing.
    okta.post("/Users", &user).assert_error(409, Some("uniqueness"));
    let p = okta.send("PATCH", &format!("/Users/{id}"), Some(&json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {"title": "Lead", "active": false}}]})), &[("x-request-id", "req-deactivate")]);
    assert_eq!(p.status, 200, "{}", p.body);
    let gid = okta.group("Dev users", &[&id]);

    let records = cli_json(&s, &["audit", "acme", "--json"]);
    let records = records.as_array().unwrap();
    assert_eq!(records.len(), 3, "create, patch, group create: {records:#?}");
    let (group, patch, create) = (&records[0], &records[1], &records[2]);

    assert_eq!((create["operation"].as_str(), create["request_id"].as_str()), (Some("create"), Some("req-create-1")));
    assert_eq!((create["actor"].as_str(), create["idp"].as_str(), create["entry"].as_str()), (Some("idp:acme/okta"), Some("okta"), Some("jdoe")));
    assert_eq!(create["chain_version"], 1);
    assert_eq!(create["changes"]["userName"], json!([null, "jdoe"]));
    assert_eq!(create["changes"]["groups"]["added"], json!(["app-users"]));
    let plugins: Vec<&str> = create["decisions"].as_array().unwrap().iter().map(|d| d["plugin"].as_str().unwrap()).collect();
    assert!(plugins.contains(&"username") && plugins.contains(&"groups"), "{create}");

    assert_eq!(patch["request_id"], "req-deactivate");
    assert_eq!(patch["changes"]["active"], json!([true, false]));
    assert_eq!(patch["changes"]["attributes"]["title"], json!(["Engineer", "Lead"]));
    assert!(patch["changes"]["idp"].as_array().unwrap().contains(&json!("title")));

    assert_eq!((group["resource_type"].as_str(), group["resource_id"].as_str()), (Some("Group"), Some(gid.as_str())));
    assert_eq!(group["changes"]["targets"], json!([[], ["software_dev"]]));
    assert_eq!(group["changes"]["members"]["added"], json!([id]));

    // Filters: by resource, by connection, by time, paging.
    assert_eq!(cli_json(&s, &["audit", "acme", "--resource", &id, "--json"]).as_array().unwrap().len(), 2);
    assert_eq!(cli_json(&s, &["audit", "acme", "--idp", "okta", "--limit", "1", "--json"]).as_array().unwrap().len(), 1);
    assert!(cli_json(&s, &["audit", "acme", "--since", "2999-01-01T00:00:00Z", "--json"]).as_array().unwrap().is_empty());
    let older = cli_json(&s, &["audit", "acme", "--before", &group["id"].to_string(), "--json"]);
    assert_eq!(older.as_array().unwrap().len(), 2);
    let bad = s.cli(&["audit", "acme", "--since", "yesterday"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("RFC 3339"));

    // explain: current state, who owns each membership, the history behind it.
    let e = cli_json(&s, &["explain", "acme", "JDOE", "--json"]);
    assert_eq!((e["user_name"].as_str(), e["active"].as_bool()), (Some("jdoe"), Some(false)));
    assert_eq!(e["idp_users"], json!([["okta", id]]));
    let m = e["memberships"].as_array().unwrap();
    assert!(m.iter().any(|m| m["group"] == "app-users" && m["kind"] == "rule" && m["idp"] == "okta"), "{m:?}");
    assert!(m.iter().any(|m| m["group"] == "software_dev" && m["kind"] == "idp-group" && m["via"] == "Dev users"), "{m:?}");
    let ops: Vec<&str> = e["history"].as_array().unwrap().iter().map(|r| r["operation"].as_str().unwrap()).collect();
    assert_eq!(ops, vec!["patch", "create"]);
    let text = String::from_utf8_lossy(&s.cli(&["explain", "acme", "jdoe"]).stdout).to_string();
    assert!(text.contains("via okta group 'Dev users'") && text.contains("rules v1"), "{text}");

    // Append-only, even to someone with the database file.
    let db = s.db();
    let err = db.execute("UPDATE audit SET actor = 'nobody'").unwrap_err();
    assert!(err.contains("append-only"), "{err}");
    assert!(db.execute("DELETE FROM audit").unwrap_err().contains("append-only"));
}

#[test]
fn deletions_are_recorded_and_a_gone_entry_keeps_its_history() {
    let s = Server::start_with(RULES);
    let okta = s.declared("acme", "okta");
    let id = okta.post("/Users", &json!({"userName": "bob.smith@acme.com", "emails": [{"value": "bob.smith@acme.com"}]})).id();
    assert_eq!(okta.delete(&format!("/Users/{id}")).status, 204);
    let history = cli_json(&s, &["audit", "acme", "--user", "bsmith", "--json"]);
    let ops: Vec<&str> = history.as_array().unwrap().iter().map(|r| r["operation"].as_str().unwrap()).collect();
    assert_eq!(ops, vec!["delete", "create"]);
    assert_eq!(history[0]["changes"]["userName"], json!(["bsmith", null]), "deleted at once (retention 0)");
}

#[test]
fn drift_shows_where_the_directory_left_the_idp() {
    let s = Server::start_with(
        r#"
[[tenant]]
name = "acme"

[[tenant.idp]]
name = "okta"
rate_per_second = 0

[[tenant.idp]]
name = "entra"
kind = "entra"
rate_per_second = 0
"#,
    );
    let (okta, entra) = (s.declared("acme", "okta"), s.declared("acme", "entra"));
    let a = okta.user("a@acme.com");
    let b = okta.user("b@acme.com");
    okta.user("c@acme.com");
    okta.group("Dev", &[&a, &b]);
    let e = entra.user("e@acme.com");
    entra.group("Dev", &[&e]);
    // b is deactivated: disabling keeps its memberships.
    okta.patch(&format!("/Users/{b}"), json!([{"op": "replace", "path": "active", "value": false}]));
    // Local changes behind the IdP's back: a leaves Dev, an entry is created by hand.
    let db = s.db();
    db.execute("DELETE FROM app_memberships WHERE entry_id = (SELECT id FROM entries WHERE user_name = 'a@acme.com')").unwrap();
    db.execute("INSERT INTO entries (tenant_id, user_name, user_name_fold, active, attributes, created, modified) VALUES (1, 'local.admin', 'local.admin', 1, '{}', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')").unwrap();

    let d = cli_json(&s, &["drift", "acme", "okta", "--json"]);
    assert_eq!(d["untouched"], json!([{"user_name": "e@acme.com", "detail": "other-connection"}, {"user_name": "local.admin", "detail": "orphan"}]));
    assert_eq!(d["missing_memberships"], json!([{"group": "Dev", "user_name": "a@acme.com", "detail": "IdP group 'Dev'"}]));
    assert_eq!(d["extra_memberships"], json!([{"group": "Dev", "user_name": "e@acme.com", "detail": "IdP entra group 'Dev'"}]));
    assert_eq!(d["inactive_with_groups"], json!([{"user_name": "b@acme.com", "detail": "Dev"}]));
    let text = String::from_utf8_lossy(&s.cli(&["drift", "acme", "okta"]).stdout).to_string();
    assert!(text.contains("deactivated users still holding groups: 1"), "{text}");
}
