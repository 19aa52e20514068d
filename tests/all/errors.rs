//! RFC 7644 §3.12 errors, authentication, limits and content types.

use serde_json::json;

use crate::harness::{Server, enc};

#[test]
fn authentication() {
    let s = Server::start();
    let c = s.idp("acme", "okta", "okta");
    for bad in ["", "nonsense", "mw_000000000000000000_deadbeef"] {
        let r = c.with_token(bad).get("/Users");
        r.assert_error(401, None);
        assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
    }
    // A valid token with a tampered secret.
    let last = c.token.chars().last().unwrap();
    let tampered = format!("{}{}", &c.token[..c.token.len() - 1], if last == '0' { '1' } else { '0' });
    assert_ne!(tampered, c.token);
    c.with_token(&tampered).get("/Users").assert_error(401, None);
    assert_eq!(c.get("/Users").status, 200);
}

#[test]
fn protocol_errors() {
    let s = Server::start();
    let c = s.idp("acme", "okta", "okta");
    let id = c.user("e@acme.com");
    let u = format!("/Users/{id}");
    c.send("POST", "/Users", None, &[("content-type", "application/scim+json")]).assert_error(400, Some("invalidSyntax"));
    let r = c.send("POST", "/Users", None, &[("content-type", "application/json")]);
    assert_eq!(r.status, 400);
    let garbage = c.send("PATCH", &u, Some(&json!("not an object")), &[]);
    garbage.assert_error(400, Some("invalidSyntax"));
    c.post("/Users", &json!({"displayName": "no userName"})).assert_error(400, Some("invalidValue"));
    c.post("/Users", &json!({"userName": "x@acme.com", "active": "sometimes"})).assert_error(400, Some("invalidValue"));
    c.patch(&u, json!([{"op": "remove"}])).assert_error(400, Some("noTarget"));
    c.patch(&u, json!([{"op": "replace", "path": "meta.created", "value": "2020-01-01T00:00:00Z"}])).assert_error(400, Some("mutability"));
    c.patch(&u, json!([{"op": "replace", "path": "id", "value": "x"}])).assert_error(400, Some("mutability"));
    c.patch(&u, json!([{"op": "add", "path": "notAnAttribute", "value": 1}])).assert_error(400, Some("invalidPath"));
    c.patch(&u, json!([{"op": "add", "path": "emails[type eq]", "value": 1}])).assert_error(400, Some("invalidFilter"));
    c.patch(&u, json!([{"op": "replace", "path": "emails[type eq \"home\" or type eq \"other\"]", "value": {"value": "x"}}])).assert_error(400, Some("noTarget"));
    c.patch(&u, json!([{"op": "jump", "path": "userName", "value": "x"}])).assert_error(400, Some("invalidSyntax"));
    c.patch(&u, json!([{"op": "remove", "path": "userName"}])).assert_error(400, Some("invalidValue"));
    // A failed PATCH wrote nothing, even when earlier operations of it were valid.
    c.patch(&u, json!([{"op": "replace", "path": "title", "value": "set"}, {"op": "add", "path": "bogus", "value": 1}])).assert_error(400, Some("invalidPath"));
    assert!(c.get(&u).body.get("title").is_none());
    c.get(&format!("/Users?filter={}", enc("userName eq"))).assert_error(400, Some("invalidFilter"));
    c.get("/Users?count=many").assert_error(400, Some("invalidValue"));
    c.get("/Users/does-not-exist").assert_error(404, None);
    c.get("/NoSuchResource").assert_error(404, None);
    c.get(&format!("{}/elsewhere", s.url)).assert_error(404, None);
    c.send("DELETE", "/Users", None, &[]).assert_error(405, None);
    c.send("PUT", "/ServiceProviderConfig", Some(&json!({})), &[]).assert_error(405, None);
    c.post("/Bulk", &json!({})).assert_error(501, None);
    let ct = c.send("POST", "/Users", Some(&json!({"userName": "x"})), &[("content-type", "text/plain")]);
    assert_eq!(ct.status, 415);
}

#[test]
fn plain_json_is_accepted_and_scim_json_produced() {
    let s = Server::start();
    let c = s.idp("acme", "okta", "okta");
    let r = c.send("POST", "/Users", None, &[]);
    assert_eq!(r.status, 400);
    let http = reqwest::blocking::Client::new();
    let resp = http
        .post(format!("{}/Users", c.base))
        .bearer_auth(&c.token)
        .header("content-type", "application/json")
        .body(json!({"userName": "plain@acme.com"}).to_string())
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("application/scim+json"));
}

#[test]
fn request_size_limit_is_413() {
    let s = Server::start();
    let c = s.idp("acme", "okta", "okta");
    // The test server's limit is 64 KiB.
    let big = json!({"userName": "big@acme.com", "displayName": "x".repeat(70_000)});
    c.post("/Users", &big).assert_error(413, None);
    assert_eq!(c.get("/Users").body["totalResults"], 0);
}

#[test]
fn rate_limit_is_per_connection_with_retry_after() {
    let s = Server::start();
    let slow = s.idp_with("acme", "slow", "okta", &["--rate-per-second", "0.5", "--burst", "3"]);
    let fast = s.idp("acme", "fast", "entra");
    let statuses: Vec<u16> = (0..5).map(|_| slow.get("/Users").status).collect();
    assert_eq!(&statuses[..3], &[200, 200, 200]);
    let limited = slow.get("/Users");
    limited.assert_error(429, None);
    assert!(limited.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    assert!((0..10).all(|_| fast.get("/Users").status == 200), "another connection is not starved");
}

#[test]
fn discovery_describes_the_server() {
    let s = Server::start();
    let c = s.idp("acme", "okta", "okta");
    let spc = c.get("/ServiceProviderConfig");
    assert_eq!(spc.status, 200);
    assert_eq!(spc.body["patch"]["supported"], true);
    assert_eq!(spc.body["bulk"]["supported"], false);
    assert_eq!(spc.body["filter"]["maxResults"], 1000);
    assert_eq!(spc.body["etag"]["supported"], true);
    let rts = c.get("/ResourceTypes");
    assert_eq!(rts.body["totalResults"], 2);
    let user_rt = c.get("/ResourceTypes/User");
    assert_eq!(user_rt.body["schemaExtensions"][0]["schema"], "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User");
    let schemas = c.get("/Schemas");
    assert_eq!(schemas.body["totalResults"], 3);
    let user = c.get("/Schemas/urn:ietf:params:scim:schemas:core:2.0:User");
    let attrs = user.body["attributes"].as_array().unwrap();
    let user_name = attrs.iter().find(|a| a["name"] == "userName").unwrap();
    assert_eq!((user_name["caseExact"].as_bool(), user_name["uniqueness"].as_str(), user_name["required"].as_bool()), (Some(false), Some("server"), Some(true)));
    assert!(!attrs.iter().any(|a| a["name"] == "password"), "no claim the server cannot back");
    c.get("/Schemas/urn:nope").assert_error(404, None);
    c.get("/ResourceTypes/Widget").assert_error(404, None);
}
