//! Groups and membership: deltas, full-list PUT, the Entra membership check, the directory.

use serde_json::json;

use crate::harness::{Server, directory_entry, enc};

fn member_ids(r: &crate::harness::Resp) -> Vec<String> {
    let mut v: Vec<String> = r.body["members"].as_array().map(|a| a.iter().map(|m| m["value"].as_str().unwrap().to_string()).collect()).unwrap_or_default();
    v.sort();
    v
}

fn sorted(ids: &[&String]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[test]
fn membership_lifecycle_and_directory() {
    let s = Server::start();
    let c = s.idp("acme", "okta", "okta");
    let (a, b, d) = (c.user("a@acme.com"), c.user("b@acme.com"), c.user("d@acme.com"));
    let g = c.group("Dev users", &[&a]);

    let r = c.get(&format!("/Groups/{g}"));
    assert_eq!(member_ids(&r), std::slice::from_ref(&a));
    assert!(r.body["members"][0].get("display").is_none(), "RFC 7643 members have no display");
    assert_eq!(r.body["members"][0]["type"], "User");
    assert!(r.body["members"][0]["$ref"].as_str().unwrap().ends_with(&format!("/Users/{a}")));
    let etag = r.header("etag").unwrap().to_string();

    // Add one member; the response is 204 and the version moves.
    let p = c.patch(&format!("/Groups/{g}"), json!([{"op": "add", "path": "members", "value": [{"value": b}, {"value": d}]}]));
    assert_eq!(p.status, 204, "{}", p.body);
    assert_ne!(p.header("etag").unwrap(), etag);
    assert_eq!(member_ids(&c.get(&format!("/Groups/{g}"))), sorted(&[&a, &b, &d]));

    // The user sees its group; the directory holds the app group membership.
    let u = c.get(&format!("/Users/{b}"));
    assert_eq!(u.body["groups"][0]["value"], g.as_str());
    assert_eq!(u.body["groups"][0]["display"], "Dev users");
    assert_eq!(directory_entry(&s.db(), "acme", "b@acme.com").unwrap().groups, ["Dev users"]);

    // Remove by value filter; excludedAttributes=members skips them.
    c.patch(&format!("/Groups/{g}"), json!([{"op": "remove", "path": format!("members[value eq \"{b}\"]")}]));
    assert_eq!(member_ids(&c.get(&format!("/Groups/{g}"))), sorted(&[&a, &d]));
    assert!(directory_entry(&s.db(), "acme", "b@acme.com").unwrap().groups.is_empty());
    let x = c.get(&format!("/Groups/{g}?excludedAttributes=members"));
    assert!(x.body.get("members").is_none() && x.body["displayName"] == "Dev users");

    // Rename: the IdP view keeps the new name; the directory follows.
    c.patch(&format!("/Groups/{g}"), json!([{"op": "replace", "value": {"displayName": "Developers"}}]));
    assert_eq!(c.get(&format!("/Groups/{g}")).body["displayName"], "Developers");
    assert_eq!(directory_entry(&s.db(), "acme", "a@acme.com").unwrap().groups, ["Developers"]);

    // PATCH with attributes asked for answers 200 with the group.
    let with = c.send("PATCH", &format!("/Groups/{g}?attributes=displayName"), Some(&json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": "externalId", "value": "okta-g1"}]})), &[]);
    assert_eq!(with.status, 200);
    assert_eq!(with.body["displayName"], "Developers");

    // Remove all members, then delete the group.
    c.patch(&format!("/Groups/{g}"), json!([{"op": "remove", "path": "members"}]));
    assert!(member_ids(&c.get(&format!("/Groups/{g}"))).is_empty());
    assert_eq!(c.delete(&format!("/Groups/{g}")).status, 204);
    c.get(&format!("/Groups/{g}")).assert_error(404, None);

    // Deleting a user removes it from its groups.
    let g2 = c.group("Ops", &[&a, &d]);
    c.delete(&format!("/Users/{a}"));
    assert_eq!(member_ids(&c.get(&format!("/Groups/{g2}"))), std::slice::from_ref(&d));
}

#[test]
fn okta_full_member_put_is_applied_as_delta() {
    let s = Server::start();
    let c = s.idp("acme", "okta", "okta");
    let ids: Vec<String> = (0..6).map(|i| c.user(&format!("u{i}@acme.com"))).collect();
    let g = c.group("Everyone", &[&ids[0], &ids[1], &ids[2]]);
    let put = c.put(&format!("/Groups/{g}"), &json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": g, "displayName": "Everyone",
        "members": [{"value": ids[1]}, {"value": ids[3]}, {"value": ids[4]}],
    }));
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(member_ids(&put), sorted(&[&ids[1], &ids[3], &ids[4]]));
    assert!(directory_entry(&s.db(), "acme", "u0@acme.com").unwrap().groups.is_empty());
    assert_eq!(directory_entry(&s.db(), "acme", "u3@acme.com").unwrap().groups, ["Everyone"]);
    // Okta/generic PUT without members means "no members" (RFC 7644 PUT).
    let put = c.put(&format!("/Groups/{g}"), &json!({"displayName": "Everyone"}));
    assert!(member_ids(&put).is_empty());
}

#[test]
fn entra_membership_check_filter() {
    let s = Server::start();
    let c = s.idp("acme", "entra", "entra");
    let (a, b) = (c.user("a@acme.com"), c.user("b@acme.com"));
    let g = c.group("Sales", &[&a]);
    let check = |u: &str| {
        let f = enc(&format!("id eq \"{g}\" and members[value eq \"{u}\"]"));
        let r = c.get(&format!("/Groups?filter={f}&excludedAttributes=members"));
        assert_eq!(r.status, 200, "{}", r.body);
        for res in r.body["Resources"].as_array().unwrap() {
            assert!(res.get("members").is_none());
        }
        r.body["totalResults"].as_u64().unwrap()
    };
    assert_eq!(check(&a), 1);
    assert_eq!(check(&b), 0);
    let by_member = c.get(&format!("/Groups?filter={}", enc(&format!("members.value eq \"{a}\""))));
    assert_eq!(by_member.body["totalResults"], 1);
    let by_name = c.get(&format!("/Groups?filter={}", enc("displayName eq \"sales\"")));
    assert_eq!(by_name.body["totalResults"], 1);
}

fn cli_json(s: &Server, args: &[&str]) -> serde_json::Value {
    let out = s.cli(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// With `unknown_members = "reject"` a group write naming a member the connection does not
/// have fails whole, as before the policy existed.
#[test]
fn members_must_be_users_of_the_connection_when_the_policy_rejects() {
    let s = Server::start();
    let c = s.idp_with("acme", "okta", "okta", &["--unknown-members", "reject"]);
    let other = s.idp("acme", "entra", "entra");
    let foreign = other.user("x@acme.com");
    let r = c.post("/Groups", &json!({"displayName": "G", "members": [{"value": foreign}]}));
    r.assert_error(400, Some("invalidValue"));
    assert_eq!(c.get("/Groups").body["totalResults"], 0, "nothing was written");
    let g = c.group("G", &[]);
    c.patch(&format!("/Groups/{g}"), json!([{"op": "add", "path": "members", "value": [{"value": "no-such-user"}]}])).assert_error(400, Some("invalidValue"));
    c.patch(&format!("/Groups/{g}"), json!([{"op": "replace", "path": "members[value eq \"x\"].display", "value": "y"}])).assert_error(400, Some("invalidPath"));
    c.patch(&format!("/Groups/{g}"), json!([{"op": "replace", "path": "members[value eq \"x\"].value", "value": "y"}])).assert_error(400, Some("invalidPath"));
    c.patch(&format!("/Groups/{g}"), json!([{"op": "replace", "path": "members[value eq \"x\"]", "value": {"value": "y"}}])).assert_error(400, Some("invalidPath"));
}

/// By default a member the connection does not have (another connection's user, a user
/// deleted a moment ago, an id that never was) is skipped: the rest of the change applies,
/// the IdP gets its success, and each skipped member is in the audit, the drift report and
/// the metrics, until the IdP stops naming it. Thousands of stale ids are counted, not a
/// failure.
#[test]
fn a_member_the_connection_does_not_have_is_skipped_and_recorded() {
    let s = Server::start();
    let c = s.idp("acme", "entra", "entra");
    let other = s.idp("acme", "okta", "okta");
    let foreign = other.user("x@acme.com");
    let (a, b) = (c.user("a@acme.com"), c.user("b@acme.com"));
    let gone = c.user("gone@acme.com");
    assert_eq!(c.delete(&format!("/Users/{gone}")).status, 204);

    // A create naming one of each: the known ones are members.
    let r = c.post("/Groups", &json!({"displayName": "Sales", "members": [{"value": a}, {"value": foreign}, {"value": gone}, {"value": "never-was"}]}));
    assert_eq!(r.status, 201, "{}", r.body);
    let g = r.id();
    assert_eq!(member_ids(&c.get(&format!("/Groups/{g}"))), sorted(&[&a]));
    // A PATCH adding a known and an unknown member: the known one is added.
    let p = c.patch(&format!("/Groups/{g}"), json!([{"op": "add", "path": "members", "value": [{"value": b}, {"value": "stale-id"}]}]));
    assert!(matches!(p.status, 200 | 204), "{}: {}", p.status, p.body);
    assert_eq!(member_ids(&c.get(&format!("/Groups/{g}"))), sorted(&[&a, &b]));
    assert_eq!(directory_entry(&s.db(), "acme", "b@acme.com").unwrap().groups, ["Sales"]);

    // Recorded: the audit of each write names them with the reason.
    let audit = cli_json(&s, &["audit", "acme", "--resource", &g, "--json"]);
    let records = audit.as_array().unwrap();
    let created = records.iter().find(|r| r["operation"] == "create").unwrap();
    let skipped = &created["changes"]["members"]["skipped"];
    let reason = |id: &str| skipped.as_array().unwrap().iter().find(|m| m["id"] == id).map(|m| m["reason"].as_str().unwrap().to_string()).unwrap();
    assert_eq!(reason(&foreign), "a user of another IdP connection");
    assert!(reason(&gone).starts_with("not a user of this connection"), "{skipped}");
    assert_eq!(created["changes"]["members"]["skipped_count"], 3);
    // The drift report lists what the group still names.
    let drift = cli_json(&s, &["drift", "acme", "entra", "--json"]);
    let listed: Vec<&str> = drift["skipped_members"].as_array().unwrap().iter().map(|m| m["member"].as_str().unwrap()).collect();
    assert_eq!(listed.len(), 4, "{drift:#}");
    assert!(listed.contains(&"stale-id") && listed.contains(&foreign.as_str()));
    // And the metric counts them.
    let metrics = reqwest::blocking::Client::new().get(format!("{}/metrics", s.url)).bearer_auth(s.admin_token()).send().unwrap().text().unwrap();
    assert!(metrics.contains(r#"mapwright_scim_skipped_members_total{tenant="acme",idp="entra"} 4"#), "{}", metrics.lines().filter(|l| l.contains("skipped")).collect::<Vec<_>>().join("\n"));

    // Removing a stale id, or a full member list without them, clears the record.
    assert!(matches!(c.patch(&format!("/Groups/{g}"), json!([{"op": "remove", "path": "members", "value": [{"value": "stale-id"}]}])).status, 200 | 204));
    let put = c.put(&format!("/Groups/{g}"), &json!({"displayName": "Sales", "members": [{"value": a}, {"value": b}, {"value": "never-was"}]}));
    assert_eq!(put.status, 200, "{}", put.body);
    let drift = cli_json(&s, &["drift", "acme", "entra", "--json"]);
    let listed: Vec<&str> = drift["skipped_members"].as_array().unwrap().iter().map(|m| m["member"].as_str().unwrap()).collect();
    assert_eq!(listed, ["never-was"]);

    // Thousands of unknown ids: the write succeeds, the audit names a bounded number and
    // counts them all.
    let many: Vec<serde_json::Value> = (0..2500).map(|i| json!({"value": format!("g{i}")})).chain([json!({"value": a})]).collect();
    let r = c.post("/Groups", &json!({"displayName": "Ghosts", "members": many}));
    assert_eq!(r.status, 201, "{}", r.body);
    let ghosts = r.id();
    assert_eq!(member_ids(&c.get(&format!("/Groups/{ghosts}"))), sorted(&[&a]));
    let audit = cli_json(&s, &["audit", "acme", "--resource", &ghosts, "--json"]);
    let members = &audit[0]["changes"]["members"];
    assert_eq!((members["skipped_count"].as_u64(), members["skipped"].as_array().map(Vec::len)), (Some(2500), Some(100)));

    // The policy is the connection's: switched to reject, the same write fails whole.
    let out = s.cli(&["idp", "set", "acme", "entra", "--unknown-members", "reject"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // (A server reads a connection with its token, cached for 2 s.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = c.patch(&format!("/Groups/{g}"), json!([{"op": "add", "path": "members", "value": [{"value": "stale-again"}]}]));
        if r.status == 400 {
            r.assert_error(400, Some("invalidValue"));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the policy did not take effect: {}", r.status);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn same_app_group_from_two_idps_is_co_owned() {
    let s = Server::start();
    let okta = s.idp("acme", "okta", "okta");
    let entra = s.idp("acme", "entra", "entra");
    // The same person is provisioned by each IdP under its own userName; each IdP puts its user
    // in an IdP group named "Staff", which is one app group.
    let u1 = okta.user("p1@acme.com");
    let g1 = okta.group("Staff", &[&u1]);
    let u2 = entra.user("p2@acme.com");
    let g2 = entra.group("staff", &[&u2]);
    assert_eq!(directory_entry(&s.db(), "acme", "p1@acme.com").unwrap().groups, ["Staff"]);
    assert_eq!(directory_entry(&s.db(), "acme", "p2@acme.com").unwrap().groups, ["Staff"]);
    entra.delete(&format!("/Groups/{g2}"));
    assert_eq!(directory_entry(&s.db(), "acme", "p1@acme.com").unwrap().groups, ["Staff"], "the other IdP's membership stays");
    assert!(directory_entry(&s.db(), "acme", "p2@acme.com").unwrap().groups.is_empty());
    okta.delete(&format!("/Groups/{g1}"));
}

#[test]
fn rules_can_refuse_a_membership_the_idp_grants() {
    let s = crate::harness::Server::start_with(
        r#"
[[tenant]]
name = "acme"

[[tenant.idp]]
name = "okta"
rate_per_second = 0

[[tenant.idp.chain]]
plugin = "builtin:groups"
config = { deny = [{ groups = '^admins$', users = '^contractor' }] }
"#,
    );
    let okta = s.declared("acme", "okta");
    let staff = okta.user("staff@acme.com");
    let contractor = okta.user("contractor.bob@acme.com");
    let gid = okta.group("admins", &[&staff]);
    let r = okta.patch(&format!("/Groups/{gid}"), serde_json::json!([{"op": "add", "path": "members", "value": [{"value": contractor}]}]));
    assert!(r.status == 204 || r.status == 200, "{}", r.body);
    // The IdP's view lists both; the directory grants admins to the employee only.
    assert_eq!(okta.get(&format!("/Groups/{gid}")).body["members"].as_array().unwrap().len(), 2);
    let db = s.db();
    assert_eq!(crate::harness::directory_entry(&db, "acme", "staff@acme.com").unwrap().groups, vec!["admins".to_string()]);
    assert!(crate::harness::directory_entry(&db, "acme", "contractor.bob@acme.com").unwrap().groups.is_empty());
    let out = s.cli(&["audit", "acme", "--resource", &gid, "--json"]);
    let recs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(recs[0]["decisions"].as_array().unwrap().iter().any(|d| d["reason"].as_str().unwrap().contains("may not join")), "{}", recs[0]);
}
