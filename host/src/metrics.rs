//! Prometheus metrics (`GET /metrics`, text exposition): requests by tenant, IdP connection
//! and status with latency, plugin calls by plugin and outcome with latency and the share of
//! their CPU budget used (and, switched on, their CPU time), plugin faults by kind, store writes.
//!
//! One process-wide set, so the layers that count (http, plugins, store) need no handle
//! passed around. Labels come only from authenticated connections and loaded plugins, never
//! from what a client sends, so no request can grow the label sets.

use std::sync::OnceLock;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels<const N: usize> = [(&'static str, String); N];
type Histograms<const N: usize> = Family<Labels<N>, Histogram, fn() -> Histogram>;

fn share() -> Histogram {
    // 0 (under one tick) .. 1 (the whole budget), in tenths.
    Histogram::new([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
}

fn cpu_seconds() -> Histogram {
    // 1 µs .. ~65 ms: a plugin call's CPU, finer than latency.
    Histogram::new(exponential_buckets(0.000_001, 2.0, 17))
}

fn seconds() -> Histogram {
    // 50 µs .. ~1.6 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// Where a SQLite write's time goes, in the order they happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WritePhase {
    /// Sent, until the writer thread starts it (the writer busy with a batch, or asleep).
    Queue,
    /// Its own statements.
    Run,
    /// The later writes of its batch, the wait for writes on their way, and the commit.
    Commit,
    /// Committed, until the request that sent it runs again.
    Wake,
}

impl WritePhase {
    /// Every phase, in order (the order of [`Metrics::store_write_phases`]' argument).
    pub const ALL: [WritePhase; 4] = [WritePhase::Queue, WritePhase::Run, WritePhase::Commit, WritePhase::Wake];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            WritePhase::Queue => "queue",
            WritePhase::Run => "run",
            WritePhase::Commit => "commit",
            WritePhase::Wake => "wake",
        }
    }
}

/// The metrics of the process (see [`get`]).
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels<4>, Counter>,
    request_seconds: Histograms<2>,
    plugin_calls: Family<Labels<3>, Counter>,
    plugin_seconds: Histograms<2>,
    plugin_budget: Histograms<1>,
    plugin_cpu: Histograms<2>,
    plugin_faults: Family<Labels<2>, Counter>,
    store_write_seconds: Histogram,
    /// SQLite writes' time by phase, one child per [`WritePhase`] (see [`get`]).
    store_write_phases: [Histogram; 4],
    store_commits: Counter,
    store_writes: Counter,
    store_retries: Counter,
    store_checkpoint_seconds: Histogram,
    store_checkpointed_pages: Counter,
    remembered_hits: Counter,
    remembered_stale: Counter,
    remembered_bytes: Gauge,
    plugin_compiles: Family<Labels<1>, Counter>,
    plugin_code_bytes: Gauge,
    plugin_evictions: Counter,
    plugin_cold_load_seconds: Histogram,
    /// Set at scrape time by the HTTP layer from the rule registry.
    pub active_chain: Family<Labels<2>, Gauge>,
    delivery_events: Family<Labels<3>, Counter>,
    skipped_members: Family<Labels<2>, Counter>,
    /// Set at scrape time from the targets' cursors: events not yet delivered.
    pub delivery_lag_events: Family<Labels<2>, Gauge>,
    /// Set at scrape time: seconds since the oldest undelivered event was recorded.
    pub delivery_lag_seconds: Family<Labels<2>, Gauge>,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The process-wide metrics.
pub fn get() -> &'static Metrics {
    METRICS.get_or_init(|| {
        let mut registry = Registry::default();
        // Children made up front and kept (a histogram's clones share its state), so that
        // a write does not look its labels up four times.
        let phases: Histograms<1> = Family::new_with_constructor(seconds as fn() -> Histogram);
        let m = Metrics {
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(seconds as fn() -> Histogram),
            plugin_calls: Family::default(),
            plugin_seconds: Family::new_with_constructor(seconds as fn() -> Histogram),
            plugin_budget: Family::new_with_constructor(share as fn() -> Histogram),
            plugin_cpu: Family::new_with_constructor(cpu_seconds as fn() -> Histogram),
            plugin_faults: Family::default(),
            store_write_seconds: seconds(),
            store_write_phases: WritePhase::ALL.map(|p| phases.get_or_create_owned(&[("phase", p.as_str().to_string())])),
            store_commits: Counter::default(),
            store_writes: Counter::default(),
            store_retries: Counter::default(),
            store_checkpoint_seconds: seconds(),
            store_checkpointed_pages: Counter::default(),
            remembered_hits: Counter::default(),
            remembered_stale: Counter::default(),
            remembered_bytes: Gauge::default(),
            plugin_compiles: Family::default(),
            plugin_code_bytes: Gauge::default(),
            plugin_evictions: Counter::default(),
            plugin_cold_load_seconds: seconds(),
            active_chain: Family::default(),
            delivery_events: Family::default(),
            skipped_members: Family::default(),
            delivery_lag_events: Family::default(),
            delivery_lag_seconds: Family::default(),
            registry: Registry::default(),
        };
        registry.register("mapwright_scim_requests", "SCIM requests by tenant, IdP connection, method and status", m.requests.clone());
        registry.register("mapwright_scim_request_seconds", "SCIM request latency by tenant and IdP connection", m.request_seconds.clone());
        registry.register("mapwright_plugin_calls", "Plugin calls by plugin, hook and outcome (ok, rejected, fault)", m.plugin_calls.clone());
        registry.register("mapwright_plugin_call_seconds", "Plugin call latency by plugin and hook", m.plugin_seconds.clone());
        registry.register(
            "mapwright_plugin_cpu_budget_used",
            "Share of its CPU budget (epoch ticks; the sandbox meters time, not fuel) each plugin call used",
            m.plugin_budget.clone(),
        );
        registry.register(
            "mapwright_plugin_call_cpu_seconds",
            "CPU time of plugin calls on their thread, by plugin and hook (only with MAPWRIGHT_PLUGIN_CPU_CLOCK=1)",
            m.plugin_cpu.clone(),
        );
        registry.register("mapwright_plugin_faults", "Plugin faults by plugin and kind (cpu, memory, stack, trap, invalid_output)", m.plugin_faults.clone());
        registry.register("mapwright_store_write_seconds", "Store write latency, queueing on the writer thread included", m.store_write_seconds.clone());
        registry.register(
            "mapwright_store_write_phase_seconds",
            "Where SQLite writes' time goes, by phase: queue (sent until the writer thread starts it), run (its own statements), commit (the later writes of its batch and the commit), wake (committed until its request goes on)",
            phases,
        );
        registry.register("mapwright_store_commits", "Transactions the writer thread committed", m.store_commits.clone());
        registry.register("mapwright_store_writes", "Writes committed; writes per commit is how well group commit batches", m.store_writes.clone());
        registry.register("mapwright_store_retries", "Writes PostgreSQL refused for a concurrent one and that ran again", m.store_retries.clone());
        registry.register("mapwright_store_checkpoint_seconds", "SQLite WAL checkpoints (on their own thread, off the writer's path) and how long each took", m.store_checkpoint_seconds.clone());
        registry.register("mapwright_store_checkpointed_pages", "WAL pages SQLite's checkpoints copied into the database file", m.store_checkpointed_pages.clone());
        registry.register("mapwright_plugin_compiles", "Compiled plugins this process obtained, by where from: source (compiled), artifact (loaded from the disk cache), damaged_artifact (a cached artifact that would not load, discarded and compiled again), missing_artifact (evicted code whose artifact was gone, compiled again from its stored bytes)", m.plugin_compiles.clone());
        registry.register("mapwright_plugin_code_bytes", "Compiled plugin code (machine code and data images) this process holds; `[server] plugin_memory_mib` bounds it", m.plugin_code_bytes.clone());
        registry.register("mapwright_plugin_evictions", "Compiled plugins evicted from memory to stay within the budget (loaded again from disk on their next call)", m.plugin_evictions.clone());
        registry.register("mapwright_plugin_cold_load_seconds", "How long a call waited for its plugin's code to load from disk (it was not in memory)", m.plugin_cold_load_seconds.clone());
        registry.register("mapwright_remembered_user_hits", "Updates that started from a remembered IdP user instead of reading it", m.remembered_hits.clone());
        registry.register("mapwright_remembered_user_stale", "Remembered IdP users an update found changed elsewhere (read again, mapped again)", m.remembered_stale.clone());
        registry.register("mapwright_remembered_users_bytes", "Estimated memory held by remembered IdP users", m.remembered_bytes.clone());
        registry.register("mapwright_active_chain_version", "The chain version each IdP connection runs (0: none)", m.active_chain.clone());
        registry.register("mapwright_delivery_events", "Directory changes per delivery target and outcome (delivered, parked, failed attempt)", m.delivery_events.clone());
        registry.register(
            "mapwright_scim_skipped_members",
            "Group members an IdP named that its connection does not have, skipped per its unknown_members policy",
            m.skipped_members.clone(),
        );
        registry.register("mapwright_delivery_lag_events", "Directory changes a delivery target has not received yet", m.delivery_lag_events.clone());
        registry.register("mapwright_delivery_lag_seconds", "Age of the oldest change a delivery target has not received yet", m.delivery_lag_seconds.clone());
        Metrics { registry, ..m }
    })
}

impl Metrics {
    /// Counts a SCIM request of an authenticated connection.
    pub fn request(&self, tenant: &str, idp: &str, method: &str, status: u16, seconds: f64) {
        self.requests.get_or_create(&[("tenant", tenant.to_string()), ("idp", idp.to_string()), ("method", method.to_string()), ("status", status.to_string())]).inc();
        self.request_seconds.get_or_create(&[("tenant", tenant.to_string()), ("idp", idp.to_string())]).observe(seconds);
    }

    /// The counters and histograms of one plugin's hook, resolved once: a chain entry keeps
    /// them, so a call updates its metrics without looking labels up (or allocating them).
    pub fn plugin_hook(&self, plugin: &str, hook: &'static str) -> PluginHookMetrics {
        let calls = |outcome: &str| self.plugin_calls.get_or_create(&[("plugin", plugin.to_string()), ("hook", hook.to_string()), ("outcome", outcome.to_string())]).clone();
        PluginHookMetrics {
            ok: calls("ok"),
            rejected: calls("rejected"),
            fault: calls("fault"),
            seconds: self.plugin_seconds.get_or_create(&[("plugin", plugin.to_string()), ("hook", hook.to_string())]).clone(),
            budget: self.plugin_budget.get_or_create(&[("plugin", plugin.to_string())]).clone(),
            cpu: cpu_clock().then(|| self.plugin_cpu.get_or_create(&[("plugin", plugin.to_string()), ("hook", hook.to_string())]).clone()),
        }
    }

    /// Counts a plugin fault by kind (cpu, memory, stack, trap, suspended, invalid_output).
    pub fn plugin_fault(&self, plugin: &str, kind: &'static str) {
        self.plugin_faults.get_or_create(&[("plugin", plugin.to_string()), ("kind", kind.to_string())]).inc();
    }

    /// Counts a delivery outcome of a target (`delivered`, `parked`, `failed`).
    pub fn delivery(&self, tenant: &str, target: &str, outcome: &'static str) {
        self.delivery_events.get_or_create(&[("tenant", tenant.to_string()), ("target", target.to_string()), ("outcome", outcome.to_string())]).inc();
    }

    /// Counts group members a connection's write named but does not have (skipped).
    pub fn skipped_members(&self, tenant: &str, idp: &str, n: usize) {
        self.skipped_members.get_or_create(&[("tenant", tenant.to_string()), ("idp", idp.to_string())]).inc_by(n as u64);
    }

    /// Records how long a store write took, queue included.
    pub fn store_write(&self, seconds: f64) {
        self.store_write_seconds.observe(seconds);
    }

    /// One SQLite write's time in each [`WritePhase`], in seconds.
    pub fn store_write_phases(&self, seconds: [f64; 4]) {
        for (h, s) in self.store_write_phases.iter().zip(seconds) {
            h.observe(s);
        }
    }

    /// A write run again after a serialization failure (PostgreSQL).
    pub fn store_retry(&self) {
        self.store_retries.inc();
    }

    /// One WAL checkpoint (SQLite) that took `seconds` and copied `pages`.
    pub fn store_checkpoint(&self, seconds: f64, pages: u64) {
        self.store_checkpoint_seconds.observe(seconds);
        self.store_checkpointed_pages.inc_by(pages);
    }

    /// A compiled plugin obtained, `from` where (`source`, `artifact`, `damaged_artifact`).
    pub fn plugin_compiled(&self, from: &'static str) {
        self.plugin_compiles.get_or_create(&[("from", from.to_string())]).inc();
    }

    /// Compiled plugin code now held changed by `bytes` (negative: freed).
    pub fn plugin_code_resident(&self, bytes: i64) {
        self.plugin_code_bytes.inc_by(bytes);
    }

    /// Compiled plugins evicted from memory to stay within the budget.
    pub fn plugin_evicted(&self, n: usize) {
        self.plugin_evictions.inc_by(n as u64);
    }

    /// A call waited `seconds` for its plugin's code to load (it was not in memory).
    pub fn plugin_cold_load(&self, seconds: f64) {
        self.plugin_cold_load_seconds.observe(seconds);
    }

    /// An update started from a remembered user (`stale`: it had changed; it was read again).
    pub fn remembered_user(&self, stale: bool) {
        if stale { &self.remembered_stale } else { &self.remembered_hits }.inc();
    }

    /// The memory remembered users hold now.
    pub fn remembered_users_bytes(&self, bytes: usize) {
        self.remembered_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// One commit of the writer thread, carrying `writes` writes.
    pub fn store_commit(&self, writes: usize) {
        self.store_commits.inc();
        self.store_writes.inc_by(writes as u64);
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            tracing::error!("encoding metrics failed");
        }
        out
    }
}

/// One plugin hook's metrics (handles into the process-wide families).
pub struct PluginHookMetrics {
    ok: Counter,
    rejected: Counter,
    fault: Counter,
    seconds: Histogram,
    budget: Histogram,
    /// Only when the CPU clock is on (see [`CallCpu`]).
    cpu: Option<Histogram>,
}

impl PluginHookMetrics {
    /// One call: its outcome (`ok`, `rejected`, `fault`), latency, CPU budget share used and,
    /// when measured, its CPU time.
    pub fn observe(&self, outcome: &str, seconds: f64, budget_used: f64, cpu: Option<f64>) {
        match outcome {
            "ok" => self.ok.inc(),
            "rejected" => self.rejected.inc(),
            _ => self.fault.inc(),
        };
        self.seconds.observe(seconds);
        self.budget.observe(budget_used);
        if let (Some(h), Some(c)) = (&self.cpu, cpu) {
            h.observe(c);
        }
    }
}

/// Whether plugin calls' CPU time is measured (`MAPWRIGHT_PLUGIN_CPU_CLOCK=1`). Off by default:
/// reading a thread's CPU clock is a system call (no vDSO path), two per call.
fn cpu_clock() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("MAPWRIGHT_PLUGIN_CPU_CLOCK").is_ok_and(|v| v == "1"))
}

/// The CPU time of one plugin call, read from its thread's CPU clock.
///
/// Why CPU time: a call's latency on a busy server includes the time its thread was not
/// running, and the server's histogram of latency says more about the machine than about the
/// plugin. A call that yields at an epoch tick may resume on another worker thread; such a
/// call is not measured.
pub struct CallCpu(Option<(std::thread::ThreadId, f64)>);

impl CallCpu {
    /// Starts measuring, if the CPU clock is on.
    pub fn start() -> CallCpu {
        CallCpu(cpu_clock().then(|| (std::thread::current().id(), thread_cpu_seconds())))
    }

    /// The CPU seconds since `start`, if measured and still on the same thread.
    pub fn stop(&self) -> Option<f64> {
        let (thread, started) = self.0?;
        (std::thread::current().id() == thread).then(|| thread_cpu_seconds() - started)
    }
}

fn thread_cpu_seconds() -> f64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through a valid pointer; the thread CPU clock
    // exists on every Linux the server supports (it fails with EINVAL otherwise, and t stays 0).
    #[allow(unsafe_code)]
    unsafe {
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t);
    }
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_cpu_clock_counts_work_not_waiting() {
        let t0 = thread_cpu_seconds();
        std::thread::sleep(std::time::Duration::from_millis(30));
        let slept = thread_cpu_seconds() - t0;
        let t1 = thread_cpu_seconds();
        let spin = std::time::Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < std::time::Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let worked = thread_cpu_seconds() - t1;
        assert!(t0 > 0.0 && worked > slept, "busy {worked} s vs asleep {slept} s");
    }
}
