//! The same rule in four languages: the Rust, JavaScript and Python plugin templates
//! (`examples/plugins/*`) and `builtin:expr` (CEL). Component size, compile time, load from
//! the disk cache, per-user and per-group cost with reused and fresh instances, linear memory
//! per instance; `throughput` drives POST /Users with each as a three-entry chain.
//!
//! The JavaScript and Python components are built by `scripts/test.sh` into
//! `target/lang-plugins` (or `MW_BENCH_LANGS=<dir>`); without them only Rust and CEL run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mapwright::mapping::{GroupInput, MapContext, MappingPipeline, Operation};
use mapwright::model::Limits;
use mapwright::plugins::chain::{Chain, EntrySpec, PluginSource};
use mapwright::plugins::runtime::Runtime;
use serde_json::{Value, json};

#[allow(dead_code)]
mod test_plugins {
    include!(concat!(env!("OUT_DIR"), "/test_plugins.rs"));
}

/// One way to write the rule.
pub struct Lang {
    pub label: &'static str,
    source: PluginSource,
    /// The whole rule in one entry.
    full: Value,
    /// The rule split over three entries: username, group mapping, default groups.
    three: [Value; 3],
}

impl Lang {
    fn spec(&self, config: &Value, fresh: bool) -> EntrySpec {
        EntrySpec { plugin: self.source.clone(), config: config.clone(), limits: Limits { fresh_instance_per_call: fresh, ..Limits::default() } }
    }

    /// The three-entry chain of this language.
    pub fn three_entries(&self) -> Vec<EntrySpec> {
        self.three.iter().map(|c| self.spec(c, false)).collect()
    }
}

fn lang_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("MW_BENCH_LANGS") {
        return d.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("lang-plugins")
}

/// The languages this run has: Rust and CEL always, JavaScript and Python when built.
pub fn available() -> Vec<Lang> {
    let acme = |domains: bool, groups: bool, defaults: bool| {
        let mut c = serde_json::Map::new();
        if domains {
            c.insert("domains".into(), json!(["bench.example"]));
        }
        if groups {
            c.insert("groups".into(), json!({"Dev users": "software_dev"}));
        }
        if defaults {
            c.insert("defaults".into(), json!(["app-users"]));
        }
        Value::Object(c)
    };
    let template = |label, source| Lang { label, source, full: acme(true, true, true), three: [acme(true, false, false), acme(false, true, false), acme(false, false, true)] };
    let username = "domain(primary_email(user)) == 'bench.example' ? lower(local_part(primary_email(user))) : null";
    let groups = "group.displayName == 'Dev users' ? 'software_dev' : null";
    let defaults = json!([{"groups": ["app-users"]}]);
    let mut langs = vec![
        template("Rust", PluginSource::File(test_plugins::ACME_RULES.into())),
        Lang {
            label: "CEL (builtin:expr)",
            source: PluginSource::Builtin("expr".into()),
            full: json!({"username": username, "groups": groups, "memberships": defaults}),
            three: [json!({"username": username}), json!({"groups": groups}), json!({"memberships": defaults})],
        },
    ];
    let dir = lang_dir();
    for (label, file) in [("JavaScript", "acme-rules-js.wasm"), ("Python", "acme-rules-py.wasm")] {
        let path = dir.join(file);
        if path.exists() {
            langs.push(template(label, PluginSource::File(path)));
        } else {
            println!("({label}: {} not built; scripts/test.sh builds it, or set MW_BENCH_LANGS)", path.display());
        }
    }
    langs
}

/// Mean time per call of `f` over `n` calls, after 20 untimed ones.
async fn per_call<F, Fut>(n: usize, f: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..20 {
        f().await;
    }
    let t = Instant::now();
    for _ in 0..n {
        f().await;
    }
    t.elapsed() / n as u32
}

/// Per-language costs, one table.
pub async fn costs(langs: &[Lang], user: &Value) {
    let idp = mapwright::model::IdpConnection::detached(mapwright::model::IdpKind::Generic);
    let ctx = MapContext { idp: &idp, operation: Operation::Create, current: None };
    let group = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Dev users"});
    let n: usize = std::env::var("MW_BENCH_LANG_CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000);
    println!();
    println!("The same rule (username from the email, one group mapped, a default group), one entry:");
    println!(
        "{:<20} {:>9} {:>11} {:>11} {:>12} {:>12} {:>12} {:>11}",
        "language", "size MiB", "compile ms", "cached ms", "user µs", "group µs", "fresh µs", "memory MiB"
    );
    for lang in langs {
        let bytes = lang.source.bytes().unwrap();
        // Compiled by an engine that has never seen it, then loaded from the disk cache by
        // another (what a restarted server does).
        let cache = tempfile::tempdir().unwrap();
        let first = Arc::new(Runtime::new().unwrap().with_disk_cache(cache.path().to_path_buf()));
        let t = Instant::now();
        let chain = Chain::load(&first, &[lang.spec(&lang.full, false)]).await.unwrap();
        let compile = t.elapsed();
        let second = Arc::new(Runtime::new().unwrap().with_disk_cache(cache.path().to_path_buf()));
        let t = Instant::now();
        drop(Chain::load(&second, &[lang.spec(&lang.full, false)]).await.unwrap());
        let cached = t.elapsed();
        second.shutdown();

        let (entry, _) = chain.map_user(ctx, user).await.unwrap();
        assert_eq!((entry.user_name.as_str(), entry.grant.as_slice()), ("jane.doe", &["app-users".to_string()][..]), "{}", lang.label);
        let user_us = per_call(n, || async {
            chain.map_user(ctx, user).await.unwrap();
        })
        .await;
        let group_us = per_call(n, || async {
            let (g, _) = chain.map_group(ctx, GroupInput { id: "", body: &group }).await.unwrap();
            assert_eq!(g, ["software_dev"]);
        })
        .await;
        let memory = chain.peak_memory().first().map(|(_, b)| *b).unwrap_or(0);
        drop(chain);
        let fresh = Chain::load(&first, &[lang.spec(&lang.full, true)]).await.unwrap();
        let fresh_us = per_call((n / 10).max(20), || async {
            fresh.map_user(ctx, user).await.unwrap();
        })
        .await;
        drop(fresh);
        first.shutdown();
        println!(
            "{:<20} {:>9.2} {:>11.0} {:>11.1} {:>12.1} {:>12.1} {:>12.1} {:>11.2}",
            lang.label,
            bytes.len() as f64 / 1048576.0,
            compile.as_secs_f64() * 1e3,
            cached.as_secs_f64() * 1e3,
            user_us.as_secs_f64() * 1e6,
            group_us.as_secs_f64() * 1e6,
            fresh_us.as_secs_f64() * 1e6,
            memory as f64 / 1048576.0
        );
    }
    println!("(user: username + user-memberships calls; fresh: a new instance for every call, as `fresh_instance_per_call` runs)");
}
