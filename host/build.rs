//! Builds the first-party rule plugins (`plugins/*`) as Wasm components and embeds them in
//! the server binary, so `mapwright serve` can use `builtin:<name>` plugins from anywhere.
//!
//! A nested `cargo build --target wasm32-wasip2` runs with its own target directory (the outer
//! cargo holds the lock on the main one), without the outer build's RUSTFLAGS, and reports the
//! plugins' sources as `rerun-if-changed`, so it runs again only when a plugin changes.

// A build script reports failure by panicking: that is its interface with cargo.
#![allow(clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "wasm-plugins";

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("host/ lives in the workspace root").to_path_buf();
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let plugins = plugin_crates(&root.join("plugins"));
    // Test-only plugins (hostile ones among them) and the Rust plugin template: built
    // alongside, never embedded.
    let mut test_plugins = plugin_crates(&root.join("tests/plugins"));
    test_plugins.extend(plugin_crates(&root.join("examples/plugins")));
    // Directories are scanned recursively by cargo, so a new plugin crate counts too; the root
    // manifest holds the plugins' build profile.
    for dir in ["plugins", "tests/plugins", "examples/plugins/rust", "plugin-sdk", "Cargo.toml", "Cargo.lock"] {
        rerun(&root.join(dir));
    }

    ensure_target();
    // Shared by every profile of the outer build: plugins are compiled once.
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("wasm-plugins");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--profile", PROFILE, "--target", TARGET])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    for (name, _) in plugins.iter().chain(&test_plugins) {
        cmd.args(["-p", name]);
    }
    let status = cmd.status().expect("running the nested cargo build of the plugins");
    assert!(status.success(), "building the first-party plugins for {TARGET} failed");

    // builtin.rs: name -> embedded component bytes.
    let mut table = String::from("/// First-party plugins compiled into this binary: (name, component bytes).\npub static BUILTIN: &[(&str, &[u8])] = &[\n");
    for (name, short) in &plugins {
        let wasm = target_dir.join(TARGET).join(PROFILE).join(format!("{}.wasm", name.replace('-', "_")));
        assert!(wasm.exists(), "missing {}", wasm.display());
        table.push_str(&format!("    ({short:?}, include_bytes!({:?})),\n", wasm.display().to_string()));
    }
    table.push_str("];\n");
    std::fs::write(out.join("builtin.rs"), table).expect("writing builtin.rs");

    // test_plugins.rs: paths of the test-only components, for the integration tests.
    let mut paths = String::new();
    for (name, _) in &test_plugins {
        let wasm = target_dir.join(TARGET).join(PROFILE).join(format!("{}.wasm", name.replace('-', "_")));
        let konst = name.trim_start_matches("mapwright-test-").replace('-', "_").to_uppercase();
        paths.push_str(&format!("pub const {konst}: &str = {:?};\n", wasm.display().to_string()));
    }
    std::fs::write(out.join("test_plugins.rs"), paths).expect("writing test_plugins.rs");
}

/// (package name, short name) of every crate under plugins/.
fn plugin_crates(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("reading plugins/").flatten() {
        let manifest = entry.path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else { continue };
        let name = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("name = ").map(|v| v.trim_matches('"').to_string()))
            .expect("plugin crates have a name");
        let short = name.trim_start_matches("mapwright-rule-").trim_start_matches("mapwright-test-").to_string();
        out.push((name, short));
    }
    out.sort();
    out
}

/// A fresh machine lacks the Wasm target; install it rather than fail with a puzzle.
fn ensure_target() {
    let installed = Command::new("rustup").args(["target", "list", "--installed"]).output();
    let have = installed.as_ref().map(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim() == TARGET)).unwrap_or(true);
    if !have {
        println!("cargo:warning=installing the {TARGET} target for the rule plugins (rustup target add {TARGET})");
        let ok = Command::new("rustup").args(["target", "add", TARGET]).status().map(|s| s.success()).unwrap_or(false);
        assert!(ok, "rustup target add {TARGET} failed; install it and build again");
    }
}

fn rerun(p: &Path) {
    println!("cargo:rerun-if-changed={}", p.display());
}
