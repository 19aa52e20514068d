//! The admin API over HTTP: authentication and tenant scoping, connections, plugins and chain
//! versions, preview, shadow, re-apply, held operations, drift, audit and explain.

use serde_json::{Value, json};

use crate::harness::{Client, Server, directory_entry, test_plugins};

const TENANTS: &str = r#"
[[tenant]]
name = "acme"

[[tenant.idp]]
name = "okta"
kind = "okta"
rate_per_second = 0

[[tenant]]
name = "globex"
"#;

fn assert_json_error(r: &crate::harness::Resp, status: u16, needle: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.body["error"]["status"], status);
    let m = r.body["error"]["message"].as_str().unwrap_or_default();
    assert!(m.contains(needle), "{needle:?} not in {m:?}");
}

#[test]
fn only_admin_tokens_get_in_and_scoped_tokens_stay_in_their_tenant() {
    let s = Server::start_with(TENANTS);
    let admin = s.admin(&s.admin_token());
    assert_json_error(&admin.with_token("").get("/tenants"), 401, "admin bearer token");
    assert!(admin.with_token("").get("/tenants").header("www-authenticate").is_some());
    // An IdP token is not an admin token.
    let idp_token = s.declared("acme", "okta").token;
    assert_json_error(&admin.with_token(&idp_token).get("/tenants"), 401, "admin");
    let names = |r: &crate::harness::Resp| r.body.as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(names(&admin.get("/tenants")), vec!["acme", "globex"]);

    let out = s.cli(&["admin-token", "acme-ops", "--tenant", "acme"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let scoped_token = String::from_utf8_lossy(&out.stdout).split(": ").last().unwrap().trim().to_string();
    let scoped = s.admin(&scoped_token);
    assert_eq!(names(&scoped.get("/tenants")), vec!["acme"], "a scoped token sees its tenant only");
    assert_eq!(scoped.get("/tenants/acme/idps").status, 200);
    assert_json_error(&scoped.get("/tenants/globex/idps"), 403, "scoped");
    assert_json_error(&scoped.get("/tenants/globex/audit"), 403, "scoped");
    assert_json_error(&scoped.post("/tenants", &json!({"name": "initech"})), 403, "global");
    assert_json_error(&admin.get("/nowhere"), 404, "no such admin endpoint");
}

#[test]
fn connections_are_managed_over_the_api() {
    let s = Server::start_with(TENANTS);
    let admin = s.admin(&s.admin_token());
    assert_json_error(&admin.post("/tenants", &json!({"name": "Bad Name"})), 400, "invalid tenant name");
    assert_json_error(&admin.post("/tenants", &json!({"nmae": "x"})), 400, "nmae");
    assert_eq!(admin.post("/tenants", &json!({"name": "initech"})).status, 201);
    assert_json_error(&admin.post("/tenants", &json!({"name": "initech"})), 409, "already exists");

    let r = admin.post("/tenants/initech/idps", &json!({"name": "entra-prod", "kind": "entra", "rate_per_second": 0}));
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.body["base_url"].as_str().unwrap().ends_with("/scim/v2/initech/entra-prod"));
    let scim = Client::new(r.body["base_url"].as_str().unwrap().to_string(), r.body["token"].as_str().unwrap().to_string());
    assert_eq!(scim.post("/Users", &json!({"userName": "a@initech.com"})).status, 201);
    assert_json_error(&admin.post("/tenants/initech/idps", &json!({"name": "x", "kind": "myspace"})), 400, "unknown IdP kind");
    assert_json_error(&admin.get("/tenants/initech/idps/nope"), 404, "no IdP connection");

    // Disable: the IdP is refused; enable again.
    let r = admin.send("PATCH", "/tenants/initech/idps/entra-prod", Some(&json!({"disabled": true})), &[]);
    assert_eq!((r.status, r.body["disabled"].as_bool()), (200, Some(true)), "{}", r.body);
    std::thread::sleep(std::time::Duration::from_millis(2100)); // the token cache's lifetime
    assert_eq!(scim.get("/Users").status, 401);
    admin.send("PATCH", "/tenants/initech/idps/entra-prod", Some(&json!({"disabled": false})), &[]);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(scim.get("/Users").status, 200);
    // Rotation: the new token works, the old one only until the overlap ends.
    let r = admin.post("/tenants/initech/idps/entra-prod/rotate-token", &json!({"overlap_secs": 0}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(scim.with_token(r.body["token"].as_str().unwrap()).get("/Users").status, 200);
}

#[test]
fn rules_are_managed_over_the_api() {
    let s = Server::start_with(TENANTS);
    let admin = s.admin(&s.admin_token());
    let okta = s.declared("acme", "okta");
    let id = okta.post("/Users", &json!({"userName": "Jane.Doe@acme.com", "emails": [{"value": "Jane.Doe@acme.com"}]})).id();

    // Upload a plugin; refuse bytes that are not one.
    let r = admin.post_bytes("/tenants/acme/plugins", std::fs::read(test_plugins::LEGACY).unwrap());
    assert_eq!(r.status, 201, "{}", r.body);
    let hash = r.body["hash"].as_str().unwrap().to_string();
    assert_eq!(r.body["contract"], "0.1.0");
    assert_json_error(&admin.post_bytes("/tenants/acme/plugins", b"nope".to_vec()), 422, "not a valid component");
    assert_eq!(admin.get("/tenants/acme/plugins").body.as_array().unwrap().len(), 1);

    // A chain version: refused with the plugin's reason, then accepted.
    let chain = "/tenants/acme/idps/okta/chain";
    let bad = admin.post(chain, &json!({"entries": [{"plugin": "builtin:username", "config": {"source": "nowhere"}}]}));
    assert_json_error(&bad, 422, "refused");
    assert_json_error(&admin.post(chain, &json!({"entries": [{"plugin": "/etc/passwd"}]})), 400, "builtin:<name> or sha256");
    let lower = json!({"entries": [{"plugin": "builtin:username", "config": {"source": "email", "local_part": true, "case": "lower"}}], "note": "lower"});
    // Preview first: writes nothing.
    let p = admin.post(&format!("{chain}/preview?limit=10"), &json!({"entries": lower["entries"]}));
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!((p.body["summary"]["usernames_changed"].as_i64(), p.body["total"].as_i64()), (Some(1), Some(1)));
    assert_json_error(&admin.post(&format!("{chain}/preview"), &json!({})), 400, "either a version");
    let v = admin.post(chain, &lower);
    assert_eq!((v.status, v.body["number"].as_i64(), v.body["active"].as_bool()), (201, Some(1), Some(true)), "{}", v.body);
    let c = admin.get(chain);
    assert_eq!(c.body["active"]["number"], 1);
    assert_eq!(c.body["activations"][0]["author"], "admin:initial");
    // A candidate from the stored legacy plugin, run in shadow.
    let cand = admin.post(chain, &json!({"entries": [{"plugin": format!("sha256:{hash}")}], "candidate": true}));
    assert_eq!((cand.status, cand.body["active"].as_bool()), (201, Some(false)), "{}", cand.body);
    assert_eq!(admin.send("PUT", &format!("{chain}/shadow"), Some(&json!({"number": 2})), &[]).status, 200);
    assert_eq!(okta.post("/Users", &json!({"userName": "Bob@acme.com", "emails": [{"value": "Bob@acme.com"}]})).status, 201);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = admin.get(&format!("{chain}/shadow"));
        if r.body["differences"].as_array().is_some_and(|d| !d.is_empty()) {
            assert_eq!(r.body["differences"][0]["diff"]["userName"], json!(["bob", "Bob@acme.com-legacy"]));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no shadow difference recorded: {}", r.body);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_json_error(&admin.post(&format!("{chain}/activate"), &json!({"number": 9})), 404, "no chain version 9");

    // Re-apply in the background; poll until done.
    let r = admin.post("/tenants/acme/idps/okta/reapply", &json!({}));
    assert_eq!(r.status, 202, "{}", r.body);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let j = admin.get("/tenants/acme/idps/okta/reapply");
        if j.body["phase"] == "done" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", j.body);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(directory_entry(&s.db(), "acme", "jane.doe").is_some());

    // Records: audit (paged), explain, held, drift.
    let a = admin.get("/tenants/acme/audit?user=jane.doe&limit=1");
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["records"][0]["operation"], "reapply");
    assert_eq!(a.body["records"][0]["resource_id"], id);
    let before = a.body["next_before"].to_string();
    let older = admin.get(&format!("/tenants/acme/audit?user=jane.doe&before={before}"));
    assert_eq!(older.body["records"][0]["operation"], "create");
    assert_json_error(&admin.get("/tenants/acme/audit?since=yesterday"), 400, "RFC 3339");
    assert_json_error(&admin.get("/tenants/acme/audit?colour=red"), 400, "colour");
    let e = admin.get("/tenants/acme/explain/jane.doe");
    assert_eq!((e.status, e.body["user_name"].as_str()), (200, Some("jane.doe")));
    assert_json_error(&admin.get("/tenants/acme/explain/nobody"), 404, "no directory entry");
    assert_eq!(admin.get("/tenants/acme/held").body, json!([]));
    assert_json_error(&admin.post("/tenants/acme/held/1/approve", &json!({})), 400, "no held operation");
    let d = admin.get("/tenants/acme/idps/okta/drift");
    assert_eq!(d.status, 200);
    assert!(d.body["untouched"].is_array());
    let _: Value = d.body;
}

#[test]
fn the_openapi_document_is_served_and_describes_what_answers() {
    let s = Server::start_with(TENANTS);
    let anon = s.admin("");
    let r = anon.get("/openapi.json");
    assert_eq!(r.status, 200, "served without a token");
    assert_eq!(r.body["openapi"], "3.1.0");
    // Every documented operation is routed: with a token and made-up parameters it answers
    // anything but the router's fallback or 405.
    let token = s.admin_token();
    for (path, item) in r.body["paths"].as_object().unwrap() {
        let concrete = path.replace("{tenant}", "acme").replace("{idp}", "okta").replace("{user}", "nobody").replace("{id}", "999").replace("{decision}", "approve");
        // A path item may name its own server (the directory API); the rest are the admin API.
        let server = item["servers"][0]["url"].as_str().unwrap_or("/admin/v1");
        let client = Client::new(format!("{}{server}", s.url), token.clone());
        for method in item.as_object().unwrap().keys().filter(|k| *k != "parameters" && *k != "servers") {
            let resp = client.send(&method.to_uppercase(), &concrete, Some(&json!({})), &[]);
            assert_ne!(resp.status, 405, "{method} {path}");
            let message = resp.body["error"]["message"].as_str().unwrap_or_default();
            assert!(!message.starts_with("no such"), "{method} {server}{path} is documented but not routed: {message}");
        }
    }
}

/// Tenant acme alone, its okta connection with a username rule (local part of the email).
fn acme_with_username_rule() -> String {
    format!("{TENANTS}\n[[tenant.idp.chain]]\nplugin = \"builtin:username\"\nconfig = {{ local_part = true }}\n").replace("[[tenant]]\nname = \"globex\"\n", "")
}

#[test]
fn metrics_count_requests_plugin_calls_and_writes_for_a_global_admin() {
    let s = Server::start_with(&acme_with_username_rule());
    let okta = s.declared("acme", "okta");
    assert_eq!(okta.post("/Users", &json!({"userName": "m@acme.com"})).status, 201);
    okta.post("/Users", &json!({"userName": "m@acme.com"})).assert_error(409, Some("uniqueness"));
    // Made-up names never become labels.
    assert_eq!(Client::new(format!("{}/scim/v2/evil/evil", s.url), "mw_x".into()).get("/Users").status, 401);
    let http = reqwest::blocking::Client::new();
    let get = |token: &str| http.get(format!("{}/metrics", s.url)).bearer_auth(token).send().unwrap();
    let r = get(&s.admin_token());
    assert_eq!(r.status().as_u16(), 200);
    let text = r.text().unwrap();
    for needle in [
        r#"mapwright_scim_requests_total{tenant="acme",idp="okta",method="POST",status="201"} 1"#,
        r#"mapwright_scim_requests_total{tenant="acme",idp="okta",method="POST",status="409"} 1"#,
        r#"mapwright_plugin_calls_total{plugin="username",hook="username",outcome="ok"} 2"#,
        r#"mapwright_active_chain_version{tenant="acme",idp="okta"} 1"#,
        "mapwright_store_write_seconds_count",
        "mapwright_scim_request_seconds_bucket",
    ] {
        assert!(text.contains(needle), "{needle} not in:\n{text}");
    }
    assert!(!text.contains("evil"));
    assert!(!text.contains("mapwright_plugin_call_cpu_seconds_count"), "CPU time is measured only when switched on");
    // Group commit: every committed write is counted, and a commit carries at least one.
    let counter = |name: &str| -> u64 {
        text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok()).unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    };
    let (commits, writes) = (counter("mapwright_store_commits_total "), counter("mapwright_store_writes_total "));
    assert!(commits >= 1 && writes >= commits, "{writes} writes in {commits} commits");
    // On SQLite every write's time is split into its four phases, each counted once per write;
    // on PostgreSQL they stay at zero.
    let write_count = counter("mapwright_store_write_seconds_count ");
    for phase in ["queue", "run", "commit", "wake"] {
        let line = format!("mapwright_store_write_phase_seconds_count{{phase=\"{phase}\"}} ");
        match crate::harness::backend() {
            // Within one: a background write may land between the two observations.
            "sqlite" => assert!(counter(&line).abs_diff(write_count) <= 1 && write_count >= 1, "{phase}: one observation per write ({write_count} writes)"),
            _ => assert_eq!(counter(&line), 0, "PostgreSQL has no writer thread to split a write's time"),
        }
    }
    assert_eq!(get("").status().as_u16(), 401);
    let out = s.cli(&["admin-token", "ops", "--tenant", "acme"]);
    let scoped = String::from_utf8_lossy(&out.stdout).split(": ").last().unwrap().trim().to_string();
    assert_eq!(get(&scoped).status().as_u16(), 403, "labels name every tenant: global tokens only");
}

#[test]
fn with_the_cpu_clock_on_metrics_give_each_plugin_calls_cpu_time() {
    let s = Server::start_env(&acme_with_username_rule(), &[("RUST_LOG", "warn"), ("MAPWRIGHT_PLUGIN_CPU_CLOCK", "1")]);
    let okta = s.declared("acme", "okta");
    for i in 0..3 {
        assert_eq!(okta.post("/Users", &json!({"userName": format!("c{i}@acme.com")})).status, 201);
    }
    let text = reqwest::blocking::Client::new().get(format!("{}/metrics", s.url)).bearer_auth(s.admin_token()).send().unwrap().text().unwrap();
    let value = |name: &str| -> f64 {
        text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok()).unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    };
    // A call that yielded at an epoch tick and resumed on another thread is not measured.
    let calls = value(r#"mapwright_plugin_call_cpu_seconds_count{plugin="username",hook="username"} "#);
    assert!((1.0..=3.0).contains(&calls), "{calls} calls measured of 3");
    let cpu = value(r#"mapwright_plugin_call_cpu_seconds_sum{plugin="username",hook="username"} "#);
    assert!(cpu > 0.0 && cpu < 3.0, "{cpu} s of CPU for {calls} calls");
}

#[test]
fn trying_the_rules_on_a_payload_writes_nothing_and_reports_each_decision() {
    let s = Server::start_with(&acme_with_username_rule());
    let admin = s.admin(&s.admin_token());
    let okta = s.declared("acme", "okta");
    let user = json!({"userName": "Jane.Doe@acme.com", "emails": [{"value": "Jane.Doe@acme.com"}], "title": "Dev"});
    let r = admin.post("/tenants/acme/idps/okta/chain/try", &json!({"user": user}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!((r.body["ok"].as_bool(), r.body["userName"].as_str(), r.body["attributes"]["title"].as_str()), (Some(true), Some("Jane.Doe"), Some("Dev")));
    assert_eq!(r.body["decisions"][0]["plugin"], "username", "{}", r.body);
    assert_eq!(okta.get("/Users").body["totalResults"], 0, "nothing written");
    // A payload the pipeline refuses is an answer, not an error of the endpoint.
    let bad = admin.post("/tenants/acme/idps/okta/chain/try", &json!({"user": {"displayName": "no userName"}}));
    assert_eq!((bad.status, bad.body["ok"].as_bool(), bad.body["status"].as_u64()), (200, Some(false), Some(400)), "{}", bad.body);
    assert_json_error(&admin.post("/tenants/acme/idps/okta/chain/try", &json!({"user": 5})), 400, "SCIM User object");
    assert_json_error(&admin.post("/tenants/acme/idps/okta/chain/try", &json!({"user": {}, "number": 99})), 404, "no chain version 99");
    assert_json_error(&admin.post("/tenants/acme/idps/okta/chain/try", &json!({"usr": {}})), 400, "usr");
}

#[test]
fn a_draft_is_tried_on_a_payload_and_on_real_users_and_the_history_says_what_changed() {
    let s = Server::start_with(&acme_with_username_rule());
    let admin = s.admin(&s.admin_token());
    let okta = s.declared("acme", "okta");
    for u in ["Jane.Doe@acme.com", "Bob.Smith@acme.com", "Al.X@acme.com"] {
        okta.user(u);
    }
    let chain = "/tenants/acme/idps/okta/chain";
    let draft = json!([{"plugin": "builtin:username", "config": {"source": "email", "local_part": true, "case": "lower"}},
                       {"plugin": "builtin:groups", "config": {"defaults": {"all_users": ["app-users"]}}}]);
    // An unsaved draft on a payload: nothing stored.
    let versions = admin.get(chain).body["versions"].as_array().unwrap().len();
    let r = admin.post(&format!("{chain}/try"), &json!({"user": {"userName": "Zoe@acme.com", "emails": [{"value": "Zoe@acme.com"}]}, "entries": draft}));
    assert_eq!((r.body["userName"].as_str(), r.body["groups"].clone()), (Some("zoe"), json!(["app-users"])), "{}", r.body);
    assert_eq!(admin.get(chain).body["versions"].as_array().unwrap().len(), versions, "a draft is stored nowhere");
    // On a sample of the connection's users, two at a time: each as it would be, and why.
    let first = admin.post(&format!("{chain}/try"), &json!({"sample": 2, "entries": draft}));
    assert_eq!(first.status, 200, "{}", first.body);
    let users = first.body["users"].as_array().unwrap();
    assert_eq!(users.iter().map(|u| (u["name"].as_str().unwrap(), u["userName"].as_str().unwrap(), u["status"].as_str().unwrap())).collect::<Vec<_>>(),
        [("Jane.Doe", "jane.doe", "changed"), ("Bob.Smith", "bob.smith", "changed")]);
    assert_eq!(users[0]["groups"], json!(["app-users"]));
    assert_eq!(users[0]["changes"]["userName"], json!(["Jane.Doe", "jane.doe"]), "{}", users[0]);
    assert!(users[0]["decisions"].as_array().unwrap().iter().any(|d| d["plugin"] == "groups"), "{}", users[0]);
    let rest = admin.post(&format!("{chain}/try"), &json!({"sample": 2, "entries": draft, "after": first.body["next_after"]}));
    assert_eq!(rest.body["users"].as_array().unwrap().iter().map(|u| u["userName"].as_str().unwrap()).collect::<Vec<_>>(), ["al.x"]);
    // The active rules on the sample: unchanged.
    let same = admin.post(&format!("{chain}/try"), &json!({"sample": 50}));
    assert!(same.body["users"].as_array().unwrap().iter().all(|u| u["status"] == "unchanged"), "{}", same.body);
    assert_eq!(directory_entry(&s.db(), "acme", "Jane.Doe").map(|e| e.user_name), Some("Jane.Doe".into()), "nothing written");
    assert_json_error(&admin.post(&format!("{chain}/try"), &json!({"sample": 51})), 400, "1 to 50");
    assert_json_error(&admin.post(&format!("{chain}/try"), &json!({"sample": 1, "number": 1, "entries": draft})), 400, "not both");

    // A refused entry is named by its index, for an editor to show the error there.
    let bad = admin.post(chain, &json!({"entries": [draft[0], {"plugin": "builtin:groups", "config": {"nope": 1}}], "candidate": true}));
    assert_json_error(&bad, 422, "entry 2");
    assert_eq!(bad.body["error"]["entry"], 1, "{}", bad.body);
    let bad_try = admin.post(&format!("{chain}/try"), &json!({"sample": 1, "entries": [{"plugin": "builtin:expr", "config": {"username": "lower("}}]}));
    assert_eq!((bad_try.status, bad_try.body["error"]["entry"].as_i64()), (422, Some(0)), "{}", bad_try.body);

    // Saved and activated: the history says who changed what.
    let v = admin.post(chain, &json!({"entries": draft, "note": "lower-case names, app-users for all"}));
    assert_eq!(v.status, 201, "{}", v.body);
    let history = admin.get(chain).body;
    let latest = history["versions"].as_array().unwrap().iter().find(|x| x["number"] == v.body["number"]).unwrap();
    assert!(latest["author"].as_str().unwrap().starts_with("admin:"), "{latest}");
    assert_eq!(latest["summary"], json!(["entry 1 (username): configuration changed (case, source)", "added entry 2: groups"]), "{latest}");
    assert_eq!(latest["changes"][1], json!({"change": "added", "entry": 2, "name": "groups"}));
    let cli = String::from_utf8_lossy(&s.cli(&["chain", "history", "acme", "okta"]).stdout).to_string();
    assert!(cli.contains("added entry 2: groups"), "{cli}");
}

/// Every documented operation, with every kind of wrong credential: none, an IdP token, a
/// directory token (on the admin API), and an admin token scoped to another tenant. Each is
/// refused before anything runs; a tenant-scoped admin never reaches server-wide endpoints.
#[test]
fn every_endpoint_refuses_every_wrong_credential() {
    let s = Server::start_with(TENANTS);
    let doc = s.admin("").get("/openapi.json").body;
    let global = s.admin_token();
    let idp_token = s.declared("acme", "okta").token;
    let token_of = |out: std::process::Output| String::from_utf8_lossy(&out.stdout).split(": ").last().unwrap().trim().to_string();
    let globex_admin = token_of(s.cli(&["admin-token", "globex-ops", "--tenant", "globex"]));
    let acme_admin = token_of(s.cli(&["admin-token", "acme-ops", "--tenant", "acme"]));
    let acme_app = token_of(s.cli(&["admin-token", "acme-app", "--tenant", "acme", "--directory"]));
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if path == "/openapi.json" {
            continue;
        }
        let server = item["servers"][0]["url"].as_str().unwrap_or("/admin/v1");
        let concrete = path.replace("{tenant}", "acme").replace("{idp}", "okta").replace("{user}", "nobody").replace("{id}", "1").replace("{decision}", "approve");
        for method in item.as_object().unwrap().keys().filter(|k| *k != "parameters" && *k != "servers") {
            let call = |token: &str| Client::new(format!("{}{server}", s.url), token.to_string()).send(&method.to_uppercase(), &concrete, Some(&json!({})), &[]);
            let what = format!("{method} {server}{path}");
            assert_eq!(call("").status, 401, "{what} without a token");
            assert_eq!(call(&idp_token).status, 401, "{what} with an IdP token");
            if server == "/admin/v1" {
                assert_eq!(call(&acme_app).status, 401, "{what} with a directory token");
            }
            let r = call(&globex_admin);
            if path.contains("{tenant}") {
                assert_eq!(r.status, 403, "{what} with another tenant's admin token: {}", r.body);
            } else if (path.as_str(), method.as_str()) == ("/tenants", "get") {
                // The one server-wide read a scoped token may make: it lists its own tenant.
                assert_eq!(r.body, json!([{"name": "globex", "created": r.body[0]["created"]}]), "{what}");
            } else {
                assert_eq!(r.status, 403, "{what} is server-wide: no tenant-scoped token");
                assert_eq!(call(&acme_admin).status, 403, "{what} is server-wide: no tenant-scoped token");
            }
            assert!(!matches!(call(&global).status, 401 | 403), "{what} with the global token");
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} operations documented?");
}
