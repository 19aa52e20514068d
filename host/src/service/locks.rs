//! Per-resource locks: writers of the same resource in this process queue instead of racing.
//!
//! Optimistic version checks alone keep data correct, but under heavy contention (an IdP
//! firing dozens of PATCHes at one group) most attempts would lose and retry. Queueing on a
//! per-resource lock makes each attempt succeed first time; the version check still guards
//! against writers in other processes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

type Key = (i64, String);

#[derive(Default)]
pub struct KeyedLocks {
    map: Mutex<HashMap<Key, Arc<AsyncMutex<()>>>>,
}

/// Held while a resource is being modified; releases (and forgets the lock when unused) on drop.
pub struct KeyGuard<'a> {
    owner: &'a KeyedLocks,
    key: Key,
    guard: Option<OwnedMutexGuard<()>>,
}

impl KeyedLocks {
    pub async fn lock(&self, idp: i64, id: &str) -> KeyGuard<'_> {
        let key = (idp, id.to_string());
        let m = match self.map.lock() {
            Ok(mut map) => map.entry(key.clone()).or_default().clone(),
            Err(_) => Arc::new(AsyncMutex::new(())),
        };
        KeyGuard { owner: self, key, guard: Some(m.lock_owned().await) }
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        if let Ok(mut map) = self.owner.map.lock()
            && map.get(&self.key).is_some_and(|m| Arc::strong_count(m) == 1)
        {
            map.remove(&self.key);
        }
    }
}
