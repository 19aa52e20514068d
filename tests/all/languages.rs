//! Plugins in JavaScript and Python (issue 18): the templates under `examples/plugins`, built
//! from source by `scripts/test.sh` (componentize-js from npm, componentize-py from PyPI), in one
//! chain beside the Rust template, driven by IdP traffic through the real server.

use std::path::PathBuf;

use serde_json::json;

use crate::harness::{Server, test_plugins};

/// A component `scripts/test.sh` built into `$MW_LANG_PLUGINS` (`target/lang-plugins`).
fn built(file: &str) -> String {
    let dir = std::env::var_os("MW_LANG_PLUGINS").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/lang-plugins"));
    let path = dir.join(file);
    assert!(
        path.exists(),
        "{} is missing: run scripts/test.sh (it builds the JavaScript and Python templates), or build them as examples/plugins/{{js,python}}/README.md says",
        path.display()
    );
    path.to_string_lossy().into_owned()
}

fn template(lang: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/plugins").join(lang)
}

/// JavaScript maps the IdP's groups and refuses other domains; Python renames what JavaScript
/// proposed and adds a default; the Rust template adds another.
fn config() -> String {
    format!(
        r#"
[[tenant]]
name = "acme"
[[tenant.idp]]
name = "okta"
kind = "okta"
rate_per_second = 0
[[tenant.idp.chain]]
plugin = {js:?}
config = {{ domains = ["acme.com"], groups = {{ "Dev users" = "software_dev", "eng-platform" = "platform" }} }}
[[tenant.idp.chain]]
plugin = {py:?}
config = {{ groups = {{ software_dev = "engineering", platform = "platform" }}, defaults = ["app-users"] }}
[[tenant.idp.chain]]
plugin = {rust:?}
config = {{ groups = {{ engineering = "engineering", platform = "platform" }}, defaults = ["staff"] }}
"#,
        js = built("acme-rules-js.wasm"),
        py = built("acme-rules-py.wasm"),
        rust = test_plugins::ACME_RULES,
    )
}

#[test]
fn javascript_and_python_plugins_decide_in_a_chain_beside_rust() {
    let s = Server::start_with(&config());
    let okta = s.declared("acme", "okta");
    let jane = okta.post("/Users", &json!({"userName": "Jane.Doe@acme.com", "active": true, "emails": [{"value": "Jane.Doe@acme.com", "primary": true}]})).id();
    let bob = okta.post("/Users", &json!({"userName": "bob@acme.com", "active": true, "emails": [{"value": "Bob@Acme.com", "primary": true}]})).id();
    okta.group("Dev users", &[&jane]);
    okta.group("eng-platform", &[&jane, &bob]);
    okta.group("Marketing", &[&bob]);

    let admin = s.admin(&s.admin_token());
    let entry = |name: &str| {
        let r = admin.get(&format!("/tenants/acme/explain/{name}"));
        assert_eq!(r.status, 200, "{name}: {}", r.body);
        r.body
    };
    let groups = |e: &serde_json::Value| {
        let mut g: Vec<String> = e["memberships"].as_array().unwrap().iter().map(|m| m["group"].as_str().unwrap().to_string()).collect();
        g.sort();
        g.dedup();
        g
    };
    let j = entry("jane.doe");
    assert_eq!(groups(&j), ["app-users", "engineering", "platform", "staff"], "{j:#}");
    assert_eq!(groups(&entry("bob")), ["app-users", "platform", "staff"]);

    // Each decision is recorded with the plugin that made it, in chain order.
    let records = admin.get("/tenants/acme/audit?limit=100").body["records"].clone();
    let create = records.as_array().unwrap().iter().find(|r| r["operation"] == "create" && r["entry"] == "jane.doe").unwrap_or_else(|| panic!("{records:#}"));
    let by: Vec<(&str, &str)> = create["decisions"].as_array().unwrap().iter().map(|d| (d["plugin"].as_str().unwrap(), d["rule"].as_str().unwrap())).collect();
    for want in [("acme-rules-js", "acme.local-part"), ("acme-rules-py", "acme.local-part"), ("acme-rules", "acme.local-part")] {
        assert!(by.contains(&want), "{want:?} in {by:?}");
    }
    let dev = records.as_array().unwrap().iter().find(|r| r["resource_type"] == "Group" && r["changes"]["targets"][1] == json!(["engineering"])).unwrap_or_else(|| panic!("{records:#}"));
    let reasons: Vec<&str> = dev["decisions"].as_array().unwrap().iter().map(|d| d["reason"].as_str().unwrap()).collect();
    assert!(reasons.contains(&"Dev users → software_dev") && reasons.contains(&"software_dev → engineering"), "{reasons:?}");

    // Refused by JavaScript: 400 naming the plugin and its rule; nothing written.
    let r = okta.post("/Users", &json!({"userName": "eve@example.org", "active": true, "emails": [{"value": "eve@example.org", "primary": true}]}));
    r.assert_error(400, Some("invalidValue"));
    let detail = r.body["detail"].as_str().unwrap();
    assert!(detail.contains("acme-rules-js") && detail.contains("acme.domain") && detail.contains("example.org is not an Acme domain"), "{detail}");
    assert_eq!(okta.get("/Users?filter=userName%20eq%20%22eve@example.org%22").body["totalResults"], 0);
    // The next request goes through the same instances.
    assert_eq!(okta.post("/Users", &json!({"userName": "al@acme.com", "emails": [{"value": "al@acme.com"}]})).status, 201);
    assert_eq!(groups(&entry("al")), ["app-users", "staff"]);

    // Uploaded through the admin API like any component: hashed, its contract read.
    let r = admin.post_bytes("/tenants/acme/plugins", std::fs::read(built("acme-rules-py.wasm")).unwrap());
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!((r.body["name"].as_str(), r.body["contract"].as_str()), (Some("acme-rules-py"), Some("0.1.2")), "{}", r.body);
}

#[test]
fn each_template_passes_its_examples_file_and_a_wrong_one_fails() {
    let s = Server::start();
    let plugins = [
        (built("acme-rules-js.wasm"), template("js")),
        (built("acme-rules-py.wasm"), template("python")),
        (test_plugins::ACME_RULES.to_string(), template("rust")),
    ];
    for (wasm, dir) in &plugins {
        let examples = dir.join("examples.json");
        let out = s.cli(&["plugin", "test", "--plugin", wasm, "--examples", examples.to_str().unwrap(), "--json"]);
        assert!(out.status.success(), "{wasm}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let outcomes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(outcomes.as_array().map(Vec::len), Some(4), "{outcomes:#}");
        assert!(outcomes.as_array().unwrap().iter().all(|o| o["passed"] == true), "{outcomes:#}");
    }
    // The same examples under a configuration they do not describe: reported one by one.
    let other = s.dir.path().join("other.json");
    std::fs::write(&other, r#"{"groups": {"Dev users": "developers"}}"#).unwrap();
    let (wasm, dir) = &plugins[1];
    let out = s.cli(&["plugin", "test", "--plugin", wasm, "--examples", dir.join("examples.json").to_str().unwrap(), "--entry-config", other.to_str().unwrap()]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FAIL  1.") && text.contains("FAIL  2.") && text.contains("FAIL  3.") && text.contains("ok    4."), "{text}");
    assert!(text.contains("1 passed, 3 failed"), "{text}");
}

/// Runs `program args` in `dir`, and fails the test with its output if it fails.
fn run_in(dir: &std::path::Path, program: &str, args: &[&str], env: &[(&str, std::ffi::OsString)]) -> String {
    let out = std::process::Command::new(program).args(args).current_dir(dir).envs(env.iter().map(|(k, v)| (k, v))).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{program} {args:?} in {}: {text}", dir.display());
    text
}

/// `mapwright plugin new` in `lang`: the project's own steps, as it prints them (setup, test,
/// build), then its examples in the sandbox.
fn scaffold(lang: &str) -> (tempfile::TempDir, std::path::PathBuf, serde_json::Value) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("okta-rules");
    let out = std::process::Command::new(crate::harness::BIN).args(["plugin", "new", "okta-rules", "--lang", lang, "--dir", dir.to_str().unwrap(), "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (tmp, dir, made)
}

fn examples_pass(dir: &std::path::Path, wasm: &std::path::Path) {
    let text = run_in(dir, crate::harness::BIN, &["plugin", "test", "--plugin", wasm.to_str().unwrap(), "--examples", "examples.json"], &[]);
    assert!(text.contains("4 passed, 0 failed"), "{text}");
    let inspect = run_in(dir, crate::harness::BIN, &["plugin", "inspect", wasm.to_str().unwrap()], &[]);
    assert!(inspect.contains("okta-rules"), "named after the project: {inspect}");
}

#[test]
fn plugin_new_rust_tests_and_builds() {
    let (_tmp, dir, made) = scaffold("rust");
    assert_eq!(made["next"][1], "cargo test");
    // Pinned to the workspace's versions, so the crates are the ones already downloaded; its
    // own target directory (this test runs inside `cargo test`, which holds the workspace's).
    std::fs::copy(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target")).join("scaffold");
    let env = [("CARGO_TARGET_DIR", target.clone().into_os_string())];
    let tests = run_in(&dir, "cargo", &["test", "--offline"], &env);
    assert!(tests.contains("test result: ok. 4 passed"), "{tests}");
    run_in(&dir, "cargo", &["build", "--offline", "--release", "--target", "wasm32-wasip2"], &env);
    examples_pass(&dir, &target.join("wasm32-wasip2/release/okta_rules.wasm"));
}

#[test]
fn plugin_new_javascript_tests_and_builds() {
    let (_tmp, dir, made) = scaffold("js");
    assert_eq!(made["next"], json!(["npm ci", "npm test", "npm run build", "mapwright plugin test --plugin okta-rules.wasm --examples examples.json"]));
    // The packages scripts/test.sh installed for the template are in npm's cache.
    run_in(&dir, "npm", &["ci", "--prefer-offline", "--no-audit", "--no-fund"], &[]);
    let tests = run_in(&dir, "npm", &["test"], &[]);
    assert!(tests.contains("# pass 4") && tests.contains("# fail 0"), "{tests}");
    run_in(&dir, "npm", &["run", "build"], &[]);
    examples_pass(&dir, &dir.join("okta-rules.wasm"));

    // A script that loops or allocates without end is stopped by the sandbox's limits, as a
    // Rust plugin is: SpiderMonkey runs inside the component, under the same epoch and limiter.
    let js = std::fs::read_to_string(dir.join("plugin.js")).unwrap();
    let hostile = js.replace(
        "decide(ctx, config, user, proposed, current) {",
        "decide(ctx, config, user, proposed, current) {\n    const u = JSON.parse(user);\n    if (u.userName === \"loop\") for (;;) {}\n    if (u.userName === \"hog\") { const a = []; for (;;) a.push(new Uint8Array(1 << 22).fill(7)); }",
    );
    assert_ne!(hostile, js);
    std::fs::write(dir.join("plugin.js"), hostile).unwrap();
    run_in(&dir, "npm", &["run", "build"], &[]);
    contained(&dir, &dir.join("okta-rules.wasm"));
}

/// A plugin that loops on user `loop` and allocates without end on user `hog` fails those
/// calls at the default limits, naming the limit.
fn contained(dir: &std::path::Path, wasm: &std::path::Path) {
    for (user, limit) in [("loop", "CPU time limit"), ("hog", "memory limit")] {
        let input = dir.join(format!("{user}.json"));
        std::fs::write(&input, format!(r#"{{"userName": "{user}", "emails": [{{"value": "{user}@acme.com", "primary": true}}]}}"#)).unwrap();
        let out = std::process::Command::new(crate::harness::BIN).args(["plugin", "test", "--plugin", wasm.to_str().unwrap(), "--input", input.to_str().unwrap()]).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success() && text.contains(limit), "{user}: {text}");
    }
}

#[test]
fn plugin_new_python_tests_and_builds() {
    let (_tmp, dir, _) = scaffold("python");
    // The componentizer from the virtual environment scripts/test.sh made (requirements.txt
    // of the template, the same pin the project gets).
    let python = std::env::var_os("MW_PYTHON").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"));
    assert!(python.exists(), "needs componentize-py: run scripts/test.sh (it installs it into .venv), or set MW_PYTHON");
    let tests = run_in(&dir, python.to_str().unwrap(), &["-m", "unittest"], &[]);
    assert!(tests.contains("Ran 4 tests") && tests.contains("OK"), "{tests}");
    let bin = python.parent().unwrap();
    let path = std::env::join_paths(std::iter::once(bin.to_path_buf()).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()))).unwrap();
    run_in(&dir, "sh", &["build.sh"], &[("PATH", path.clone())]);
    examples_pass(&dir, &dir.join("okta-rules.wasm"));

    // CPython inside the component, under the same epoch and limiter as any plugin.
    let py = std::fs::read_to_string(dir.join("rules.py")).unwrap();
    let hostile = py.replace(
        "    email = primary_email(user)\n",
        "    if user.get(\"userName\") == \"loop\":\n        while True:\n            pass\n    if user.get(\"userName\") == \"hog\":\n        hoard = []\n        while True:\n            hoard.append(bytearray(1 << 20))\n    email = primary_email(user)\n",
    );
    assert_ne!(hostile, py);
    std::fs::write(dir.join("rules.py"), hostile).unwrap();
    run_in(&dir, "sh", &["build.sh"], &[("PATH", path)]);
    contained(&dir, &dir.join("okta-rules.wasm"));
}
