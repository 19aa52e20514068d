//! The bench tool's command line, run as a process. (Having an integration test also makes
//! `cargo test --workspace` build the tool's binary with the workspace's features, so the CI
//! script's quick run needs no second build of tokio, hyper and reqwest.)
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn bench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mapwright-bench")).args(args).output().unwrap()
}

#[test]
fn refuses_an_endpoint_that_is_not_loopback_before_sending_anything() {
    let out = bench(&["--url", "http://192.0.2.1:8080/scim/v2/acme/okta", "--token", "t", "--only", "creates", "--limit-secs", "1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only loopback addresses are benchmarked"), "{err}");
}

#[test]
fn help_names_the_scenario_groups() {
    let out = bench(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for group in ["chain", "scim", "swap", "noisy", "memory"] {
        assert!(help.contains(group), "{group} missing from --help");
    }
}
