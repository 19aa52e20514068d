//! Operating the server: structured logs without secrets, request ids, graceful shutdown,
//! profiling plugin code.

use serde_json::{Value, json};

use crate::harness::Server;

/// One connection whose chain is the username plugin (the email's local part).
const USERNAME_CHAIN: &str = "[[tenant]]\nname = \"acme\"\n[[tenant.idp]]\nname = \"okta\"\n[[tenant.idp.chain]]\nplugin = \"builtin:username\"\nconfig = { local_part = true }\n";

#[test]
fn json_logs_carry_request_context_and_no_secrets() {
    let mut s = Server::start_env("", &[("RUST_LOG", "info"), ("MAPWRIGHT_LOG_FORMAT", "json")]);
    let c = s.idp("acme", "okta", "okta");
    let id = c.user("secret.person@acme.com");
    c.patch(&format!("/Users/{id}"), json!([{"op": "replace", "path": "title", "value": "Hidden Title"}]));
    let r = c.send("GET", "/Users", None, &[("X-Request-Id", "trace-me-123")]);
    assert_eq!(r.header("x-request-id"), Some("trace-me-123"));
    assert!(c.get("/Users").header("x-request-id").is_some_and(|v| !v.is_empty()));
    c.with_token(&format!("{}x", c.token)).get("/Users").assert_error(401, None);
    assert!(s.terminate().success());

    let log = s.log();
    let lines: Vec<Value> = log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let requests: Vec<&Value> = lines.iter().filter(|l| l["message"] == "request").collect();
    assert!(requests.len() >= 5, "{log}");
    let traced = requests.iter().find(|l| l["span"]["request_id"] == "trace-me-123").expect("request id in the span");
    assert_eq!((traced["span"]["tenant"].as_str(), traced["span"]["idp"].as_str(), traced["status"].as_u64()), (Some("acme"), Some("okta"), Some(200)));
    let secret = c.token.rsplit('_').next().unwrap();
    assert!(!log.contains(secret), "a token secret reached the log");
    assert!(!log.contains("secret.person") && !log.contains("Hidden Title"), "user data reached the info log");
    assert!(log.contains("\"stopped\""), "graceful shutdown is logged");
}

#[test]
fn sigterm_stops_cleanly_and_acknowledged_writes_persist() {
    let mut s = Server::start();
    let c = s.idp("acme", "okta", "okta");
    let id = c.user("durable@acme.com");
    assert!(s.terminate().success());
    // A new server on the same data directory sees the acknowledged write.
    let out = s.command().args(["idp", "list"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("acme/okta"));
    let entry = crate::harness::directory_entry(&s.db(), "acme", "durable@acme.com").unwrap();
    assert!(entry.active);
    let _ = id;
}

#[test]
fn configured_connections_are_created_and_their_settings_applied() {
    let limited = "[[tenant]]\nname = \"acme\"\n[[tenant.idp]]\nname = \"okta\"\nkind = \"okta\"\nrate_per_second = 0.5\nburst = 2\n";
    let s = Server::start_with(limited);
    let c = s.declared("acme", "okta");
    assert_eq!((c.get("/Users").status, c.get("/Users").status), (200, 200));
    c.get("/Users").assert_error(429, None);
    // The configuration is authoritative: lifting the limit applies to the existing connection,
    // whose token (issued at first start) keeps working.
    let s = s.restart(&limited.replace("rate_per_second = 0.5", "rate_per_second = 0"));
    assert!(s.banner.iter().any(|l| l.contains("issued earlier")), "{:?}", s.banner);
    let c = crate::harness::Client::new(format!("{}/scim/v2/acme/okta", s.url), c.token.clone());
    assert!((0..10).all(|_| c.get("/Users").status == 200));
    let list = String::from_utf8_lossy(&s.cli(&["idp", "list"]).stdout).to_string();
    assert!(list.contains("acme/okta\tokta\t0/s"), "{list}");
}

#[test]
fn with_perfmap_set_the_server_names_plugin_code_for_perf_and_otherwise_writes_no_map() {
    // perf reads /tmp/perf-<pid>.map (its convention, not ours), so that is where it lands.
    let map_of = |s: &Server| std::path::PathBuf::from(format!("/tmp/perf-{}.map", s.pid()));
    let s = Server::start_env(USERNAME_CHAIN, &[("RUST_LOG", "warn"), ("MAPWRIGHT_PLUGIN_PERFMAP", "1")]);
    s.declared("acme", "okta").user("perf.map@acme.com");
    let map = map_of(&s);
    let text = std::fs::read_to_string(&map).unwrap_or_default();
    let _ = std::fs::remove_file(&map);
    assert!(text.lines().any(|l| l.contains("wasm")), "no plugin functions in {}:\n{text}", map.display());
    let plain = Server::start_with(USERNAME_CHAIN);
    plain.declared("acme", "okta").user("no.map@acme.com");
    assert!(!map_of(&plain).exists(), "a map written without being asked");
}

#[test]
fn without_address_space_for_unchecked_plugin_memories_the_server_still_runs_its_rules() {
    // 256 GiB: too little for the pool's 2,000 memory slots of 4 GiB, enough for slots of
    // 64 MiB, whose compiled code checks bounds.
    let s = Server::start_address_space_limited(USERNAME_CHAIN, 256 << 20);
    let okta = s.declared("acme", "okta");
    okta.user("jane.doe@acme.com");
    let entry = crate::harness::directory_entry(&s.db(), "acme", "jane.doe");
    assert!(entry.is_some(), "the username rule did not run; log: {}", s.log());
    assert!(s.log().contains("plugin code runs with bounds checks"), "no warning; log: {}", s.log());
    // Without the limit: the unchecked layout, and no warning.
    let free = Server::start_with(USERNAME_CHAIN);
    free.declared("acme", "okta").user("john.roe@acme.com");
    assert!(crate::harness::directory_entry(&free.db(), "acme", "john.roe").is_some());
    assert!(!free.log().contains("bounds checks"), "{}", free.log());
}


/// `mapwright migrate` says where the schema stands; with `auto_migrate = false` a server
/// refuses a PostgreSQL database that was not migrated, and names the command.
#[test]
fn migrate_reports_the_schema_and_a_server_can_leave_migrations_to_it() {
    let s = Server::start();
    let out = s.cli(&["migrate", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["backend"], crate::harness::backend(), "{v}");
    assert!(v["schema_version"].as_u64().unwrap() >= 1, "{v}");
    if crate::harness::backend() != "postgres" {
        return; // SQLite migrates whenever it opens its file.
    }
    let db = mapwright::store::postgres::scratch::ScratchDb::create(&std::env::var("MW_DATABASE_URL").unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.toml"), "[server]\nlisten = \"127.0.0.1:0\"\n[store]\nauto_migrate = false\n").unwrap();
    let mw = |args: &[&str]| {
        std::process::Command::new(crate::harness::BIN)
            .args(["--config", dir.path().join("m.toml").to_str().unwrap(), "--data-dir", dir.path().to_str().unwrap(), "--database-url", db.url()])
            .args(args)
            .output()
            .unwrap()
    };
    let refused = mw(&["tenant", "add", "acme"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("mapwright migrate"), "{}", String::from_utf8_lossy(&refused.stderr));
    let migrated = mw(&["migrate", "--json"]);
    assert!(migrated.status.success(), "{}", String::from_utf8_lossy(&migrated.stderr));
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&migrated.stdout).unwrap()["schema_version"], v["schema_version"]);
    assert!(mw(&["tenant", "add", "acme"]).status.success());
}
