//! Sync on sign-in (issue 17, point 5): an application posts the claims it verified; the
//! tenant's `signin` connection maps them to a user through its rules, creates or updates it,
//! and makes its group claims memberships; the answer is the directory user.

use serde_json::{Value, json};

use crate::harness::{Client, Server};

const CONFIG: &str = r#"
[[tenant]]
name = "acme"

# Sign-ins: userNames lower-cased, "Dev users" is software_dev, everyone gets app-users; a
# user the directory has already (from SCIM) is joined, not refused.
[[tenant.idp]]
name = "sso"
kind = "signin"
rate_per_second = 0
[[tenant.idp.chain]]
plugin = "builtin:username"
config = { case = "lower" }
[[tenant.idp.chain]]
plugin = "builtin:groups"
config = { include = ['^Dev users$', '^Marketing$'], map = { "dev users" = "software_dev" }, defaults = { all_users = ["app-users"] } }
[tenant.idp.matching]
policy = "adopt"

# A second one with SAML attribute names and a small rate.
[[tenant.idp]]
name = "saml"
kind = "signin"
rate_per_second = 0.01
burst = 2
claims = { user_name = ["http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"], external_id = "http://schemas.microsoft.com/identity/claims/objectidentifier", groups = "" }

[[tenant.idp]]
name = "okta"
kind = "okta"
rate_per_second = 0
"#;

fn token(s: &Server, args: &[&str]) -> String {
    let out = s.cli(args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().rsplit(' ').next().unwrap().to_string()
}

fn audit_count(s: &Server, user: &str) -> usize {
    let out = s.cli(&["audit", "acme", "--user", user, "--json"]);
    serde_json::from_slice::<Value>(&out.stdout).map(|v| v.as_array().map(Vec::len).unwrap_or(0)).unwrap_or(0)
}

#[test]
fn a_sign_in_creates_then_updates_the_user_with_its_groups() {
    let s = Server::start_with(CONFIG);
    let app = Client::new(format!("{}/directory/v1/acme", s.url), token(&s, &["admin-token", "webapp", "--tenant", "acme", "--signin"]));
    let claims = json!({"sub": "00u1", "preferred_username": "Jane.Doe@acme.com", "email": "jane.doe@acme.com", "given_name": "Jane", "family_name": "Doe", "groups": ["Dev users", "Marketing", "Sales"]});
    let r = app.post("/signins", &json!({"connection": "sso", "claims": claims}));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["userName"], "jane.doe@acme.com", "through the connection's rules");
    assert_eq!(r.body["name"]["givenName"], "Jane");
    let groups = |b: &Value| -> Vec<String> {
        let mut g: Vec<String> = b["groups"].as_array().unwrap().iter().map(|g| g["display"].as_str().unwrap().to_string()).collect();
        g.sort();
        g
    };
    assert_eq!(groups(&r.body), ["Marketing", "app-users", "software_dev"], "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    // The answer is the directory's user, as the directory API gives it.
    assert_eq!(app.get(&format!("/Users/{id}")).body["userName"], "jane.doe@acme.com");

    // Signed in again with a new name and fewer groups: updated, same user.
    let again = json!({"sub": "00u1", "preferred_username": "Jane.Doe@acme.com", "email": "jane.doe@acme.com", "given_name": "Janet", "family_name": "Doe", "groups": ["Marketing"]});
    let r = app.post("/signins", &json!({"connection": "sso", "claims": again}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!((r.body["id"].as_str(), r.body["name"]["givenName"].as_str()), (Some(id.as_str()), Some("Janet")));
    assert_eq!(groups(&r.body), ["Marketing", "app-users"]);
    // Nothing changed: nothing written (no new audit record).
    let before = audit_count(&s, "jane.doe@acme.com");
    assert!(before >= 2);
    assert_eq!(app.post("/signins", &json!({"connection": "sso", "claims": again})).status, 200);
    assert_eq!(audit_count(&s, "jane.doe@acme.com"), before);
    // A sign-in without a groups claim leaves memberships alone; none never deprovisions.
    let r = app.post("/signins", &json!({"connection": "sso", "claims": {"sub": "00u1", "preferred_username": "Jane.Doe@acme.com", "email": "jane.doe@acme.com", "given_name": "Janet", "family_name": "Doe"}}));
    assert_eq!((r.status, groups(&r.body)), (200, vec!["Marketing".to_string(), "app-users".to_string()]));
    assert_eq!(r.body["active"], true);

    // A user provisioned by SCIM first is joined by the sign-in, per its matching policy.
    let okta = s.declared("acme", "okta");
    okta.user("bob@acme.com");
    let scim_id = app.get("/Users?filter=userName%20eq%20%22bob@acme.com%22").body["Resources"][0]["id"].as_str().unwrap().to_string();
    let r = app.post("/signins", &json!({"connection": "sso", "claims": {"sub": "00u2", "email": "Bob@acme.com"}}));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["id"], scim_id.as_str(), "the same directory user");

    // SAML attributes by URI, the first of a multi-valued one.
    let r = app.post("/signins", &json!({"connection": "saml", "claims": {"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn": ["Ann@acme.com"], "http://schemas.microsoft.com/identity/claims/objectidentifier": "oid-1"}}));
    assert_eq!((r.status, r.body["userName"].as_str()), (201, Some("Ann@acme.com")), "{}", r.body);
}

#[test]
fn bad_sign_ins_are_refused_and_write_nothing() {
    let s = Server::start_with(CONFIG);
    let app = Client::new(format!("{}/directory/v1/acme", s.url), token(&s, &["admin-token", "webapp", "--tenant", "acme", "--signin"]));
    let bad = [
        (json!({"connection": "sso", "claims": {"sub": "x", "name": "No Username"}}), 400, "none of preferred_username, email"),
        (json!({"connection": "sso", "claims": {"email": "a@acme.com", "groups": [1, 2]}}), 400, "group names"),
        (json!({"connection": "sso", "claims": "not an object"}), 400, "JSON object"),
        (json!({"claim": {}}), 400, "unknown field"),
        (json!({"claims": {"email": "a@acme.com"}}), 400, "several sign-in connections"),
        (json!({"connection": "okta", "claims": {"email": "a@acme.com"}}), 404, "no sign-in connection named 'okta'"),
    ];
    for (body, status, why) in bad {
        let r = app.post("/signins", &body);
        assert_eq!(r.status, status, "{body}: {}", r.body);
        assert!(r.body["error"]["message"].as_str().unwrap_or_default().contains(why), "{body}: {}", r.body);
    }
    assert_eq!(app.get("/Users").body["totalResults"], 0, "nothing was written");
    // A directory token that only reads may not sign users in.
    let reader = Client::new(format!("{}/directory/v1/acme", s.url), token(&s, &["admin-token", "reader", "--tenant", "acme", "--directory"]));
    assert_eq!(reader.post("/signins", &json!({"connection": "sso", "claims": {"email": "a@acme.com"}})).status, 403);
    // The sign-in connection's IdP token does not open SCIM.
    let scim = s.declared("acme", "sso");
    let r = scim.post("/Users", &json!({"userName": "x"}));
    assert_eq!(r.status, 403, "{}", r.body);
    // Rate-limited like an IdP connection: the small burst, then 429 with Retry-After.
    let statuses: Vec<u16> = (0..4).map(|i| app.post("/signins", &json!({"connection": "saml", "claims": {"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn": format!("u{i}@acme.com")}})).status).collect();
    assert_eq!(statuses, [201, 201, 429, 429]);
    let r = app.send("POST", "/signins", Some(&json!({"connection": "saml", "claims": {"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn": "z@acme.com"}})), &[]);
    assert!(r.header("retry-after").is_some_and(|v| v.parse::<u64>().unwrap_or(0) >= 1), "{:?}", r.headers);
}
