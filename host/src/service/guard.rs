//! The guard of each IdP connection: a cap on destructive operations (deactivations and
//! deletions) in a time window, past which they are held for an admin, and protected
//! principals that no IdP can deprovision. A stolen IdP token or a bad rule change cannot
//! empty the directory: it gets as far as the cap, the rest waits for a person.
//!
//! The guard is configured apart from the rule chains on purpose: a rule change cannot
//! switch it off.

use std::collections::HashMap;
use std::time::Duration;

use crate::store::{GuardStore, StoreResult};

/// One connection's guard.
#[derive(Debug, Clone)]
pub struct GuardPolicy {
    /// Destructive operations allowed per window; `None`: no cap.
    pub max_destructive: Option<u32>,
    /// The sliding window the cap counts over.
    pub window: Duration,
    /// Patterns (regex) of directory or IdP userNames never deprovisioned by an IdP.
    pub protected: Vec<regex_lite::Regex>,
}

impl Default for GuardPolicy {
    fn default() -> Self {
        GuardPolicy { max_destructive: Some(DEFAULT_MAX), window: Duration::from_secs(3600), protected: Vec::new() }
    }
}

/// The cap when the configuration says nothing: generous for day-to-day offboarding, far
/// below "everyone".
pub const DEFAULT_MAX: u32 = 100;

impl GuardPolicy {
    /// A policy; `protected` patterns must be valid regexes.
    pub fn new(max_destructive: Option<u32>, window: Duration, protected: &[String]) -> Result<GuardPolicy, String> {
        let protected = protected.iter().map(|p| regex_lite::Regex::new(p).map_err(|e| format!("protected pattern {p:?}: {e}"))).collect::<Result<_, _>>()?;
        Ok(GuardPolicy { max_destructive, window, protected })
    }
}

/// What the guard says of one destructive operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead.
    Allow,
    /// A protected principal: the operation leaves the entry as it is.
    Protected(String),
    /// Over the cap: hold it for an admin.
    Hold {
        /// The cap.
        max: u32,
        /// The window it counts over.
        window_secs: u64,
    },
}

/// The guards of every connection. Their sliding windows are in the store
/// ([`GuardStore`]): shared by every replica on one database, and kept across restarts.
#[derive(Debug, Default)]
pub struct Guard {
    policies: HashMap<i64, GuardPolicy>,
    /// For connections without a policy of their own.
    default: GuardPolicy,
}

impl Guard {
    /// The guards of the connections with a policy of their own (others get the default).
    pub fn new(policies: HashMap<i64, GuardPolicy>) -> Guard {
        Guard { policies, ..Default::default() }
    }

    /// No cap and no protected principals for any connection (load benchmarks).
    pub fn unlimited() -> Guard {
        Guard { default: GuardPolicy { max_destructive: None, ..Default::default() }, ..Default::default() }
    }

    fn policy(&self, idp_id: i64) -> &GuardPolicy {
        self.policies.get(&idp_id).unwrap_or(&self.default)
    }

    fn window_ms(p: &GuardPolicy) -> i64 {
        i64::try_from(p.window.as_millis()).unwrap_or(i64::MAX)
    }

    /// How many more destructive operations the connection's window allows now (`None`: no
    /// cap). For writes whose count is known only inside the store (membership removals).
    pub async fn remaining<S: GuardStore>(&self, store: &S, idp_id: i64) -> StoreResult<Option<u32>> {
        let p = self.policy(idp_id);
        let Some(max) = p.max_destructive else { return Ok(None) };
        Ok(Some(store.guard_free(idp_id, max, Self::window_ms(p)).await?))
    }

    /// Counts `n` destructive operations that went ahead (within what [`Self::remaining`]
    /// allowed).
    pub async fn spend<S: GuardStore>(&self, store: &S, idp_id: i64, n: u32) -> StoreResult<()> {
        let p = self.policy(idp_id);
        let Some(max) = p.max_destructive else { return Ok(()) };
        store.guard_take(idp_id, n, max, Self::window_ms(p)).await.map(|_| ())
    }

    /// Judges a destructive operation on a user known by these names, and counts it if
    /// it goes ahead.
    pub async fn check<S: GuardStore>(&self, store: &S, idp_id: i64, names: &[&str]) -> StoreResult<Verdict> {
        let p = self.policy(idp_id);
        if let Some(re) = p.protected.iter().find(|re| names.iter().any(|n| re.is_match(n))) {
            return Ok(Verdict::Protected(re.as_str().to_string()));
        }
        let Some(max) = p.max_destructive else { return Ok(Verdict::Allow) };
        Ok(match store.guard_take(idp_id, 1, max, Self::window_ms(p)).await? {
            0 => Verdict::Hold { max, window_secs: p.window.as_secs() },
            _ => Verdict::Allow,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::{IdpKind, NewIdp, RateLimit};
    use crate::store::{SqlStore, TenantStore};

    #[tokio::test]
    async fn caps_per_connection_and_protects_by_pattern() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlStore::sqlite(&dir.path().join("t.db"), Default::default()).unwrap();
        store.create_tenant("t").await.unwrap();
        let mut ids = Vec::new();
        for name in ["a", "b"] {
            ids.push(store.create_idp("t", NewIdp { name: name.into(), kind: IdpKind::Generic, rate: RateLimit::default(), settings: Default::default() }).await.unwrap().id);
        }
        let p = GuardPolicy::new(Some(2), Duration::from_secs(60), &["^breakglass".into()]).unwrap();
        let g = Guard::new(HashMap::from([(ids[0], p)]));
        assert_eq!(g.check(&store, ids[0], &["breakglass-admin", "x"]).await.unwrap(), Verdict::Protected("^breakglass".into()));
        assert_eq!(g.check(&store, ids[0], &["a"]).await.unwrap(), Verdict::Allow);
        assert_eq!(g.remaining(&store, ids[0]).await.unwrap(), Some(1));
        assert_eq!(g.check(&store, ids[0], &["b"]).await.unwrap(), Verdict::Allow);
        assert_eq!(g.check(&store, ids[0], &["c"]).await.unwrap(), Verdict::Hold { max: 2, window_secs: 60 });
        // Protected principals are not counted; other connections have their own window.
        assert_eq!(g.check(&store, ids[1], &["c"]).await.unwrap(), Verdict::Allow);
        // The window is the store's: a guard in another process (a replica) sees it spent.
        let other = Guard::new(HashMap::from([(ids[0], GuardPolicy::new(Some(2), Duration::from_secs(60), &[]).unwrap())]));
        assert_eq!(other.remaining(&store, ids[0]).await.unwrap(), Some(0));
        assert!(GuardPolicy::new(None, Duration::from_secs(1), &["(".into()]).is_err());
    }
}
