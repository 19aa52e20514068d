//! The rule lifecycle on the real server: chain versions set from the CLI while IdPs keep
//! provisioning, refused versions, rollback, and what a restart keeps.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::harness::{Client, Server, directory_entry};

const TENANT: &str = r#"
[[tenant]]
name = "acme"

[[tenant.idp]]
name = "okta"
kind = "okta"
rate_per_second = 0
"#;

/// Writes a chain file with one username entry of this configuration (TOML inline table).
fn chain_file(s: &Server, name: &str, username_config: &str) -> String {
    let p = s.dir.path().join(name);
    std::fs::write(&p, format!("[[entry]]\nplugin = \"builtin:username\"\nconfig = {username_config}\n")).unwrap();
    p.to_str().unwrap().to_string()
}

fn set(s: &Server, file: &str, note: &str) -> std::process::Output {
    s.cli(&["chain", "set", "acme", "okta", "--file", file, "--note", note, "--author", "tester"])
}

/// A create's userName, status and the chain version that decided it.
type Outcome = (String, u16, Option<String>);

fn create(c: &Client, user_name: &str) -> (u16, Option<String>) {
    let r = c.post("/Users", &json!({"userName": user_name, "emails": [{"value": user_name, "type": "work", "primary": true}]}));
    (r.status, r.header("x-mapwright-rules").map(str::to_string))
}

/// Creates users until a response reports `version`; returns that response's userName.
fn until_version(c: &Client, prefix: &str, version: &str) -> String {
    for i in 0..200 {
        let name = format!("{prefix}{i}@acme.example");
        let (status, v) = create(c, &name);
        assert_eq!(status, 201);
        if v.as_deref() == Some(version) {
            return name;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("the server never ran chain version {version}");
}

#[test]
fn swapping_a_chain_under_load_fails_nothing_and_never_mixes() {
    let s = Server::start_with(TENANT);
    let okta = s.declared("acme", "okta");
    let lower_local = chain_file(&s, "v1.toml", r#"{ source = "email", local_part = true, case = "lower" }"#);

    // A client provisions without pause while the chain is set from another process.
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let worker = {
        let (okta, stop, seen) = (okta.clone(), stop.clone(), seen.clone());
        std::thread::spawn(move || {
            let mut after_swap = 0;
            for i in 0..5_000 {
                let name = format!("Load.User{i}@Acme.Example");
                let (status, v) = create(&okta, &name);
                if v.is_some() {
                    after_swap += 1;
                }
                seen.lock().unwrap().push((name, status, v));
                // Bounded: stop a while after the swap is visible (or if the test gives up).
                if after_swap >= 50 || stop.load(Ordering::Relaxed) {
                    break;
                }
            }
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(150));
    let out = set(&s, &lower_local, "lower-case local parts");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("chain version 1 is active"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !worker.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    worker.join().unwrap();

    let seen = seen.lock().unwrap();
    assert!(seen.iter().all(|(_, status, _)| *status == 201), "every request succeeded: {:?}", seen.iter().find(|r| r.1 != 201));
    let first_new = seen.iter().position(|(_, _, v)| v.as_deref() == Some("1")).expect("the swap became visible");
    assert!(first_new > 0, "some requests ran before the swap");
    assert!(seen[first_new..].iter().all(|(_, _, v)| v.as_deref() == Some("1")), "after the swap every response reflects the new rules");
    for (name, _, v) in seen.iter() {
        // Each response's rules decided its directory entry: identity before, mapped after.
        let expected = match v {
            Some(_) => name.split('@').next().unwrap().to_lowercase(),
            None => name.clone(),
        };
        assert!(directory_entry(&s.db(), "acme", &expected).is_some(), "{name} under version {v:?} should be {expected}");
    }
}

#[test]
fn refused_versions_leave_the_rules_serving_and_rollback_restores_them() {
    let s = Server::start_with(TENANT);
    let okta = s.declared("acme", "okta");
    let v1 = chain_file(&s, "v1.toml", r#"{ source = "email", local_part = true, case = "lower" }"#);
    let v2 = chain_file(&s, "v2.toml", r#"{ source = "email", local_part = true, case = "upper" }"#);
    assert!(set(&s, &v1, "first").status.success());
    let name = until_version(&okta, "a", "1");
    assert!(directory_entry(&s.db(), "acme", name.split('@').next().unwrap()).is_some());

    // A configuration the plugin refuses, and a file that is not a component: both refused
    // with the reason, nothing stored, version 1 keeps serving.
    let bad_config = chain_file(&s, "bad.toml", r#"{ source = "nowhere" }"#);
    let out = set(&s, &bad_config, "broken");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused") && err.contains("username"), "{err}");
    let junk = s.dir.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm not really").unwrap();
    let junk_chain = s.dir.path().join("junk.toml");
    std::fs::write(&junk_chain, "[[entry]]\nplugin = \"junk.wasm\"\n").unwrap();
    let out = set(&s, junk_chain.to_str().unwrap(), "junk");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid component"), "{}", String::from_utf8_lossy(&out.stderr));
    let (status, v) = create(&okta, "Still.V1@acme.example");
    assert_eq!((status, v.as_deref()), (201, Some("1")));
    assert!(directory_entry(&s.db(), "acme", "still.v1").is_some());

    // Version 2, then a rollback to version 1.
    assert!(set(&s, &v2, "upper").status.success());
    let name = until_version(&okta, "b", "2");
    assert!(directory_entry(&s.db(), "acme", &name.split('@').next().unwrap().to_uppercase()).is_some());
    let out = s.cli(&["chain", "rollback", "acme", "okta", "--author", "tester"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("chain version 1 is active again"));
    let name = until_version(&okta, "c", "1");
    assert!(directory_entry(&s.db(), "acme", name.split('@').next().unwrap()).is_some(), "version 1's rules are back");

    // The history names every version, which is active, and every activation.
    let out = s.cli(&["chain", "history", "acme", "okta", "--json"]);
    assert!(out.status.success());
    let h: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let versions: Vec<(i64, bool, String)> = h["versions"].as_array().unwrap().iter().map(|v| (v["version"].as_i64().unwrap(), v["active"].as_bool().unwrap(), v["note"].as_str().unwrap().to_string())).collect();
    assert_eq!(versions, vec![(2, false, "upper".into()), (1, true, "first".into())], "refused versions were never stored");
    let acts: Vec<i64> = h["activations"].as_array().unwrap().iter().map(|a| a["version"].as_i64().unwrap()).collect();
    assert_eq!(acts, vec![1, 2, 1]);
    let out = s.cli(&["chain", "show", "acme", "okta", "--json"]);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["version"], 1);
    assert_eq!(shown["definition"]["entries"][0]["name"], "username");
    assert_eq!(shown["definition"]["entries"][0]["config"]["case"], "lower");
    let out = s.cli(&["chain", "rollback", "acme", "okta", "--to", "9"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no chain version 9"));
}

#[test]
fn a_restart_keeps_activated_versions_and_applies_configuration_changes() {
    let s = Server::start_with(TENANT);
    let okta = s.declared("acme", "okta");
    let v1 = chain_file(&s, "v1.toml", r#"{ source = "email", local_part = true, case = "lower" }"#);
    assert!(set(&s, &v1, "from the CLI").status.success());
    until_version(&okta, "a", "1");

    // Same configuration: the CLI's version stays active across the restart.
    let s = s.restart(TENANT);
    let (status, v) = create(&okta.rebased(&s), "Kept.Rules@acme.example");
    assert_eq!((status, v.as_deref()), (201, Some("1")));
    assert!(directory_entry(&s.db(), "acme", "kept.rules").is_some());

    // An edited configuration declares a chain: it becomes a new version, from "config".
    let declared = format!("{TENANT}\n[[tenant.idp.chain]]\nplugin = \"builtin:username\"\nconfig = {{ source = \"email\", local_part = true, case = \"upper\" }}\n");
    let s = s.restart(&declared);
    let (status, v) = create(&okta.rebased(&s), "New.Rules@acme.example");
    assert_eq!((status, v.as_deref()), (201, Some("2")));
    assert!(directory_entry(&s.db(), "acme", "NEW.RULES").is_some());
    let out = s.cli(&["chain", "show", "acme", "okta", "--json"]);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((shown["version"].as_i64(), shown["source"].as_str()), (Some(2), Some("config")));

    // Restarting again with the same file makes no new version.
    let s = s.restart(&declared);
    let (_, v) = create(&okta.rebased(&s), "Same.Rules@acme.example");
    assert_eq!(v.as_deref(), Some("2"));
}

#[test]
fn stored_plugins_are_content_addressed_and_usable_by_hash() {
    let s = Server::start_with(TENANT);
    let okta = s.declared("acme", "okta");
    let out = s.cli(&["plugin", "add", "acme", "builtin:username"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let hash = text.split("sha256:").nth(1).unwrap().trim().to_string();
    assert_eq!(hash.len(), 64);
    // Adding the same bytes again stores nothing new.
    assert!(s.cli(&["plugin", "add", "acme", "builtin:username"]).status.success());
    let list = String::from_utf8_lossy(&s.cli(&["plugin", "list", "acme"]).stdout).to_string();
    assert_eq!(list.lines().count(), 1, "{list}");
    assert!(list.contains(&hash) && list.contains("hooks username"));

    let file = s.dir.path().join("by-hash.toml");
    std::fs::write(&file, format!("[[entry]]\nplugin = \"sha256:{}\"\nconfig = {{ local_part = true }}\n", &hash[..12])).unwrap();
    let out = set(&s, file.to_str().unwrap(), "by hash");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let name = until_version(&okta, "h", "1");
    assert!(directory_entry(&s.db(), "acme", name.split('@').next().unwrap()).is_some());
    std::fs::write(&file, "[[entry]]\nplugin = \"sha256:0000000000000000\"\n").unwrap();
    let out = set(&s, file.to_str().unwrap(), "unknown");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no stored plugin"));
}

#[test]
fn the_example_chain_file_goes_live() {
    let s = Server::start_with(TENANT);
    let okta = s.declared("acme", "okta");
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/chains/okta-strict.toml");
    let out = set(&s, file, "example");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // eng.user3@acme.example -> euser3 (first initial + last part), and everyone gets app-users.
    let name = until_version(&okta, "eng.user", "1");
    let local = name.split('@').next().unwrap();
    let expected = format!("e{}", local.split_once('.').unwrap().1);
    let e = directory_entry(&s.db(), "acme", &expected).unwrap_or_else(|| panic!("{name} should map to {expected}"));
    assert_eq!(e.groups, vec!["app-users".to_string()]);
}

const TWO_IDPS: &str = r#"
[[tenant]]
name = "acme"

[[tenant.idp]]
name = "okta"
kind = "okta"
rate_per_second = 0

[[tenant.idp]]
name = "entra"
kind = "entra"
rate_per_second = 0
"#;

fn cli_json(s: &Server, args: &[&str]) -> serde_json::Value {
    let out = s.cli(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn audit_count(s: &Server) -> usize {
    cli_json(s, &["audit", "acme", "--limit", "10000", "--json"]).as_array().unwrap().len()
}

/// (type, id, status, changes, error) of every item, for comparing runs.
fn items(report: &serde_json::Value) -> Vec<(String, String, String, String, String)> {
    let mut v: Vec<_> = report["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["resource_type"].to_string(), i["id"].to_string(), i["status"].to_string(), i["changes"].to_string(), i["error"].to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn preview_reports_exactly_what_reapply_then_changes() {
    let s = Server::start_with(TWO_IDPS);
    let okta = s.declared("acme", "okta");
    let mut ids = Vec::new();
    for i in 0..12 {
        let name = format!("First.Last{i}@Acme.Example");
        ids.push(okta.post("/Users", &json!({"userName": name, "emails": [{"value": name, "primary": true}], "title": "Dev"})).id());
    }
    // An okta user whose new name is taken by an entry of another connection: a collision.
    let clash = okta.post("/Users", &json!({"userName": "u-clash", "emails": [{"value": "taken@acme.example"}]})).id();
    assert_eq!(s.declared("acme", "entra").post("/Users", &json!({"userName": "taken"})).status, 201);
    okta.group("eng-core", &[&ids[0], &ids[1]]);
    okta.group("sales", &[&ids[2]]);

    let file = s.dir.path().join("candidate.toml");
    std::fs::write(&file, r#"
[[entry]]
plugin = "builtin:username"
config = { source = "email", local_part = true, case = "lower" }

[[entry]]
plugin = "builtin:groups"
config = { include = ['^eng-'], rename = [{ pattern = '^eng-', with = "" }], defaults = { all_users = ["app-users"] } }
"#).unwrap();
    let out = s.cli(&["chain", "set", "acme", "okta", "--file", file.to_str().unwrap(), "--candidate"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("not active"));

    let before = audit_count(&s);
    let preview = cli_json(&s, &["chain", "preview", "acme", "okta", "--number", "1", "--json"]);
    assert_eq!(audit_count(&s), before, "a preview writes nothing");
    assert!(directory_entry(&s.db(), "acme", "First.Last0@Acme.Example").is_some(), "nor does it change the directory");
    let sum = &preview["summary"];
    assert_eq!((sum["users"].as_i64(), sum["groups"].as_i64()), (Some(13), Some(2)));
    assert_eq!(sum["usernames_changed"], 12);
    assert_eq!((sum["collisions"].as_i64(), sum["failed"].as_i64()), (Some(1), Some(1)));
    assert_eq!(sum["groups_remapped"], 2, "sales is no longer synced, eng-core becomes core");
    assert!(preview["items"].as_array().unwrap().iter().any(|i| i["id"] == clash && i["status"] == "failed"));
    let paged = cli_json(&s, &["chain", "preview", "acme", "okta", "--number", "1", "--json", "--offset", "2", "--limit", "3"]);
    assert_eq!((paged["items"].as_array().unwrap().len(), paged["total"].clone()), (3, preview["total"].clone()));

    // Activate the candidate (requests from now on use it) and re-apply it to what exists.
    assert!(s.cli(&["chain", "rollback", "acme", "okta", "--to", "1"]).status.success());
    let applied = cli_json(&s, &["reapply", "acme", "okta", "--json", "--batch", "5"]);
    assert_eq!(items(&applied), items(&preview), "the preview showed exactly what the re-apply did");
    assert_eq!(applied["summary"], preview["summary"]);

    let e = directory_entry(&s.db(), "acme", "first.last0").expect("renamed");
    assert_eq!(e.groups, vec!["app-users".to_string(), "core".to_string()]);
    assert_eq!(directory_entry(&s.db(), "acme", "first.last2").unwrap().groups, vec!["app-users".to_string()], "sales no longer synced");
    assert!(directory_entry(&s.db(), "acme", "taken").is_some() && directory_entry(&s.db(), "acme", "u-clash").is_some(), "the collision changed nothing");
    // Each change is recorded like any other, with the job as its request.
    let recs = cli_json(&s, &["audit", "acme", "--resource", &ids[0], "--json"]);
    assert_eq!(recs[0]["operation"], "reapply");
    assert_eq!(recs[0]["chain_version"], 1);
    assert!(recs[0]["request_id"].as_str().unwrap().starts_with("reapply-"));
    // A second re-apply finds nothing left to change.
    let again = cli_json(&s, &["reapply", "acme", "okta", "--json"]);
    assert_eq!(again["summary"]["changed"], 0, "{again}");
}

#[test]
fn a_reapply_killed_halfway_resumes_and_finishes() {
    let s = Server::start_with(TENANT);
    let okta = s.declared("acme", "okta");
    let n = 120;
    for i in 0..n {
        let name = format!("Resume.User{i}@Acme.Example");
        assert_eq!(okta.post("/Users", &json!({"userName": name, "emails": [{"value": name, "primary": true}]})).status, 201);
    }
    let lower = chain_file(&s, "v1.toml", r#"{ source = "email", local_part = true, case = "lower" }"#);
    assert!(set(&s, &lower, "lower").status.success());

    // A slow re-apply (small batches, a pause between them), killed once it has progressed.
    let mut child = s
        .command()
        .args(["reapply", "acme", "okta", "--batch", "5", "--pause-ms", "100"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = s.cli(&["reapply", "acme", "okta", "--status", "--json"]);
        let seen = serde_json::from_slice::<serde_json::Value>(&out.stdout).ok().and_then(|j| j["seen"].as_i64()).unwrap_or(0);
        if seen >= 20 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the re-apply made no progress");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let job = cli_json(&s, &["reapply", "acme", "okta", "--status", "--json"]);
    assert!(job["finished"].is_null() && job["seen"].as_i64().unwrap() < n, "killed half way: {job}");

    // A fresh start is refused while a job is unfinished; resuming finishes it.
    let out = s.cli(&["reapply", "acme", "okta"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("resume it"));
    let report = cli_json(&s, &["reapply", "acme", "okta", "--resume", "--json"]);
    assert_eq!(report["summary"]["failed"], 0);
    let job = cli_json(&s, &["reapply", "acme", "okta", "--status", "--json"]);
    assert_eq!(job["phase"], "done");
    assert_eq!(job["seen"], job["total"], "every user seen exactly once across both runs: {job}");
    assert_eq!(job["changed"].as_i64(), Some(n), "each user changed once: {job}");
    for i in 0..n {
        assert!(directory_entry(&s.db(), "acme", &format!("resume.user{i}")).is_some(), "user {i} re-applied");
    }
}

#[test]
fn a_watched_directory_goes_live_when_its_files_change() {
    let s = Server::start_with(&format!("{TENANT}watch = \"rules/okta\"\n"));
    let okta = s.declared("acme", "okta");
    let dir = s.dir.path().join("rules/okta");
    std::fs::create_dir_all(&dir).unwrap();
    let write = |case: &str| {
        // Written to a temporary name and renamed, as deploy tools do; the watcher also
        // waits for the files to stay the same for a poll.
        let tmp = dir.join("chain.toml.tmp");
        std::fs::write(&tmp, format!("[[entry]]\nplugin = \"builtin:username\"\nconfig = {{ source = \"email\", local_part = true, case = \"{case}\" }}\n")).unwrap();
        std::fs::rename(&tmp, dir.join("chain.toml")).unwrap();
    };
    write("lower");
    let name = until_version(&okta, "w", "1");
    assert!(directory_entry(&s.db(), "acme", name.split('@').next().unwrap()).is_some());
    let shown: serde_json::Value = serde_json::from_slice(&s.cli(&["chain", "show", "acme", "okta", "--json"]).stdout).unwrap();
    assert_eq!(shown["source"], "watch");

    // A broken file is refused (logged); version 1 keeps serving; a fixed one goes live.
    std::fs::write(dir.join("chain.toml"), "[[entry]]\nplugin = \"builtin:username\"\nconfig = { source = \"nowhere\" }\n").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1600));
    let (status, v) = create(&okta, "Still.One@acme.example");
    assert_eq!((status, v.as_deref()), (201, Some("1")));
    assert!(s.log().contains("watched chain refused"), "{}", s.log());
    write("upper");
    let name = until_version(&okta, "x", "2");
    assert!(directory_entry(&s.db(), "acme", &name.split('@').next().unwrap().to_uppercase()).is_some());
}

#[test]
fn a_plugin_built_for_contract_0_1_0_still_loads_and_runs() {
    let s = Server::start_with(TENANT);
    let okta = s.declared("acme", "okta");
    let legacy = crate::harness::test_plugins::LEGACY;
    let out = s.cli(&["plugin", "inspect", legacy]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("contract:  mapwright:plugin@0.1.0"), "{text}");
    let newer = String::from_utf8_lossy(&s.cli(&["plugin", "inspect", "builtin:username"]).stdout).to_string();
    assert!(!newer.contains("@0.1.0"), "the built-in plugins are built against a newer contract: {newer}");
    let file = s.dir.path().join("legacy.toml");
    std::fs::write(&file, format!("[[entry]]\nplugin = {legacy:?}\n")).unwrap();
    let out = set(&s, file.to_str().unwrap(), "an old plugin");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let name = until_version(&okta, "old", "1");
    assert!(directory_entry(&s.db(), "acme", &format!("{name}-legacy")).is_some());
}

#[test]
fn a_failing_self_test_refuses_the_version() {
    let s = Server::start_with(TENANT);
    let okta = s.declared("acme", "okta");
    let v1 = chain_file(&s, "v1.toml", r#"{ local_part = true }"#);
    assert!(set(&s, &v1, "ok").status.success());
    until_version(&okta, "a", "1");
    // The username plugin's self-test runs the entry's own examples: one that the rules do
    // not meet refuses the version, naming the example.
    let bad = chain_file(&s, "bad.toml", r#"{ local_part = true, examples = [{ user = { userName = "Jane@x.com" }, expect = "Jane" }, { user = { userName = "Bob@x.com" }, expect = "bob" }] }"#);
    let out = set(&s, &bad, "self-test fails");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("self-test of username failed: example 2: Bob@x.com became 'Bob', expected 'bob'"), "{err}");
    let (status, v) = create(&okta, "Still@acme.example");
    assert_eq!((status, v.as_deref()), (201, Some("1")));
    let good = chain_file(&s, "good.toml", r#"{ local_part = true, case = "lower", examples = [{ user = { userName = "Bob@x.com" }, expect = "bob" }, { user = { userName = "" }, reject = true }] }"#);
    assert!(set(&s, &good, "examples pass").status.success());
    until_version(&okta, "g", "2");
}

#[test]
fn a_shadow_version_records_where_it_differs_and_writes_nothing() {
    let s = Server::start_with(TENANT);
    let okta = s.declared("acme", "okta");
    let v1 = chain_file(&s, "v1.toml", r#"{ source = "email", local_part = true, case = "lower" }"#);
    assert!(set(&s, &v1, "active").status.success());
    until_version(&okta, "a", "1");
    // Version 2 differs only for users whose address has upper-case letters.
    let v2 = chain_file(&s, "v2.toml", r#"{ source = "email", local_part = true }"#);
    assert!(s.cli(&["chain", "set", "acme", "okta", "--file", &v2, "--candidate"]).status.success());
    let out = s.cli(&["chain", "shadow", "acme", "okta", "--number", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(std::time::Duration::from_millis(600));

    let (status, v) = create(&okta, "Mixed.Case@acme.example");
    assert_eq!((status, v.as_deref()), (201, Some("1")), "the active rules decide");
    assert_eq!(create(&okta, "lower.case@acme.example").0, 201);
    assert!(directory_entry(&s.db(), "acme", "mixed.case").is_some() && directory_entry(&s.db(), "acme", "Mixed.Case").is_some(), "usernames are case-insensitive; the entry is the active rules' one");
    let e = directory_entry(&s.db(), "acme", "mixed.case").unwrap();
    assert_eq!(e.user_name, "mixed.case", "the shadow wrote nothing");

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let diffs = loop {
        let d = cli_json(&s, &["chain", "shadow-report", "acme", "okta", "--json"]);
        if !d.as_array().unwrap().is_empty() || std::time::Instant::now() > deadline {
            break d;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let diffs = diffs.as_array().unwrap();
    assert_eq!(diffs.len(), 1, "only the user the versions disagree on: {diffs:?}");
    assert_eq!(diffs[0]["resource"], "Mixed.Case@acme.example");
    assert_eq!(diffs[0]["diff"]["userName"], json!(["mixed.case", "Mixed.Case"]));
    assert_eq!((diffs[0]["active_version"].as_i64(), diffs[0]["shadow_version"].as_i64()), (Some(1), Some(2)));
    assert!(!diffs[0]["request_id"].as_str().unwrap().is_empty());

    // Promote: version 2 decides from now on, and the shadow stops.
    let out = s.cli(&["chain", "promote", "acme", "okta"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let name = until_version(&okta, "Upper", "2");
    assert_eq!(directory_entry(&s.db(), "acme", name.split('@').next().unwrap()).unwrap().user_name, name.split('@').next().unwrap());
    assert!(!s.cli(&["chain", "shadow-report", "acme", "okta"]).status.success(), "no shadow runs any more");
}

#[test]
fn a_scheduled_reapply_brings_existing_users_under_new_rules() {
    let s = Server::start_with(&format!("{TENANT}reapply_every_secs = 1\n"));
    let okta = s.declared("acme", "okta");
    assert_eq!(create(&okta, "Sched.User@Acme.Example").0, 201);
    let lower = chain_file(&s, "v1.toml", r#"{ source = "email", local_part = true, case = "lower" }"#);
    assert!(set(&s, &lower, "lower").status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while directory_entry(&s.db(), "acme", "sched.user").is_none_or(|e| e.user_name != "sched.user") {
        assert!(std::time::Instant::now() < deadline, "the schedule never re-applied the rules: {}", s.log());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let recs = cli_json(&s, &["audit", "acme", "--user", "sched.user", "--json"]);
    assert_eq!((recs[0]["operation"].as_str(), recs[0]["actor"].as_str()), (Some("reapply"), Some("system:schedule")));
}

#[test]
fn a_shadow_version_also_maps_groups() {
    let s = Server::start_with(TENANT);
    let okta = s.declared("acme", "okta");
    let v1 = chain_file(&s, "v1.toml", r#"{ local_part = true }"#);
    assert!(set(&s, &v1, "active").status.success());
    let v2 = s.dir.path().join("v2.toml");
    std::fs::write(&v2, "[[entry]]\nplugin = \"builtin:username\"\nconfig = { local_part = true }\n[[entry]]\nplugin = \"builtin:groups\"\nconfig = { rename = [{ pattern = '^eng-', with = \"\" }] }\n").unwrap();
    assert!(s.cli(&["chain", "set", "acme", "okta", "--file", v2.to_str().unwrap(), "--candidate"]).status.success());
    assert!(s.cli(&["chain", "shadow", "acme", "okta", "--number", "2"]).status.success());
    std::thread::sleep(std::time::Duration::from_millis(600));
    okta.group("eng-core", &[]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let d = cli_json(&s, &["chain", "shadow-report", "acme", "okta", "--json"]);
        if let Some(g) = d.as_array().unwrap().iter().find(|d| d["resource_type"] == "Group") {
            assert_eq!(g["diff"]["targets"], json!([["eng-core"], ["core"]]));
            assert_eq!(g["resource"], "eng-core");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no group difference recorded: {d}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(okta.get("/Groups").body["totalResults"], 1);
}

#[test]
fn rules_that_no_longer_load_fail_writes_instead_of_mapping_without_them() {
    let s = Server::start_with(TENANT);
    let okta = s.declared("acme", "okta");
    let ready = |s: &Server| reqwest::blocking::get(format!("{}/readyz", s.url)).unwrap();
    let v1 = chain_file(&s, "v1.toml", r#"{ local_part = true }"#);
    assert!(set(&s, &v1, "v1").status.success());
    until_version(&okta, "a", "1");
    let r = ready(&s);
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().unwrap();
    assert_eq!((body["status"].as_str(), body["chains"]["loaded"].as_u64()), (Some("ready"), Some(1)), "{body}");
    assert_eq!((body["store"]["status"].as_str(), body["store"]["backend"].as_str()), (Some("ok"), Some(crate::harness::backend())), "{body}");
    let id = okta.post("/Users", &json!({"userName": "kept@acme.example"})).id();
    // Damage the stored plugin and drop the compiled artifacts, then restart.
    let s = s.restart_after(TENANT, |dir, db| {
        db.with(|c| c.execute("UPDATE plugins SET bytes = ?1", &[&b"\0asm".to_vec()])).unwrap();
        let _ = std::fs::remove_dir_all(dir.join("plugin-cache"));
    });
    let okta = okta.rebased(&s);
    let r = okta.post("/Users", &json!({"userName": "new@acme.example"}));
    r.assert_error(500, None);
    let detail = r.body["detail"].as_str().unwrap();
    assert!(detail.contains("chain version 1") && detail.contains("could not be loaded") && detail.contains("damaged"), "{detail}");
    assert!(directory_entry(&s.db(), "acme", "new").is_none() && directory_entry(&s.db(), "acme", "new@acme.example").is_none());
    // Readiness names the connection (the instance stays in rotation for the other tenants).
    let r = ready(&s);
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().unwrap();
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["chains"]["unavailable"][0]["connection"], "acme/okta");
    assert_eq!(body["chains"]["unavailable"][0]["version"], 1);
    assert!(body["chains"]["unavailable"][0]["reason"].as_str().unwrap().contains("damaged"), "{body}");
    // Reads still work; a fixed version brings writes back.
    assert_eq!(okta.get(&format!("/Users/{id}")).status, 200);
    let v2 = chain_file(&s, "v2.toml", r#"{ local_part = true, case = "lower" }"#);
    let out = set(&s, &v2, "fixed");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(std::time::Duration::from_millis(600));
    until_version(&okta, "b", "2");
    // Storing the plugin again repaired its bytes: a rollback to version 1 loads too.
    assert!(s.cli(&["chain", "rollback", "acme", "okta", "--to", "1"]).status.success());
}
