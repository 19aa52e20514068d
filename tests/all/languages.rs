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
