//! Many tenants with rules of their own on one node: every connection runs a distinct plugin
//! binary (variants of the Rust plugin template; in a full run every thousandth a JavaScript or
//! a Python one), most connections idle and a few hot, under the server's plugin memory
//! budget. Measured: resident memory, the hot connections' throughput and p99 against a server
//! with only them, and the latency of a cold connection's first request (its plugin's code
//! evicted, loaded again from the disk cache).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::{Value, json};

use crate::load::{Stats, drive};
use crate::memory::distinct_copy;
use crate::report::Report;
use crate::scenarios::{name, user};
use crate::servers::{self, Process, Scim};

/// Sizes of one run.
pub struct Plan {
    /// Connections, each with a plugin binary of its own.
    pub connections: usize,
    /// Of them, the hot ones (the rest only see a request now and then).
    pub hot: usize,
    /// How long the hot traffic runs.
    pub span: Duration,
    /// Cold connections' requests per second beside the hot traffic.
    pub cold_rate: f64,
    /// `[server] plugin_memory_mib` (None: the default).
    pub budget_mib: Option<usize>,
    /// Where the JavaScript and Python plugins are (`acme-rules-js.wasm`, `acme-rules-py.wasm`).
    pub lang_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Lang {
    Rust,
    JavaScript,
    Python,
}

impl Lang {
    /// The plugin of connection `k`: one JavaScript and one Python per thousand (none in
    /// smaller runs).
    fn of(k: usize, plan: &Plan) -> Lang {
        match (plan.lang_dir.is_some() && plan.connections >= 1000, k % 1000) {
            (true, 500) => Lang::JavaScript,
            (true, 501) => Lang::Python,
            _ => Lang::Rust,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::JavaScript => "JavaScript",
            Lang::Python => "Python",
        }
    }
}

/// The plugins' bytes: the Rust template and, if built, the other languages'.
struct Binaries {
    rust: Vec<u8>,
    js: Option<Vec<u8>>,
    python: Option<Vec<u8>>,
}

impl Binaries {
    fn read(rust: &Path, lang_dir: Option<&Path>) -> anyhow::Result<Binaries> {
        let rust = std::fs::read(rust).with_context(|| format!("reading {}", rust.display()))?;
        let lang = |f: &str| lang_dir.and_then(|d| std::fs::read(d.join(f)).ok());
        Ok(Binaries { rust, js: lang("acme-rules-js.wasm"), python: lang("acme-rules-py.wasm") })
    }

    /// Connection `k`'s binary: its language's plugin with a custom section of its own.
    fn of(&self, lang: Lang, k: usize) -> Vec<u8> {
        let base = match lang {
            Lang::JavaScript => self.js.as_ref(),
            Lang::Python => self.python.as_ref(),
            Lang::Rust => None,
        };
        distinct_copy(base.unwrap_or(&self.rust), k)
    }
}

/// The one entry of every connection's chain: the template's rules (any plugin of the three
/// languages takes this configuration).
fn chain(hash: &str) -> Value {
    json!({"note": "bench", "entries": [{"plugin": format!("sha256:{hash}"), "config": {
        "domains": ["bench.example"], "groups": {"Dev users": "software_dev"}, "defaults": ["app-users"],
    }}]})
}

fn config(budget_mib: Option<usize>) -> String {
    let budget = budget_mib.map(|m| format!("plugin_memory_mib = {m}\n")).unwrap_or_default();
    format!("[server]\nlisten = \"127.0.0.1:0\"\n{budget}\n[[tenant]]\nname = \"many\"\n")
}

/// One connection set up: its SCIM endpoint and its plugin's language.
#[derive(Clone)]
struct Connection {
    scim: Scim,
    lang: Lang,
}

/// Creates connections `ks` on `server`, each with its own binary and a chain of it, and
/// sends one user through each (so each chain has run once). Two at a time: each binary is
/// compiled on upload.
async fn set_up(server: &Process, ks: Vec<usize>, plan: &Plan, binaries: Arc<Binaries>, http: &reqwest::Client) -> anyhow::Result<Vec<Connection>> {
    let admin = Scim::new("admin", format!("{}/admin/v1/tenants/many", server.url), server.admin_token()?, http)?;
    let langs: Vec<Lang> = ks.iter().map(|&k| Lang::of(k, plan)).collect();
    let made: Arc<Mutex<Vec<Option<Connection>>>> = Arc::new(Mutex::new(vec![None; ks.len()]));
    let (n, base, ks) = (ks.len(), server.url.clone(), Arc::new(ks));
    let setup = {
        let (made, langs) = (made.clone(), Arc::new(langs));
        drive(2, n, Duration::from_secs(7200), move |i| {
            let (admin, base, binaries, made, ks, langs) = (admin.clone(), base.clone(), binaries.clone(), made.clone(), ks.clone(), langs.clone());
            async move {
                let (k, lang) = (ks[i], langs[i]);
                let Some(idp) = admin.call(admin.send(Method::POST, "/idps", &json!({"name": format!("c{k}"), "rate_per_second": 0}))).await else { return false };
                let Some(token) = idp["token"].as_str() else { return false };
                let up = admin.http.post(format!("{}/plugins", admin.base)).bearer_auth(&admin.token).header("content-type", "application/wasm").body(binaries.of(lang, k));
                let Some(hash) = admin.call(up).await.and_then(|p| p["hash"].as_str().map(str::to_string)) else { return false };
                if admin.call(admin.send(Method::POST, &format!("/idps/c{k}/chain"), &chain(&hash))).await.is_none() {
                    return false;
                }
                let Ok(scim) = Scim::new("mapwright", format!("{base}/scim/v2/many/c{k}"), token.to_string(), &admin.http) else { return false };
                let ok = scim.ok(scim.send(Method::POST, "/Users", &user(&format!("first.c{k}@bench.example"), k))).await;
                if let Ok(mut m) = made.lock() {
                    m[i] = Some(Connection { scim, lang });
                }
                ok
            }
        })
        .await
    };
    let made: Vec<Connection> = made.lock().map(|m| m.iter().flatten().cloned().collect()).unwrap_or_default();
    if setup.done < n || made.len() < n {
        bail!("only {} of {n} connections were set up ({} errors)", made.len(), setup.errors);
    }
    Ok(made)
}

/// POST /Users at concurrency 8 spread over the hot connections for `span`.
async fn hot_traffic(hot: &[Connection], prefix: &str, span: Duration) -> Stats {
    let hot: Arc<Vec<Connection>> = Arc::new(hot.to_vec());
    let prefix = prefix.to_string();
    drive(8, usize::MAX, span, move |i| {
        let (hot, prefix) = (hot.clone(), prefix.clone());
        async move {
            let c = &hot[i % hot.len()];
            c.scim.ok(c.scim.send(Method::POST, "/Users", &user(&name(&prefix, i), i))).await
        }
    })
    .await
}

/// One request to each of `cold` in turn, `rate` a second (or as fast as they answer), until
/// `stop`; the latency of each (for a cold connection, its first request since its code was
/// evicted).
/// The users are named `<prefix>.<i>…`: one directory for every connection of the tenant.
async fn cold_traffic(cold: Vec<Connection>, prefix: String, rate: f64, stop: Arc<std::sync::atomic::AtomicBool>) -> Stats {
    let (started, mut latencies, mut errors) = (Instant::now(), Vec::new(), 0);
    let gap = Duration::from_secs_f64(1.0 / rate.max(0.001));
    for (i, c) in cold.iter().enumerate() {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        let t = Instant::now();
        if c.scim.ok(c.scim.send(Method::POST, "/Users", &user(&name(&prefix, i), i))).await {
            latencies.push(t.elapsed());
        } else {
            errors += 1;
        }
        tokio::time::sleep(gap.saturating_sub(t.elapsed())).await;
    }
    latencies.sort();
    Stats { done: latencies.len(), errors, elapsed: started.elapsed(), latencies }
}

/// A counter or gauge from the server's /metrics (0 when absent).
async fn metric(http: &reqwest::Client, server: &Process, name: &str) -> f64 {
    let Ok(token) = server.admin_token() else { return 0.0 };
    let text = crate::metrics(http, &server.url, &token).await.unwrap_or_default();
    text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0)
}

const MIB: f64 = 1024.0 * 1024.0;

/// Lets the node settle after a setup that wrote gigabytes: what is dirty goes to the disk
/// (`sync`) before the measured turns, which are about serving, not about setup's writeback.
async fn settle() {
    let _ = tokio::task::spawn_blocking(|| std::process::Command::new("sync").status()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
}

/// Runs `traffic`; with `MW_BENCH_PERF=<dir>` set (diagnosis), under `perf record` of
/// `server`, written to `<dir>/<label>.data`.
async fn profiled(server: &Process, label: &str, traffic: impl Future<Output = Stats>) -> Stats {
    let Some(dir) = std::env::var_os("MW_BENCH_PERF") else { return traffic.await };
    let out = Path::new(&dir).join(format!("{label}.data"));
    let perf = std::process::Command::new("perf")
        .args(["record", "-q", "-F", "499", "-g", "-p", &server.pid().to_string(), "-o"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let stats = traffic.await;
    if let Ok(mut perf) = perf {
        // perf writes its file on SIGINT.
        let _ = std::process::Command::new("kill").args(["-INT", &perf.id().to_string()]).status();
        let _ = perf.wait();
    }
    stats
}

/// The scenario: server A with every connection; a cold connection's first request on the
/// quiet node; server B with only the hot connections; the hot traffic in four turns, A beside
/// a trickle of cold requests, B, B, A; then each connection of another language once, cold.
pub async fn run(bin: &Path, rust_plugin: &Path, plan: &Plan, http: &reqwest::Client, report: &mut Report) -> anyhow::Result<()> {
    let binaries = Arc::new(Binaries::read(rust_plugin, plan.lang_dir.as_deref())?);
    let n = plan.connections.max(plan.hot + 1);
    let server = servers::mapwright(bin, &config(plan.budget_mib))?;
    let empty = server.rss_bytes()?;
    let started = Instant::now();
    let all = set_up(&server, (0..n).collect(), plan, binaries.clone(), http).await.context("setting up the connections")?;
    let setup = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let loaded = server.rss_bytes()?;
    let code = metric(http, &server, "mapwright_plugin_code_bytes ").await;
    report.note(format!(
        "tenants: {n} connections, each with a distinct plugin binary ({} JavaScript, {} Python), set up in {:.0} s: RSS {:.0} MiB (empty server {:.0} MiB), compiled code held {:.0} MiB, {} evictions",
        all.iter().filter(|c| c.lang == Lang::JavaScript).count(),
        all.iter().filter(|c| c.lang == Lang::Python).count(),
        setup.as_secs_f64(),
        loaded as f64 / MIB,
        empty as f64 / MIB,
        code / MIB,
        metric(http, &server, "mapwright_plugin_evictions_total ").await,
    ));

    // Hot: the last connections set up (Rust ones). Cold: the earliest, whose code the later
    // ones evicted, in the order they were set up.
    let hot: Vec<Connection> = all.iter().rev().filter(|c| c.lang == Lang::Rust).take(plan.hot).cloned().collect();
    let mut cold: Vec<Connection> = all.iter().filter(|c| c.lang == Lang::Rust).take(n - plan.hot).cloned().collect();
    // Diagnosis: the same trickle to connections whose code is still held (set up last).
    if std::env::var_os("MW_BENCH_COLD_RESIDENT").is_some() {
        cold.reverse();
        cold.drain(..plan.hot.min(cold.len()));
    }
    // First on a quiet node: what loading a plugin's code costs a request by itself.
    let beside = cold.split_off((cold.len() / 2).min(200));
    let quiet = std::mem::replace(&mut cold, beside);
    let before = metric(http, &server, "mapwright_plugin_cold_load_seconds_count ").await;
    let alone_cold = cold_traffic(quiet, "quiet".to_string(), 1000.0, Arc::new(std::sync::atomic::AtomicBool::new(false))).await;
    let loads = metric(http, &server, "mapwright_plugin_cold_load_seconds_count ").await - before;
    report.row(&format!("tenants: a cold connection's first POST /Users, Rust, quiet node ({loads:.0} code loads from disk)"), "mapwright", alone_cold);

    // The same hot connections (the same binaries) on a server of their own, kept beside the
    // first (idle while the other runs): the two are measured in turns, ABBA, so that neither
    // has the machine's better minutes (setup's last writes reaching the disk, the databases
    // growing with each round).
    let alone_server = servers::mapwright(bin, &config(plan.budget_mib))?;
    let ks: Vec<usize> = (0..n).rev().filter(|&k| Lang::of(k, plan) == Lang::Rust).take(plan.hot).collect();
    let only = set_up(&alone_server, ks, plan, binaries, http).await.context("setting up the hot connections alone")?;
    settle().await;
    hot_traffic(&hot, "warm", Duration::from_secs(1)).await;
    hot_traffic(&only, "warm", Duration::from_secs(1)).await;
    let cold_loads = metric(http, &server, "mapwright_plugin_cold_load_seconds_count ").await;
    let cold = if plan.cold_rate > 0.0 { cold } else { Vec::new() };
    let mut halves = {
        let mut first = cold;
        let second = first.split_off(first.len() / 2);
        vec![second, first]
    };
    let turn = plan.span / 2;
    let (mut busy, mut alone, mut colds, mut sparses, mut turns) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (round, beside) in [true, false, false, true].into_iter().enumerate() {
        if !beside {
            let stats = profiled(&alone_server, &format!("alone{round}"), hot_traffic(&only, &format!("hot{round}"), turn)).await;
            turns.push(format!("alone {:.0}/s", stats.rate()));
            alone.push(stats);
            continue;
        }
        let cold = halves.pop().unwrap_or_default();
        // The control: as sparse a stream to the hot connections (code held, instances idle),
        // over the same seconds. A sparse stream samples the node's stalls that the closed loop
        // of the hot traffic hardly sees; what the cold requests take beyond it is theirs.
        let control: Vec<Connection> = hot.iter().cycle().take(cold.len()).cloned().collect();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let trickle = tokio::spawn(cold_traffic(cold, format!("cold{round}"), plan.cold_rate, stop.clone()));
        let sparse = tokio::spawn(cold_traffic(control, format!("sparse{round}"), plan.cold_rate, stop.clone()));
        let stats = profiled(&server, &format!("busy{round}"), hot_traffic(&hot, &format!("hot{round}"), turn)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let failed = || Stats { done: 0, errors: 1, elapsed: Duration::ZERO, latencies: Vec::new() };
        colds.push(trickle.await.unwrap_or_else(|_| failed()));
        sparses.push(sparse.await.unwrap_or_else(|_| failed()));
        turns.push(format!("beside {:.0}/s", stats.rate()));
        busy.push(stats);
    }
    let (busy, alone) = (Stats::merge(busy), Stats::merge(alone));
    let loads = metric(http, &server, "mapwright_plugin_cold_load_seconds_count ").await - cold_loads;
    report.row(&format!("tenants: POST /Users c8 over {} hot of {n} connections, cold ones beside", hot.len()), "mapwright", busy.clone());
    report.row(&format!("tenants: a cold connection's first POST /Users, Rust, beside the hot traffic ({loads:.0} code loads from disk)"), "mapwright", Stats::merge(colds));
    report.row("tenants: a hot connection's POST /Users at the cold ones' rate, beside the hot traffic (the control)", "mapwright", Stats::merge(sparses));
    report.row(&format!("tenants: POST /Users c8 over the {} hot connections on a server of their own", only.len()), "mapwright", alone.clone());
    report.note(format!("tenants: the hot traffic in turns of {:.0} s, ABBA: {}", turn.as_secs_f64(), turns.join(", ")));
    report.ratio("tenants: hot throughput beside every other connection / alone", busy.rate() / alone.rate().max(f64::MIN_POSITIVE));
    report.ratio("tenants: hot p99 beside every other connection / alone", busy.p99_ms() / alone.p99_ms().max(f64::MIN_POSITIVE));
    drop(alone_server);

    // Each connection of another language once, cold (set up early, evicted since).
    for lang in [Lang::JavaScript, Lang::Python] {
        let cs: Vec<Connection> = all.iter().filter(|c| c.lang == lang).cloned().collect();
        if cs.is_empty() {
            continue;
        }
        let stats = cold_traffic(cs, lang.label().to_string(), 1000.0, Arc::new(std::sync::atomic::AtomicBool::new(false))).await;
        report.row(&format!("tenants: a cold connection's first POST /Users, {}", lang.label()), "mapwright", stats);
    }
    report.note(format!(
        "tenants: after the traffic RSS {:.0} MiB, compiled code held {:.0} MiB, {} evictions, compiles: {} from source, {} from disk artifacts",
        server.rss_bytes()? as f64 / MIB,
        metric(http, &server, "mapwright_plugin_code_bytes ").await / MIB,
        metric(http, &server, "mapwright_plugin_evictions_total ").await,
        metric(http, &server, "mapwright_plugin_compiles_total{from=\"source\"} ").await,
        metric(http, &server, "mapwright_plugin_compiles_total{from=\"artifact\"} ").await,
    ));
    Ok(())
}
