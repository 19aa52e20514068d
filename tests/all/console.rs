//! The admin console in a real headless browser: Debian's Chromium driven over the W3C
//! WebDriver protocol (ChromeDriver; `scripts/test.sh` installs both). Sign in, create an IdP
//! connection, see a user that connection provisions appear, preview a chain change, try the
//! rules on a pasted payload. Every step is an assertion on the page, not a screenshot.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Client, Server};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A ChromeDriver process and one browser session, both ended on drop.
struct Browser {
    driver: Child,
    base: String,
    http: reqwest::blocking::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        let driver_bin = std::env::var("MAPWRIGHT_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        let chromium = std::env::var("MAPWRIGHT_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        assert!(
            std::path::Path::new(&driver_bin).exists() && std::path::Path::new(&chromium).exists(),
            "the console test needs Chromium and ChromeDriver ({chromium}, {driver_bin}); `bash scripts/test.sh` installs them (apt-get install chromium chromium-driver)"
        );
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(&driver_bin).arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{url}/status")).send().map(|r| !r.status().is_success()).unwrap_or(true) {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap();
        // The flags keep Chromium off the network it has no business with (this machine's is
        // closed: without them it keeps trying Google's hosts).
        let args = [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1280,1000",
        ];
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {"binary": chromium, "args": args}}}});
        let r: Value = http.post(format!("{url}/session")).json(&caps).send().unwrap().json().unwrap();
        let session = r["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no browser session: {r}")).to_string();
        Browser { driver, base: format!("{url}/session/{session}"), http, _profile: profile }
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let req = self.http.request(method.parse().unwrap(), format!("{}{path}", self.base));
        let req = if method == "GET" { req } else { req.json(&body) };
        let r: Value = req.send().unwrap().json().unwrap();
        r["value"].clone()
    }

    fn goto(&self, url: &str) {
        self.call("POST", "/url", json!({"url": url}));
    }

    /// Waits for the first element matching `css` (the page renders after its API calls).
    fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let v = self.call("POST", "/element", json!({"using": "css selector", "value": css}));
            if let Some(id) = v[ELEMENT].as_str() {
                return id.to_string();
            }
            assert!(Instant::now() < deadline, "no element {css} on the page: {}", self.text("body"));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn text(&self, css: &str) -> String {
        let v = self.call("POST", "/element", json!({"using": "css selector", "value": css}));
        match v[ELEMENT].as_str() {
            Some(id) => self.call("GET", &format!("/element/{id}/text"), Value::Null).as_str().unwrap_or_default().to_string(),
            None => String::new(),
        }
    }

    /// Waits until the element's text contains `needle`; returns the text.
    fn wait_text(&self, css: &str, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let t = self.text(css);
            if t.contains(needle) {
                return t;
            }
            assert!(Instant::now() < deadline, "{css} never showed {needle:?}; it shows {t:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn click(&self, css: &str) {
        let id = self.find(css);
        self.call("POST", &format!("/element/{id}/click"), json!({}));
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.call("POST", &format!("/element/{id}/clear"), json!({}));
        self.call("POST", &format!("/element/{id}/value"), json!({"text": text}));
    }

    fn select(&self, css: &str, value: &str) {
        self.find(css);
        self.script("const s = document.querySelector(arguments[0]); s.value = arguments[1]; s.dispatchEvent(new Event('change'));", json!([css, value]));
    }

    /// The value of a form field (a textarea's text is not its element text).
    fn value(&self, css: &str) -> String {
        self.find(css);
        self.script("return document.querySelector(arguments[0]).value", json!([css])).as_str().unwrap_or_default().to_string()
    }

    fn script(&self, script: &str, args: Value) -> Value {
        self.call("POST", "/execute/sync", json!({"script": script, "args": args}))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.http.delete(&self.base).send();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

const TENANT: &str = r#"
[[tenant]]
name = "acme"

[[tenant.idp]]
name = "okta"
kind = "okta"
rate_per_second = 0

[[tenant.idp.chain]]
plugin = "builtin:username"
config = { source = "email", local_part = true }
"#;

#[test]
fn an_operator_signs_in_creates_a_connection_sees_its_user_and_previews_a_change() {
    let s = Server::start_with(TENANT);
    let okta = s.declared("acme", "okta");
    assert_eq!(okta.post("/Users", &json!({"userName": "Jane.Doe@acme.com", "emails": [{"value": "Jane.Doe@acme.com"}]})).status, 201);
    let b = Browser::start();
    b.goto(&format!("{}/console", s.url));

    // Sign in: a wrong token is refused on the page; the admin token gets in.
    b.type_into("#token", "mwa_000000000000000000_nope");
    b.click("#login-btn");
    b.wait_text("#error", "refused");
    b.type_into("#token", &s.admin_token());
    b.click("#login-btn");
    b.wait_text("#tenants", "acme");

    // A new connection: its base URL and token are shown once.
    b.click("#tenants a");
    b.wait_text("#connections-table", "okta");
    b.type_into("#new-idp-name", "entra-prod");
    b.select("#new-idp-kind", "entra");
    b.click("#create-idp-btn");
    b.wait_text("#secret", "Connection entra-prod created");
    let base_url = b.text("#secret code[data-secret='Base URL']");
    let token = b.text("#secret code[data-secret='Token']");
    assert_eq!(base_url, format!("{}/scim/v2/acme/entra-prod", s.url));
    assert!(token.starts_with("mw_"), "{token}");
    assert!(b.text("#connections-table").contains("entra-prod"));

    // The IdP provisions a user through it; the console shows it in the directory.
    let entra = Client::new(base_url, token);
    assert_eq!(entra.post("/Users", &json!({"userName": "kim@acme.com", "active": true})).status, 201);
    b.click("#refresh-users");
    b.wait_text("#users-table", "kim@acme.com");
    assert!(b.text("#users-table tr[data-user='Jane.Doe']").contains("active"), "{}", b.text("#users-table"));
    // …and the audit log names the request that made it, filtered by user.
    b.type_into("#audit-user", "kim@acme.com");
    b.click("#audit-filter button");
    let audit = b.wait_text("#audit-table", "kim@acme.com");
    assert!(audit.contains("create User") && audit.contains("idp:acme/entra-prod"), "{audit}");
    assert!(!audit.contains("Jane.Doe"), "filtered to one user: {audit}");

    // Token rotation: the new token is shown once and works; the old one keeps working for
    // the overlap.
    b.script("window.confirm = () => true;", json!([]));
    b.click("#connections-table tr[data-idp='entra-prod'] button.rotate");
    b.wait_text("#secret", "New token for entra-prod");
    let rotated = b.text("#secret code[data-secret='Token']");
    assert!(rotated.starts_with("mw_") && rotated != entra.token, "{rotated}");
    assert_eq!(entra.with_token(&rotated).get("/Users").status, 200);
    assert_eq!(entra.get("/Users").status, 200, "the previous token works during the overlap");

    // A candidate version lowercases usernames: the preview shows what it would change.
    let file = s.dir.path().join("candidate.toml");
    std::fs::write(&file, "[[entry]]\nplugin = \"builtin:username\"\nconfig = { source = \"email\", local_part = true, case = \"lower\" }\n").unwrap();
    let out = s.cli(&["chain", "set", "acme", "okta", "--file", file.to_str().unwrap(), "--candidate", "--note", "lowercase"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    b.goto(&format!("{}/console/#/t/acme/i/okta", s.url));
    b.wait_text("#active-version", "Version 1");
    b.wait_text("#history-table", "lowercase");
    b.select("#preview-version", "2");
    b.click("#preview-run");
    b.wait_text("#preview-summary", "1 would change");
    let diff = b.wait_text("#preview-table", "Jane.Doe");
    assert!(diff.contains("userName: Jane.Doe → jane.doe"), "{diff}");
    assert!(okta.get("/Users").body["Resources"][0]["userName"] == "Jane.Doe@acme.com", "a preview writes nothing");

    // Try the rules on a pasted payload, active and candidate.
    b.click("#try-run");
    b.wait_text("#try-username", "Jane.Doe");
    assert!(b.text("#try-decisions").contains("username"), "{}", b.text("#try-decisions"));
    b.select("#try-version", "2");
    b.click("#try-run");
    b.wait_text("#try-username", "jane.doe");

    // Names that came from an IdP are text, never markup.
    let r = entra.post("/Users", &json!({"userName": "<img src=x onerror=alert(1)>"}));
    assert_eq!(r.status, 201, "{}", r.body);
    b.goto(&format!("{}/console/#/t/acme", s.url));
    b.wait_text("#users-table", "<img src=x onerror=alert(1)>");
    assert_eq!(b.script("return document.querySelectorAll('#users-table img').length", json!([])), json!(0));

    // Signing out forgets the token.
    b.click("#logout");
    b.find("#login-form");
    assert_eq!(b.script("return sessionStorage.getItem('mapwright-admin-token')", json!([])), Value::Null);
}

#[test]
fn the_console_is_served_with_a_strict_content_security_policy() {
    let s = Server::start_with(TENANT);
    let http = reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = http.get(format!("{}/console", s.url)).send().unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["location"].to_str().unwrap()), (308, "/console/"));
    for (path, ty) in [("/console/", "text/html"), ("/console/console.js", "text/javascript"), ("/console/console.css", "text/css")] {
        let r = http.get(format!("{}{path}", s.url)).send().unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with(ty));
        let csp = r.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    }
    let page = http.get(format!("{}/console/", s.url)).send().unwrap().text().unwrap();
    assert!(!page.contains("<script>") && !page.contains("onclick="), "no inline script for the policy to forbid");
}

/// An operator sees a webhook target that fails on one user: the target needs attention, the
/// event is parked with the receiver's answer; once the receiver takes it, Retry delivers it
/// and the console shows the target delivering again.
#[test]
fn an_operator_sees_a_failing_target_and_retries_its_parked_event() {
    use crate::delivery::{DELIVERY, Receiver, eventually, secret};
    let secret = secret();
    let rx = Receiver::start(&secret);
    rx.control(json!({"fail_user": "poison", "status": 500}));
    let s = Server::start_with(&format!("{DELIVERY}{TENANT}"));
    let admin = s.admin(&s.admin_token());
    let r = admin.post("/tenants/acme/targets", &json!({"name": "hooks", "kind": "webhook", "url": rx.url(), "secret": secret, "settings": {"retry_base_ms": 20, "max_attempts": 2}}));
    assert_eq!(r.status, 201, "{}", r.body);
    let okta = s.declared("acme", "okta");
    okta.user("poison@acme.com");
    okta.user("fine@acme.com");
    eventually(30, "the parked event", || (admin.get("/tenants/acme/targets/hooks").body["dead_letters"].as_array().map(Vec::len) == Some(1)).then_some(()));

    let b = Browser::start();
    b.goto(&format!("{}/console#/t/acme", s.url));
    b.type_into("#token", &s.admin_token());
    b.click("#login-btn");
    b.wait_text("#targets-table", "hooks");
    assert_eq!(b.text("#targets-table tr[data-target='hooks'] .parked"), "1");
    assert!(b.text("#targets-table tr[data-target='hooks']").contains("needs attention"), "{}", b.text("#targets-table"));
    b.wait_text("#dead-letters", "HTTP 500");
    assert!(b.text("#dead-letters").contains("user.created"));

    rx.control(json!({"fail_user": null}));
    b.click("#dead-letters .retry");
    eventually(30, "the retried event at the receiver", || rx.events().iter().any(|e| e["body"]["data"]["user"]["userName"] == "poison").then_some(()));
    // The page reloads its targets after the decision; once delivered, the list is empty.
    b.goto(&format!("{}/console#/t/acme", s.url));
    b.wait_text("#targets-table", "delivering");
    assert!(b.script("return document.querySelector('#dead-letters') === null", json!([])) == json!(true));

    // What the target receives: a candidate shape version, previewed and activated.
    let entries = json!([{"plugin": "builtin:shape", "config": {"users": {"set": {"userType": "Employee"}}}}]);
    let r = admin.post("/tenants/acme/targets/hooks/shape", &json!({"entries": entries, "candidate": true, "note": "typed users"}));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(b.text("#targets-table tr[data-target='hooks'] .shape"), "none");
    b.click("#targets-table tr[data-target='hooks'] .shaping");
    b.wait_text("#shape-versions", "typed users");
    b.click("#shape-versions .shape-preview");
    b.wait_text("#shape-rows", "userType = \"Employee\"");
    let rows = b.text("#shape-rows");
    assert!(rows.contains("poison") && rows.contains("fine") && b.text("#shape-preview").contains(": 2 of "), "{}", b.text("#shape-preview"));
    b.click("#shape-versions .shape-activate");
    b.wait_text("#targets-table tr[data-target='hooks'] .shape", "v1");
}

/// The rule editor: a draft started from the active version, an entry added and configured
/// as a form, a bad configuration shown at its entry, tried on a payload and on the
/// connection's users, previewed, saved, activated; the history says who changed what.
#[test]
fn an_operator_edits_the_rules_tries_them_on_real_users_and_activates_them() {
    let s = Server::start_with(TENANT);
    let okta = s.declared("acme", "okta");
    for u in ["Jane.Doe@acme.com", "Bob.Smith@acme.com"] {
        assert_eq!(okta.post("/Users", &json!({"userName": u, "emails": [{"value": u}]})).status, 201);
    }
    let b = Browser::start();
    b.goto(&format!("{}/console", s.url));
    b.type_into("#token", &s.admin_token());
    b.click("#login-btn");
    b.wait_text("#tenants", "acme");
    b.goto(&format!("{}/console/#/t/acme/i/okta", s.url));

    // The draft starts as the active version: one username entry.
    let config = b.value("#editor-entries li[data-entry='0'] textarea.config");
    assert!(config.contains("\"local_part\": true"), "{config}");
    assert_eq!(b.script("return document.querySelectorAll('#editor-entries li').length", json!([])), json!(1));
    // Lower-case names: edited as text.
    b.type_into("#editor-entries li[data-entry='0'] textarea.config", r#"{"source": "email", "local_part": true, "case": "lower"}"#);
    // A second entry: an expression plugin configured through the form, first with a typo.
    b.click("#editor-add");
    b.select("#editor-entries li[data-entry='1'] select.plugin", "builtin:expr");
    b.click("#editor-entries li[data-entry='1'] button.as-form");
    b.click("#editor-entries li[data-entry='1'] .add-key");
    b.type_into("#editor-entries li[data-entry='1'] .config-form tr:last-child input.key", "memberships");
    b.type_into("#editor-entries li[data-entry='1'] .config-form tr:last-child input.value", r#"[{"groups": ["app-users"], "when": "user.active =="}]"#);
    b.click("#editor-sample-run");
    // Refused by the plugin: shown at the entry, not elsewhere.
    let err = b.wait_text("#editor-entries li[data-entry='1'] .entry-error", "entry 2");
    assert!(err.contains("memberships"), "{err}");
    assert_eq!(b.text("#editor-entries li[data-entry='0'] .entry-error"), "");
    b.type_into("#editor-entries li[data-entry='1'] .config-form tr:last-child input.value", r#"[{"groups": ["app-users"]}]"#);

    // Tried on the pasted payload, then on the connection's users: nothing is written.
    b.click("#editor-try");
    b.wait_text("#editor-try-username", "jane.doe");
    assert_eq!(b.text("#editor-try-groups"), "app-users");
    b.click("#editor-sample-run");
    let sample = b.wait_text("#editor-sample", "bob.smith");
    assert!(sample.contains("Jane.Doe") && sample.contains("jane.doe") && sample.contains("changed") && sample.contains("app-users"), "{sample}");
    assert!(sample.contains("username") && sample.contains("expr"), "the decisions: {sample}");
    // The whole directory.
    b.click("#editor-preview-run");
    b.wait_text("#editor-preview-summary", "2 would change");
    assert_eq!(okta.get("/Users").body["Resources"][0]["userName"], "Jane.Doe@acme.com");
    assert_eq!(crate::harness::directory_entry(&s.db(), "acme", "Jane.Doe").map(|e| e.user_name), Some("Jane.Doe".into()), "nothing written");

    // Saved as a candidate, then activated: the history says what changed.
    b.type_into("#editor-note", "lower-case names; app-users for everyone");
    b.click("#editor-save");
    b.wait_text("#editor-saved", "version 2");
    b.click("#editor-activate");
    // The saved candidate itself is activated, not stored again.
    b.wait_text("#active-version", "Version 2");
    assert!(b.text("#history-table tr[data-version='3']").is_empty());
    let history = b.wait_text("#history-table tr[data-version='2']", "added entry 2: expr");
    assert!(history.contains("entry 1 (username): configuration changed (case)") && history.contains("admin:") && history.contains("app-users for everyone"), "{history}");
    // Live: the next create gets the new rules.
    let r = okta.post("/Users", &json!({"userName": "Al.X@acme.com", "emails": [{"value": "Al.X@acme.com"}]}));
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(crate::harness::directory_entry(&s.db(), "acme", "al.x").is_some());
}
