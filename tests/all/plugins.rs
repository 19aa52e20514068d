//! Rule chains of compiled plugins on the real server: the directory shows the mapped result,
//! the IdP view stays as the IdP sent it, and each connection has its own rules.

use serde_json::json;

use crate::harness::{Server, directory_entry};

const CHAINS: &str = r#"
[[tenant]]
name = "acme"

[[tenant.idp]]
name = "okta"
kind = "okta"
rate_per_second = 0

[[tenant.idp.chain]]
plugin = "builtin:username"
config = { source = "email", local_part = true, replace = [{ pattern = '^(.)[^.]*\.(.*)$', with = "$1$2" }], case = "lower" }

[[tenant.idp.chain]]
plugin = "builtin:username"
config = { require = '^[a-z0-9]+$' }

[[tenant.idp]]
name = "entra"
kind = "entra"
rate_per_second = 0

[[tenant.idp.chain]]
plugin = "builtin:username"
config = { source = "template", template = "{name.givenName|lower}.{name.familyName|lower}", transliterate = true, domain = "acme.io" }

[[tenant.idp]]
name = "stable"
rate_per_second = 0

[[tenant.idp.chain]]
plugin = "builtin:username"
config = { source = "email", local_part = true, keep_existing = true }
"#;

#[test]
fn chains_map_usernames_per_connection() {
    let s = Server::start_with(CHAINS);
    let okta = s.declared("acme", "okta");
    let r = okta.post("/Users", &json!({
        "userName": "jane.doe@acme.com", "name": {"givenName": "Jane", "familyName": "Doe"},
        "emails": [{"value": "jane.doe@acme.com", "type": "work", "primary": true}],
    }));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["userName"], "jane.doe@acme.com", "the IdP view is what the IdP sent");
    let e = directory_entry(&s.db(), "acme", "jdoe").expect("the directory holds the mapped username");
    assert!(e.active);

    // The second connection of the same tenant has other rules.
    let entra = s.declared("acme", "entra");
    let r = entra.post("/Users", &json!({"userName": "zoe@acme.com", "name": {"givenName": "Zoë", "familyName": "Ångström"}}));
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(directory_entry(&s.db(), "acme", "zoe.angstrom@acme.io").is_some());

    // An update re-runs the chain: a new email gives a new directory username.
    let id = okta.post("/Users", &json!({"userName": "bob.smith@acme.com", "emails": [{"value": "bob.smith@acme.com", "primary": true}]})).id();
    assert!(directory_entry(&s.db(), "acme", "bsmith").is_some());
    let p = okta.patch(&format!("/Users/{id}"), json!([{"op": "replace", "path": "emails", "value": [{"value": "rob.smith@acme.com", "primary": true}]}]));
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(directory_entry(&s.db(), "acme", "bsmith").is_none());
    assert!(directory_entry(&s.db(), "acme", "rsmith").is_some());

    // Rules see the current directory entry: stable usernames survive an email change.
    let stable = s.declared("acme", "stable");
    let id = stable.post("/Users", &json!({"userName": "s", "emails": [{"value": "first.name@acme.com", "primary": true}]})).id();
    stable.patch(&format!("/Users/{id}"), json!([{"op": "replace", "path": "emails", "value": [{"value": "renamed@acme.com", "primary": true}]}]));
    assert!(directory_entry(&s.db(), "acme", "first.name").is_some());
    assert!(directory_entry(&s.db(), "acme", "renamed").is_none());

    // Two IdP users mapping to one directory username: the second is a uniqueness conflict.
    okta.post("/Users", &json!({"userName": "j.doe@acme.com", "emails": [{"value": "j.doe@acme.com"}]})).assert_error(409, Some("uniqueness"));
}

#[test]
fn rejections_are_400_naming_the_plugin_and_write_nothing() {
    let s = Server::start_with(CHAINS);
    let okta = s.declared("acme", "okta");
    // No email: the first entry rejects.
    let r = okta.post("/Users", &json!({"userName": "noemail"}));
    r.assert_error(400, Some("invalidValue"));
    assert!(r.body["detail"].as_str().unwrap().contains("username"), "{}", r.body);
    // The second entry's `require` rejects what the first produced.
    let r = okta.post("/Users", &json!({"userName": "x", "emails": [{"value": "o'brien@acme.com"}]}));
    r.assert_error(400, Some("invalidValue"));
    assert!(r.body["detail"].as_str().unwrap().contains("does not match"), "{}", r.body);
    assert_eq!(okta.get("/Users").body["totalResults"], 0, "nothing was written");
    // The connection keeps serving.
    assert_eq!(okta.post("/Users", &json!({"userName": "ok", "emails": [{"value": "ann.lee@acme.com"}]})).status, 201);
}

#[test]
fn a_bad_chain_refuses_to_start_with_the_reason() {
    let bad = CHAINS.replace("require = '^[a-z0-9]+$'", "require = '(unclosed'");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, format!("[server]\nlisten = \"127.0.0.1:0\"\n{bad}")).unwrap();
    let out = std::process::Command::new(crate::harness::BIN)
        .args(["--config", cfg.to_str().unwrap(), "--data-dir", dir.path().to_str().unwrap(), "serve"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("acme/okta") && err.contains("bad regex"), "{err}");
    let missing = CHAINS.replace("builtin:username", "builtin:nope");
    std::fs::write(&cfg, format!("[server]\nlisten = \"127.0.0.1:0\"\n{missing}")).unwrap();
    let out = std::process::Command::new(crate::harness::BIN)
        .args(["--config", cfg.to_str().unwrap(), "--data-dir", dir.path().to_str().unwrap(), "serve"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no builtin plugin 'nope'"));
}

const THREE: &str = r#"
[[tenant]]
name = "acme"

[[tenant.idp]]
name = "okta"
kind = "okta"
rate_per_second = 0

[[tenant.idp.chain]]
plugin = "builtin:username"
config = { source = "email", local_part = true, case = "lower" }

[[tenant.idp.chain]]
plugin = "builtin:groups"
config = { include = ['^eng-', '^Dev'], map = { "dev users" = "software_dev" }, rename = [{ pattern = '^eng-', with = "" }], defaults = { new_users = ["onboarding"], all_users = ["app-users"] } }

[[tenant.idp.chain]]
plugin = "builtin:attributes"
config = { mappings = [{ from = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", to = "urn:mapwright:custom:User:department", transform = ["lower"] }, { constant = "okta", to = "urn:mapwright:custom:User:source" }] }
"#;

#[test]
fn groups_and_attributes_rules_shape_the_directory() {
    let s = Server::start_with(THREE);
    let okta = s.declared("acme", "okta");
    let u = okta.post("/Users", &json!({
        "userName": "Jane.Doe@acme.com", "emails": [{"value": "Jane.Doe@acme.com", "primary": true}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Engineering"},
    }));
    assert_eq!(u.status, 201, "{}", u.body);
    let id = u.id();
    let e = directory_entry(&s.db(), "acme", "jane.doe").unwrap();
    assert_eq!(e.groups, ["app-users", "onboarding"], "defaults for new users and for all users");
    assert_eq!(e.attributes["urn:mapwright:custom:User"], json!({"department": "engineering", "source": "okta"}));
    assert!(u.body.get("urn:mapwright:custom:User").is_none(), "the IdP view is untouched");

    // IdP groups: mapped by table, renamed, or not synced at all.
    let dev = okta.group("Dev users", &[&id]);
    okta.group("eng-Platform", &[&id]);
    okta.group("Sales", &[&id]);
    let e = directory_entry(&s.db(), "acme", "jane.doe").unwrap();
    assert_eq!(e.groups, ["Platform", "app-users", "onboarding", "software_dev"]);
    // The IdP sees its groups as it pushed them.
    let g = okta.get(&format!("/Groups/{dev}"));
    assert_eq!(g.body["displayName"], "Dev users");

    // A later update keeps the onboarding default (granted once, not re-derived).
    okta.patch(&format!("/Users/{id}"), json!([{"op": "replace", "path": "title", "value": "CTO"}]));
    let e = directory_entry(&s.db(), "acme", "jane.doe").unwrap();
    assert!(e.groups.contains(&"onboarding".to_string()));
    okta.patch(&format!("/Groups/{dev}"), json!([{"op": "remove", "path": "members"}]));
    let e = directory_entry(&s.db(), "acme", "jane.doe").unwrap();
    assert_eq!(e.groups, ["Platform", "app-users", "onboarding"]);
}

#[test]
fn plugin_inspect_and_test_commands() {
    let s = Server::start();
    let out = s.cli(&["plugin", "inspect", "builtin:username"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("name:      username") && text.contains("contract:  mapwright:plugin@0.1.2") && text.contains("hooks:     username"), "{text}");
    let dir = s.dir.path();
    std::fs::write(dir.join("user.json"), r#"{"userName": "Zoë.Ångström@acme.com", "emails": [{"value": "Zoë.Ångström@acme.com", "primary": true}]}"#).unwrap();
    std::fs::write(dir.join("config.json"), r#"{"source": "email", "local_part": true, "transliterate": true, "case": "lower"}"#).unwrap();
    let run = |config: &str| {
        s.cli(&["plugin", "test", "--plugin", "builtin:username", "--entry-config", dir.join(config).to_str().unwrap(), "--input", dir.join("user.json").to_str().unwrap()])
    };
    let out = run("config.json");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("userName:   zoe.angstrom"), "{text}");
    assert!(text.contains("because username/username:"), "each decision is explained: {text}");
    std::fs::write(dir.join("bad.json"), r#"{"case": "title"}"#).unwrap();
    let out = run("bad.json");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: invalid configuration for username"), "{}", String::from_utf8_lossy(&out.stderr));
    // Shaping, as a delivery target's shape chain would run it.
    let out = s.cli(&["plugin", "inspect", "builtin:shape"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("hooks:     shape"), "{}", String::from_utf8_lossy(&out.stdout));
    std::fs::write(dir.join("shape.json"), r#"{"users": {"set": {"userType": "Employee"}}}"#).unwrap();
    let out = s.cli(&["plugin", "test", "--plugin", "builtin:shape", "--entry-config", dir.join("shape.json").to_str().unwrap(), "--input", dir.join("user.json").to_str().unwrap(), "--hook", "shape-user"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains(r#""userType": "Employee""#) && text.contains(r#"because shape/shape.set: userType = "Employee""#), "{text}");
    let out = s.cli(&["plugin", "test", "--plugin", "builtin:username", "--entry-config", dir.join("config.json").to_str().unwrap(), "--input", dir.join("user.json").to_str().unwrap(), "--hook", "shape-user"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not shape deliveries"), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(dir.join("group.json"), r#"{"displayName": "eng-Platform"}"#).unwrap();
    std::fs::write(dir.join("groups.json"), r#"{"include": ["^eng-"], "rename": [{"pattern": "^eng-", "with": ""}]}"#).unwrap();
    let out = s.cli(&["plugin", "test", "--plugin", "builtin:groups", "--entry-config", dir.join("groups.json").to_str().unwrap(), "--input", dir.join("group.json").to_str().unwrap(), "--hook", "group"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(r#"app groups: ["Platform"]"#), "{}", String::from_utf8_lossy(&out.stdout));
    let out = s.cli(&["plugin", "inspect", dir.join("user.json").to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid component"));
}

/// The embedded default (README's start command) with its example chains, driven by the
/// sample payloads in examples/payloads.
#[test]
fn embedded_example_tenant_with_sample_payloads() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(crate::harness::BIN)
        .args(["--data-dir", dir.path().to_str().unwrap(), "serve", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = Vec::new();
    let url = loop {
        let l = lines.next().expect("banner").unwrap();
        if let Some(u) = l.strip_prefix("Mapwright listening on ") {
            break u.to_string();
        }
        banner.push(l);
    };
    let token = |idp: &str| {
        let at = banner.iter().position(|l| l.starts_with(&format!("IdP connection acme/{idp} "))).unwrap();
        banner[at..].iter().find_map(|l| l.split("store it now): ").nth(1)).unwrap().trim().to_string()
    };
    let payload = |f: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(format!("{}/../examples/payloads/{f}", env!("CARGO_MANIFEST_DIR"))).unwrap()).unwrap()
    };
    let okta = crate::harness::Client::new(format!("{url}/scim/v2/acme/okta"), token("okta"));
    let entra = crate::harness::Client::new(format!("{url}/scim/v2/acme/entra"), token("entra"));
    // The embedded default is SQLite whatever the run's backend (README's command).
    let db = crate::harness::Db::Sqlite(dir.path().join("mapwright.db"));

    let jane = okta.post("/Users", &payload("okta-create-user.json"));
    assert_eq!(jane.status, 201, "{}", jane.body);
    let e = directory_entry(&db, "acme", "jdoe").unwrap();
    assert_eq!((e.groups.clone(), e.attributes["urn:mapwright:custom:User"]["department"].clone()), (vec!["app-users".to_string()], json!("Engineering")));
    let mut put = payload("okta-group-put.json");
    put["members"][0]["value"] = jane.body["id"].clone();
    let g = okta.post("/Groups", &put);
    assert_eq!(g.status, 201, "{}", g.body);
    assert_eq!(directory_entry(&db, "acme", "jdoe").unwrap().groups, ["app-users", "software_dev"]);
    let d = okta.patch_raw(&format!("/Users/{}", jane.id()), &payload("okta-deactivate.json"));
    assert_eq!(d.status, 200);
    assert!(!directory_entry(&db, "acme", "jdoe").unwrap().active);

    let zoe = entra.post("/Users", &payload("entra-create-user.json"));
    assert_eq!(zoe.status, 201, "{}", zoe.body);
    let e = directory_entry(&db, "acme", "zoe.angstrom@acme.io").unwrap();
    assert_eq!(e.attributes["urn:mapwright:custom:User"], json!({"worksite": "180", "phone": "+14155550100"}));
    assert_eq!(e.groups, ["app-users", "onboarding"]);
    let p = entra.patch_raw(&format!("/Users/{}", zoe.id()), &payload("entra-patch-user.json"));
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!((p.body["title"].as_str(), p.body["active"].as_bool()), (Some("Principal Engineer"), Some(false)));
    assert!(directory_entry(&db, "acme", "zoe.angstrom@acme.io").is_some(), "given name Zoe transliterates the same");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn compiled_plugins_persist_across_restarts_and_bad_artifacts_are_recompiled() {
    let s = Server::start_with(THREE);
    let cache = s.dir.path().join("plugin-cache");
    let artifacts = || {
        let mut v: Vec<_> = std::fs::read_dir(&cache).unwrap().map(|e| e.unwrap().path()).collect();
        v.sort();
        v
    };
    let first = artifacts();
    assert_eq!(first.len(), 3, "one artifact per distinct plugin: {first:?}");
    assert!(first.iter().all(|p| p.extension().is_some_and(|e| e == "cwasm")));
    let token = s.declared("acme", "okta").token;
    // How each process got its compiled plugins, and how much code it holds.
    let admin = s.admin_token();
    let metric = |s: &Server, name: &str| -> u64 {
        let text = reqwest::blocking::Client::new().get(format!("{}/metrics", s.url)).bearer_auth(&admin).send().unwrap().text().unwrap();
        text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    };
    let compiles = |s: &Server, from: &str| metric(s, &format!("mapwright_plugin_compiles_total{{from=\"{from}\"}} "));
    assert_eq!((compiles(&s, "source"), compiles(&s, "artifact")), (3, 0));
    assert!(metric(&s, "mapwright_plugin_code_bytes ") > 10_000);

    // A restart loads the artifacts; the rules still apply.
    let s = s.restart(THREE);
    assert_eq!(artifacts(), first);
    assert_eq!((compiles(&s, "source"), compiles(&s, "artifact")), (0, 3), "nothing compiled again");
    let okta = crate::harness::Client::new(format!("{}/scim/v2/acme/okta", s.url), token.clone());
    assert_eq!(okta.post("/Users", &json!({"userName": "a", "emails": [{"value": "ann.b@acme.com"}]})).status, 201);
    assert!(directory_entry(&s.db(), "acme", "ann.b").is_some());

    // An artifact damaged in place (while the server runs) harms neither the running server
    // (it holds its own copy) nor the next start (which discards it and recompiles).
    std::fs::write(&first[0], b"not an artifact").unwrap();
    let running = crate::harness::Client::new(format!("{}/scim/v2/acme/okta", s.url), token.clone());
    assert_eq!(running.post("/Users", &json!({"userName": "c", "emails": [{"value": "cy.d@acme.com"}]})).status, 201);
    let s = s.restart(THREE);
    assert!(std::fs::metadata(&first[0]).unwrap().len() > 1000, "recompiled and rewritten");
    assert_eq!((compiles(&s, "damaged_artifact"), compiles(&s, "source"), compiles(&s, "artifact")), (1, 1, 2), "the damaged one counted and compiled");
    let okta = crate::harness::Client::new(format!("{}/scim/v2/acme/okta", s.url), token);
    assert_eq!(okta.post("/Users", &json!({"userName": "b", "emails": [{"value": "bo.c@acme.com"}]})).status, 201);
}

/// A budget far smaller than the plugins: every call may find its code evicted; it is loaded
/// again from the disk cache (or compiled again from the stored bytes when the artifact is
/// gone), and no request fails for it.
#[test]
fn plugins_beyond_the_memory_budget_are_evicted_and_load_again() {
    let config = format!("plugin_memory_mib = 1\n{THREE}");
    let s = Server::start_with(&config);
    let admin = s.admin_token();
    let metric = |name: &str| -> f64 {
        let text = reqwest::blocking::Client::new().get(format!("{}/metrics", s.url)).bearer_auth(&admin).send().unwrap().text().unwrap();
        text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0)
    };
    let okta = s.declared("acme", "okta");
    for i in 0..5 {
        let u = okta.post("/Users", &json!({"userName": format!("u{i}"), "emails": [{"value": format!("user.{i}@acme.com")}]}));
        assert_eq!(u.status, 201, "{}", u.body);
        assert_eq!(directory_entry(&s.db(), "acme", &format!("user.{i}")).unwrap().groups, ["app-users", "onboarding"]);
    }
    // Three plugins, room for about one: the chain's calls evict one another.
    let evictions = metric("mapwright_plugin_evictions_total ");
    assert!(evictions >= 10.0, "{evictions}");
    assert!(metric("mapwright_plugin_compiles_total{from=\"artifact\"} ") >= 10.0);
    assert!(metric("mapwright_plugin_cold_load_seconds_count ") >= 10.0);
    assert_eq!(metric("mapwright_plugin_compiles_total{from=\"missing_artifact\"} "), 0.0);
    // What stays held is one plugin's code at most (the username plugin is the largest).
    let held = metric("mapwright_plugin_code_bytes ");
    let largest = std::fs::read_dir(s.dir.path().join("plugin-cache")).unwrap().map(|f| f.unwrap().metadata().unwrap().len()).max().unwrap() as f64;
    assert!(held > 0.0 && held <= largest, "{held} > {largest}");

    // A cleaned cache directory: the next calls compile from the stored bytes, counted.
    for f in std::fs::read_dir(s.dir.path().join("plugin-cache")).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    let u = okta.post("/Users", &json!({"userName": "late", "emails": [{"value": "late.comer@acme.com"}]}));
    assert_eq!(u.status, 201, "{}", u.body);
    assert!(directory_entry(&s.db(), "acme", "late.comer").is_some());
    assert!(metric("mapwright_plugin_compiles_total{from=\"missing_artifact\"} ") >= 1.0);
    assert!(std::fs::read_dir(s.dir.path().join("plugin-cache")).unwrap().count() >= 1, "artifacts written again");
}

const KEEP: &str = r#"
[[tenant]]
name = "acme"

[[tenant.idp]]
name = "keep"
kind = "okta"
rate_per_second = 0
[[tenant.idp.chain]]
plugin = "builtin:groups"
config = { keep_existing_memberships = true }

[[tenant.idp]]
name = "plain"
kind = "okta"
rate_per_second = 0
[[tenant.idp.chain]]
plugin = "builtin:groups"
config = {}
"#;

/// Membership changes of IdP groups reach the rules as deltas, per user.
#[test]
fn membership_removals_go_through_the_rules() {
    let s = Server::start_with(KEEP);
    for (idp, kept) in [("keep", true), ("plain", false)] {
        let c = s.declared("acme", idp);
        let (a, b) = (c.user(&format!("a-{idp}@acme.com")), c.user(&format!("b-{idp}@acme.com")));
        let team = format!("{idp}-team");
        let g = c.group(&team, &[&a, &b]);
        // Removal by PATCH.
        c.patch(&format!("/Groups/{g}"), json!([{"op": "remove", "path": format!("members[value eq \"{a}\"]")}]));
        let groups = directory_entry(&s.db(), "acme", &format!("a-{idp}@acme.com")).unwrap().groups;
        assert_eq!(groups.contains(&team), kept, "{idp}: {groups:?}");
        // Removal by a full member list (Okta's PUT), diffed per user.
        c.put(&format!("/Groups/{g}"), &json!({"displayName": team, "members": []}));
        let groups = directory_entry(&s.db(), "acme", &format!("b-{idp}@acme.com")).unwrap().groups;
        assert_eq!(groups.contains(&team), kept, "{idp}: {groups:?}");
        // The IdP's view is what it sent either way.
        assert!(c.get(&format!("/Groups/{g}")).body.get("members").is_none());
    }
}
