//! Per-IdP-connection token buckets: one runaway IdP cannot starve the others.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::model::RateLimit;

#[derive(Default)]
/// A token bucket per IdP connection.
pub struct RateLimiter {
    buckets: Mutex<HashMap<i64, (f64, Instant)>>,
}

impl RateLimiter {
    /// Takes one token for `idp`; `Err(seconds)` tells how long until one is available.
    pub fn check(&self, idp: i64, limit: RateLimit) -> Result<(), u64> {
        if limit.per_second <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else { return Ok(()) };
        let burst = f64::from(limit.burst.max(1));
        let (tokens, last) = buckets.entry(idp).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * limit.per_second).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / limit.per_second).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn bucket_allows_burst_then_refuses() {
        let r = RateLimiter::default();
        let l = RateLimit { per_second: 1.0, burst: 3 };
        assert!((0..3).all(|_| r.check(1, l).is_ok()));
        assert_eq!(r.check(1, l), Err(1));
        assert!(r.check(2, l).is_ok(), "buckets are per connection");
    }
}
