//! The command line: help, tenants, IdP connections, token rotation.

use crate::harness::{Client, Server};

#[test]
fn help_on_every_command() {
    let s = Server::start();
    for args in [
        vec!["--help"], vec!["serve", "--help"], vec!["tenant", "--help"], vec!["tenant", "add", "--help"], vec!["tenant", "list", "--help"],
        vec!["idp", "--help"], vec!["idp", "add", "--help"], vec!["idp", "list", "--help"], vec!["idp", "rotate-token", "--help"],
    ] {
        let out = s.cli(&args);
        assert!(out.status.success(), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"), "{args:?}");
    }
}

#[test]
fn tenants_and_idps_from_the_cli() {
    let s = Server::start();
    assert!(s.cli(&["tenant", "add", "Bad Name"]).status.code() != Some(0));
    assert!(s.cli(&["tenant", "add", "acme"]).status.success());
    assert!(!s.cli(&["tenant", "add", "acme"]).status.success(), "duplicate tenant");
    assert!(!s.cli(&["idp", "add", "nosuch", "okta"]).status.success());
    let out = s.cli(&["idp", "add", "acme", "okta", "--kind", "okta"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/scim/v2/acme/okta") && text.contains("Bearer token (shown once"), "{text}");
    let list = String::from_utf8_lossy(&s.cli(&["idp", "list"]).stdout).to_string();
    assert!(list.contains("acme/okta\tokta"), "{list}");
    assert!(!list.contains("mw_"), "tokens are never listed");
    let tenants = String::from_utf8_lossy(&s.cli(&["tenant", "list"]).stdout).to_string();
    assert!(tenants.starts_with("acme\t"));
    // Tokens are stored hashed only.
    let db = s.db().dump();
    let token = text.lines().find_map(|l| l.split("store it now): ").nth(1)).unwrap().trim().to_string();
    let secret = token.rsplit('_').next().unwrap();
    assert!(!db.windows(secret.len()).any(|w| w == secret.as_bytes()));
}

#[test]
fn token_rotation_with_overlap_and_revocation() {
    let s = Server::start();
    let old = s.idp("acme", "okta", "okta");
    assert_eq!(old.get("/Users").status, 200);
    let rotate = |overlap: &str| -> Client {
        let out = s.cli(&["idp", "rotate-token", "acme", "okta", "--overlap-secs", overlap, "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        old.with_token(v["token"].as_str().unwrap())
    };
    let second = rotate("3600");
    assert_eq!(second.get("/Users").status, 200);
    assert_eq!(old.get("/Users").status, 200, "old token works during the overlap");
    let third = rotate("0");
    assert_eq!(third.get("/Users").status, 200);
    // Revocation reaches the running server within its auth cache lifetime.
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    old.get("/Users").assert_error(401, None);
    second.get("/Users").assert_error(401, None);
    assert_eq!(third.get("/Users").status, 200);
}

/// A command's output is what a person reads: on a new data directory (every migration runs)
/// nothing but its own line, no logs unless RUST_LOG asks for them.
#[test]
fn commands_print_their_output_and_no_logs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mapwright.toml");
    std::fs::write(&cfg, "[server]\nlisten = \"127.0.0.1:9\"\n").unwrap();
    let mw = |args: &[&str], rust_log: Option<&str>| {
        let mut c = std::process::Command::new(crate::harness::BIN);
        c.args(["--config", cfg.to_str().unwrap(), "--data-dir", dir.path().to_str().unwrap()]).args(args).env_remove("RUST_LOG");
        if let Some(level) = rust_log {
            c.env("RUST_LOG", level);
        }
        c.output().unwrap()
    };
    let out = mw(&["tenant", "add", "acme"], None);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "tenant acme created\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "a command logs nothing by default");
    // Asked for, the logs are there.
    // Asked for, the logs are there (a second new data directory: its migrations log).
    let other = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::harness::BIN)
        .args(["--config", cfg.to_str().unwrap(), "--data-dir", other.path().to_str().unwrap(), "tenant", "add", "acme"])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stderr).contains("migration"), "RUST_LOG=info shows the command's logs");

    // A base URL built from the configured listen address says so; --public-url replaces it.
    let out = mw(&["idp", "add", "acme", "okta"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("SCIM base URL: http://127.0.0.1:9/scim/v2/acme/okta"), "{text}");
    assert!(text.contains("configured listen address 127.0.0.1:9") && text.contains("--public-url"), "{text}");
    let out = mw(&["idp", "add", "acme", "entra", "--public-url", "https://scim.acme.example/"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("SCIM base URL: https://scim.acme.example/scim/v2/acme/entra"), "{text}");
    assert!(!text.contains("--public-url"), "no hint when the URL is given: {text}");
    let listed = String::from_utf8_lossy(&mw(&["idp", "list", "--public-url", "https://scim.acme.example"], None).stdout).to_string();
    assert!(listed.contains("https://scim.acme.example/scim/v2/acme/okta"), "{listed}");
}
