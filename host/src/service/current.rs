//! The IdP users this process last read or wrote, so that an update (PATCH, PUT) can start
//! from them without reading the user first: most of an IdP's traffic is updates, often to
//! users it has just read or written.
//!
//! Nothing here is trusted: an update computed from a remembered user is written only if the
//! store still has that user at the same version and scope (the same test a read-then-write
//! makes), and a stale one is forgotten and read again. The cache only saves work, so it is
//! off where other processes write the same rows (replicas on PostgreSQL would make most of
//! its entries stale and waste a mapping pass each).
//!
//! Bounded by an estimate of the bytes it holds, in two generations: entries go into the new
//! one; when it holds half the budget, the old one is dropped and the new one becomes old. An
//! entry found in the old generation moves to the new one, so what is used survives (an
//! approximate LRU with O(1) work and no list to maintain).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::model::UserBefore;

type Key = (i64, Box<str>);

#[derive(Default)]
struct Generation {
    users: HashMap<Key, Arc<UserBefore>>,
    bytes: usize,
}

impl Generation {
    fn take(&mut self, key: &Key) -> Option<Arc<UserBefore>> {
        let u = self.users.remove(key)?;
        self.bytes = self.bytes.saturating_sub(weight(key, &u));
        Some(u)
    }
}

#[derive(Default)]
struct Generations {
    new: Generation,
    old: Generation,
}

/// Remembered IdP users, keyed by connection and id, within a byte budget.
pub struct CurrentUsers {
    budget: usize,
    inner: Mutex<Generations>,
}

impl CurrentUsers {
    /// A cache holding about `budget` bytes of users at most (0 holds none).
    pub fn new(budget: usize) -> CurrentUsers {
        CurrentUsers { budget, inner: Mutex::default() }
    }

    /// The user `id` of connection `idp_id` as last seen, if remembered.
    pub fn get(&self, idp_id: i64, id: &str) -> Option<Arc<UserBefore>> {
        let key = (idp_id, Box::from(id));
        let mut g = self.inner.lock().ok()?;
        if let Some(u) = g.new.users.get(&key) {
            return Some(u.clone());
        }
        let u = g.old.take(&key)?;
        let dropped = self.insert(&mut g, key, u.clone());
        drop(g);
        drop(dropped);
        Some(u)
    }

    /// Remembers the user `id` of connection `idp_id` as it now is.
    pub fn put(&self, idp_id: i64, id: &str, user: Arc<UserBefore>) {
        if self.budget == 0 {
            return;
        }
        let dropped = match self.inner.lock() {
            Ok(mut g) => {
                let key = (idp_id, Box::from(id));
                g.old.take(&key);
                g.new.take(&key);
                self.insert(&mut g, key, user)
            }
            Err(_) => None,
        };
        // Freeing a generation (thousands of users) is done outside the lock.
        drop(dropped);
    }

    /// Forgets the user `id` of connection `idp_id` (deleted, or found stale).
    pub fn forget(&self, idp_id: i64, id: &str) {
        if let Ok(mut g) = self.inner.lock() {
            let key = (idp_id, Box::from(id));
            g.old.take(&key);
            g.new.take(&key);
        }
    }

    /// Inserts into the new generation; returns the old generation it retired, if it did,
    /// for the caller to free once it has let go of the lock.
    #[must_use]
    fn insert(&self, g: &mut Generations, key: Key, user: Arc<UserBefore>) -> Option<Generation> {
        let w = weight(&key, &user);
        if w > self.budget / 2 {
            return None;
        }
        let retired = (g.new.bytes + w > self.budget / 2).then(|| std::mem::replace(&mut g.old, std::mem::take(&mut g.new)));
        g.new.bytes += w;
        g.new.users.insert(key, user);
        crate::metrics::get().remembered_users_bytes(g.new.bytes + g.old.bytes);
        retired
    }

    /// The estimated bytes held.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.inner.lock().map(|g| g.new.bytes + g.old.bytes).unwrap_or(0)
    }
}

/// About what an entry costs in memory: the key, the map's slot and the JSON tree.
fn weight(key: &Key, u: &UserBefore) -> usize {
    64 + key.1.len() + value_bytes(&u.body)
}

/// About what a JSON tree costs in memory: each value's slot, strings' bytes, and each
/// object member's key and index slot.
fn value_bytes(v: &Value) -> usize {
    const SLOT: usize = std::mem::size_of::<Value>();
    SLOT + match v {
        Value::String(s) => s.len(),
        Value::Array(a) => a.iter().map(value_bytes).sum(),
        Value::Object(o) => o.iter().map(|(k, v)| k.len() + 2 * std::mem::size_of::<usize>() + value_bytes(v)).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(version: i64, name: &str) -> Arc<UserBefore> {
        Arc::new(UserBefore { version, out_of_scope: false, body: Arc::new(json!({"userName": name, "title": "x".repeat(100)})) })
    }

    #[test]
    fn remembers_replaces_and_forgets() {
        let c = CurrentUsers::new(1 << 20);
        assert!(c.get(1, "a").is_none());
        c.put(1, "a", user(1, "a"));
        c.put(2, "a", user(7, "other connection"));
        assert_eq!(c.get(1, "a").map(|u| u.version), Some(1));
        c.put(1, "a", user(2, "a"));
        assert_eq!(c.get(1, "a").map(|u| u.version), Some(2));
        assert_eq!(c.get(2, "a").map(|u| u.version), Some(7), "keyed by connection too");
        c.forget(1, "a");
        assert!(c.get(1, "a").is_none());
        assert!(c.get(2, "a").is_some());
    }

    #[test]
    fn stays_within_its_budget_and_keeps_what_is_used() {
        let one = weight(&(1, Box::from("u0")), &user(1, "u0"));
        let c = CurrentUsers::new(one * 20);
        c.put(1, "hot", user(1, "hot"));
        for i in 0..1000 {
            c.put(1, &format!("u{i}"), user(1, &format!("u{i}")));
            assert!(c.get(1, "hot").is_some(), "a user in use survives ({i})");
            assert!(c.bytes() <= one * 20, "{} bytes held after {i}", c.bytes());
        }
        assert!(c.get(1, "u0").is_none(), "the least recently used went");
        assert!(c.get(1, "u999").is_some());
    }

    #[test]
    fn a_zero_budget_holds_nothing() {
        let c = CurrentUsers::new(0);
        c.put(1, "a", user(1, "a"));
        assert!(c.get(1, "a").is_none());
        assert_eq!(c.bytes(), 0);
    }
}
