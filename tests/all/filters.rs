//! The RFC 7644 §3.4.2.2 filter grammar, answered by the store.

use serde_json::json;

use crate::harness::{Client, Server, enc};

fn population(c: &Client) {
    let users = [
        json!({"userName": "alice@acme.com", "externalId": "ext-1", "displayName": "Alice Adams", "title": "Engineer", "userType": "Employee", "active": true,
               "name": {"givenName": "Alice", "familyName": "Adams"},
               "emails": [{"value": "alice@acme.com", "type": "work"}, {"value": "alice@home.org", "type": "home"}],
               "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Engineering"}}),
        json!({"userName": "bob@acme.com", "externalId": "ext-2", "displayName": "Bob Brown", "userType": "Intern", "active": false,
               "name": {"givenName": "Bob", "familyName": "O'Brown"},
               "emails": [{"value": "bob@acme.com", "type": "work"}],
               "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Sales"}}),
        json!({"userName": "chloé@other.org", "displayName": "Chloé Çelik", "title": "", "active": true,
               "emails": [{"value": "CHLOE@OTHER.ORG", "type": "home"}]}),
    ];
    for u in users {
        assert_eq!(c.post("/Users", &u).status, 201);
    }
}

#[test]
fn filter_grammar() {
    let s = Server::start();
    let c = s.idp("acme", "okta", "okta");
    population(&c);
    let cases: &[(&str, &[&str])] = &[
        (r#"userName eq "ALICE@acme.com""#, &["alice@acme.com"]),
        (r#"userName Eq "Chloé@OTHER.org""#, &["chloé@other.org"]),
        (r#"userName ne "alice@acme.com""#, &["bob@acme.com", "chloé@other.org"]),
        (r#"userName co "@ACME""#, &["alice@acme.com", "bob@acme.com"]),
        (r#"userName sw "b""#, &["bob@acme.com"]),
        (r#"userName ew ".org""#, &["chloé@other.org"]),
        (r#"userName gt "b""#, &["bob@acme.com", "chloé@other.org"]),
        (r#"userName ge "bob@acme.com""#, &["bob@acme.com", "chloé@other.org"]),
        (r#"userName lt "b""#, &["alice@acme.com"]),
        (r#"userName le "bob@acme.com""#, &["alice@acme.com", "bob@acme.com"]),
        (r#"externalId eq "ext-2""#, &["bob@acme.com"]),
        (r#"externalId eq "EXT-2""#, &[]),
        (r#"id pr"#, &["alice@acme.com", "bob@acme.com", "chloé@other.org"]),
        (r#"title pr"#, &["alice@acme.com"]),
        (r#"not (title pr)"#, &["bob@acme.com", "chloé@other.org"]),
        (r#"displayName co "çelik""#, &["chloé@other.org"]),
        (r#"name.familyName co "o'b""#, &["bob@acme.com"]),
        (r#"active eq false"#, &["bob@acme.com"]),
        (r#"active eq true and userType eq "employee""#, &["alice@acme.com"]),
        (r#"userType eq "Intern" or title eq "engineer""#, &["alice@acme.com", "bob@acme.com"]),
        (r#"(userType eq "Intern" or title pr) and not (active eq false)"#, &["alice@acme.com"]),
        (r#"emails.value eq "chloe@other.org""#, &["chloé@other.org"]),
        (r#"emails co "home""#, &["alice@acme.com"]),
        (r#"emails[type eq "work" and value co "@acme"]"#, &["alice@acme.com", "bob@acme.com"]),
        (r#"emails[type eq "home" and value co "@acme"]"#, &[]),
        (r#"emails[type eq "home"] and userName sw "a""#, &["alice@acme.com"]),
        (r#"emails.type eq "home""#, &["alice@acme.com", "chloé@other.org"]),
        (r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "A""#, &["alice@acme.com"]),
        (r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "sales""#, &["bob@acme.com"]),
        (r#"meta.resourceType eq "User" and meta.created gt "2000-01-01T00:00:00Z""#, &["alice@acme.com", "bob@acme.com", "chloé@other.org"]),
        (r#"meta.lastModified lt "2000-01-01T00:00:00+01:00""#, &[]),
        (r#"nickName eq null"#, &["alice@acme.com", "bob@acme.com", "chloé@other.org"]),
        // As Entra writes them: unquoted values, a value filter followed by a sub-attribute,
        // an extension attribute without its URN.
        (r#"externalId eq ext-1"#, &["alice@acme.com"]),
        (r#"userName eq bob@acme.com and active eq false"#, &["bob@acme.com"]),
        (r#"emails[type eq "work"].value eq "ALICE@acme.com""#, &["alice@acme.com"]),
        (r#"emails[type eq work].value co "@acme" and not (active eq false)"#, &["alice@acme.com"]),
        (r#"emails[type eq "home"].value eq "bob@acme.com""#, &[]),
        (r#"department eq "sales""#, &["bob@acme.com"]),
    ];
    for (f, want) in cases {
        let got = c.names(&format!("filter={}&sortBy=userName", enc(f)));
        assert_eq!(got, *want, "filter: {f}");
        let total = c.get(&format!("/Users?filter={}&count=0", enc(f))).body["totalResults"].as_u64().unwrap();
        assert_eq!(total as usize, want.len(), "totalResults for {f}");
    }
}

#[test]
fn invalid_filters_are_400_invalid_filter() {
    let s = Server::start();
    let c = s.idp("acme", "okta", "okta");
    for f in ["userName", "userName eq", r#"userName xx "a""#, r#"(userName eq "a""#, r#"nope eq "a""#, "active gt true",
              r#"emails[type eq "work""#, r#"name eq "x""#, r#"meta.created gt "yesterday""#, r#"userName[value eq "x"]"#,
              "userName eq and", "userName eq a b", r#"emails[type eq "work"].value"#] {
        c.get(&format!("/Users?filter={}", enc(f))).assert_error(400, Some("invalidFilter"));
    }
}

#[test]
fn the_longest_filter_is_answered_and_a_longer_one_refused() {
    // 256 clauses is the cap: a flat chain of thousands used to build a tree deep enough to
    // overflow a worker's stack and abort the server.
    let s = Server::start();
    let c = s.idp("acme", "okta", "okta");
    population(&c);
    let mut clauses: Vec<String> = (0..255).map(|i| format!("userName eq \"nobody{i}@acme.com\"")).collect();
    clauses.push(r#"userName eq "bob@acme.com""#.into());
    let r = c.post("/Users/.search", &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": clauses.join(" or ")}));
    assert_eq!((r.status, r.body["totalResults"].as_u64()), (200, Some(1)), "{}", r.body);
    clauses.push(r#"userName eq "alice@acme.com""#.into());
    let r = c.post("/Users/.search", &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": clauses.join(" or ")}));
    r.assert_error(400, Some("invalidFilter"));
    assert!(r.body["detail"].as_str().unwrap().contains("too many clauses"), "{}", r.body);
    assert_eq!(c.get("/Users?count=1").status, 200);
}
