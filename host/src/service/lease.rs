//! Background work that one process of several does: delivery, purges, scheduled
//! re-applies. Each runs under a lease in the store; replicas on one database take turns,
//! and when the holder dies its lease runs out and another replica takes the work over.
//! (On SQLite there is one process and it always holds them.)

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::store::LeaseStore;

/// This process, as a lease holder: unique per start.
pub fn this_process() -> &'static str {
    static HOLDER: OnceLock<String> = OnceLock::new();
    HOLDER.get_or_init(|| format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()))
}

/// One named lease, as this process sees it.
pub struct Lease {
    name: String,
    ttl: Duration,
    /// When the store last confirmed this process holds it.
    renewed: Option<Instant>,
}

impl Lease {
    /// The lease `name`, held for `ttl` past each renewal.
    pub fn new(name: impl Into<String>, ttl: Duration) -> Lease {
        Lease { name: name.into(), ttl, renewed: None }
    }

    /// Whether this process holds the lease now: taken or renewed in the store once a third
    /// of its time has passed, so that a holder that keeps asking never loses it. A store
    /// that cannot be asked means no (the work needs the store anyway).
    pub async fn hold<S: LeaseStore>(&mut self, store: &S) -> bool {
        if self.renewed.is_some_and(|at| at.elapsed() < self.ttl / 3) {
            return true;
        }
        let ttl_ms = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX / 2);
        match store.lease(&self.name, this_process(), ttl_ms).await {
            Ok(true) => {
                if self.renewed.is_none() {
                    tracing::info!(lease = %self.name, "took over background work");
                }
                self.renewed = Some(Instant::now());
                true
            }
            Ok(false) => {
                if self.renewed.take().is_some() {
                    tracing::warn!(lease = %self.name, "another replica holds the background work now");
                }
                false
            }
            Err(e) => {
                tracing::warn!(lease = %self.name, error = %e, "could not renew a lease; pausing its work");
                self.renewed = None;
                false
            }
        }
    }

    /// Lets go (a stopping server), so that another replica takes over at once.
    pub async fn release<S: LeaseStore>(&mut self, store: &S) {
        if self.renewed.take().is_some()
            && let Err(e) = store.release_lease(&self.name, this_process()).await
        {
            tracing::warn!(lease = %self.name, error = %e, "could not release a lease; it expires on its own");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::SqlStore;

    #[tokio::test]
    async fn one_holder_at_a_time_and_the_next_takes_over_when_it_lapses() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlStore::sqlite(&dir.path().join("t.db"), Default::default()).unwrap();
        assert!(store.lease("work", "a", 200).await.unwrap());
        assert!(store.lease("work", "a", 200).await.unwrap(), "the holder renews");
        assert!(!store.lease("work", "b", 200).await.unwrap(), "another waits");
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(store.lease("work", "b", 200).await.unwrap(), "a lapsed lease goes to the next");
        assert!(!store.lease("work", "a", 200).await.unwrap());
        store.release_lease("work", "b").await.unwrap();
        assert!(store.lease("work", "a", 200).await.unwrap(), "a released lease is free at once");
        let mut l = Lease::new("other", Duration::from_secs(30));
        assert!(l.hold(&store).await);
        assert!(!store.lease("other", "someone", 1000).await.unwrap());
        l.release(&store).await;
        assert!(store.lease("other", "someone", 1000).await.unwrap());
    }
}
