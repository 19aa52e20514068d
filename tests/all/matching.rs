//! A create for a user the directory already has: conflict, or adopt the existing entry.

use serde_json::json;

use crate::harness::{Server, directory_entry};

const CONFIG: &str = r#"
[[tenant]]
name = "acme"

[[tenant.idp]]
name = "entra"
kind = "entra"
rate_per_second = 0

[[tenant.idp]]
name = "okta"
kind = "okta"
rate_per_second = 0
matching = { policy = "adopt", verified_domains = ["acme.com"] }
"#;

#[test]
fn adopt_by_username_or_email_only_for_verified_domains() {
    let s = Server::start_with(CONFIG);
    let entra = s.declared("acme", "entra");
    let okta = s.declared("acme", "okta");

    let pat_entra = entra.user("pat@acme.com");
    // Okta re-pushes a user the directory has: adopted, not a permanent 409.
    let r = okta.post("/Users", &json!({"userName": "PAT@acme.com", "title": "from okta"}));
    assert_eq!(r.status, 201, "{}", r.body);
    let pat_okta = r.id();
    assert_ne!(pat_okta, pat_entra, "each IdP has its own resource");
    assert_eq!(directory_entry(&s.db(), "acme", "pat@acme.com").unwrap().attributes["title"], "from okta");

    // Same email, different username: adopted by email; the entry keeps its name.
    entra.post("/Users", &json!({"userName": "e123", "emails": [{"value": "lee@acme.com", "type": "work"}]}));
    let r = okta.post("/Users", &json!({"userName": "lee.okta", "emails": [{"value": "LEE@acme.com"}]}));
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(directory_entry(&s.db(), "acme", "e123").is_some());
    assert!(directory_entry(&s.db(), "acme", "lee.okta").is_none());

    // An unverified domain is not adopted.
    entra.user("x@other.com");
    okta.post("/Users", &json!({"userName": "x@other.com"})).assert_error(409, Some("uniqueness"));
    // The connection without adoption still conflicts.
    entra.post("/Users", &json!({"userName": "Pat@Acme.com"})).assert_error(409, Some("uniqueness"));

    // A shared entry outlives one IdP's deletion, and its deactivation.
    assert_eq!(okta.delete(&format!("/Users/{pat_okta}")).status, 204);
    assert!(directory_entry(&s.db(), "acme", "pat@acme.com").is_some());
    let again = okta.post("/Users", &json!({"userName": "pat@acme.com", "active": true}));
    assert_eq!(again.status, 201, "re-push after delete adopts again: {}", again.body);
    okta.patch(&format!("/Users/{}", again.id()), json!([{"op": "replace", "path": "active", "value": false}]));
    let e = directory_entry(&s.db(), "acme", "pat@acme.com").unwrap();
    assert!(e.active, "entra's active user keeps the shared entry active");
}
