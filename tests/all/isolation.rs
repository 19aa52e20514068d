//! One tenant or IdP connection can never read or change another's data.

use serde_json::json;

use crate::harness::{Client, Server, enc};

#[test]
fn tenants_and_connections_are_isolated() {
    let s = Server::start();
    let acme_okta = s.idp("acme", "okta", "okta");
    let acme_entra = s.idp("acme", "entra", "entra");
    let globex = s.idp("globex", "okta", "okta");

    let id = acme_okta.user("pat@acme.com");
    let gid = acme_okta.group("Admins", &[&id]);

    // Another tenant's token on this URL, and this token on another tenant's URL: 401.
    Client::new(acme_okta.base.clone(), globex.token.clone()).get("/Users").assert_error(401, None);
    Client::new(globex.base.clone(), acme_okta.token.clone()).get("/Users").assert_error(401, None);
    Client::new(acme_entra.base.clone(), acme_okta.token.clone()).get("/Users").assert_error(401, None);

    // Another connection of the same tenant sees none of it, by id, list, filter or search.
    for c in [&acme_entra, &globex] {
        c.get(&format!("/Users/{id}")).assert_error(404, None);
        c.get(&format!("/Groups/{gid}")).assert_error(404, None);
        c.put(&format!("/Users/{id}"), &json!({"userName": "hijack"})).assert_error(404, None);
        c.patch(&format!("/Users/{id}"), json!([{"op": "replace", "path": "active", "value": false}])).assert_error(404, None);
        c.delete(&format!("/Users/{id}")).assert_error(404, None);
        c.delete(&format!("/Groups/{gid}")).assert_error(404, None);
        assert_eq!(c.get("/Users").body["totalResults"], 0);
        assert_eq!(c.get(&format!("/Users?filter={}", enc("userName eq \"pat@acme.com\""))).body["totalResults"], 0);
        assert_eq!(c.get(&format!("/Groups?filter={}", enc(&format!("members.value eq \"{id}\"")))).body["totalResults"], 0);
        assert_eq!(c.post("/.search", &json!({"count": 10})).body["totalResults"], 0);
    }
    assert_eq!(acme_okta.get(&format!("/Users/{id}")).body["active"], true, "untouched");

    // Directory usernames are unique per tenant: the other IdP of acme cannot create the same
    // username, but another tenant can.
    acme_entra.post("/Users", &json!({"userName": "PAT@acme.com"})).assert_error(409, Some("uniqueness"));
    assert_eq!(globex.post("/Users", &json!({"userName": "pat@acme.com"})).status, 201);
}
