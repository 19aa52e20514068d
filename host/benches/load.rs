//! In-process benchmark of the rule chain: the cost of each plugin call (reused and fresh
//! instances), POST /Users throughput with a three-plugin chain vs none (ABBA order, one
//! run), and how long a new chain version takes to serve. Not a test: nothing here asserts
//! a timing. The scenario benchmarks against a peer server are `scripts/bench.sh`.
//!
//! ```sh
//! cargo bench -p mapwright --bench load
//! cargo bench -p mapwright --bench load -- --creates 3000
//! ```
//!
//! `MW_BENCH_ONLY=username|groups|attributes` runs the "chained" scenarios with that one
//! plugin, to see what each costs. `MW_BENCH_PLUGINS=<dir>` takes the plugins from `<dir>`
//! (`mapwright_rule_<name>.wasm`, e.g. another build of them) instead of the built-in ones;
//! `--hooks-only` measures the plugin calls and stops (`MW_BENCH_CALLS=<n>` users; default
//! 20,000). `MW_BENCH_EVICT=<bytes>` writes that much memory between two users (untimed) so
//! the calls run with cold caches, as they do in a loaded server (`MW_BENCH_EVICT=33554432`:
//! about 4x the warm cost on the project machine).
//!
//! The server runs in this process (same binary code as `mapwright serve`, its own SQLite
//! file in a temporary directory); clients and server share the machine's cores, so compare
//! figures as ratios within one run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "load/languages.rs"]
mod languages;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mapwright::config::ServerConfig;
use mapwright::mapping::{MapContext, MappingPipeline, Operation};
use mapwright::model::{Limits, NewIdp, RateLimit, VersionNote, VersionSource};
use mapwright::plugins::chain::{Chain, ChainRegistry, EntrySpec, PluginSource};
use mapwright::plugins::runtime::Runtime;
use mapwright::server::Server;
use mapwright::service::rules::RuleManager;
use mapwright::store::TenantStore;
use mapwright::store::SqlStore;
use serde_json::json;

// The server binary's allocator, so that the figures are the server's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    creates: usize,
    hooks_only: bool,
}

fn args() -> Args {
    let mut a = Args { creates: 3_000, hooks_only: false };
    let v: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < v.len() {
        let next = v.get(i + 1).and_then(|s| s.parse().ok());
        if let ("--creates", Some(n)) = (v[i].as_str(), next) {
            a.creates = n;
        }
        a.hooks_only |= v[i] == "--hooks-only";
        i += 1;
    }
    a
}

struct Stats {
    n: usize,
    errors: usize,
    elapsed: Duration,
    lat: Vec<Duration>,
}

impl Stats {
    fn row(&self, name: &str) {
        let mut l = self.lat.clone();
        l.sort();
        let pct = |p: f64| l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1))).copied().unwrap_or_default();
        println!(
            "{name:<44} {:>8} req {:>10.0} req/s   p50 {:>8.3} ms   p99 {:>8.3} ms   errors {}",
            self.n,
            self.n as f64 / self.elapsed.as_secs_f64(),
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            self.errors
        );
    }
}

/// Runs `n` requests from `concurrency` workers; `make(i)` builds request `i`.
async fn drive<F>(concurrency: usize, n: usize, make: F) -> Stats
where
    F: Fn(usize) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (make, next) = (make.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let t = Instant::now();
                match make(i).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                    }
                    _ => errors += 1,
                }
                lat.push(t.elapsed());
            }
            (lat, errors)
        }));
    }
    let mut s = Stats { n, errors: 0, elapsed: Duration::ZERO, lat: Vec::with_capacity(n) };
    for t in tasks {
        let (l, e) = t.await.unwrap();
        s.lat.extend(l);
        s.errors += e;
    }
    s.elapsed = started.elapsed();
    s
}

fn user_body(name: &str) -> String {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name, "externalId": name, "active": true,
        "name": {"givenName": "Bench", "familyName": name},
        "emails": [{"value": name, "type": "work", "primary": true}],
    })
    .to_string()
}

async fn connection(store: &SqlStore, name: &str) -> String {
    let idp = store.create_idp("bench", NewIdp { name: name.into(), kind: mapwright::model::IdpKind::Generic, settings: Default::default(), rate: RateLimit { per_second: 0.0, burst: 1 } }).await.unwrap();
    let t = mapwright::tokens::generate().unwrap();
    store.add_token(idp.id, &t.id, &t.secret_hash, None).await.unwrap();
    t.token
}

async fn run(a: Args) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::sqlite(&dir.path().join("bench.db"), Default::default()).unwrap();
    store.create_tenant("bench").await.unwrap();
    let cfg = ServerConfig { listen: "127.0.0.1:0".parse().unwrap(), ..Default::default() };
    let mut tokens = Vec::new();
    for name in ["plain", "chained", "swapped"] {
        tokens.push(connection(&store, name).await);
    }
    let runtime = Arc::new(Runtime::new().unwrap().with_disk_cache(dir.path().join("plugin-cache")));
    let chained = store.find_idp("bench", "chained").await.unwrap().unwrap();
    let swapped = store.find_idp("bench", "swapped").await.unwrap().unwrap();
    let registry = Arc::new(ChainRegistry::default());
    registry.insert(chained.id, Chain::load(&runtime, &three_plugin_chain()).await.unwrap());
    // One connection per language, its rule as a three-entry chain.
    let langs = languages::available();
    let mut lang_tokens = Vec::new();
    for (i, lang) in langs.iter().enumerate() {
        let name = format!("lang{i}");
        lang_tokens.push(connection(&store, &name).await);
        let idp = store.find_idp("bench", &name).await.unwrap().unwrap();
        registry.insert(idp.id, Chain::load(&runtime, &lang.three_entries()).await.unwrap());
    }
    let shared_store = Arc::new(store.clone());
    let rules = Arc::new(RuleManager::new(shared_store.clone(), runtime.clone(), registry.clone()));
    let guard = Arc::new(mapwright::service::guard::Guard::unlimited());
    let server = Server::bind_with(&cfg, store, registry.clone(), guard).await.unwrap();
    let url = server.public_url().to_string();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(async move {
        let _ = stop_rx.await;
    }));
    let http = reqwest::Client::builder().pool_max_idle_per_host(128).build().unwrap();
    println!("Mapwright load benchmark ({} cores, server and clients in one process)", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));

    hook_costs(&runtime).await;
    expression_costs(&runtime).await;
    let user: serde_json::Value = serde_json::from_str(&user_body("jane.doe@bench.example")).unwrap();
    languages::costs(&langs, &user).await;
    if a.hooks_only {
        return;
    }

    // Chain vs no chain in ABBA order (plain, chained, chained, plain): the database grows
    // with every round and later rounds run slower, so a plain-then-chained order would
    // charge that drift to the chain.
    let (mut plain_rate, mut chained_rate) = (0.0, 0.0);
    for (round, order) in [[(0usize, "plain"), (1, "chained")], [(1, "chained"), (0, "plain")]].into_iter().enumerate() {
        for (k, label) in order {
            let (http, base, token) = (http.clone(), format!("{url}/scim/v2/bench/{label}/Users"), tokens[k].clone());
            let s = drive(8, a.creates, move |n| {
                http.post(&base).bearer_auth(&token).header("content-type", "application/scim+json").body(user_body(&format!("{label}{round}-{n}.x@bench.example")))
            })
            .await;
            s.row(&format!("POST /Users c8, {} (round {})", if k == 0 { "no chain" } else { "3-plugin chain" }, round + 1));
            let rate = s.n as f64 / s.elapsed.as_secs_f64();
            if k == 0 { plain_rate += rate } else { chained_rate += rate }
        }
    }
    println!("3-plugin chain throughput / no chain = {:.3} (overhead {:.1}%)", chained_rate / plain_rate, (1.0 - chained_rate / plain_rate) * 100.0);

    // Each language's three-entry chain, forwards then backwards (the database grows).
    let mut rates = vec![0.0; langs.len()];
    let order: Vec<usize> = (0..langs.len()).chain((0..langs.len()).rev()).collect();
    for (round, &k) in order.iter().enumerate() {
        let (http, base, token) = (http.clone(), format!("{url}/scim/v2/bench/lang{k}/Users"), lang_tokens[k].clone());
        let s = drive(8, a.creates / 2, move |n| {
            http.post(&base).bearer_auth(&token).header("content-type", "application/scim+json").body(user_body(&format!("l{round}-{n}.x@bench.example")))
        })
        .await;
        s.row(&format!("POST /Users c8, 3 entries in {}", langs[k].label));
        rates[k] += s.n as f64 / s.elapsed.as_secs_f64() / 2.0;
    }
    for (lang, rate) in langs.iter().zip(&rates) {
        println!("{:<44} {rate:>8.0} req/s  ({:.2} of no chain)", format!("3-entry chain in {}, mean of 2 rounds", lang.label), rate / (plain_rate / 2.0));
    }

    // Rule swaps: time from a new version submitted to the rules serving requests, with the
    // plugins compiled for the first time and with them cached. (Throughput during swaps, the
    // other scenarios and the peer comparison are in the bench tool: scripts/bench.sh.)
    swaps(&rules, shared_store.clone(), &swapped).await;
    let _ = stop_tx.send(());
    let _ = serving.await;
}

fn note(what: &str) -> VersionNote {
    VersionNote { author: "bench".into(), note: what.into(), source: VersionSource::Admin }
}

fn username_spec(case: &str) -> Vec<EntrySpec> {
    vec![EntrySpec { plugin: PluginSource::Builtin("username".into()), config: json!({"source": "email", "local_part": true, "case": case}), limits: Limits::default() }]
}

/// Submitted-to-serving time of a new chain version: plugins never compiled by this engine
/// (a fresh runtime without artifacts), then the same plugins again (cached).
async fn swaps(rules: &Arc<RuleManager<SqlStore>>, store: Arc<SqlStore>, idp: &mapwright::model::IdpConnection) {
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = RuleManager::new(store, Arc::new(Runtime::new().unwrap().with_disk_cache(fresh_dir.path().to_path_buf())), rules.registry().clone());
    let t = Instant::now();
    let def = fresh.define(idp.tenant_id, &three_plugin_chain(), Default::default()).await.unwrap();
    fresh.set_chain(idp, def, note("uncached")).await.unwrap();
    let uncached = t.elapsed();
    let mut cached = Vec::new();
    for i in 0..20u32 {
        let t = Instant::now();
        let def = rules.define(idp.tenant_id, &username_spec(if i.is_multiple_of(2) { "upper" } else { "lower" }), Default::default()).await.unwrap();
        rules.set_chain(idp, def, note("cached")).await.unwrap();
        cached.push(t.elapsed());
    }
    cached.sort();
    println!("{:<44} {:>8.1} ms (3 plugins compiled)", "new chain version serving, uncached", uncached.as_secs_f64() * 1e3);
    println!("{:<44} {:>8.2} ms (median of 20, 1 plugin)", "new chain version serving, cached", cached[10].as_secs_f64() * 1e3);
    fresh.runtime().shutdown();
}

/// The rule chain every "chained" scenario uses: username, groups, attributes.
fn three_plugin_chain() -> Vec<EntrySpec> {
    let source = |name: &str| match std::env::var_os("MW_BENCH_PLUGINS") {
        Some(dir) => PluginSource::File(std::path::Path::new(&dir).join(format!("mapwright_rule_{name}.wasm"))),
        None => PluginSource::Builtin(name.into()),
    };
    let spec = |name: &str, config: serde_json::Value, fresh: bool| EntrySpec {
        plugin: source(name),
        config,
        limits: Limits { fresh_instance_per_call: fresh, ..Limits::default() },
    };
    let mk = |fresh| {
        let only = std::env::var("MW_BENCH_ONLY").ok();
        let all = vec![
            spec("username", json!({"source": "email", "local_part": true, "case": "lower"}), fresh),
            spec("groups", json!({"map": {"dev users": "software_dev"}, "defaults": {"all_users": ["app-users"]}}), fresh),
            spec("attributes", json!({"mappings": [{"from": "name.familyName", "to": "urn:mapwright:custom:User:surname", "transform": ["upper"]}]}), fresh),
        ];
        let named = |s: &EntrySpec, n: &str| match &s.plugin {
            PluginSource::Builtin(b) => b == n,
            PluginSource::File(p) => p.ends_with(format!("mapwright_rule_{n}.wasm")),
            _ => false,
        };
        match only { Some(n) => all.into_iter().filter(|s| named(s, &n)).collect(), None => all }
    };
    mk(false)
}

/// The three-plugin chain's user mapping as one `builtin:expr` entry: the same username,
/// default group and attribute, decided by CEL expressions.
fn expression_chain() -> Vec<EntrySpec> {
    let config = json!({
        "username": "lower(local_part(primary_email(user)))",
        "groups": "lower(group.displayName) == 'dev users' ? 'software_dev' : group.displayName",
        "memberships": [{"groups": ["app-users"]}],
        "attributes": {"urn:mapwright:custom:User:surname": "upper(attr(user, 'name.familyName'))"},
    });
    vec![EntrySpec { plugin: PluginSource::Builtin("expr".into()), config, limits: Limits::default() }]
}

/// Per-user cost of the expression chain next to the Rust plugins doing the same job (both
/// with reused instances), as a ratio from this one run.
async fn expression_costs(runtime: &Arc<Runtime>) {
    let idp = mapwright::model::IdpConnection {
        id: 1, tenant_id: 1, tenant: "bench".into(), name: "bench".into(), kind: mapwright::model::IdpKind::Generic,
        rate: RateLimit::default(), disabled: false, created: mapwright::model::Timestamp::now(), settings: Default::default(),
    };
    let user: serde_json::Value = serde_json::from_str(&user_body("jane.doe@bench.example")).unwrap();
    let ctx = MapContext { idp: &idp, operation: Operation::Create, current: None };
    let n: usize = std::env::var("MW_BENCH_CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let mut per = Vec::new();
    for (label, specs) in [("three Rust plugins", three_plugin_chain()), ("one builtin:expr entry", expression_chain())] {
        let chain = Chain::load(runtime, &specs).await.unwrap();
        let (a, _) = chain.map_user(ctx, &user).await.unwrap();
        for _ in 0..200 {
            chain.map_user(ctx, &user).await.unwrap();
        }
        let t = Instant::now();
        for _ in 0..n {
            chain.map_user(ctx, &user).await.unwrap();
        }
        let us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        println!("{:<44} {us:>8.1} µs per user (userName {}, surname {})", format!("user mapping, {label}"), a.user_name, a.attributes["urn:mapwright:custom:User"]["surname"]);
        per.push(us);
    }
    if let [rust, expr] = per[..] {
        println!("{:<44} {:>8.2}", "ratio: expression / Rust plugins, per user", expr / rust);
    }
}

/// In-process cost of running the chain's user mapping (one call per hook an entry has),
/// reused vs fresh instances, without HTTP or storage.
async fn hook_costs(runtime: &Arc<Runtime>) {
    let idp = mapwright::model::IdpConnection {
        id: 1, tenant_id: 1, tenant: "bench".into(), name: "bench".into(), kind: mapwright::model::IdpKind::Generic,
        rate: RateLimit::default(), disabled: false, created: mapwright::model::Timestamp::now(), settings: Default::default(),
    };
    let user: serde_json::Value = serde_json::from_str(&user_body("jane.doe@bench.example")).unwrap();
    for fresh in [false, true] {
        let mut specs = three_plugin_chain();
        for s in &mut specs {
            s.limits.fresh_instance_per_call = fresh;
        }
        let chain = Chain::load(runtime, &specs).await.unwrap();
        let ctx = MapContext { idp: &idp, operation: Operation::Create, current: None };
        for _ in 0..200 {
            chain.map_user(ctx, &user).await.unwrap();
        }
        // MW_BENCH_CALLS=<n>: users mapped with reused instances (a tenth of it with fresh
        // ones), e.g. more for a profiler to see the calls rather than the compiles.
        let reused: usize = std::env::var("MW_BENCH_CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
        let n = if fresh { reused / 10 } else { reused };
        // MW_BENCH_EVICT=<bytes>: write that much memory between users (not timed), as the
        // rest of a request does in a loaded server; a tight loop keeps every cache warm.
        let evict: usize = std::env::var("MW_BENCH_EVICT").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut buf = vec![0u8; evict];
        let mut spent = Duration::ZERO;
        for i in 0..n {
            for b in buf.iter_mut().step_by(64) {
                *b = b.wrapping_add(i as u8);
            }
            let t = Instant::now();
            chain.map_user(ctx, &user).await.unwrap();
            spent += t.elapsed();
        }
        std::hint::black_box(&buf);
        let per = spent.as_secs_f64() * 1e6 / n as f64;
        // A create calls each entry's username, attributes and (user memberships) groups hook.
        let calls: usize = chain.plugins().map(|p| usize::from(p.hooks.username) + usize::from(p.hooks.attributes) + usize::from(p.hooks.groups)).sum();
        let cold = if evict > 0 { format!(", {} KiB evicted between users", evict >> 10) } else { String::new() };
        println!("{:<44} {per:>8.1} µs per user ({calls} plugin calls{cold})", format!("chain map_user, {} instances", if fresh { "fresh" } else { "reused" }));
    }
}

fn main() {
    // As the server does (main.rs).
    assert!(mapwright::store::sqlite::alloc::install(), "SQLite was initialised before its allocator was set");
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run(a));
}
