//! The store's share: the same IdP traffic (creates, lookups, updates, group pushes) against
//! Mapwright on SQLite, on PostgreSQL with one replica, and on PostgreSQL with two replicas
//! behind round robin, in one run. Each PostgreSQL configuration gets a fresh database on the
//! cluster given, dropped afterwards.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::load::Stats;
use crate::report::Report;
use crate::scenarios::{self, Update};
use crate::servers::{self, Process, Scim};

/// Sizes of the store scenarios.
pub struct Sizes {
    pub creates: usize,
    pub population: usize,
    pub lookups: usize,
    pub members: usize,
}

/// A database created on the cluster for one configuration; [`Scratch::remove`] drops it.
struct Scratch {
    admin_url: String,
    name: String,
    url: String,
}

impl Scratch {
    async fn create(admin_url: &str, tag: &str) -> anyhow::Result<Scratch> {
        let name = format!("mw_bench_{}_{tag}", std::process::id());
        execute(admin_url, &format!("CREATE DATABASE {name}")).await?;
        let mut url = reqwest::Url::parse(admin_url).context("the database URL is postgres://user@host:port/database")?;
        url.set_path(&format!("/{name}"));
        Ok(Scratch { admin_url: admin_url.to_string(), name, url: url.to_string() })
    }

    async fn remove(self) -> anyhow::Result<()> {
        execute(&self.admin_url, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).await
    }
}

async fn execute(url: &str, sql: &str) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.with_context(|| format!("connecting to {}", redacted(url)))?;
    let task = tokio::spawn(connection);
    client.batch_execute(sql).await.with_context(|| sql.to_string())?;
    drop(client);
    let _ = task.await;
    Ok(())
}

/// The URL without its password, for messages.
fn redacted(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Replicas share one key: a fixed one is enough for a throwaway database.
const KEY: &str = "YmVuY2gtb25seS1rZXktMzItYnl0ZXMtbG9uZyEhISE=";

/// The three configurations, measured one after the other on one machine.
pub async fn run(bin: &Path, config: &str, admin_url: &str, http: &reqwest::Client, sizes: &Sizes, limit: Duration, report: &mut Report) -> anyhow::Result<()> {
    let env = [("MAPWRIGHT_SECRET_KEY", KEY)];
    let mut figures = HashMap::new();

    let sqlite = servers::mapwright_with(bin, config, &env)?;
    figures.insert("sqlite", measure(&[&sqlite], "sqlite", false, http, sizes, limit, report).await?);
    drop(sqlite);

    for (replicas, label) in [(1usize, "postgres x1"), (2, "postgres x2")] {
        let db = Scratch::create(admin_url, &replicas.to_string()).await?;
        let result = async {
            let mut procs = vec![servers::mapwright_on(bin, config, &env, Some(&db.url))?];
            for _ in 1..replicas {
                procs.push(servers::mapwright_on(bin, config, &env, Some(&db.url))?);
            }
            let refs: Vec<&Process> = procs.iter().collect();
            measure(&refs, label, true, http, sizes, limit, report).await
        }
        .await;
        // The servers are gone (dropped above) before their database is.
        db.remove().await.context("dropping the benchmark's database")?;
        figures.insert(label, result?);
    }

    let scenarios: Vec<String> = figures["sqlite"].iter().map(|(s, _)| s.clone()).collect();
    for scenario in &scenarios {
        let get = |label: &str| figures[label].iter().find(|(s, _)| s == scenario).map(|(_, st)| st);
        let (Some(sq), Some(p1), Some(p2)) = (get("sqlite"), get("postgres x1"), get("postgres x2")) else { continue };
        let ratio = |a: f64, b: f64| a / b.max(f64::MIN_POSITIVE);
        report.ratio(&format!("PostgreSQL x1 / SQLite, {scenario}: throughput"), ratio(p1.rate(), sq.rate()));
        report.ratio(&format!("PostgreSQL x1 / SQLite, {scenario}: p99"), ratio(p1.p99_ms(), sq.p99_ms()));
        report.ratio(&format!("PostgreSQL x2 / x1, {scenario}: throughput"), ratio(p2.rate(), p1.rate()));
    }
    Ok(())
}

/// One configuration: its servers (replicas when several), one endpoint over them.
async fn measure(procs: &[&Process], label: &str, postgres: bool, http: &reqwest::Client, sizes: &Sizes, limit: Duration, report: &mut Report) -> anyhow::Result<Vec<(String, Stats)>> {
    let bases: Vec<String> = procs.iter().map(|p| format!("{}/scim/v2/bench/plain", p.url)).collect();
    let t = Scim::round_robin(label, bases, procs[0].token("bench", "plain")?, http)?;
    let mut out = Vec::new();
    let mut row = |report: &mut Report, scenario: String, s: Stats| {
        report.row(&scenario, label, s.clone());
        out.push((scenario, s));
    };

    let (s, _) = scenarios::creates(&t, 1, sizes.creates / 3, "c1", limit).await;
    row(report, "store: POST /Users, c1".into(), s);
    // Where the time of a create goes: Mapwright's processes and the database's.
    let cpu = |procs: &[&Process]| -> f64 { procs.iter().filter_map(|p| p.cpu_seconds().ok()).sum() };
    let (server_before, db_before, retries_before) = (cpu(procs), servers::postgres_cpu_seconds(), retries(procs, http).await?);
    let (s, created) = scenarios::creates(&t, 8, sizes.creates, "c8", limit).await;
    let per = |secs: f64| secs / s.done.max(1) as f64 * 1e6;
    let server_cpu = per(cpu(procs) - server_before);
    let db = if postgres {
        let retried = (retries(procs, http).await? - retries_before) as f64 / s.done.max(1) as f64;
        format!(", PostgreSQL {:.0} µs; serialization retries per create {retried:.2}", per(servers::postgres_cpu_seconds() - db_before))
    } else {
        String::new()
    };
    report.note(format!("{label}: CPU per create at c8: Mapwright {server_cpu:.0} µs{db}"));
    row(report, "store: POST /Users, c8".into(), s);

    let seeded = scenarios::seed(&t, 8, 0, sizes.population, "pop", limit).await;
    report.note(format!("{label}: seeded {} users ({:.0}/s, {} errors)", seeded.done, seeded.rate(), seeded.errors));
    for c in [1usize, 8] {
        let n = if c == 1 { sizes.lookups / 4 } else { sizes.lookups };
        row(report, format!("store: GET userName eq at {} users, c{c}", sizes.population), scenarios::lookups(&t, sizes.population, c, n, "pop", limit).await);
    }
    row(report, "store: PATCH replace 2 attributes, c8".into(), scenarios::updates(&t, &created, Update::Patch, 8, limit).await);

    let members: Vec<String> = created.iter().take(sizes.members).map(|c| c.id.clone()).collect();
    let g = scenarios::group_push(&t, &members, 8, limit).await?;
    row(report, format!("store: group push, 1 member per PATCH, c8 ({} members)", members.len()), g.single);
    report.single(&format!("store: group push, one PATCH of {} members", members.len()), label, g.one_patch, g.one_patch_ok);
    row(report, "store: GET group, excludedAttributes=members".into(), g.get_excluded);
    Ok(out)
}

/// Writes PostgreSQL refused for a concurrent one and that ran again, over all replicas.
async fn retries(procs: &[&Process], http: &reqwest::Client) -> anyhow::Result<u64> {
    let mut total = 0;
    for p in procs {
        let text = crate::metrics(http, &p.url, &p.admin_token().or_else(|_| procs[0].admin_token())?).await?;
        total += text.lines().find_map(|l| l.strip_prefix("mapwright_store_retries_total ")).and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(redacted("postgres://u:secret@127.0.0.1:5432/db"), "postgres://u:***@127.0.0.1:5432/db");
        assert_eq!(redacted("postgres://u@127.0.0.1:5432/db"), "postgres://u@127.0.0.1:5432/db");
    }
}
