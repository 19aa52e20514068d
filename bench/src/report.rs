//! What a run prints: each result as it comes, then the ratios that compare within the run
//! and a Markdown table of everything (for BENCHMARKS.md).

use std::time::Duration;

use crate::load::Stats;
use crate::memory::Figures;

struct Row {
    scenario: String,
    target: String,
    stats: Stats,
}

pub struct Report {
    rows: Vec<Row>,
    ratios: Vec<(String, f64)>,
    notes: Vec<String>,
}

/// The label of the second peer, the Rust `scim-server` crate behind axum.
pub const PEER_RS: &str = "scim-server-rs";

const MIB: f64 = 1024.0 * 1024.0;

impl Report {
    pub fn new() -> Report {
        Report { rows: Vec::new(), ratios: Vec::new(), notes: Vec::new() }
    }

    pub fn row(&mut self, scenario: &str, target: &str, stats: Stats) {
        println!(
            "{scenario:<62} {target:<16} {:>8} req {:>9.0} req/s  p50 {:>8.3} ms  p99 {:>8.3} ms  errors {}",
            stats.done,
            stats.rate(),
            stats.p50_ms(),
            stats.p99_ms(),
            stats.errors
        );
        self.rows.push(Row { scenario: scenario.into(), target: target.into(), stats });
    }

    /// One timed request.
    pub fn single(&mut self, scenario: &str, target: &str, took: Duration, ok: bool) {
        let stats = Stats { done: 1, errors: usize::from(!ok), elapsed: took, latencies: vec![took] };
        self.row(scenario, target, stats);
    }

    pub fn ratio(&mut self, what: &str, value: f64) {
        println!("  ratio: {what} = {value:.3}");
        self.ratios.push((what.into(), value));
    }

    pub fn note(&mut self, text: String) {
        println!("  {text}");
        self.notes.push(text);
    }

    pub fn memory(&mut self, label: &str, f: &Figures) {
        let per = (f.loaded.saturating_sub(f.empty)) as f64 / f.connections.max(1) as f64 / 1024.0;
        let text = format!(
            "RSS with {} connections x 3-plugin chain, {label}: {:.0} MiB (empty server {:.0} MiB; {per:.0} KiB per connection; set up in {:.0} s, {} errors)",
            f.connections,
            f.loaded as f64 / MIB,
            f.empty as f64 / MIB,
            f.setup.as_secs_f64(),
            f.errors
        );
        self.note(text);
    }

    /// Throughput of `target` over `base` for every scenario both ran.
    fn pairs(&self, target: &str, base: &str) -> Vec<(String, f64)> {
        self.rows
            .iter()
            .filter(|r| r.target == target)
            .filter_map(|r| {
                let b = self.rows.iter().find(|b| b.target == base && b.scenario == r.scenario)?;
                (b.stats.rate() > 0.0).then(|| (r.scenario.clone(), r.stats.rate() / b.stats.rate()))
            })
            .collect()
    }

    /// Results with errors or without a single request done, but the peers' (whose failures
    /// under load are their own).
    pub fn failures(&self) -> Vec<String> {
        self.rows
            .iter()
            .filter(|r| r.target != "scim2-server" && r.target != PEER_RS && (r.stats.errors > 0 || r.stats.done == 0))
            .map(|r| format!("{} ({}): {} done, {} errors", r.scenario, r.target, r.stats.done, r.stats.errors))
            .collect()
    }

    pub fn finish(&self) {
        println!("\n## Ratios (same run)\n");
        for (scenario, r) in self.pairs("mapwright+chain", "mapwright") {
            println!("- 3-plugin chain / no chain, {scenario}: {r:.3}");
        }
        for (scenario, r) in self.pairs("mapwright", "scim2-server") {
            println!("- Mapwright / scim2-server, {scenario}: {r:.1}x");
        }
        for (scenario, r) in self.pairs("mapwright", PEER_RS) {
            println!("- Mapwright / {PEER_RS}, {scenario}: {r:.2}x");
        }
        for (what, r) in &self.ratios {
            println!("- {what}: {r:.3}");
        }
        println!("\n## All results\n");
        println!("| scenario | server | requests | req/s | p50 ms | p99 ms | errors |");
        println!("|---|---|---:|---:|---:|---:|---:|");
        for r in &self.rows {
            let s = &r.stats;
            println!("| {} | {} | {} | {:.0} | {:.3} | {:.3} | {} |", r.scenario, r.target, s.done, s.rate(), s.p50_ms(), s.p99_ms(), s.errors);
        }
        if !self.notes.is_empty() {
            println!();
            for n in &self.notes {
                println!("- {n}");
            }
        }
    }
}
