//! The load generator: `n` requests from `concurrency` workers, bounded in count and in time,
//! with latency percentiles.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What one scenario measured against one server.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub done: usize,
    pub errors: usize,
    pub elapsed: Duration,
    /// Sorted.
    pub latencies: Vec<Duration>,
}

impl Stats {
    pub fn rate(&self) -> f64 {
        if self.elapsed.is_zero() { 0.0 } else { self.done as f64 / self.elapsed.as_secs_f64() }
    }

    /// The latency at quantile `q` (0..=1), nearest rank.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((self.latencies.len() as f64 * q).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[rank - 1]
    }

    pub fn p50_ms(&self) -> f64 {
        self.quantile(0.50).as_secs_f64() * 1e3
    }

    pub fn p99_ms(&self) -> f64 {
        self.quantile(0.99).as_secs_f64() * 1e3
    }

    /// Several runs of the same traffic as one: their requests and their time added up.
    pub fn merge(parts: Vec<Stats>) -> Stats {
        let mut all = Stats::default();
        for p in parts {
            all.done += p.done;
            all.errors += p.errors;
            all.elapsed += p.elapsed;
            all.latencies.extend(p.latencies);
        }
        all.latencies.sort();
        all
    }
}

/// Runs `make(i)` for i in 0..n from `concurrency` workers until all are done or `limit` has
/// passed (requests in flight then finish; no new one starts). `make` resolves to whether the
/// request succeeded.
pub async fn drive<F, Fut>(concurrency: usize, n: usize, limit: Duration, make: F) -> Stats
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let make = Arc::new(make);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (make, next) = (make.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0usize);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n || started.elapsed() >= limit {
                    break;
                }
                let t = Instant::now();
                if !make(i).await {
                    errors += 1;
                }
                lat.push(t.elapsed());
            }
            (lat, errors)
        }));
    }
    let mut s = Stats::default();
    for w in workers {
        if let Ok((lat, errors)) = w.await {
            s.latencies.extend(lat);
            s.errors += errors;
        }
    }
    s.elapsed = started.elapsed();
    s.done = s.latencies.len();
    s.latencies.sort();
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn counts_every_request_once_and_stops_at_the_bound() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = {
            let seen = seen.clone();
            drive(4, 100, Duration::from_secs(60), move |i| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(i);
                    i % 10 != 0
                }
            })
            .await
        };
        let mut v = seen.lock().unwrap().clone();
        v.sort();
        assert_eq!(v, (0..100).collect::<Vec<_>>());
        assert_eq!((s.done, s.errors), (100, 10));
        // A time bound of zero starts nothing.
        let none = drive(4, 100, Duration::ZERO, |_| async { true }).await;
        assert_eq!(none.done, 0);
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let s = Stats { latencies: (1..=100).map(Duration::from_millis).collect(), ..Stats::default() };
        assert_eq!(s.quantile(0.5), Duration::from_millis(50));
        assert_eq!(s.quantile(0.99), Duration::from_millis(99));
        assert_eq!(s.quantile(1.0), Duration::from_millis(100));
        assert_eq!(Stats::default().quantile(0.99), Duration::ZERO);
    }

    #[test]
    fn merged_runs_add_requests_and_time_and_keep_latencies_sorted() {
        let run = |done, secs, ms: &[u64]| Stats { done, errors: 1, elapsed: Duration::from_secs(secs), latencies: ms.iter().map(|m| Duration::from_millis(*m)).collect() };
        let m = Stats::merge(vec![run(100, 10, &[1, 5]), run(300, 10, &[2, 3])]);
        assert_eq!((m.done, m.errors, m.elapsed), (400, 2, Duration::from_secs(20)));
        assert!((m.rate() - 20.0).abs() < 1e-9, "the rate over both: {}", m.rate());
        assert_eq!(m.latencies, [1, 2, 3, 5].map(Duration::from_millis));
    }
}
