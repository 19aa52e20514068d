//! Delivery into applications, against real receivers started here: scim2-server (PyPI, a
//! SCIM server nobody here wrote) as a SCIM target, and a webhook receiver that verifies every
//! delivery with the `standardwebhooks` PyPI library. `scripts/test.sh` installs both into
//! `.venv` (or set `MW_PYTHON` to a Python that has them).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Client, Server};

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("MW_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(venv.exists(), "the delivery tests need scim2-server and standardwebhooks: run scripts/test.sh (it installs them into .venv), or set MW_PYTHON");
    venv
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `check` until it returns `Some`, for up to `secs` seconds.
pub(crate) fn eventually<T>(secs: u64, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// scim2-server serving one in-memory SCIM service provider per tenant path (`/acme/v2`).
pub(crate) struct Scim2Server {
    child: Child,
    port: u16,
    pub(crate) token: String,
}

impl Drop for Scim2Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Scim2Server {
    pub(crate) fn start() -> Scim2Server {
        Scim2Server::start_on(free_port())
    }

    /// Stops it (everything it held is gone: it keeps it in memory) and starts it again on
    /// the same port.
    fn restart_on(old: Scim2Server, port: u16) -> Scim2Server {
        drop(old);
        Scim2Server::start_on(port)
    }

    fn start_on(port: u16) -> Scim2Server {
        let token = "scim2-target-token".to_string();
        let bin = python().with_file_name("scim2-server");
        let child = Command::new(bin)
            .args(["--hostname", "127.0.0.1", "--port", &port.to_string(), "--bearer-token", &token, "--dynamic-tenants"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting scim2-server");
        let s = Scim2Server { child, port, token };
        let probe = format!("{}/ServiceProviderConfig", s.base("probe"));
        let http = reqwest::blocking::Client::new();
        eventually(30, "scim2-server to start", || http.get(&probe).bearer_auth(&s.token).send().ok().filter(|r| r.status().is_success()).map(|_| ()));
        s
    }

    pub(crate) fn base(&self, tenant: &str) -> String {
        format!("http://127.0.0.1:{}/{tenant}/v2", self.port)
    }

    pub(crate) fn client(&self, tenant: &str) -> Client {
        Client::new(self.base(tenant), self.token.clone())
    }

    /// Every user of a tenant by userName.
    pub(crate) fn users(&self, tenant: &str) -> HashMap<String, Value> {
        let r = self.client(tenant).get("/Users?count=1000");
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["Resources"].as_array().cloned().unwrap_or_default().into_iter().map(|u| (u["userName"].as_str().unwrap_or_default().to_string(), u)).collect()
    }

    /// Every group of a tenant: displayName -> member ids.
    pub(crate) fn groups(&self, tenant: &str) -> HashMap<String, HashSet<String>> {
        let r = self.client(tenant).get("/Groups?count=1000");
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["Resources"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|g| {
                let members = g["members"].as_array().into_iter().flatten().filter_map(|m| m["value"].as_str().map(str::to_string)).collect();
                (g["displayName"].as_str().unwrap_or_default().to_string(), members)
            })
            .collect()
    }
}

/// The webhook receiver (`tests/delivery/webhook_receiver.py`).
pub(crate) struct Receiver {
    child: Child,
    port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    pub(crate) fn start(secret: &str) -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("events.jsonl");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/delivery/webhook_receiver.py");
        let mut child = Command::new(python())
            .args([script.to_str().unwrap(), "--secret", secret, "--out", out.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the webhook receiver");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
        let port = line.trim().strip_prefix("listening on ").and_then(|p| p.parse().ok()).expect("the receiver's port");
        Receiver { child, port, out, _dir: dir }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    pub(crate) fn control(&self, body: Value) {
        let r = reqwest::blocking::Client::new().post(format!("http://127.0.0.1:{}/control", self.port)).body(body.to_string()).send().unwrap();
        assert_eq!(r.status().as_u16(), 204);
    }

    /// What it accepted, in arrival order.
    pub(crate) fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// Deliveries it refused because their signature did not verify.
    fn rejected(&self) -> usize {
        std::fs::read_to_string(self.out.with_extension("jsonl.rejected")).unwrap_or_default().lines().count()
    }
}

pub(crate) fn secret() -> String {
    use base64::Engine;
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).unwrap();
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(key))
}

pub(crate) const DELIVERY: &str = "[delivery]\nallow_private_targets = true\n";

pub(crate) const TENANTS: &str = r#"
[[tenant]]
name = "acme"

# Okta: jane.doe@acme.com becomes jdoe, "Dev users" becomes software_dev, everyone gets
# app-users, department moves to a custom extension.
[[tenant.idp]]
name = "okta"
kind = "okta"
rate_per_second = 0

[[tenant.idp.chain]]
plugin = "builtin:username"
config = { source = "email", local_part = true, replace = [{ pattern = '^(.)[^.]*\.(.+)$', with = "$1$2" }], case = "lower" }

[[tenant.idp.chain]]
plugin = "builtin:groups"
config = { include = ['^eng-', '^Dev users$'], map = { "dev users" = "software_dev" }, rename = [{ pattern = '^eng-', with = "" }], defaults = { all_users = ["app-users"] } }

[[tenant.idp.chain]]
plugin = "builtin:attributes"
config = { mappings = [{ from = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", to = "urn:mapwright:custom:User:department" }] }

# Entra: usernames from the name.
[[tenant.idp]]
name = "entra"
kind = "entra"
rate_per_second = 0

[[tenant.idp.chain]]
plugin = "builtin:username"
config = { source = "template", template = "{name.givenName|lower}.{name.familyName|lower}", transliterate = true, domain = "acme.io" }

[[tenant.idp.chain]]
plugin = "builtin:groups"
config = { defaults = { all_users = ["app-users"] } }

[[tenant]]
name = "globex"

[[tenant.idp]]
name = "scim"
kind = "generic"
rate_per_second = 0

# Another Mapwright tenant as a SCIM target of acme's directory.
[[tenant]]
name = "mirror"

[[tenant.idp]]
name = "in"
kind = "generic"
rate_per_second = 0
"#;

pub(crate) fn okta_user(okta: &Client, email: &str, department: &str) -> String {
    let r = okta.post("/Users", &json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "userName": email, "active": true, "name": {"givenName": "G", "familyName": "F"},
        "emails": [{"value": email, "type": "work", "primary": true}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": department},
    }));
    assert_eq!(r.status, 201, "{}", r.body);
    r.id()
}

pub(crate) fn cli_ok(s: &Server, args: &[&str]) -> String {
    let out = s.cli(args);
    assert!(out.status.success(), "{args:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// IdP traffic through a three-plugin chain (Okta-style) and a two-plugin one (Entra-style)
/// arrives in scim2-server as the directory has it: mapped usernames, mapped group names,
/// memberships, deactivations; a second tenant's target at the same time gets only its own.
#[test]
fn a_scim_target_gets_the_mapped_directory() {
    let scim = Scim2Server::start();
    let s = Server::start_with(&format!("{DELIVERY}{TENANTS}"));
    for tenant in ["acme", "globex"] {
        cli_ok(&s, &["target", "add", tenant, "app", "--kind", "scim", "--url", &scim.base(tenant), "--token", &scim.token, "--retry-base-ms", "50"]);
    }
    // A second SCIM target of acme at the same time: another Mapwright tenant's connection.
    let mirror = s.declared("mirror", "in");
    let mirror_url = format!("{}/scim/v2/mirror/in", s.url);
    let mirror_token = s.banner.iter().skip_while(|l| !l.starts_with("IdP connection mirror/in ")).find_map(|l| l.split("store it now): ").nth(1)).unwrap().trim().to_string();
    cli_ok(&s, &["target", "add", "acme", "mirror", "--kind", "scim", "--url", &mirror_url, "--token", &mirror_token, "--retry-base-ms", "50"]);
    // Each target reconciles first (nothing to do yet), then follows the feed.
    for (tenant, target) in [("acme", "app"), ("globex", "app"), ("acme", "mirror")] {
        eventually(30, "the first reconciliation", || {
            let v: Value = serde_json::from_str(&cli_ok(&s, &["target", "show", tenant, target, "--json"])).unwrap();
            (v["needs_sync"] == json!(false)).then_some(())
        });
    }
    let (okta, entra, globex) = (s.declared("acme", "okta"), s.declared("acme", "entra"), s.declared("globex", "scim"));
    let jane = okta_user(&okta, "jane.doe@acme.com", "Engineering");
    let bob = okta_user(&okta, "bob.smith@acme.com", "Sales");
    okta.group("Dev users", &[&jane]);
    okta.group("eng-platform", &[&jane, &bob]);
    okta.group("Marketing", &[&bob]);
    let r = entra.post("/Users", &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "zoe@acme.onmicrosoft.com", "name": {"givenName": "Zoë", "familyName": "Ångström"}, "active": true}));
    assert_eq!(r.status, 201, "{}", r.body);
    globex.user("wile@globex.com");
    // Okta deactivates bob with a PUT.
    let mut body = okta.get(&format!("/Users/{bob}")).body;
    body["active"] = json!(false);
    assert_eq!(okta.put(&format!("/Users/{bob}"), &body).status, 200);

    let users = eventually(30, "the acme users in the target", || {
        let u = scim.users("acme");
        (u.len() == 3 && u.get("bsmith").is_some_and(|b| b["active"] == json!(false))).then_some(u)
    });
    assert!(users.contains_key("jdoe") && users.contains_key("zoe.angstrom@acme.io"), "{users:?}");
    assert_eq!(users["jdoe"]["active"], json!(true));
    let id = |name: &str| users[name]["id"].as_str().unwrap().to_string();
    let groups = eventually(30, "the acme groups in the target", || {
        let g = scim.groups("acme");
        (g.get("app-users").is_some_and(|m| m.len() == 3) && g.get("platform").is_some_and(|m| m.len() == 2)).then_some(g)
    });
    assert_eq!(groups["software_dev"], HashSet::from([id("jdoe")]));
    assert_eq!(groups["platform"], HashSet::from([id("jdoe"), id("bsmith")]));
    assert!(!groups.contains_key("Marketing") && !groups.contains_key("Dev users"), "groups the rules leave out stay out: {groups:?}");
    let globex_users = eventually(30, "the globex user in its own target", || {
        let u = scim.users("globex");
        (!u.is_empty()).then_some(u)
    });
    assert_eq!(globex_users.keys().collect::<Vec<_>>(), ["wile@globex.com"]);
    // The mirror tenant got acme's directory as acme's rules made it.
    let mirrored = eventually(30, "acme's users in the mirror tenant", || {
        let names: HashSet<String> = mirror.names("count=100").into_iter().collect();
        (names.len() == 3).then_some(names)
    });
    assert_eq!(mirrored, HashSet::from(["jdoe".to_string(), "bsmith".to_string(), "zoe.angstrom@acme.io".to_string()]));
    eventually(30, "acme's groups in the mirror tenant", || {
        let r = mirror.get("/Groups?filter=displayName%20eq%20%22software_dev%22");
        r.body["Resources"][0]["members"].as_array().is_some_and(|m| m.len() == 1).then_some(())
    });

    // The target's state: nothing behind, nothing parked, everything recorded as delivered.
    let status: Value = serde_json::from_str(&cli_ok(&s, &["target", "show", "acme", "app", "--json"])).unwrap();
    assert_eq!((status["lag_events"].as_u64(), status["dead_letters"].as_array().map(Vec::len)), (Some(0), Some(0)), "{status}");
    assert!(status["delivered"].as_i64().unwrap() >= 10 && status["last_error"].is_null(), "{status}");
}

/// Every change reaches the webhook receiver once, signed (verified by the Standard Webhooks
/// library), in feed order, with no gap; a rotated secret signs beside the old one.
#[test]
fn a_webhook_target_gets_every_change_signed_and_in_order() {
    let secret = secret();
    let rx = Receiver::start(&secret);
    let s = Server::start_with(&format!("{DELIVERY}{TENANTS}"));
    let admin = s.admin(&s.admin_token());
    let r = admin.post("/tenants/acme/targets", &json!({"name": "hooks", "kind": "webhook", "url": rx.url(), "secret": secret, "settings": {"retry_base_ms": 50}}));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["secret"], Value::Null, "a given secret is not echoed");
    let start = r.body["target"]["cursor"].as_i64().unwrap();
    let okta = s.declared("acme", "okta");
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(okta_user(&okta, &format!("user.{i}@acme.com"), "Engineering"));
    }
    okta.group("Dev users", &ids[..5].iter().map(String::as_str).collect::<Vec<_>>());
    for id in &ids[..3] {
        assert_eq!(okta.patch(&format!("/Users/{id}"), json!([{"op": "replace", "path": "active", "value": false}])).status, 200);
    }
    assert_eq!(okta.delete(&format!("/Users/{}", ids[19])).status, 204);

    // What the feed says happened after the target was added: the receiver must have all of it.
    let feed_token = admin.post("/tenants/acme/tokens", &json!({"name": "feed"})).body["token"].as_str().unwrap().to_string();
    let feed = Client::new(format!("{}/directory/v1/acme", s.url), feed_token);
    let expected: Vec<String> = feed.get(&format!("/changes?since={start}&limit=1000")).body["changes"].as_array().unwrap().iter().map(|c| c["cursor"].as_str().unwrap().to_string()).collect();
    assert!(expected.len() > 40, "{}", expected.len());
    let events = eventually(30, "every change at the receiver", || {
        let e = rx.events();
        (e.len() >= expected.len()).then_some(e)
    });
    assert_eq!(rx.rejected(), 0, "every signature verified");
    let got: Vec<String> = events.iter().map(|e| e["body"]["data"]["cursor"].as_str().unwrap().to_string()).collect();
    assert_eq!(got, expected, "every change once, in feed order");
    for e in &events {
        assert_eq!(e["id"], json!(format!("msg_{}", e["body"]["data"]["cursor"].as_str().unwrap())), "the webhook id is the feed position");
        assert_eq!(e["body"]["type"], e["body"]["data"]["type"]);
    }
    let kinds: HashSet<&str> = events.iter().map(|e| e["body"]["type"].as_str().unwrap()).collect();
    for k in ["user.created", "user.updated", "user.deleted", "group.created", "membership.added"] {
        assert!(kinds.contains(k), "{k} in {kinds:?}");
    }
    let jane = events.iter().find(|e| e["body"]["type"] == "user.created").unwrap();
    assert_eq!(jane["body"]["data"]["user"]["urn:mapwright:custom:User"]["department"], "Engineering", "the state the change left, after the rules");

    // Rotation: the receiver still holding the old secret verifies, then moves to the new one.
    let r = admin.post("/tenants/acme/targets/hooks/rotate-secret", &json!({"overlap_secs": 600}));
    assert_eq!(r.status, 200, "{}", r.body);
    let new_secret = r.body["secret"].as_str().unwrap().to_string();
    // The server takes the new secret within its poll of the targets (a quarter second).
    let mut n = 0;
    eventually(30, "a delivery signed with both secrets during the overlap", || {
        n += 1;
        okta_user(&okta, &format!("after.rotation.{n}@acme.com"), "Ops");
        std::thread::sleep(Duration::from_millis(300));
        rx.events().last().is_some_and(|e| e["signatures"].as_u64() == Some(2)).then_some(())
    });
    rx.control(json!({"secret": new_secret}));
    let before = rx.events().len();
    okta_user(&okta, "new.secret@acme.com", "Ops");
    eventually(30, "a delivery verified with the new secret", || (rx.events().len() > before).then_some(()));
    assert_eq!(rx.rejected(), 0);
}

/// A target URL to a metadata address, or that is no URL, is refused with a clear error; a
/// private address only with the switch.
#[test]
fn target_urls_are_checked() {
    let s = Server::start_with(TENANTS);
    for (url, why) in [("http://169.254.169.254/latest", "link-local"), ("not a url", "not a URL"), ("http://127.0.0.1:9/scim", "allow_private_targets")] {
        let out = s.cli(&["target", "add", "acme", "t", "--kind", "scim", "--url", url, "--token", "x"]);
        assert!(!out.status.success(), "{url}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{url}: {err}");
    }
    let admin = s.admin(&s.admin_token());
    let r = admin.post("/tenants/acme/targets", &json!({"name": "meta", "kind": "webhook", "url": "http://[fd00:ec2::254]/"}));
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(admin.get("/tenants/acme/targets").body.as_array().unwrap().is_empty());
}

/// The events a receiver accepted, deduplicated by webhook id (deliveries are at least once),
/// as feed positions in arrival order.
pub(crate) fn positions(events: &[Value]) -> Vec<i64> {
    let mut seen = HashSet::new();
    events.iter().filter(|e| seen.insert(e["id"].as_str().unwrap().to_string())).map(|e| e["body"]["data"]["cursor"].as_str().unwrap().parse().unwrap()).collect()
}

/// The tenant's feed positions after `since`, as the directory API gives them.
pub(crate) fn feed_positions(s: &Server, admin_token: &str, tenant: &str, since: i64) -> Vec<i64> {
    let admin = s.admin(admin_token);
    let token = admin.post(&format!("/tenants/{tenant}/tokens"), &json!({"name": format!("feed-{}", free_port())})).body["token"].as_str().unwrap().to_string();
    let feed = Client::new(format!("{}/directory/v1/{tenant}", s.url), token);
    let mut out = Vec::new();
    let mut cursor = since;
    loop {
        let r = feed.get(&format!("/changes?since={cursor}&limit=1000"));
        let changes = r.body["changes"].as_array().unwrap().clone();
        if changes.is_empty() {
            return out;
        }
        out.extend(changes.iter().map(|c| c["cursor"].as_str().unwrap().parse::<i64>().unwrap()));
        cursor = r.body["cursor"].as_str().unwrap().parse().unwrap();
    }
}

pub(crate) fn add_webhook(s: &Server, rx: &Receiver, name: &str, secret: &str, settings: Value) -> i64 {
    let r = s.admin(&s.admin_token()).post("/tenants/acme/targets", &json!({"name": name, "kind": "webhook", "url": rx.url(), "secret": secret, "settings": settings}));
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["target"]["cursor"].as_i64().unwrap()
}

fn status(s: &Server, target: &str) -> Value {
    s.admin(&s.admin_token()).get(&format!("/tenants/acme/targets/{target}")).body
}

/// A receiver down while a thousand changes happen gets every one of them once it is back, in
/// order; a receiver answering 429 with Retry-After is waited for; nothing is parked for it.
#[test]
fn a_target_down_for_a_while_misses_nothing() {
    let secret = secret();
    let rx = Receiver::start(&secret);
    let s = Server::start_with(&format!("{DELIVERY}{TENANTS}"));
    let start = add_webhook(&s, &rx, "hooks", &secret, json!({"retry_base_ms": 50, "retry_max_ms": 400}));
    let okta = s.declared("acme", "okta");
    rx.control(json!({"down": true}));
    let mut ids = Vec::new();
    for i in 0..500 {
        ids.push(okta.user(&format!("u{i}@acme.com")));
    }
    let down = status(&s, "hooks");
    assert!(down["lag_events"].as_u64().unwrap() > 900, "{down}");
    let metric = |name: &str| -> i64 {
        let text = reqwest::blocking::Client::new().get(format!("{}/metrics", s.url)).bearer_auth(s.admin_token()).send().unwrap().text().unwrap();
        text.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse::<f64>().ok()).map(|v| v as i64).unwrap_or(0)
    };
    assert!(metric(r#"mapwright_delivery_lag_events{tenant="acme",target="hooks"}"#) > 900);
    assert!(metric(r#"mapwright_delivery_events_total{tenant="acme",target="hooks",outcome="failed"}"#) > 0);
    assert!(down["last_error"][1].as_str().unwrap_or_default().contains("503"), "the status says why: {down}");
    assert!(rx.events().is_empty());
    rx.control(json!({"down": false, "busy": 3, "retry_after": 1}));
    let expected = feed_positions(&s, &s.admin_token(), "acme", start);
    assert!(expected.len() >= 1000, "{}", expected.len());
    eventually(60, "every change after the target came back", || (positions(&rx.events()) == expected).then_some(()));
    let after = status(&s, "hooks");
    assert_eq!((after["lag_events"].as_u64(), after["parked"].as_i64()), (Some(0), Some(0)), "{after}");
    assert_eq!(metric(r#"mapwright_delivery_lag_events{tenant="acme",target="hooks"}"#), 0);
    assert!(metric(r#"mapwright_delivery_events_total{tenant="acme",target="hooks",outcome="delivered"}"#) >= 1000);
    assert_eq!(rx.rejected(), 0);
}

/// A target that refuses every event about one user: those park (the later ones held behind
/// the first, in order), everything else flows; retried once the target takes them, they go
/// in order; a skip releases what was held.
#[test]
fn a_change_the_target_refuses_parks_and_the_others_flow() {
    let secret = secret();
    let rx = Receiver::start(&secret);
    let s = Server::start_with(&format!("{DELIVERY}{TENANTS}"));
    let start = add_webhook(&s, &rx, "hooks", &secret, json!({"retry_base_ms": 20, "max_attempts": 3}));
    let okta = s.declared("acme", "okta");
    rx.control(json!({"fail_user": "poison", "status": 500}));
    let poison = okta.user("poison@acme.com");
    for i in 0..10 {
        okta.user(&format!("ok{i}@acme.com"));
    }
    assert_eq!(okta.patch(&format!("/Users/{poison}"), json!([{"op": "replace", "path": "active", "value": false}])).status, 200);
    let all = feed_positions(&s, &s.admin_token(), "acme", start);
    // Its creation and its membership of app-users park; its deactivation is held behind its
    // creation.
    let dead = eventually(30, "the poisoned user's events parked and held", || {
        let d = status(&s, "hooks")["dead_letters"].as_array().cloned().unwrap_or_default();
        (d.len() == 3).then_some(d)
    });
    let state = |d: &Value| d["state"].as_str().unwrap().to_string();
    assert_eq!(dead.iter().map(state).collect::<Vec<_>>(), ["parked", "parked", "held"], "{dead:?}");
    assert_eq!(dead[0]["attempts"], 3);
    assert!(dead[0]["answer"].as_str().unwrap().contains("500"), "{dead:?}");
    assert_eq!(dead[2]["resource"], dead[0]["resource"], "held behind the parked event of the same user");
    let parked: Vec<i64> = dead.iter().map(|d| d["seq"].as_i64().unwrap()).collect();
    let flowing: Vec<i64> = all.iter().copied().filter(|p| !parked.contains(p)).collect();
    eventually(30, "everything else", || (positions(&rx.events()) == flowing).then_some(()));

    // The target takes them again: a retry of every parked event delivers them, and what was
    // held behind them, each resource in its order.
    let admin = s.admin(&s.admin_token());
    rx.control(json!({"fail_user": null}));
    let r = admin.post("/tenants/acme/targets/hooks/dead-letters/retry", &json!({}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body.as_array().unwrap().len(), 2, "the two parked ones: {}", r.body);
    eventually(30, "the parked events and the held one delivered", || (positions(&rx.events()).len() == all.len()).then_some(()));
    let got = positions(&rx.events());
    let at = |seq: i64| got.iter().position(|p| *p == seq).unwrap();
    assert!(at(parked[0]) < at(parked[2]), "the user's creation before its deactivation: {got:?}");
    assert!(status(&s, "hooks")["dead_letters"].as_array().unwrap().is_empty());
    let id = dead[0]["id"].as_i64().unwrap();
    assert_eq!(admin.post("/tenants/acme/targets/hooks/dead-letters/skip", &json!({"ids": [id]})).status, 400, "nothing left to skip");
}

/// SIGKILL in the middle of delivery, then a restart: every change arrives (at least once; the
/// webhook id deduplicates), none missing, in order.
#[test]
fn a_crash_in_the_middle_of_delivery_loses_nothing() {
    let secret = secret();
    let rx = Receiver::start(&secret);
    let s = Server::start_with(&format!("{DELIVERY}{TENANTS}"));
    let start = add_webhook(&s, &rx, "hooks", &secret, json!({"retry_base_ms": 50}));
    let okta = s.declared("acme", "okta");
    for i in 0..300 {
        okta.user(&format!("c{i}@acme.com"));
    }
    eventually(30, "delivery under way", || (!rx.events().is_empty()).then_some(()));
    let token = s.banner.iter().find_map(|l| l.split("store it now): ").nth(1)).unwrap().trim().to_string();
    let admin_token = s.admin_token();
    let s = s.crash_and_restart(&format!("{DELIVERY}{TENANTS}"));
    // The token the first start printed (a restart prints none).
    let okta = Client::new(format!("{}/scim/v2/acme/okta", s.url), token);
    for i in 300..320 {
        okta.user(&format!("c{i}@acme.com"));
    }
    let expected = feed_positions(&s, &admin_token, "acme", start);
    eventually(60, "every change after the restart", || (positions(&rx.events()) == expected).then_some(()));
}

/// scim2-server restarted (it keeps everything in memory: the target's data is gone) is
/// repaired by a reconciliation: what the dry run announces is what the sync makes.
#[test]
fn a_wiped_scim_target_is_repaired_by_reconciliation() {
    let mut scim = Scim2Server::start();
    let s = Server::start_with(&format!("{DELIVERY}{TENANTS}"));
    cli_ok(&s, &["target", "add", "acme", "app", "--kind", "scim", "--url", &scim.base("acme"), "--token", &scim.token, "--retry-base-ms", "50"]);
    let okta = s.declared("acme", "okta");
    let jane = okta_user(&okta, "jane.doe@acme.com", "Engineering");
    let bob = okta_user(&okta, "bob.smith@acme.com", "Sales");
    okta.group("Dev users", &[&jane, &bob]);
    eventually(30, "the directory in the target", || (scim.groups("acme").get("software_dev").is_some_and(|m| m.len() == 2)).then_some(()));

    // Wiped: scim2-server starts again empty, on the same port.
    let port = scim.port;
    scim = Scim2Server::restart_on(scim, port);
    assert!(scim.users("acme").is_empty());
    let dry: Value = serde_json::from_str(&cli_ok(&s, &["target", "sync", "acme", "app", "--dry-run", "--json"])).unwrap();
    let actions: Vec<&str> = dry["actions"].as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap()).collect();
    assert_eq!(actions.iter().filter(|a| **a == "create-user").count(), 2, "{dry}");
    assert_eq!(actions.iter().filter(|a| **a == "create-group").count(), 2, "{dry}");
    assert!(scim.users("acme").is_empty(), "a dry run writes nothing");
    cli_ok(&s, &["target", "sync", "acme", "app"]);
    let groups = eventually(30, "the target repaired", || {
        let g = scim.groups("acme");
        (g.get("software_dev").is_some_and(|m| m.len() == 2) && g.get("app-users").is_some_and(|m| m.len() == 2)).then_some(g)
    });
    let users = scim.users("acme");
    assert_eq!(users.keys().cloned().collect::<HashSet<_>>(), HashSet::from(["jdoe".to_string(), "bsmith".to_string()]));
    assert_eq!(groups["software_dev"], users.values().map(|u| u["id"].as_str().unwrap().to_string()).collect::<HashSet<_>>());
    let again: Value = serde_json::from_str(&cli_ok(&s, &["target", "sync", "acme", "app", "--dry-run", "--json"])).unwrap();
    assert_eq!(again["actions"], json!([]), "nothing left to do: {again}");
    // The feed goes on after the repair.
    assert_eq!(okta.patch(&format!("/Users/{bob}"), json!([{"op": "replace", "path": "active", "value": false}])).status, 200);
    eventually(30, "the deactivation", || (scim.users("acme")["bsmith"]["active"] == json!(false)).then_some(()));
}

/// A target that never answers, redirects, or answers with 100 MB costs that target only:
/// another target of the tenant gets every change, and the IdP's requests do not wait.
#[test]
fn a_misbehaving_target_costs_only_itself() {
    let secret = secret();
    let good = Receiver::start(&secret);
    let s = Server::start_with(&format!("{DELIVERY}{TENANTS}"));
    let start = add_webhook(&s, &good, "good", &secret, json!({"retry_base_ms": 50}));
    let mut bad = Vec::new();
    for mode in ["hang", "huge", "redirect"] {
        let rx = Receiver::start(&secret);
        rx.control(json!({"misbehave": mode}));
        add_webhook(&s, &rx, mode, &secret, json!({"retry_base_ms": 50, "max_attempts": 2, "timeout_ms": 1000}));
        bad.push(rx);
    }
    let okta = s.declared("acme", "okta");
    let started = Instant::now();
    for i in 0..30 {
        okta.user(&format!("m{i}@acme.com"));
    }
    assert!(started.elapsed() < Duration::from_secs(15), "the IdP's requests never wait on a target");
    let expected = feed_positions(&s, &s.admin_token(), "acme", start);
    eventually(30, "the good target's changes", || (positions(&good.events()) == expected).then_some(()));
    for mode in ["hang", "huge", "redirect"] {
        let st = eventually(30, "the bad target's failure to show", || {
            let st = status(&s, mode);
            st["last_error"].is_array().then_some(st)
        });
        let why = st["last_error"][1].as_str().unwrap().to_string();
        match mode {
            "hang" => assert!(why.contains("timed out") || why.contains("timeout"), "{why}"),
            "huge" => assert!(why.contains("500") && why.len() < 2000, "the answer is cut: {why}"),
            _ => assert!(why.contains("redirect"), "{why}"),
        }
    }
    assert!(bad.iter().all(|rx| rx.events().is_empty()));
}

/// A SCIM target behind OAuth 2.0 client credentials: the token is fetched with the client's
/// credentials, renewed when it expires, and wrong credentials show in the target's state.
#[test]
fn a_scim_target_with_oauth_client_credentials() {
    let scim = Scim2Server::start();
    let oauth = Receiver::start(&secret());
    oauth.control(json!({"oauth": {"client": "mapwright", "secret": "s3cret", "token": scim.token, "expires_in": 31}}));
    let s = Server::start_with(&format!("{DELIVERY}{TENANTS}"));
    let token_url = format!("http://127.0.0.1:{}/token", oauth.port);
    let add = |name: &str, secret: &str| {
        cli_ok(&s, &["target", "add", "acme", name, "--kind", "scim", "--url", &scim.base(name), "--oauth-token-url", &token_url, "--oauth-client-id", "mapwright", "--oauth-client-secret", secret, "--retry-base-ms", "50"]);
    };
    add("good", "s3cret");
    add("wrong", "guess");
    let okta = s.declared("acme", "okta");
    // The token lives one second (31 s less the 30 s kept in reserve): users over three
    // seconds need it renewed.
    for i in 0..6 {
        okta.user(&format!("o{i}@acme.com"));
        std::thread::sleep(Duration::from_millis(500));
    }
    eventually(30, "the users in the OAuth target", || (scim.users("good").len() == 6).then_some(()));
    let calls: Vec<Value> = std::fs::read_to_string(oauth.out.with_extension("jsonl.tokens")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(calls.iter().filter(|c| c["ok"] == json!(true)).count() >= 2, "renewed: {calls:?}");
    let wrong = eventually(30, "the wrong credentials to show", || {
        let v: Value = serde_json::from_str(&cli_ok(&s, &["target", "show", "acme", "wrong", "--json"])).unwrap();
        v["last_error"].is_array().then_some(v)
    });
    assert!(wrong["last_error"][1].as_str().unwrap().contains("token endpoint answered 401"), "{wrong}");
    assert!(scim.users("wrong").is_empty());
}
