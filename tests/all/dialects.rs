//! Real IdPs' deviations from the RFC, as they send them.

use serde_json::json;

use crate::harness::{Server, directory_entry, enc};

#[test]
fn entra_user_patch_dialect() {
    let s = Server::start();
    let c = s.idp("acme", "entra", "entra");
    // Entra's pre-create existence check.
    let r = c.get(&format!("/Users?filter={}", enc("userName eq \"ann@acme.com\"")));
    assert_eq!((r.status, r.body["totalResults"].as_u64()), (200, Some(0)));
    let id = c.post("/Users", &json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "externalId": "ann", "userName": "ann@acme.com", "active": true,
        "emails": [{"primary": true, "type": "work", "value": "ann@acme.com"}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "Ann A", "familyName": "A", "givenName": "Ann"},
    })).id();
    let p = c.patch(&format!("/Users/{id}"), json!([
        {"op": "Replace", "path": "displayName", "value": "Ann Arbor"},
        {"op": "Add", "value": {"name.givenName": "Annie", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Finance", "title": "CFO"}},
        {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "annie@acme.com"},
        {"op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555 0100"},
        {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": "mgr-1"},
        {"op": "Replace", "path": "active", "value": "False"},
    ]));
    assert_eq!(p.status, 200, "{}", p.body);
    let b = &p.body;
    assert_eq!(b["displayName"], "Ann Arbor");
    assert_eq!(b["name"], json!({"formatted": "Ann A", "familyName": "A", "givenName": "Annie"}));
    assert_eq!(b["title"], "CFO");
    assert_eq!(b["emails"], json!([{"primary": true, "type": "work", "value": "annie@acme.com"}]));
    assert_eq!(b["phoneNumbers"], json!([{"type": "mobile", "value": "+1 555 0100"}]));
    assert_eq!(b["active"], false);
    let ent = &b["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"];
    assert_eq!((ent["department"].as_str(), ent["manager"]["value"].as_str()), (Some("Finance"), Some("mgr-1")));
    assert!(b["schemas"].as_array().unwrap().iter().any(|s| s == "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"));
    assert!(!directory_entry(&s.db(), "acme", "ann@acme.com").unwrap().active);
    // The email filter now finds the new address.
    assert_eq!(c.names(&format!("filter={}", enc("emails.value eq \"ANNIE@acme.com\""))), ["ann@acme.com"]);
    // Entra's other ways to say the same: the manager by bare path, as a string or an object;
    // lookups by unquoted id and by work email.
    for (value, want) in [(json!("mgr-2"), "mgr-2"), (json!({"value": "mgr-3"}), "mgr-3")] {
        let p = c.patch(&format!("/Users/{id}"), json!([{"op": "Replace", "path": "manager", "value": value}]));
        assert_eq!(p.status, 200, "{}", p.body);
        assert_eq!(p.body["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["manager"]["value"], want, "{}", p.body);
    }
    assert_eq!(c.names(&format!("filter={}", enc(&format!("id eq {id} and manager.value eq mgr-3")))), ["ann@acme.com"]);
    assert_eq!(c.names(&format!("filter={}", enc("externalId eq ann"))), ["ann@acme.com"]);
    assert_eq!(c.names(&format!("filter={}", enc("emails[type eq \"work\"].value eq \"annie@acme.com\""))), ["ann@acme.com"]);
}

#[test]
fn okta_put_update_and_patch_deactivation() {
    let s = Server::start();
    let c = s.idp("acme", "okta", "okta");
    let id = c.user("kim@acme.com");
    let put = c.put(&format!("/Users/{id}"), &json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": id, "userName": "kim@acme.com",
        "name": {"givenName": "Kim", "familyName": "Lee"}, "emails": [{"primary": true, "value": "kim@acme.com", "type": "work"}],
        "active": true, "groups": [],
    }));
    assert_eq!(put.status, 200, "{}", put.body);
    let p = c.patch(&format!("/Users/{id}"), json!([{"op": "replace", "value": {"active": false}}]));
    assert_eq!((p.status, &p.body["active"]), (200, &json!(false)));
    assert_eq!(p.body["name"]["familyName"], "Lee");
    assert!(!directory_entry(&s.db(), "acme", "kim@acme.com").unwrap().active);
}

#[test]
fn entra_member_removal_removes_only_listed_members() {
    let s = Server::start();
    let c = s.idp("acme", "entra", "entra");
    let ids: Vec<String> = (0..3).map(|i| c.user(&format!("m{i}@acme.com"))).collect();
    let g = c.group("G", &[&ids[0], &ids[1], &ids[2]]);
    let r = c.patch(&format!("/Groups/{g}"), json!([{"op": "Remove", "path": "members", "value": [{"value": ids[1]}]}]));
    assert_eq!(r.status, 204, "{}", r.body);
    let mut left: Vec<String> = c.get(&format!("/Groups/{g}")).body["members"].as_array().unwrap().iter().map(|m| m["value"].as_str().unwrap().to_string()).collect();
    left.sort();
    let mut want = vec![ids[0].clone(), ids[2].clone()];
    want.sort();
    assert_eq!(left, want);
    // Entra "Add" of members and a displayName replace in one request.
    c.patch(&format!("/Groups/{g}"), json!([{"op": "Add", "path": "members", "value": [{"value": ids[1]}]}, {"op": "Replace", "path": "displayName", "value": "G2"}]));
    let after = c.get(&format!("/Groups/{g}"));
    assert_eq!((after.body["displayName"].as_str(), after.body["members"].as_array().unwrap().len()), (Some("G2"), 3));
}

#[test]
fn group_put_without_members_depends_on_idp_kind() {
    let s = Server::start();
    // Entra manages membership by PATCH: a PUT without members keeps them.
    let entra = s.idp("acme", "entra", "entra");
    let u = entra.user("e@acme.com");
    let g = entra.group("G", &[&u]);
    let put = entra.put(&format!("/Groups/{g}"), &json!({"displayName": "G renamed"}));
    assert_eq!(put.body["members"].as_array().map(Vec::len), Some(1), "{}", put.body);
    // Generic follows RFC 7644: PUT replaces the whole resource.
    let generic = s.idp("acme", "app", "generic");
    let u = generic.user("g@acme.com");
    let g = generic.group("H", &[&u]);
    let put = generic.put(&format!("/Groups/{g}"), &json!({"displayName": "H"}));
    assert!(put.body.get("members").is_none(), "{}", put.body);
}

#[test]
fn entra_custom_extension_is_kept_not_lost() {
    let s = Server::start();
    let c = s.idp("acme", "entra", "entra");
    let custom = "urn:ietf:params:scim:schemas:extension:custom:2.0:User";
    // The shape Entra sends when an admin maps attributes to a custom extension.
    let r = c.post("/Users", &json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "userName": "joe@acme.com", "active": true, "title": "scim tester",
        "emails": [{"primary": true, "type": "work", "value": "joe@acme.com"}],
        "meta": {"resourceType": "User"}, "name": {"familyName": "Tester", "givenName": "joe"},
        custom: {"employeeNumber": "99887766", "worksiteId": "180"},
    }));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body[custom], json!({"employeeNumber": "99887766", "worksiteId": "180"}));
    assert!(r.body["schemas"].as_array().unwrap().contains(&json!(custom)));
    let id = r.id();
    let p = c.patch(&format!("/Users/{id}"), json!([
        {"op": "Replace", "path": "title", "value": "tester"},
        {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "joe2@acme.com"},
        {"op": "Replace", "path": format!("{custom}:worksiteId"), "value": "181"},
    ]));
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(p.body[custom]["worksiteId"], "181");
    assert_eq!(p.body["emails"], json!([{"primary": true, "type": "work", "value": "joe2@acme.com"}]));
    let e = directory_entry(&s.db(), "acme", "joe@acme.com").unwrap();
    assert_eq!(e.attributes[custom]["worksiteId"], "181", "the directory receives it for the mapping rules");
}
