//! An hour of one IdP connection's traffic, compressed: after a population is stored, one
//! client (IdPs push to an app one request at a time) sends the mix an incremental sync
//! sends, back to back, for the time bound. Each request is timed on its own and kept with
//! its kind and its start, so the report gives every kind's p50/p99, every write's, and the
//! writes' p99/p50 window by window: a tail that is flat holds in every window, not only on
//! average.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::load::Stats;
use crate::scenarios::{Created, PATCH_OP, name, replaced, two_attributes, user_for};
use crate::servers::Scim;

/// What one step of the mix sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Two attributes changed (a title, a surname): most of an incremental sync.
    Patch,
    /// The whole user sent again (Entra, OneLogin).
    Put,
    /// A new hire: `userName eq` first (timed as a read), then the create.
    Create,
    /// One member added to or removed from a group (Entra's single-member PATCH).
    Membership,
    /// Deactivated or reactivated.
    Active,
    /// A read: the user by id, or the lookup before a create.
    Read,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 6] = [Kind::Patch, Kind::Put, Kind::Create, Kind::Membership, Kind::Active, Kind::Read];

    pub fn is_write(self) -> bool {
        self != Kind::Read
    }

    pub fn label(self) -> &'static str {
        match self {
            Kind::Patch => "PATCH two attributes",
            Kind::Put => "PUT whole user",
            Kind::Create => "POST /Users after a userName lookup",
            Kind::Membership => "PATCH group, one member",
            Kind::Active => "PATCH active",
            Kind::Read => "GET (user by id, userName eq)",
        }
    }
}

/// The kind of step `k` and the population index it touches: a fixed mix (in 100 steps: 50
/// PATCH, 10 PUT, 10 new hires, 10 membership changes, 5 (de)activations, 15 reads), spread
/// by a hash so that a run of any length sees the same proportions.
pub fn step(k: u64, population: usize) -> (Kind, usize) {
    let h = mix(k);
    let kind = match h % 100 {
        0..50 => Kind::Patch,
        50..60 => Kind::Put,
        60..70 => Kind::Create,
        70..80 => Kind::Membership,
        80..85 => Kind::Active,
        _ => Kind::Read,
    };
    (kind, ((h >> 16) as usize) % population.max(1))
}

/// splitmix64: a cheap, well-spread hash of the step number.
fn mix(k: u64) -> u64 {
    let mut z = k.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One request: its kind, when it started (from the run's start), how long it took, and
/// whether it succeeded.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub kind: Kind,
    pub at: Duration,
    pub took: Duration,
    pub ok: bool,
}

/// Runs the mix against `users` (and one group it creates) for `limit`.
pub async fn run(t: &Scim, users: &[Created], limit: Duration) -> anyhow::Result<(Vec<Sample>, Duration)> {
    anyhow::ensure!(!users.is_empty(), "{}: no users stored to update", t.label);
    let group = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": format!("hour-{}", std::process::id())});
    let Some(group_id) = t.call(t.send(Method::POST, "/Groups", &group)).await.and_then(|b| b["id"].as_str().map(str::to_string)) else {
        anyhow::bail!("{}: could not create the group", t.label)
    };
    let (started, mut samples, mut hired) = (Instant::now(), Vec::new(), 0usize);
    let mut k = 0u64;
    while started.elapsed() < limit {
        let (kind, i) = step(k, users.len());
        let u = &users[i];
        let path = format!("/Users/{}", u.id);
        let rb = match kind {
            Kind::Patch => t.send(Method::PATCH, &path, &two_attributes(k)),
            Kind::Put => t.send(Method::PUT, &path, &replaced(t, u, &format!("Replaced {k}"))),
            Kind::Create => {
                hired += 1;
                let user_name = name("hire", hired);
                let at = started.elapsed();
                let lookup = t.get("/Users").query(&[("filter", format!("userName eq \"{user_name}\""))]);
                let ok = t.ok(lookup).await;
                samples.push(Sample { kind: Kind::Read, at, took: started.elapsed() - at, ok });
                t.send(Method::POST, "/Users", &user_for(t, &user_name, 1_000_000 + hired))
            }
            Kind::Membership => {
                let op = if (k / 7).is_multiple_of(2) { "add" } else { "remove" };
                let body = match op {
                    "add" => json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "members", "value": [{"value": u.id}]}]}),
                    _ => json!({"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": format!("members[value eq \"{}\"]", u.id)}]}),
                };
                t.send(Method::PATCH, &format!("/Groups/{group_id}"), &body)
            }
            Kind::Active => t.send(Method::PATCH, &path, &json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "replace", "path": "active", "value": k.is_multiple_of(2)},
            ]})),
            Kind::Read => t.get(&path),
        };
        let at = started.elapsed();
        let ok = t.ok(rb).await;
        samples.push(Sample { kind, at, took: started.elapsed() - at, ok });
        k += 1;
    }
    Ok((samples, started.elapsed()))
}

/// The samples matching `keep` as [`Stats`] over `elapsed`.
pub fn stats(samples: &[Sample], elapsed: Duration, keep: impl Fn(&Sample) -> bool) -> Stats {
    let mut latencies: Vec<Duration> = samples.iter().filter(|s| keep(s)).map(|s| s.took).collect();
    latencies.sort();
    let errors = samples.iter().filter(|s| keep(s) && !s.ok).count();
    Stats { done: latencies.len(), errors, elapsed, latencies }
}

/// The writes' p99 / p50 in consecutive windows of `window` (a last, partial one included).
pub fn write_ratios(samples: &[Sample], elapsed: Duration, window: Duration) -> Vec<f64> {
    let n = (elapsed.as_secs_f64() / window.as_secs_f64()).ceil().max(1.0) as usize;
    (0..n)
        .filter_map(|w| {
            let (from, to) = (window * w as u32, window * (w as u32 + 1));
            let s = stats(samples, elapsed, |s| s.kind.is_write() && s.at >= from && s.at < to);
            (s.done > 0 && s.p50_ms() > 0.0).then(|| s.p99_ms() / s.p50_ms())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_has_its_proportions_and_reaches_every_user() {
        let (n, population) = (100_000u64, 1_000usize);
        let mut counts = std::collections::HashMap::new();
        let mut touched = vec![false; population];
        for k in 0..n {
            let (kind, i) = step(k, population);
            *counts.entry(kind).or_insert(0u64) += 1;
            touched[i] = true;
        }
        let share = |k: Kind| counts.get(&k).copied().unwrap_or(0) as f64 / n as f64;
        for (kind, want) in [(Kind::Patch, 0.50), (Kind::Put, 0.10), (Kind::Create, 0.10), (Kind::Membership, 0.10), (Kind::Active, 0.05), (Kind::Read, 0.15)] {
            assert!((share(kind) - want).abs() < 0.01, "{kind:?}: {} against {want}", share(kind));
        }
        assert!(touched.iter().all(|t| *t), "every user is touched in 100 steps per user");
        assert_eq!(step(42, population), step(42, population), "a step is the same in every run");
    }

    #[test]
    fn windows_give_each_its_own_ratio() {
        let ms = Duration::from_millis;
        let w = |at: u64, took: u64| Sample { kind: Kind::Patch, at: ms(at), took: ms(took), ok: true };
        // First second flat (every write 1 ms), second with a slow one in a hundred.
        let mut samples: Vec<Sample> = (0..100).map(|i| w(i * 10, 1)).collect();
        samples.extend((0..100).map(|i| w(1_000 + i * 10, if i == 0 { 9 } else { 1 })));
        samples.push(Sample { kind: Kind::Read, at: ms(5), took: ms(50), ok: true });
        let r = write_ratios(&samples, ms(2_000), ms(1_000));
        assert_eq!(r.len(), 2);
        assert!((r[0] - 1.0).abs() < 1e-9, "reads do not count: {r:?}");
        assert!((r[1] - 1.0).abs() < 1e-9, "p99 of 100 is the 99th: the one slow write is beyond it: {r:?}");
        samples.push(w(1_500, 9));
        let r = write_ratios(&samples, ms(2_000), ms(1_000));
        assert!((r[1] - 9.0).abs() < 1e-9, "two slow in 101: p99 is slow: {r:?}");
    }
}
