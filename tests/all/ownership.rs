//! Ownership of memberships and attribute values: what the application sets locally is never
//! wiped by a sync or a re-apply, and two IdPs feeding one entry each replace only their own.

use serde_json::json;

use crate::harness::{Server, directory_entry};

const TWO: &str = r#"
[[tenant]]
name = "acme"

[[tenant.idp]]
name = "okta"
kind = "okta"
rate_per_second = 0
matching = { policy = "adopt" }

[[tenant.idp]]
name = "entra"
kind = "entra"
rate_per_second = 0
matching = { policy = "adopt" }
"#;

#[test]
fn local_grants_and_values_survive_syncs_and_reapply() {
    let s = Server::start_with(TWO);
    let okta = s.declared("acme", "okta");
    let admin = s.admin(&s.admin_token());
    let user = json!({"userName": "jane@acme.com", "title": "Dev"});
    let id = okta.post("/Users", &user).id();
    let gid = okta.group("Dev users", &[&id]);

    // The application sets a title and grants a break-glass group.
    let r = admin.send("PATCH", "/tenants/acme/directory/jane@acme.com", Some(&json!({"attributes": {"title": "Boss"}, "add_groups": ["break-glass"]})), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["attribute_owners"]["title"], "local");
    assert!(r.body["memberships"].as_array().unwrap().iter().any(|m| m["group"] == "break-glass" && m["kind"] == "local"));

    // The IdP changes the title and takes the user out of its group: the local ones stay.
    assert_eq!(okta.put(&format!("/Users/{id}"), &json!({"userName": "jane@acme.com", "title": "Engineer"})).status, 200);
    assert_eq!(okta.put(&format!("/Groups/{gid}"), &json!({"displayName": "Dev users", "members": []})).status, 200);
    let e = directory_entry(&s.db(), "acme", "jane@acme.com").unwrap();
    assert_eq!((e.attributes["title"].as_str(), e.groups.clone()), (Some("Boss"), vec!["break-glass".to_string()]));
    let out = s.cli(&["reapply", "acme", "okta"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let e = directory_entry(&s.db(), "acme", "jane@acme.com").unwrap();
    assert_eq!((e.attributes["title"].as_str(), e.groups.clone()), (Some("Boss"), vec!["break-glass".to_string()]), "re-apply keeps them too");

    // Giving the title back: the next IdP write sets it again. Taking the group back.
    let r = admin.send("PATCH", "/tenants/acme/directory/jane@acme.com", Some(&json!({"attributes": {"title": null}, "remove_groups": ["break-glass"]})), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(okta.put(&format!("/Users/{id}"), &json!({"userName": "jane@acme.com", "title": "Engineer"})).status, 200);
    let e = directory_entry(&s.db(), "acme", "jane@acme.com").unwrap();
    assert_eq!((e.attributes["title"].as_str(), e.groups.len()), (Some("Engineer"), 0));
    // Bad input is refused with a reason; the audit names the admin.
    let r = admin.send("PATCH", "/tenants/acme/directory/jane@acme.com", Some(&json!({"attributes": {"active": "maybe"}})), &[]);
    assert_eq!(r.status, 400, "{}", r.body);
    let r = admin.send("PATCH", "/tenants/acme/directory/nobody", Some(&json!({"add_groups": ["x"]})), &[]);
    assert_eq!(r.status, 400, "{}", r.body);
    let recs = admin.get("/tenants/acme/audit?user=jane@acme.com");
    assert!(recs.body["records"].as_array().unwrap().iter().any(|r| r["operation"] == "local" && r["actor"] == "admin:initial"));
}

#[test]
fn two_idps_feeding_one_entry_replace_only_their_own_attributes() {
    let s = Server::start_with(TWO);
    let (okta, entra) = (s.declared("acme", "okta"), s.declared("acme", "entra"));
    let oid = okta.post("/Users", &json!({"userName": "jane@acme.com", "title": "Dev", "emails": [{"value": "jane@acme.com"}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"}})).id();
    // Entra adopts the same entry and brings a nickname only.
    let r = entra.post("/Users", &json!({"userName": "jane@acme.com", "nickName": "JJ", "emails": [{"value": "jane@acme.com"}]}));
    assert_eq!(r.status, 201, "{}", r.body);
    let e = directory_entry(&s.db(), "acme", "jane@acme.com").unwrap();
    assert_eq!((e.attributes["title"].as_str(), e.attributes["nickName"].as_str()), (Some("Dev"), Some("JJ")), "{}", e.attributes);
    // Okta drops the department: its own attribute goes; Entra's nickname stays.
    assert_eq!(okta.put(&format!("/Users/{oid}"), &json!({"userName": "jane@acme.com", "title": "Lead", "emails": [{"value": "jane@acme.com"}]})).status, 200);
    let e = directory_entry(&s.db(), "acme", "jane@acme.com").unwrap();
    assert!(e.attributes.get("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User").is_none(), "{}", e.attributes);
    assert_eq!((e.attributes["title"].as_str(), e.attributes["nickName"].as_str()), (Some("Lead"), Some("JJ")));
    let x = s.admin(&s.admin_token()).get("/tenants/acme/explain/jane@acme.com");
    assert_eq!((x.body["attribute_owners"]["title"].as_str(), x.body["attribute_owners"]["nickName"].as_str()), (Some("okta"), Some("entra")));
}
