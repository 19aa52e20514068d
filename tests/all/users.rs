//! User lifecycle over HTTP: create, read, replace, patch, delete, ETags, paging, projection.

use serde_json::json;

use crate::harness::{Server, directory_entry, enc};

#[test]
fn user_lifecycle_with_meta_and_etags() {
    let s = Server::start();
    let c = s.idp("acme", "okta", "okta");
    let r = c.post("/Users", &json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "id": "client-chosen-id",
        "externalId": "00u1abc",
        "userName": "jane.doe@acme.com",
        "name": {"givenName": "Jane", "familyName": "Doe"},
        "emails": [{"value": "jane.doe@acme.com", "type": "work", "primary": true}],
        "active": true,
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Engineering"},
    }));
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.id();
    assert_ne!(id, "client-chosen-id", "id is server-assigned");
    assert_eq!(r.body["externalId"], "00u1abc");
    assert_eq!(r.body["meta"]["resourceType"], "User");
    assert_eq!(r.header("location"), r.body["meta"]["location"].as_str());
    assert_eq!(r.header("etag"), r.body["meta"]["version"].as_str());
    assert!(r.header("content-type").unwrap().starts_with("application/scim+json"));
    assert_eq!(r.body["schemas"], json!(["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]));

    let g = c.get(&format!("/Users/{id}"));
    assert_eq!(g.status, 200);
    assert_eq!(g.body["name"]["givenName"], "Jane");
    let etag1 = g.header("etag").unwrap().to_string();

    // PUT replaces: attributes not sent are gone.
    let p = c.put(&format!("/Users/{id}"), &json!({"userName": "jane.doe@acme.com", "externalId": "00u1abc", "displayName": "Jane D", "active": true}));
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.body.get("name").is_none());
    assert_eq!(p.body["displayName"], "Jane D");
    assert_ne!(p.header("etag").unwrap(), etag1);
    assert!(p.body["meta"]["lastModified"].as_str().unwrap() >= g.body["meta"]["lastModified"].as_str().unwrap());
    assert_eq!(p.body["meta"]["created"], g.body["meta"]["created"]);

    // If-Match with a stale version is refused and changes nothing.
    let stale = c.send("PUT", &format!("/Users/{id}"), Some(&json!({"userName": "other"})), &[("If-Match", &etag1)]);
    stale.assert_error(412, None);
    let cur = c.get(&format!("/Users/{id}"));
    assert_eq!(cur.body["userName"], "jane.doe@acme.com");
    let fresh = cur.header("etag").unwrap().to_string();
    let ok = c.send("PATCH", &format!("/Users/{id}"), Some(&json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": "title", "value": "CTO"}]})), &[("If-Match", &fresh)]);
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["title"], "CTO");

    // The directory holds the mapped entry.
    let e = directory_entry(&s.db(), "acme", "JANE.DOE@acme.com").unwrap();
    assert_eq!(e.user_name, "jane.doe@acme.com");
    assert_eq!(e.attributes["title"], "CTO");

    assert_eq!(c.delete(&format!("/Users/{id}")).status, 204);
    c.get(&format!("/Users/{id}")).assert_error(404, None);
    c.delete(&format!("/Users/{id}")).assert_error(404, None);
    assert!(directory_entry(&s.db(), "acme", "jane.doe@acme.com").is_none());
}

#[test]
fn usernames_unique_case_insensitively() {
    let s = Server::start();
    let c = s.idp("acme", "okta", "okta");
    c.user("Bob@acme.com");
    c.post("/Users", &json!({"userName": "bob@ACME.com"})).assert_error(409, Some("uniqueness"));
    // Renaming onto a taken name is refused too.
    let other = c.user("carol@acme.com");
    c.patch(&format!("/Users/{other}"), json!([{"op": "replace", "path": "userName", "value": "BOB@acme.com"}])).assert_error(409, Some("uniqueness"));
}

#[test]
fn paging_sorting_and_projection() {
    let s = Server::start();
    let c = s.idp("acme", "okta", "okta");
    for i in 0..25 {
        c.user(&format!("user{i:02}@acme.com"));
    }
    let r = c.get("/Users?startIndex=11&count=10");
    assert_eq!((r.body["totalResults"].as_u64(), r.body["startIndex"].as_u64(), r.body["itemsPerPage"].as_u64()), (Some(25), Some(11), Some(10)));
    assert_eq!(r.body["Resources"][0]["userName"], "user10@acme.com");
    let last = c.get("/Users?startIndex=21&count=10");
    assert_eq!(last.body["itemsPerPage"], 5);
    let none = c.get("/Users?count=0");
    assert_eq!((none.body["totalResults"].as_u64(), none.body["Resources"].as_array().map(Vec::len)), (Some(25), Some(0)));
    let past = c.get("/Users?startIndex=100");
    assert_eq!(past.body["totalResults"], 25);

    let desc = c.names("sortBy=userName&sortOrder=descending&count=3");
    assert_eq!(desc, ["user24@acme.com", "user23@acme.com", "user22@acme.com"]);
    let by_email = c.names("sortBy=emails.value&count=2");
    assert_eq!(by_email, ["user00@acme.com", "user01@acme.com"]);
    c.get("/Users?sortOrder=sideways").assert_error(400, Some("invalidValue"));

    let p = c.get(&format!("/Users?filter={}&attributes=userName", enc("userName eq \"user03@acme.com\"")));
    let u = &p.body["Resources"][0];
    assert_eq!(u.as_object().unwrap().keys().collect::<Vec<_>>(), ["schemas", "id", "userName"]);
    let id = u["id"].as_str().unwrap();
    let x = c.get(&format!("/Users/{id}?excludedAttributes=emails,meta"));
    assert!(x.body.get("emails").is_none() && x.body.get("meta").is_none() && x.body["userName"].is_string());
    c.get("/Users?attributes=nonsense").assert_error(400, Some("invalidValue"));
}

#[test]
fn search_endpoints() {
    let s = Server::start();
    let c = s.idp("acme", "okta", "okta");
    for n in ["ann@acme.com", "ben@acme.com", "cat@other.org"] {
        c.user(n);
    }
    c.group("Engineering", &[]);
    let r = c.post("/Users/.search", &json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "filter": "emails.value ew \"@acme.com\"", "sortBy": "userName", "sortOrder": "descending",
        "attributes": ["userName"], "startIndex": 1, "count": 10,
    }));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["totalResults"], 2);
    assert_eq!(r.body["Resources"][0]["userName"], "ben@acme.com");
    // Root search spans Users and Groups.
    let all = c.post("/.search", &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "count": 100}));
    assert_eq!(all.body["totalResults"], 4, "{}", all.body);
    let page2 = c.post("/.search", &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "startIndex": 3, "count": 2}));
    let kinds: Vec<_> = page2.body["Resources"].as_array().unwrap().iter().map(|r| r["meta"]["resourceType"].as_str().unwrap().to_string()).collect();
    assert_eq!(kinds, ["User", "Group"]);
}
