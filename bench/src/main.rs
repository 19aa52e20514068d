//! `mapwright-bench`: load and scale benchmarks of Mapwright, side by side with a peer SCIM
//! server, over HTTP on loopback. A tool, not a test: it reports, it asserts nothing.
//!
//! ```sh
//! bash scripts/bench.sh            # builds in release, installs the peer, runs everything
//! mapwright-bench --quick          # a small run of every scenario (what the test script runs)
//! ```
//!
//! Every figure of one run comes from the same machine in the same minutes: compare them as
//! ratios (Mapwright / peer, chain / no chain), not as absolute numbers.
#![allow(clippy::print_stdout)]

mod delivery;
mod load;
mod memory;
mod report;
mod scenarios;
mod servers;
mod stores;
mod sustained;
mod tenants;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use reqwest::Method;
use serde_json::json;

use report::Report;
use scenarios::{Update, user};
use servers::Scim;

#[derive(Parser, Debug)]
#[command(about = "Load and scale benchmarks of Mapwright against a peer SCIM server (loopback only)")]
struct Args {
    /// A small run of every scenario (seconds), to check the tool itself.
    #[arg(long)]
    quick: bool,
    /// The Mapwright binary (default: `mapwright` beside this one).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// The peer's `scim2-server` executable; without it the peer is skipped.
    #[arg(long)]
    peer: Option<PathBuf>,
    /// The second peer: the Rust `scim-server` crate behind axum (`bench/peer-rs`, built by
    /// scripts/bench.sh); without it that peer is skipped.
    #[arg(long)]
    peer_rs: Option<PathBuf>,
    /// Where the build put the Wasm plugins (default: `<target>/wasm-plugins/wasm32-wasip2/wasm-plugins`).
    #[arg(long)]
    plugins_dir: Option<PathBuf>,
    /// Largest `userName eq` population (the full run goes to 1,000,000).
    #[arg(long)]
    max_users: Option<usize>,
    /// IdP connections in the memory scenario.
    #[arg(long)]
    connections: Option<usize>,
    /// Connections with a plugin binary of their own in the memory scenario (each is
    /// compiled on upload: ~0.3 s of a core apiece).
    #[arg(long)]
    distinct_binaries: Option<usize>,
    /// Connections in the tenants scenario, each with a distinct plugin binary (default 10,000;
    /// each is compiled on upload: ~0.1 s of a core apiece).
    #[arg(long)]
    tenants: Option<usize>,
    /// Where the JavaScript and Python plugins are (`scripts/test.sh` builds them into
    /// `target/lang-plugins`): the tenants scenario gives one connection in a thousand each.
    #[arg(long, env = "MW_LANG_PLUGINS")]
    lang_plugins: Option<PathBuf>,
    /// Cold connections' first requests per second beside the hot traffic in the tenants
    /// scenario (default 20; 0: none).
    #[arg(long)]
    cold_rate: Option<f64>,
    /// A PostgreSQL cluster (a database URL whose user may create databases) for the store
    /// scenarios: Mapwright on SQLite, on PostgreSQL, and two replicas on PostgreSQL. Without
    /// one they are skipped.
    #[arg(long, env = "MW_DATABASE_URL")]
    database_url: Option<String>,
    /// Only these scenario groups (comma-separated): chain, scim, swap, noisy, store, memory, tenants, delivery; with
    /// `--url`, `creates` runs only the creates at c1/c8/c64, `updates` PATCH, PUT and POST at c8
    /// repeated for `--limit-secs` each (to profile the server meanwhile), `lookups` seeds
    /// `--users` (default 10,000) and looks them up at c1 and c8, `sustained` an hour
    /// of one connection's IdP traffic compressed into `--limit-secs` at c1 over `--users`
    /// stored users (each kind's p50/p99, and the writes' p99/p50 window by window).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Drive a SCIM endpoint that is already running instead (its base URL on loopback, e.g.
    /// `http://127.0.0.1:8080/scim/v2/acme/okta`), with `--token`: the IdP traffic and
    /// lookups only. It leaves users named `*.N.<run>@bench.example` and two groups there.
    #[arg(long, requires = "token")]
    url: Option<String>,
    /// The bearer token for `--url`.
    #[arg(long)]
    token: Option<String>,
    /// With `--url`: send users without the enterprise extension (for a server validating
    /// against the core schema only, such as the Rust `scim-server` peer run by hand).
    #[arg(long, requires = "url")]
    core_schema_only: bool,
    /// With `--url --only updates` or `sustained`: how many users to create before updating them round after
    /// round; with `--only creates`: how many to create at each concurrency (default 3,000).
    #[arg(long, requires = "url")]
    users: Option<usize>,
    /// Time bound of any one scenario, in seconds.
    #[arg(long, default_value_t = 300)]
    limit_secs: u64,
}

/// Sizes of one run.
struct Scale {
    creates: usize,
    group_members: usize,
    populations: Vec<usize>,
    lookups: usize,
    peer_creates: usize,
    peer_population: usize,
    peer_group_members: usize,
    connections: usize,
    distinct_binaries: usize,
}

impl Scale {
    fn of(a: &Args) -> Scale {
        let mut s = if a.quick {
            Scale { creates: 100, group_members: 300, populations: vec![500, 1_000], lookups: 200, peer_creates: 50, peer_population: 500, peer_group_members: 100, connections: 20, distinct_binaries: 5 }
        } else {
            Scale { creates: 3_000, group_members: 50_000, populations: vec![10_000, 100_000, 1_000_000], lookups: 20_000, peer_creates: 1_000, peer_population: 10_000, peer_group_members: 2_000, connections: 1_000, distinct_binaries: 100 }
        };
        if let Some(m) = a.max_users {
            s.populations.retain(|p| *p <= m);
        }
        if let Some(c) = a.connections {
            s.connections = c;
        }
        if let Some(c) = a.distinct_binaries {
            s.distinct_binaries = c;
        }
        s
    }
}

const CHAIN: &str = r#"
[[tenant.idp.chain]]
plugin = "builtin:username"
config = { source = "email", local_part = true, case = "lower" }
[[tenant.idp.chain]]
plugin = "builtin:groups"
config = { map = { "dev users" = "software_dev" }, defaults = { all_users = ["app-users"] } }
[[tenant.idp.chain]]
plugin = "builtin:attributes"
config = { mappings = [{ from = "name.familyName", to = "urn:mapwright:custom:User:surname", transform = ["upper"] }] }
"#;

fn config(hostile: Option<&std::path::Path>) -> String {
    // No rate limits and no guard cap: the benchmark deactivates thousands of users on purpose.
    let idp = |name: &str| format!("\n[[tenant.idp]]\nname = \"{name}\"\nrate_per_second = 0\nguard = {{ max_destructive = 0 }}\n");
    let mut c = String::from("[server]\nlisten = \"127.0.0.1:0\"\nbody_limit = 33554432\n\n[[tenant]]\nname = \"bench\"\n");
    c += &idp("plain");
    c += &idp("chained");
    c += CHAIN;
    // The same chain without its default group: what the rules cost when their decisions
    // add no rows to the directory.
    c += &idp("no-grant");
    c += &CHAIN.replace(r#", defaults = { all_users = ["app-users"] }"#, "");
    c += &idp("swapped");
    c += "[[tenant.idp.chain]]\nplugin = \"builtin:username\"\nconfig = { source = \"email\", local_part = true, case = \"lower\" }\n";
    c += "\n[[tenant]]\nname = \"noisy\"\nplugin_limits = { cpu_ms = 100 }\n";
    c += &idp("good");
    c += CHAIN;
    if let Some(h) = hostile {
        c += &idp("evil");
        c += &format!("[[tenant.idp.chain]]\nplugin = {:?}\n", h.display().to_string());
    }
    c
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let scale = Scale::of(&a);
    // A quick run checks the tool, not the servers: nothing may take long.
    let limit = Duration::from_secs(if a.quick { a.limit_secs.min(10) } else { a.limit_secs });
    let bin = a.server_bin.clone().unwrap_or_else(|| servers::sibling("mapwright"));
    let plugins = a.plugins_dir.clone().unwrap_or_else(|| {
        servers::sibling("x").parent().and_then(|d| d.parent()).map(|t| t.join("wasm-plugins/wasm32-wasip2/wasm-plugins")).unwrap_or_default()
    });
    // Absolute: the server resolves plugin paths against its configuration file's directory.
    let plugins = std::fs::canonicalize(&plugins).unwrap_or(plugins);
    let hostile = Some(plugins.join("mapwright_test_hostile.wasm")).filter(|p| p.exists());
    let wants = |g: &str| a.only.is_empty() || a.only.iter().any(|o| o == g);
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).timeout(Duration::from_secs(120)).build()?;
    let mut report = Report::new();
    println!(
        "mapwright-bench: {} cores, server {}, peer {}{}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        bin.display(),
        a.peer.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "none".into()),
        if a.quick { " (quick)" } else { "" }
    );

    if let (Some(url), Some(token)) = (&a.url, &a.token) {
        let mut t = Scim::new("target", url.trim_end_matches('/').to_string(), token.clone(), &http)?;
        t.core_schema_only = a.core_schema_only;
        if a.only.iter().any(|o| o == "creates") {
            creates(&t, a.users.unwrap_or(scale.creates), limit, &mut report).await;
            report.finish();
            return quick_failures(&a, &report);
        }
        if a.only.iter().any(|o| o == "lookups") {
            // The lookups row alone (seeded as the full run seeds), to compare two builds.
            let pop = a.users.unwrap_or(10_000);
            let seeded = scenarios::seed(&t, 64, 0, pop, "pop", Duration::from_secs(3600)).await;
            report.row(&format!("seed {pop} users, c64"), &t.label, seeded);
            for c in [1usize, 8] {
                report.row(&format!("GET userName eq at {pop} users, c{c}"), &t.label, scenarios::lookups(&t, pop, c, scale.lookups, "pop", limit).await);
            }
            report.finish();
            return quick_failures(&a, &report);
        }
        if a.only.iter().any(|o| o == "sustained") {
            sustained(&t, a.users.unwrap_or(scale.creates), limit, &mut report).await?;
            report.finish();
            return quick_failures(&a, &report);
        }
        if a.only.iter().any(|o| o == "updates") {
            // Long enough to profile: creates, then PATCH and PUT over them round after round
            // until the time bound, then the same for creates.
            let stored = a.users.unwrap_or(scale.creates);
            let (_, users) = scenarios::creates(&t, 8, stored, "upd", limit.max(Duration::from_secs(600))).await;
            println!("{} users stored", users.len());
            for (how, what) in [(Update::Patch, "PATCH replace 2 attributes, c8, repeated"), (Update::Put, "PUT whole user, c8, repeated")] {
                let s = repeat(limit, || scenarios::updates(&t, &users, how, 8, limit)).await;
                report.row(what, &t.label, s);
            }
            let mut round = 0;
            let s = repeat(limit, || {
                round += 1;
                let prefix = format!("more{round}");
                let t = t.clone();
                let n = scale.creates;
                async move { scenarios::creates(&t, 8, n, &prefix, limit).await.0 }
            })
            .await;
            report.row("POST /Users, c8, repeated", &t.label, s);
            report.finish();
            return quick_failures(&a, &report);
        }
        idp_traffic(&t, scale.creates, scale.group_members, limit, &mut report).await?;
        for c in [1usize, 8] {
            let pop = scale.group_members;
            report.row(&format!("GET userName eq at the {pop} users seeded, c{c}"), &t.label, scenarios::lookups(&t, pop, c, scale.lookups, "pop", limit).await);
        }
        report.finish();
        return quick_failures(&a, &report);
    }

    let server = servers::mapwright(&bin, &config(hostile.as_deref()))?;
    let scim = |idp: &str, tenant: &str| -> anyhow::Result<Scim> {
        Scim::new(idp, format!("{}/scim/v2/{tenant}/{idp}", server.url), server.token(tenant, idp)?, &http)
    };
    let plain = scim("plain", "bench")?.labelled("mapwright");
    let chained = scim("chained", "bench")?.labelled("mapwright+chain");
    let no_grant = scim("no-grant", "bench")?.labelled("mapwright+chain-no-grant");
    let peer_process = match &a.peer {
        Some(p) => Some(servers::peer(p, "bench-token")?),
        None => None,
    };
    let peer = match &peer_process {
        Some(p) => Some(Scim::new("scim2-server", p.url.clone(), "bench-token".into(), &http)?),
        None => None,
    };
    let peer_rs_process = match &a.peer_rs {
        Some(p) => Some(servers::peer(p, "bench-token")?),
        None => None,
    };
    let peers: Vec<Scim> = peer
        .iter()
        .cloned()
        .map(Ok)
        .chain(peer_rs_process.iter().map(|p| {
            let mut t = Scim::new(report::PEER_RS, p.url.clone(), "bench-token".into(), &http)?;
            t.core_schema_only = true;
            Ok(t)
        }))
        .collect::<anyhow::Result<_>>()?;

    if wants("chain") {
        // Chain vs no chain in ABBA order (then reversed, twice): the database grows with
        // every run and later runs are slower, so plain-then-chained would charge that drift
        // to the chain. Besides throughput, the server's CPU per create: on a shared 2-core
        // machine it moves far less between runs than throughput does.
        let targets = [&plain, &chained, &no_grant];
        let (mut rate, mut cpu) = ([0.0f64; 3], [0.0f64; 3]);
        let (mut threads, mut client) = ([servers::ThreadCpu::default(); 3], [0.0f64; 3]);
        let (mut commits, mut writes) = ([0u64; 3], [0u64; 3]);
        let admin = server.admin_token()?;
        const RUNS: usize = 4;
        let mut order: Vec<usize> = vec![0, 1, 2];
        for round in 0..RUNS {
            for &k in &order {
                let t = targets[k];
                let before = server.cpu_seconds()?;
                let (t0, me0) = (server.thread_cpu()?, servers::own_cpu_seconds()?);
                let (c0, w0) = store_counters(&http, &server.url, &admin).await?;
                // Names unique per target too: both chains map to the same tenant's
                // usernames, so a shared prefix would make one chain's creates conflict.
                let (s, _) = scenarios::creates(t, 8, scale.creates * 2, &format!("abba{round}t{k}"), limit).await;
                let n = s.done.max(1) as f64;
                cpu[k] += (server.cpu_seconds()? - before) / n;
                let used = server.thread_cpu()? - t0;
                threads[k] = servers::ThreadCpu { writer: threads[k].writer + used.writer / n, workers: threads[k].workers + used.workers / n };
                client[k] += (servers::own_cpu_seconds()? - me0) / n;
                let (c1, w1) = store_counters(&http, &server.url, &admin).await?;
                (commits[k], writes[k]) = (commits[k] + c1 - c0, writes[k] + w1 - w0);
                rate[k] += s.rate();
                report.row(&format!("POST /Users c8, ABBA run {}", round + 1), &t.label, s);
            }
            order.reverse();
        }
        let per = |x: f64| x / RUNS as f64 * 1e6;
        report.note(format!(
            "server CPU per create (mean of {RUNS} runs): no chain {:.0} µs, 3-plugin chain {:.0} µs, the chain without its default group {:.0} µs",
            per(cpu[0]),
            per(cpu[1]),
            per(cpu[2])
        ));
        // Where it goes: the writer is one thread, the workers run requests and plugin calls,
        // and this load generator shares the same cores (a real IdP would not).
        for (k, what) in ["no chain", "3-plugin chain", "chain without its default group"].iter().enumerate() {
            report.note(format!(
                "CPU per create, {what}: writer thread {:.0} µs, request workers {:.0} µs, load generator {:.0} µs",
                per(threads[k].writer),
                per(threads[k].workers),
                per(client[k])
            ));
        }
        let batch = |k: usize| writes[k] as f64 / commits[k].max(1) as f64;
        report.note(format!("writes per commit (group commit): no chain {:.1}, chain {:.1}, chain without grant {:.1}", batch(0), batch(1), batch(2)));
        report.ratio(&format!("3-plugin chain / no chain, POST /Users c8, ABBA over {RUNS} runs"), rate[1] / rate[0].max(f64::MIN_POSITIVE));
        report.ratio("the same, by server CPU per create (no chain / chain)", cpu[0] / cpu[1].max(f64::MIN_POSITIVE));
        report.ratio("chain without its default group grant / no chain, throughput", rate[2] / rate[0].max(f64::MIN_POSITIVE));
        report.ratio("the same, by server CPU per create", cpu[0] / cpu[2].max(f64::MIN_POSITIVE));

        // What each plugin call costs in CPU, on a server of its own with the plugins' CPU
        // clock on (two system calls per call: not on the server measured above).
        let clocked = servers::mapwright_with(&bin, &config(hostile.as_deref()), &[("MAPWRIGHT_PLUGIN_CPU_CLOCK", "1")])?;
        let t = Scim::new("chained", format!("{}/scim/v2/bench/chained", clocked.url), clocked.token("bench", "chained")?, &http)?;
        let (s, _) = scenarios::creates(&t, 8, scale.creates, "clocked", limit).await;
        let calls = plugin_cpu(&http, &clocked.url, &clocked.admin_token()?).await?;
        let calls: Vec<String> = calls.iter().map(|(hook, us)| format!("{hook} {us:.1} µs")).collect();
        report.note(format!("CPU per plugin call in the server (its thread's CPU clock; {} creates at c8, 3-plugin chain): {}", s.done, calls.join(", ")));
    }

    if wants("scim") {
        let mut targets = vec![(plain.clone(), scale.creates, scale.group_members), (chained.clone(), scale.creates, scale.group_members)];
        for p in &peers {
            targets.push((p.clone(), scale.peer_creates, scale.peer_group_members));
        }
        for (t, creates, members) in &targets {
            // scim2-server stalls for a second at a time under concurrency (see
            // seed_concurrency), the Rust crate's searches scan every user: bound the peers'
            // runs in time rather than wait out the count.
            let limit = if peers.iter().any(|p| p.label == t.label) { limit.min(Duration::from_secs(60)) } else { limit };
            idp_traffic(t, *creates, *members, limit, &mut report).await?;
        }
        // Lookups: Mapwright at every population, the peer at its own; both at the peer's size.
        let mut have = scale.group_members;
        for &pop in &scale.populations {
            if pop > have {
                let s = scenarios::seed(&plain, 64, have, pop, "pop", Duration::from_secs(3600)).await;
                report.note(format!("mapwright: grew to {pop} users ({:.0} creates/s at c64)", s.rate()));
                have = pop;
            }
            for c in [1usize, 8] {
                report.row(&format!("GET userName eq at {pop} users, c{c}"), &plain.label, scenarios::lookups(&plain, pop, c, scale.lookups, "pop", limit).await);
            }
            if pop == scale.peer_population {
                for p in &peers {
                    let s = scenarios::seed(p, seed_concurrency(p), scale.peer_group_members, pop, "pop", Duration::from_secs(3600)).await;
                    report.note(format!("{}: grew to {pop} users ({:.0} creates/s)", p.label, s.rate()));
                    for c in [1usize, 8] {
                        report.row(&format!("GET userName eq at {pop} users, c{c}"), &p.label, scenarios::lookups(p, pop, c, scale.lookups / 10, "pop", limit.min(Duration::from_secs(60))).await);
                    }
                }
            }
        }
    }

    if wants("swap") {
        let swapped = scim("swapped", "bench")?.labelled("mapwright+chain");
        let admin = Scim::new("admin", format!("{}/admin/v1/tenants/bench/idps/swapped/chain", server.url), server.admin_token()?, &http)?;
        let steady = scenarios::creates(&swapped, 8, scale.creates, "steady", limit).await.0;
        report.row("POST /Users c8, 1-plugin chain, steady", &swapped.label, steady.clone());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let swapper = {
            let (admin, stop) = (admin.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut n, mut failed) = (0usize, 0usize);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let case = if n % 2 == 0 { "upper" } else { "lower" };
                    let body = json!({"note": "swap", "entries": [{"plugin": "builtin:username", "config": {"source": "email", "local_part": true, "case": case}}]});
                    if admin.call(admin.send(Method::POST, "", &body)).await.is_none() {
                        failed += 1;
                    }
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                (n, failed)
            })
        };
        // Long enough for dozens of swaps.
        let during = scenarios::creates(&swapped, 8, scale.creates * 5, "swapping", limit).await.0;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (n, failed) = swapper.await.unwrap_or((0, 0));
        report.ratio("hot swap: throughput while swapping / steady", during.rate() / steady.rate().max(f64::MIN_POSITIVE));
        report.row(&format!("POST /Users c8 while the chain is swapped every 50 ms ({n} swaps, {failed} refused)"), &swapped.label, during);
    }

    if wants("noisy") {
        let good = scim("good", "noisy")?.labelled("mapwright+chain");
        // Longer than the 10 s suspension, so the steady state (a suspension, one looping
        // call after it, suspended again) is what is measured, not just the first seconds.
        let span = if a.quick { Duration::from_secs(2) } else { Duration::from_secs(25) };
        let alone = scenarios::creates(&good, 8, usize::MAX, "alone", span).await.0;
        report.row("tenant B: POST /Users c8, alone", &good.label, alone.clone());
        match &hostile {
            Some(_) => {
                let evil = scim("evil", "noisy")?;
                let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                // Four requests at a time keep tenant A's looping plugin busy until B is done,
                // honouring Retry-After on a 503 as IdPs do.
                let noise: Vec<_> = (0..4)
                    .map(|_| {
                        let (evil, stop) = (evil.clone(), stop.clone());
                        tokio::spawn(async move {
                            let (mut burnt, mut refused) = (0usize, 0usize);
                            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                                let Ok(r) = evil.send(Method::POST, "/Users", &user("evil-loop", 0)).send().await else { continue };
                                let status = r.status().as_u16();
                                let wait = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
                                let _ = r.bytes().await;
                                match (status, wait) {
                                    (503, Some(secs)) => {
                                        refused += 1;
                                        let until = std::time::Instant::now() + Duration::from_secs(secs);
                                        while std::time::Instant::now() < until && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                                            tokio::time::sleep(Duration::from_millis(50)).await;
                                        }
                                    }
                                    _ => burnt += 1,
                                }
                            }
                            (burnt, refused)
                        })
                    })
                    .collect();
                tokio::time::sleep(Duration::from_millis(300)).await;
                let beside = scenarios::creates(&good, 8, usize::MAX, "beside", span).await.0;
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                let (mut burnt, mut refused) = (0, 0);
                for n in noise {
                    let (b, r) = n.await.unwrap_or((0, 0));
                    burnt += b;
                    refused += r;
                }
                report.ratio("noisy neighbour: tenant B's throughput beside a looping plugin / alone", beside.rate() / alone.rate().max(f64::MIN_POSITIVE));
                report.ratio("noisy neighbour: tenant B's p99 beside a looping plugin / alone", beside.p99_ms() / alone.p99_ms().max(f64::MIN_POSITIVE));
                report.row(&format!("tenant B: POST /Users c8, while tenant A's plugin loops (4 at a time: {burnt} stopped at 100 ms CPU, {refused} refused while suspended)"), &good.label, beside);
            }
            None => report.note("noisy neighbour skipped: the hostile test plugin was not found (build the workspace first)".into()),
        }
    }

    drop(server);
    if wants("store") {
        match &a.database_url {
            Some(url) => {
                let sizes = stores::Sizes {
                    creates: scale.creates,
                    population: scale.populations.first().copied().unwrap_or(1_000),
                    lookups: scale.lookups,
                    members: scale.creates.min(2_000),
                };
                stores::run(&bin, &config(None), url, &http, &sizes, limit, &mut report).await.context("store")?;
            }
            None => report.note("store scenarios skipped: no PostgreSQL cluster (--database-url or MW_DATABASE_URL)".into()),
        }
    }
    if wants("delivery") {
        let (n, rate, secs) = if a.quick { (200, 100.0, 1.0) } else { (20_000, 1000.0, 10.0) };
        delivery::run(&bin, &http, n, rate, secs, limit, &mut report).await.context("delivery")?;
    }
    if wants("memory") {
        let username = plugins.join("mapwright_rule_username.wasm");
        for v in [memory::Variant::Identical, memory::Variant::DistinctConfigs, memory::Variant::DistinctBinaries] {
            let n = if v == memory::Variant::DistinctBinaries { scale.distinct_binaries } else { scale.connections };
            let f = memory::measure(&bin, &username, n, v, &http).await.with_context(|| format!("memory, {}", v.label()))?;
            report.memory(v.label(), &f);
        }
    }
    if wants("tenants") {
        // Quick: a budget of two plugins' code, so that the few connections evict one another.
        let plan = if a.quick {
            tenants::Plan { connections: a.tenants.unwrap_or(12), hot: 2, span: Duration::from_secs(2), cold_rate: 50.0, budget_mib: Some(2), lang_dir: None }
        } else {
            tenants::Plan { connections: a.tenants.unwrap_or(10_000), hot: 8, span: Duration::from_secs(20), cold_rate: a.cold_rate.unwrap_or(20.0), budget_mib: None, lang_dir: a.lang_plugins.clone() }
        };
        tenants::run(&bin, &plugins.join("acme_rules.wasm"), &plan, &http, &mut report).await.context("tenants")?;
    }
    report.finish();
    quick_failures(&a, &report)
}

/// A quick run checks the tool: any failed request of the server under test fails it.
fn quick_failures(a: &Args, report: &Report) -> anyhow::Result<()> {
    let failed = report.failures();
    if a.quick && !failed.is_empty() {
        anyhow::bail!("requests failed:\n{}", failed.join("\n"));
    }
    Ok(())
}

/// The IdP traffic against one endpoint: creates at c1/c8/c64, the initial sync, updates by
/// PATCH and PUT, deactivations, then a group push with `members` users.
async fn idp_traffic(t: &Scim, creates: usize, members: usize, limit: Duration, report: &mut Report) -> anyhow::Result<()> {
    self::creates(t, creates, limit, report).await;
    let (s, users) = scenarios::initial_sync(t, 8, creates, "sync", limit).await;
    report.note(format!("{}: {} users from the initial sync to update", t.label, users.len()));
    report.row("initial sync (GET filter + POST), c8", &t.label, s);
    for (how, what) in [(Update::Patch, "PATCH replace 2 attributes, c8"), (Update::Put, "PUT whole user, c8"), (Update::Deactivate, "PATCH active=false, c8")] {
        report.row(what, &t.label, scenarios::updates(t, &users, how, 8, limit).await);
    }
    let s = scenarios::seed(t, seed_concurrency(t), 0, members, "pop", limit).await;
    report.note(format!("{}: seeded {} users in {:.1} s ({:.0}/s, {} errors)", t.label, s.done, s.elapsed.as_secs_f64(), s.rate(), s.errors));
    let ids = match member_ids(t, members).await {
        Ok(ids) => ids,
        // The Rust crate filters by equality only: it cannot list the users to push.
        Err(e) if !t.label.starts_with("mapwright") => {
            report.note(format!("{}: group push skipped: {e:#}", t.label));
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let g = scenarios::group_push(t, &ids, 8, limit).await?;
    report.row(&format!("group: add 1 member per PATCH, c8 ({} members)", ids.len()), &t.label, g.single);
    report.single(&format!("group: one PATCH adding {} members", ids.len()), &t.label, g.one_patch, g.one_patch_ok);
    report.row(&format!("GET group with {} members", ids.len()), &t.label, g.get_full);
    report.row(&format!("GET group ({} members), excludedAttributes=members", ids.len()), &t.label, g.get_excluded);
    Ok(())
}

/// The server's /metrics text.
async fn metrics(http: &reqwest::Client, url: &str, admin_token: &str) -> anyhow::Result<String> {
    Ok(http.get(format!("{url}/metrics")).bearer_auth(admin_token).send().await?.error_for_status()?.text().await?)
}

/// The writer's commits and committed writes so far, from the server's /metrics.
async fn store_counters(http: &reqwest::Client, url: &str, admin_token: &str) -> anyhow::Result<(u64, u64)> {
    let text = metrics(http, url, admin_token).await?;
    let counter = |name: &str| -> anyhow::Result<u64> {
        text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok()).with_context(|| format!("no {name} in /metrics"))
    };
    Ok((counter("mapwright_store_commits_total ")?, counter("mapwright_store_writes_total ")?))
}

/// Mean CPU per call of each plugin hook, in µs, from the server's /metrics (which has them
/// only with `MAPWRIGHT_PLUGIN_CPU_CLOCK=1`).
async fn plugin_cpu(http: &reqwest::Client, url: &str, admin_token: &str) -> anyhow::Result<Vec<(String, f64)>> {
    let text = metrics(http, url, admin_token).await?;
    let series = |suffix: &str| -> Vec<(String, f64)> {
        let prefix = format!("mapwright_plugin_call_cpu_seconds_{suffix}{{");
        text.lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .filter_map(|l| l.split_once("} "))
            .filter_map(|(labels, v)| Some((labels.to_string(), v.trim().parse().ok()?)))
            .collect()
    };
    let counts = series("count");
    let calls: Vec<(String, f64)> = series("sum")
        .into_iter()
        .filter_map(|(labels, sum)| {
            let n = counts.iter().find(|(l, _)| *l == labels)?.1;
            let hook = labels.split("hook=\"").nth(1)?.trim_end_matches('"').to_string();
            (n > 0.0).then(|| (hook, sum / n * 1e6))
        })
        .collect();
    anyhow::ensure!(!calls.is_empty(), "no mapwright_plugin_call_cpu_seconds in /metrics");
    Ok(calls)
}

/// Runs `run` again and again until `limit` has passed; the figures of all runs together.
async fn repeat<F, Fut>(limit: Duration, mut run: F) -> load::Stats
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = load::Stats>,
{
    let started = std::time::Instant::now();
    let mut all = load::Stats::default();
    while started.elapsed() < limit {
        let s = run().await;
        if s.done == 0 {
            break;
        }
        all.done += s.done;
        all.errors += s.errors;
        all.latencies.extend(s.latencies);
    }
    all.elapsed = started.elapsed();
    all.latencies.sort();
    all
}

/// An hour of one connection's IdP traffic compressed into `limit` at c1 (see
/// `sustained.rs`), over `stored` users created first: a row per kind, one for every write,
/// and the writes' p99/p50 in each 30 s window.
async fn sustained(t: &Scim, stored: usize, limit: Duration, report: &mut Report) -> anyhow::Result<()> {
    let (_, users) = scenarios::creates(t, 8, stored, "hour", limit.max(Duration::from_secs(600))).await;
    println!("{} users stored", users.len());
    let (samples, elapsed) = sustained::run(t, &users, limit).await?;
    for kind in sustained::Kind::ALL {
        report.row(&format!("IdP mix c1: {}", kind.label()), &t.label, sustained::stats(&samples, elapsed, |s| s.kind == kind));
    }
    report.row("IdP mix c1: every write", &t.label, sustained::stats(&samples, elapsed, |s| s.kind.is_write()));
    let ratios: Vec<String> = sustained::write_ratios(&samples, elapsed, Duration::from_secs(30)).iter().map(|r| format!("{r:.2}")).collect();
    println!("writes' p99/p50 by 30 s window: {}", ratios.join(" "));
    Ok(())
}

/// Creates at concurrency 1, 8 and 64.
async fn creates(t: &Scim, n: usize, limit: Duration, report: &mut Report) {
    for c in [1usize, 8, 64] {
        let (s, _) = scenarios::creates(t, c, n, &format!("c{c}"), limit).await;
        report.row(&format!("POST /Users, concurrency {c}"), &t.label, s);
    }
}

/// The peer serves one connection at a time (its listen backlog overflows under concurrency
/// and clients wait out TCP's 1 s retransmission): it is filled fastest one request at a time.
fn seed_concurrency(t: &Scim) -> usize {
    if t.label == "scim2-server" { 1 } else { 64 }
}

/// The ids of the first `n` users of the endpoint, in pages of 1000.
async fn member_ids(t: &Scim, n: usize) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::with_capacity(n);
    let mut start = 1;
    while ids.len() < n {
        let q = [("startIndex", start.to_string()), ("count", "1000".into()), ("attributes", "id".into()), ("filter", "userName sw \"pop.\"".into())];
        let page = t.call(t.get("/Users").query(&q)).await.with_context(|| format!("{}: listing users", t.label))?;
        let items = page["Resources"].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            break;
        }
        start += items.len();
        ids.extend(items.iter().filter_map(|u| u["id"].as_str().map(str::to_string)));
    }
    ids.truncate(n);
    Ok(ids)
}
