//! The servers under test, started as processes on 127.0.0.1, and a client for one SCIM
//! endpoint of theirs.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

/// A running server process; killed when dropped.
pub struct Process {
    child: Child,
    pub url: String,
    /// Lines the server printed before it listened (Mapwright's banner: tokens).
    pub banner: Vec<String>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size of the process, from /proc.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("no VmRSS in /proc/PID/status")?;
        Ok(kb * 1024)
    }

    /// CPU time the process has used so far (all its threads, user and system), from
    /// /proc/PID/stat. Unlike throughput on a shared 2-core machine, the CPU a server spends
    /// per request hardly depends on what else runs, so it compares two configurations well.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        cpu_seconds(&std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?)
    }

    /// CPU time so far of the SQLite writer thread and of the request workers (the rest of
    /// the process is left out), from /proc/PID/task: the writer is one thread, so its CPU
    /// per create bounds throughput however many cores there are.
    pub fn thread_cpu(&self) -> anyhow::Result<ThreadCpu> {
        let mut cpu = ThreadCpu::default();
        for task in std::fs::read_dir(format!("/proc/{}/task", self.pid()))? {
            // A thread may end between the listing and the read: skip it.
            let Ok(stat) = std::fs::read_to_string(task?.path().join("stat")) else { continue };
            match thread_name(&stat) {
                // Thread names are cut to 15 bytes: "mapwright-writer" reads "mapwright-write".
                Some("mapwright-write") => cpu.writer += cpu_seconds(&stat)?,
                Some("tokio-rt-worker") => cpu.workers += cpu_seconds(&stat)?,
                _ => {}
            }
        }
        Ok(cpu)
    }

    /// The token printed for `tenant/idp` on first start.
    pub fn token(&self, tenant: &str, idp: &str) -> anyhow::Result<String> {
        let header = format!("IdP connection {tenant}/{idp} ");
        let at = self.banner.iter().position(|l| l.starts_with(&header)).with_context(|| format!("{tenant}/{idp} not in the banner"))?;
        self.banner[at..]
            .iter()
            .find_map(|l| l.trim().strip_prefix("Bearer token (shown once, store it now): "))
            .map(str::to_string)
            .with_context(|| format!("no token for {tenant}/{idp}"))
    }

    pub fn admin_token(&self) -> anyhow::Result<String> {
        self.banner
            .iter()
            .find_map(|l| l.trim().strip_prefix("Admin token (shown once, store it now): "))
            .map(str::to_string)
            .context("no admin token in the banner")
    }
}

/// Starts `mapwright serve` with `config` (TOML) in a fresh data directory and waits for it
/// to listen. Logs at warn, as a production server under load would be set.
pub fn mapwright(bin: &Path, config: &str) -> anyhow::Result<Process> {
    mapwright_with(bin, config, &[])
}

/// [`mapwright`] with extra environment variables.
pub fn mapwright_with(bin: &Path, config: &str, env: &[(&str, &str)]) -> anyhow::Result<Process> {
    mapwright_on(bin, config, env, None)
}

/// [`mapwright_with`] on the PostgreSQL database `database_url` (SQLite in its data
/// directory without one). Several servers on one database are replicas.
pub fn mapwright_on(bin: &Path, config: &str, env: &[(&str, &str)], database_url: Option<&str>) -> anyhow::Result<Process> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("mapwright.toml");
    std::fs::write(&cfg, config)?;
    let log = std::fs::File::create(dir.path().join("server.log"))?;
    let mut cmd = Command::new(bin);
    cmd.arg("--config").arg(&cfg).arg("--data-dir").arg(dir.path());
    if let Some(url) = database_url {
        cmd.arg("--database-url").arg(url);
    }
    let mut child = cmd
        .arg("serve")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut banner = Vec::new();
    let url = loop {
        match lines.next() {
            Some(Ok(l)) => {
                if let Some(u) = l.strip_prefix("Mapwright listening on ") {
                    break u.trim().to_string();
                }
                banner.push(l);
            }
            _ => {
                let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
                bail!("mapwright exited before listening:\n{}\n{log}", banner.join("\n"));
            }
        }
    };
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok(Process { child, url, banner, _dir: Some(dir) })
}

/// Starts the peer `scim2-server` (Python, in memory) on a free loopback port.
pub fn peer(bin: &Path, token: &str) -> anyhow::Result<Process> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new(bin)
        .args(["--hostname", "127.0.0.1", "--port", &port.to_string(), "--bearer-token", token])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let p = Process { child, url: format!("http://127.0.0.1:{port}"), banner: Vec::new(), _dir: None };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("the peer did not listen on port {port} within 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(p)
}

/// Where `cargo build` put a sibling binary of this one.
pub fn sibling(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    exe.parent().map(|d| d.join(name)).unwrap_or_else(|| PathBuf::from(name))
}

/// Refuses anything but loopback: the benchmark only ever loads servers on this machine.
pub fn loopback_only(url: &str) -> anyhow::Result<()> {
    let host = url.split("://").nth(1).unwrap_or("").split(['/', '?']).next().unwrap_or("");
    let host = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
    let ok = host == "localhost" || host == "[::1]" || host.parse::<std::net::Ipv4Addr>().is_ok_and(|a| a.is_loopback());
    if !ok {
        bail!("refusing to load {url}: only loopback addresses are benchmarked");
    }
    Ok(())
}

/// One SCIM endpoint (a base URL and its bearer token) as the load generator sees it.
#[derive(Clone)]
pub struct Scim {
    pub label: String,
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
    /// Send users without the enterprise extension (a server that validates against the core
    /// schema only refuses it).
    pub core_schema_only: bool,
    /// The same endpoint on other replicas: requests go round robin over `base` and these,
    /// as a load balancer in front of them would send them.
    replicas: std::sync::Arc<Vec<String>>,
    turn: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

const SCIM_JSON: &str = "application/scim+json";

impl Scim {
    pub fn new(label: &str, base: String, token: String, http: &reqwest::Client) -> anyhow::Result<Scim> {
        loopback_only(&base)?;
        Ok(Scim { label: label.into(), base, token, http: http.clone(), core_schema_only: false, replicas: Default::default(), turn: Default::default() })
    }

    /// The same endpoint served by several replicas (`bases`, on loopback), round robin.
    pub fn round_robin(label: &str, bases: Vec<String>, token: String, http: &reqwest::Client) -> anyhow::Result<Scim> {
        let first = bases.first().context("no replica")?.clone();
        for b in &bases {
            loopback_only(b)?;
        }
        let mut t = Scim::new(label, first, token, http)?;
        t.replicas = std::sync::Arc::new(bases);
        Ok(t)
    }

    /// Where the next request goes.
    fn url(&self, path: &str) -> String {
        if self.replicas.len() < 2 {
            return format!("{}{path}", self.base);
        }
        let k = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.replicas.len();
        format!("{}{path}", self.replicas[k])
    }

    /// The same endpoint under another name in the report.
    pub fn labelled(mut self, label: &str) -> Scim {
        self.label = label.into();
        self
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path)).bearer_auth(&self.token)
    }

    pub fn send(&self, method: reqwest::Method, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(&self.token).header("content-type", SCIM_JSON).body(body.to_string())
    }

    /// Sends and reads the JSON answer: `Some(body)` on 2xx (`Null` for an empty one).
    pub async fn call(&self, rb: reqwest::RequestBuilder) -> Option<Value> {
        let r = rb.send().await.ok()?;
        if !r.status().is_success() {
            return None;
        }
        let bytes = r.bytes().await.ok()?;
        if bytes.is_empty() { Some(Value::Null) } else { serde_json::from_slice(&bytes).ok() }
    }

    /// Sends and only checks the status (the body is read and dropped).
    pub async fn ok(&self, rb: reqwest::RequestBuilder) -> bool {
        match rb.send().await {
            Ok(r) => {
                let good = r.status().is_success();
                let _ = r.bytes().await;
                good
            }
            Err(_) => false,
        }
    }
}

/// CPU seconds of a server's writer thread and of its request workers (tokio's threads, which
/// also run plugin calls and blocking reads).
#[derive(Debug, Default, Clone, Copy)]
pub struct ThreadCpu {
    pub writer: f64,
    pub workers: f64,
}

impl std::ops::Sub for ThreadCpu {
    type Output = ThreadCpu;
    fn sub(self, o: ThreadCpu) -> ThreadCpu {
        ThreadCpu { writer: self.writer - o.writer, workers: self.workers - o.workers }
    }
}

/// The CPU time this process (the load generator) has used so far.
pub fn own_cpu_seconds() -> anyhow::Result<f64> {
    cpu_seconds(&std::fs::read_to_string("/proc/self/stat")?)
}

/// CPU time so far of every PostgreSQL process on this machine (the server processes and
/// what their ended children used), from /proc: the database's side of a store benchmark.
pub fn postgres_cpu_seconds() -> f64 {
    let Ok(procs) = std::fs::read_dir("/proc") else { return 0.0 };
    procs
        .filter_map(|p| std::fs::read_to_string(p.ok()?.path().join("stat")).ok())
        .filter(|stat| thread_name(stat) == Some("postgres"))
        .filter_map(|stat| {
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<f64> = rest.split_whitespace().skip(11).take(4).filter_map(|f| f.parse().ok()).collect();
            (fields.len() == 4).then(|| fields.iter().sum::<f64>() / 100.0)
        })
        .sum()
}

/// The command (thread) name of a /proc/PID/stat line: between the first '(' and the last ')'.
fn thread_name(stat: &str) -> Option<&str> {
    Some(&stat[stat.find('(')? + 1..stat.rfind(')')?])
}

/// utime + stime of a /proc/PID/stat line, in seconds. The fields after the command name
/// (which may contain spaces and parentheses, hence the last ')') are counted from 3; they are
/// in clock ticks of USER_HZ, which is 100 on Linux.
fn cpu_seconds(stat: &str) -> anyhow::Result<f64> {
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("no ')' in /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> { Ok(fields.get(i - 3).context("short /proc/PID/stat")?.parse::<f64>()?) };
    Ok((ticks(14)? + ticks(15)?) / 100.0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cpu_time_is_read_after_the_command_name() {
        // Field 2 may hold spaces and parentheses; utime and stime are fields 14 and 15.
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 37 0 0 20 0 9 0 1234 0 0";
        assert!((cpu_seconds(stat).unwrap() - 2.87).abs() < 1e-9);
        assert!(cpu_seconds("4242 (x) S 1").is_err());
        assert!(cpu_seconds(&std::fs::read_to_string("/proc/self/stat").unwrap()).is_ok(), "a real /proc/self/stat parses");
        assert_eq!(thread_name(stat), Some("a (b) c"));
        assert_eq!(thread_name("1 (tokio-rt-worker) S 1"), Some("tokio-rt-worker"));
        assert_eq!(thread_name("garbage"), None);
    }

    #[test]
    fn only_loopback_is_a_target() {
        for ok in ["http://127.0.0.1:8080/scim", "http://127.3.4.5/x", "http://localhost:1", "http://[::1]:9/"] {
            assert!(loopback_only(ok).is_ok(), "{ok}");
        }
        for bad in ["http://10.0.0.1:8080", "http://example.com/", "http://192.168.1.1", "http://127.0.0.1.example.com/"] {
            assert!(loopback_only(bad).is_err(), "{bad}");
        }
    }
}
