//! TLS served directly: a certificate the test makes, a client that verifies it, and a
//! renewed certificate picked up without dropping a connection.

use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::harness::Server;

/// A self-signed certificate for 127.0.0.1, as PEM (certificate, key).
fn certificate() -> (String, String) {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    (made.cert.pem(), made.key_pair.serialize_pem())
}

/// A client trusting only `cert` (no system roots, no plain HTTP).
fn trusting(cert: &str) -> Client {
    Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert.as_bytes()).unwrap())
        .https_only(true)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[test]
fn tls_is_served_verified_and_a_renewed_certificate_is_picked_up_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (cert1, key1) = certificate();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, &cert1).unwrap();
    std::fs::write(&key_file, &key1).unwrap();
    let tls = format!("[server.tls]\ncert_file = {:?}\nkey_file = {:?}\n", cert_file, key_file);
    let s = Server::start_env(&tls, &[("RUST_LOG", "info")]);
    assert!(s.url.starts_with("https://127.0.0.1:"), "{}", s.url);

    let first = trusting(&cert1);
    let r = first.get(format!("{}/readyz", s.url)).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // Plain HTTP on the TLS port gets nothing useful, and a client that does not trust the
    // certificate refuses it.
    let plain = reqwest::blocking::get(format!("{}/readyz", s.url.replacen("https", "http", 1)));
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));
    let (cert2, key2) = certificate();
    assert!(trusting(&cert2).get(format!("{}/readyz", s.url)).send().is_err(), "the second certificate is not served yet");

    // A follower waits on a connection made with the first certificate.
    let okta = s.idp("acme", "okta", "okta");
    let token = first
        .post(format!("{}/admin/v1/tenants/acme/tokens", s.url))
        .bearer_auth(s.admin_token())
        .json(&json!({"name": "app"}))
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let head = first.get(format!("{}/directory/v1/acme/changes", s.url)).bearer_auth(&token).send().unwrap().json::<Value>().unwrap()["cursor"].as_str().unwrap().to_string();
    let waiting = {
        let (first, url, token) = (first.clone(), s.url.clone(), token.clone());
        std::thread::spawn(move || first.get(format!("{url}/directory/v1/acme/changes?since={head}&wait=25")).bearer_auth(token).send().map(|r| r.json::<Value>().unwrap()))
    };
    std::thread::sleep(Duration::from_millis(300));

    // The certificate is renewed on disk (key first, then certificate, as a renewal tool does).
    std::fs::write(&key_file, &key2).unwrap();
    std::fs::write(&cert_file, &cert2).unwrap();
    let second = trusting(&cert2);
    let deadline = Instant::now() + Duration::from_secs(15);
    while second.get(format!("{}/readyz", s.url)).send().is_err() {
        assert!(Instant::now() < deadline, "the renewed certificate was never served; log: {}", s.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(s.log().contains("TLS certificate reloaded"), "{}", s.log());

    // A write over the new certificate wakes the follower on its old connection.
    let created = second
        .post(format!("{}/scim/v2/acme/okta/Users", s.url))
        .bearer_auth(&okta.token)
        .json(&json!({"userName": "after.renewal@acme.com"}))
        .send()
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let woke = waiting.join().unwrap().expect("the connection made before the renewal was not dropped");
    assert_eq!(woke["changes"][0]["user"]["userName"], "after.renewal@acme.com", "{woke}");

    // Files that do not load leave the current certificate serving.
    std::fs::write(&cert_file, "not a certificate").unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(second.get(format!("{}/readyz", s.url)).send().unwrap().status().as_u16(), 200);
    assert!(s.log().contains("the previous certificate keeps serving"), "{}", s.log());
}

#[test]
fn a_certificate_that_does_not_load_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), "not a certificate").unwrap();
    std::fs::write(dir.path().join("key.pem"), "nor a key").unwrap();
    // Relative paths are the configuration file's.
    std::fs::write(dir.path().join("mapwright.toml"), "[server]\nlisten = \"127.0.0.1:0\"\n[server.tls]\ncert_file = \"cert.pem\"\nkey_file = \"key.pem\"\n").unwrap();
    let out = std::process::Command::new(crate::harness::BIN)
        .args(["--config", dir.path().join("mapwright.toml").to_str().unwrap(), "--data-dir", dir.path().to_str().unwrap(), "serve"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&dir.path().join("cert.pem").display().to_string()), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"), "refused before announcing itself");
}
