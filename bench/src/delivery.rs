//! Delivery to applications: how fast a target drains a backlog (a webhook receiver that
//! answers at once, here in this process; another Mapwright as a SCIM target), and what
//! delivering to three targets costs the IdP side at a steady rate, with the delivery lag; and
//! what shaping each event with a plugin (a target's shape version) costs the drain.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::load::Stats;
use crate::scenarios::user;
use crate::servers::Scim;

/// A webhook receiver that answers 204 at once (keep-alive), counting deliveries and taking
/// each one's lag: its arrival less the change's time in the payload.
pub struct Receiver {
    pub port: u16,
    count: Arc<AtomicUsize>,
    lags: Arc<std::sync::Mutex<Vec<Duration>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lag_of(body: &[u8]) -> Option<Duration> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let at = chrono::DateTime::parse_from_rfc3339(v["timestamp"].as_str()?).ok()?;
    (chrono::Utc::now() - at.with_timezone(&chrono::Utc)).to_std().ok()
}

impl Receiver {
    pub async fn start() -> anyhow::Result<Receiver> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let count = Arc::new(AtomicUsize::new(0));
        let lags = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (c, l) = (count.clone(), lags.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (c, l) = (c.clone(), l.clone());
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut read = BufReader::new(read);
                    loop {
                        // One request: headers, then Content-Length bytes of body.
                        let mut length = 0usize;
                        loop {
                            let mut line = String::new();
                            match read.read_line(&mut line).await {
                                Ok(0) | Err(_) => return,
                                Ok(_) => {}
                            }
                            if line == "\r\n" {
                                break;
                            }
                            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut body = vec![0u8; length];
                        if read.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        if let (Some(lag), Ok(mut lags)) = (lag_of(&body), l.lock()) {
                            lags.push(lag);
                        }
                        c.fetch_add(1, Ordering::Relaxed);
                        if write.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n").await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Ok(Receiver { port, count, lags, task })
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Lags seen so far, sorted, and forgotten.
    pub fn take_lags(&self) -> Vec<Duration> {
        let mut l = self.lags.lock().map(|mut l| std::mem::take(&mut *l)).unwrap_or_default();
        l.sort();
        l
    }
}

/// The admin API of a Mapwright server.
pub struct Admin {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Admin {
    pub fn new(http: &reqwest::Client, url: &str, token: String) -> Admin {
        Admin { http: http.clone(), base: format!("{url}/admin/v1"), token }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> anyhow::Result<Value> {
        let r = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token).json(&body).send().await?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(status.is_success(), "{path}: {status} {v}");
        Ok(v)
    }

    pub async fn add_target(&self, tenant: &str, body: Value) -> anyhow::Result<()> {
        self.call(reqwest::Method::POST, &format!("/tenants/{tenant}/targets"), body).await.map(|_| ())
    }

    pub async fn pause(&self, tenant: &str, target: &str, paused: bool) -> anyhow::Result<()> {
        self.call(reqwest::Method::PATCH, &format!("/tenants/{tenant}/targets/{target}"), json!({"paused": paused})).await.map(|_| ())
    }

    /// Gives a target a shape version (active at once).
    pub async fn set_shape(&self, tenant: &str, target: &str, entries: Value) -> anyhow::Result<()> {
        self.call(reqwest::Method::POST, &format!("/tenants/{tenant}/targets/{target}/shape"), json!({"entries": entries})).await.map(|_| ())
    }

    /// Changes a target has not received yet.
    pub async fn lag(&self, tenant: &str, target: &str) -> anyhow::Result<u64> {
        let v = self.call(reqwest::Method::GET, &format!("/tenants/{tenant}/targets/{target}"), Value::Null).await?;
        v["lag_events"].as_u64().context("no lag_events")
    }
}

/// Waits until `done` holds, checking every 20 ms, for up to `limit`; returns how long it took.
pub async fn until(limit: Duration, mut done: impl AsyncFnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if done().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Waits until none of `targets` has a change left to deliver.
async fn caught_up(admin: &Admin, targets: &[&str], limit: Duration) -> Option<Duration> {
    until(limit, async || {
        for t in targets {
            if admin.lag("bench", t).await.map_or(true, |l| l > 0) {
                return false;
            }
        }
        true
    })
    .await
}

/// `n` creates at `rate` per second (each sent at its time, from up to `concurrency` at once),
/// with their latencies.
pub async fn paced(t: &Scim, rate: f64, n: usize, concurrency: usize, prefix: &str) -> Stats {
    let started = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let at = started + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(at.into()).await;
        let Ok(permit) = sem.clone().acquire_owned().await else { break };
        let (t, name) = (t.clone(), format!("{prefix}.{i}@bench.example"));
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let ok = t.ok(t.send(reqwest::Method::POST, "/Users", &user(&name, i))).await;
            drop(permit);
            (sent.elapsed(), ok)
        }));
    }
    let mut s = Stats::default();
    for task in tasks {
        if let Ok((lat, ok)) = task.await {
            s.latencies.push(lat);
            s.errors += usize::from(!ok);
        }
    }
    s.elapsed = started.elapsed();
    s.done = s.latencies.len();
    s.latencies.sort();
    s
}

/// The quantile `q` of sorted durations, in milliseconds.
pub fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1e3
}

const TENANT: &str = "\n[[tenant]]\nname = \"bench\"\n[[tenant.idp]]\nname = \"plain\"\nrate_per_second = 0\nguard = { max_destructive = 0 }\n";

/// The delivery scenarios; `n` changes per backlog, `rate` creates per second for
/// `steady_secs` at the steady load.
pub async fn run(bin: &std::path::Path, http: &reqwest::Client, n: usize, rate: f64, steady_secs: f64, limit: Duration, report: &mut crate::report::Report) -> anyhow::Result<()> {
    let server = crate::servers::mapwright(bin, &format!("[server]\nlisten = \"127.0.0.1:0\"\n[delivery]\nallow_private_targets = true\n{TENANT}"))?;
    let sink = crate::servers::mapwright(bin, "[server]\nlisten = \"127.0.0.1:0\"\n[[tenant]]\nname = \"sink\"\n[[tenant.idp]]\nname = \"in\"\nrate_per_second = 0\n")?;
    let admin = Admin::new(http, &server.url, server.admin_token()?);
    let idp = Scim::new("plain", format!("{}/scim/v2/bench/plain", server.url), server.token("bench", "plain")?, http)?.labelled("mapwright");
    let (hooks, second) = (Receiver::start().await?, Receiver::start().await?);
    let fast = json!({"retry_base_ms": 100, "retry_max_ms": 1000});
    admin.add_target("bench", json!({"name": "hooks", "kind": "webhook", "url": format!("http://127.0.0.1:{}/h", hooks.port), "settings": fast})).await?;
    admin.add_target("bench", json!({"name": "hooks2", "kind": "webhook", "url": format!("http://127.0.0.1:{}/h", second.port), "settings": fast})).await?;
    let sink_url = format!("{}/scim/v2/sink/in", sink.url);
    admin.add_target("bench", json!({"name": "scim", "kind": "scim", "url": sink_url, "token": sink.token("sink", "in")?, "settings": fast})).await?;
    let targets = ["hooks", "hooks2", "scim"];
    // Reconciled (nothing to do) and following the feed.
    caught_up(&admin, &targets, limit).await.context("the targets did not start")?;

    // Saturation: a backlog of `n` changes built while paused, then drained.
    for t in targets {
        admin.pause("bench", t, true).await?;
    }
    // A pause reaches the running worker at the engine's next poll (a quarter second).
    tokio::time::sleep(Duration::from_millis(600)).await;
    let built = crate::scenarios::creates(&idp, 8, n, "backlog", limit).await.0;
    anyhow::ensure!(built.errors == 0, "creating the backlog failed");
    let before = hooks.count();
    admin.pause("bench", "hooks", false).await?;
    let took = until(limit, async || hooks.count() >= before + n).await.context("the webhook target did not drain its backlog")?;
    report.note(format!("delivery, webhook receiver answering at once: {n} events in {:.2} s = {:.0} events/s", took.as_secs_f64(), n as f64 / took.as_secs_f64()));
    admin.pause("bench", "scim", false).await?;
    let took = until(limit, async || admin.lag("bench", "scim").await.map(|l| l == 0).unwrap_or(false)).await.context("the SCIM target did not drain its backlog")?;
    report.note(format!("delivery, SCIM target (another Mapwright): {n} user creates in {:.2} s = {:.0} events/s", took.as_secs_f64(), n as f64 / took.as_secs_f64()));
    admin.pause("bench", "hooks2", false).await?;
    until(limit, async || admin.lag("bench", "hooks2").await.map(|l| l == 0).unwrap_or(false)).await.context("the second receiver did not drain")?;

    // The same through a shape version (one `builtin:shape` call per user and group sent).
    let shape = json!([{"plugin": "builtin:shape", "config": {"users": {"allow": ["name", "emails"], "set": {"userType": "Employee"}}, "groups": {"prefix": "app-"}}}]);
    admin.set_shape("bench", "hooks", shape).await?;
    admin.pause("bench", "hooks", true).await?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let built = crate::scenarios::creates(&idp, 8, n, "shaped", limit).await.0;
    anyhow::ensure!(built.errors == 0, "creating the second backlog failed");
    let before = hooks.count();
    admin.pause("bench", "hooks", false).await?;
    let Some(took) = until(limit, async || hooks.count() >= before + n).await else {
        let status = admin.call(reqwest::Method::GET, "/tenants/bench/targets/hooks", Value::Null).await?;
        anyhow::bail!("the shaped webhook target did not drain its backlog ({} of {n}): {status}", hooks.count() - before);
    };
    report.note(format!("delivery, the same receiver through a shape version (builtin:shape): {n} events in {:.2} s = {:.0} events/s", took.as_secs_f64(), n as f64 / took.as_secs_f64()));
    caught_up(&admin, &["scim", "hooks2"], limit).await.context("the other targets did not catch up")?;
    let before = hooks.count();
    hooks.take_lags();
    second.take_lags();

    // Steady IdP load: without targets (paused), then with the three delivering.
    let steady_n = (rate * steady_secs) as usize;
    for t in targets {
        admin.pause("bench", t, true).await?;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let alone = paced(&idp, rate, steady_n, 64, "alone").await;
    report.row(&format!("POST /Users at {rate:.0}/s, no delivery"), &idp.label, alone.clone());
    for t in targets {
        admin.pause("bench", t, false).await?;
    }
    // Resumed targets first catch up with what the paused run wrote.
    caught_up(&admin, &targets, limit).await.context("the targets did not catch up")?;
    hooks.take_lags();
    second.take_lags();
    let with = paced(&idp, rate, steady_n, 64, "delivered").await;
    report.row(&format!("POST /Users at {rate:.0}/s, delivered to 3 targets"), &idp.label, with.clone());
    let mut lags = hooks.take_lags();
    until(limit, async || hooks.count() >= before + 2 * steady_n).await;
    lags.extend(hooks.take_lags());
    lags.extend(second.take_lags());
    lags.sort();
    if alone.p99_ms() > 0.0 {
        report.ratio("IdP p99 with 3 delivery targets / none, at a steady rate", with.p99_ms() / alone.p99_ms());
    }
    report.note(format!("delivery lag to the webhook receivers at {rate:.0} creates/s: p50 {:.1} ms, p99 {:.1} ms ({} events)", quantile_ms(&lags, 0.5), quantile_ms(&lags, 0.99), lags.len()));
    Ok(())
}
