//! Misbehaves when the user's userName is `evil-<mode>` (or, shaping a delivery, `shape-<mode>`);
//! passes everything else through.
#![allow(clippy::panic)]

use mapwright_plugin_sdk::{Context, Decision, Hook, Plugin, Rejection, ResourceType, Shaped, Target, User, Value};

pub struct Hostile;

/// Unbounded on purpose: the sandbox must stop it.
#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(n: u64, pad: [u64; 16]) -> u64 {
    let p = std::hint::black_box(pad);
    recurse(n + 1, p) + p[(n % 16) as usize]
}

/// Tries every way out that WASI would offer a guest and reports what it got, as a userName:
/// files, sockets, environment, arguments, the clock and randomness.
fn snoop() -> String {
    let fs = match std::fs::read_to_string("/etc/passwd").or_else(|_| std::fs::read_dir(".").map(|_| String::new())) {
        Ok(_) => "read",
        Err(_) => "denied",
    };
    let net = match std::net::TcpStream::connect("127.0.0.1:1") {
        Ok(_) => "connected",
        Err(_) => "denied",
    };
    let env = std::env::vars().count() + std::env::args().count();
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(u64::MAX);
    let t0 = std::time::Instant::now();
    std::hint::black_box((0..100_000u64).sum::<u64>());
    let ticks = t0.elapsed().as_nanos();
    let mut a = std::collections::hash_map::RandomState::new().build_hasher();
    std::hash::Hash::hash(&1u8, &mut a);
    let random = std::hash::Hasher::finish(&a) % 1000;
    format!("fs-{fs}.net-{net}.env-{env}.clock-{secs}-{ticks}.random-{random}")
}

use std::hash::BuildHasher;

impl Plugin for Hostile {
    type Config = Value;
    const NAME: &'static str = "hostile";
    const HOOKS: &'static [Hook] = &[Hook::Username, Hook::Attributes, Hook::Shape, Hook::Scope];

    fn username(_ctx: &Context, _c: &Value, user: &User, proposed: &str) -> Result<Decision<String>, Rejection> {
        match user.user_name().strip_prefix("evil-") {
            Some("loop") => loop {
                std::hint::black_box(());
            },
            Some("memory") => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
                }
            }
            Some("recursion") => Ok(Decision::new(recurse(0, [1; 16]).to_string())),
            Some("panic") => panic!("hostile plugin panicked on purpose"),
            Some("huge-output") => Ok(Decision::new("x".repeat(100 << 20))),
            Some("long-username") => Ok(Decision::new("y".repeat(10_000))),
            Some("empty-username") => Ok(Decision::new(String::new())),
            Some("snoop") => Ok(Decision::new(snoop())),
            _ => Ok(Decision::new(proposed.to_string())),
        }
    }

    fn attributes(_ctx: &Context, _c: &Value, user: &User, proposed: Value) -> Result<Decision<Value>, Rejection> {
        match user.user_name() {
            "evil-huge-attributes" => Ok(Decision::new(Value::String("z".repeat(1 << 20)))),
            "evil-attributes-not-object" => Ok(Decision::new(Value::Bool(true))),
            "evil-attributes-wrong-type" => Ok(Decision::new(mapwright_plugin_sdk::json!({"active": "perhaps"}))),
            _ => Ok(Decision::new(proposed)),
        }
    }

    fn in_scope(_ctx: &Context, _c: &Value, user: &User, _groups: &[String], proposed: bool) -> Result<Decision<bool>, Rejection> {
        match user.user_name().strip_prefix("scope-") {
            Some("loop") => loop {
                std::hint::black_box(());
            },
            Some("reject") => Err(Rejection::new("hostile.scope", "scope-reject is refused")),
            Some("out") => Ok(Decision::new(false).because("hostile.scope", "kept out")),
            _ => Ok(Decision::new(proposed)),
        }
    }

    fn shape(_target: &Target, _c: &Value, _kind: ResourceType, resource: Value) -> Result<Shaped, Rejection> {
        match resource["userName"].as_str().and_then(|n| n.strip_prefix("shape-")) {
            Some("loop") => loop {
                std::hint::black_box(());
            },
            Some("reject") => Err(Rejection::new("hostile.shape", "this application must never receive shape-reject")),
            Some("drop-name") => Ok(Shaped::new(mapwright_plugin_sdk::json!({"title": "nameless"}))),
            _ => Ok(Shaped::new(resource)),
        }
    }
}

mapwright_plugin_sdk::export_plugin!(Hostile);
