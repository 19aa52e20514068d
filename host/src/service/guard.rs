//! The guard of each IdP connection: a cap on destructive operations (deactivations and
//! deletions) in a time window, past which they are held for an admin, and protected
//! principals that no IdP can deprovision. A stolen IdP token or a bad rule change cannot
//! empty the directory: it gets as far as the cap, the rest waits for a person.
//!
//! The guard is configured apart from the rule chains on purpose: a rule change cannot
//! switch it off.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// The guards of every connection, with their sliding windows (in memory: a restart gives
/// every connection a fresh window).
#[derive(Debug, Default)]
pub struct Guard {
    policies: HashMap<i64, GuardPolicy>,
    /// For connections without a policy of their own.
    default: GuardPolicy,
    windows: Mutex<HashMap<i64, VecDeque<Instant>>>,
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

    /// How many more destructive operations the connection's window allows now (`None`: no
    /// cap). For writes whose count is known only inside the store (membership removals).
    pub fn remaining(&self, idp_id: i64) -> Option<u32> {
        let p = self.policy(idp_id);
        let max = p.max_destructive?;
        let now = Instant::now();
        let Ok(mut windows) = self.windows.lock() else { return Some(0) };
        let w = windows.entry(idp_id).or_default();
        while w.front().is_some_and(|t| now.duration_since(*t) > p.window) {
            w.pop_front();
        }
        Some(max.saturating_sub(w.len() as u32))
    }

    /// Counts `n` destructive operations that went ahead.
    pub fn spend(&self, idp_id: i64, n: u32) {
        if n == 0 || self.policy(idp_id).max_destructive.is_none() {
            return;
        }
        if let Ok(mut windows) = self.windows.lock() {
            let w = windows.entry(idp_id).or_default();
            let now = Instant::now();
            w.extend(std::iter::repeat_n(now, n as usize));
        }
    }

    /// Judges a destructive operation on a user known by these names, and counts it if
    /// it goes ahead.
    pub fn check(&self, idp_id: i64, names: &[&str]) -> Verdict {
        let p = self.policy(idp_id);
        if let Some(re) = p.protected.iter().find(|re| names.iter().any(|n| re.is_match(n))) {
            return Verdict::Protected(re.as_str().to_string());
        }
        let Some(max) = p.max_destructive else { return Verdict::Allow };
        let now = Instant::now();
        let Ok(mut windows) = self.windows.lock() else { return Verdict::Hold { max, window_secs: p.window.as_secs() } };
        let w = windows.entry(idp_id).or_default();
        while w.front().is_some_and(|t| now.duration_since(*t) > p.window) {
            w.pop_front();
        }
        if w.len() >= max as usize {
            return Verdict::Hold { max, window_secs: p.window.as_secs() };
        }
        w.push_back(now);
        Verdict::Allow
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn caps_per_connection_and_protects_by_pattern() {
        let p = GuardPolicy::new(Some(2), Duration::from_secs(60), &["^breakglass".into()]).unwrap();
        let g = Guard::new(HashMap::from([(1, p)]));
        assert_eq!(g.check(1, &["breakglass-admin", "x"]), Verdict::Protected("^breakglass".into()));
        assert_eq!(g.check(1, &["a"]), Verdict::Allow);
        assert_eq!(g.check(1, &["b"]), Verdict::Allow);
        assert_eq!(g.check(1, &["c"]), Verdict::Hold { max: 2, window_secs: 60 });
        // Protected principals are not counted; other connections have their own window.
        assert_eq!(g.check(2, &["c"]), Verdict::Allow);
        assert!(GuardPolicy::new(None, Duration::from_secs(1), &["(".into()]).is_err());
    }
}
