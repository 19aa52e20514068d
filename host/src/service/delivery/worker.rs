//! One target's delivery loop: it follows the tenant's change feed from the target's cursor
//! and delivers each change in feed order, one at a time.
//!
//! - A change is delivered, or parked in the dead letters, before the cursor moves past it;
//!   the cursor is stored every few hundred milliseconds (and on every park), so a crash
//!   delivers again what followed the last stored cursor: at least once, with the feed
//!   position as the idempotency key.
//! - A target that is unreachable or busy (timeouts, refused connections, 429/502/503/504)
//!   makes the loop wait, with exponential backoff and jitter or the `Retry-After` it gave,
//!   and try the same change again: nothing is parked because a target is down.
//! - A change the target refuses is tried `max_attempts` times, then parked; later changes of
//!   the same resource are held behind it (so a resource's changes stay in order) while the
//!   other resources' changes flow on. Several changes in a row parked means the target is
//!   failing rather than the changes: the loop then waits instead of parking more.
//! - Everything runs on its own task: a request to the target never waits on it, and one
//!   target's trouble never delays another target.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::client::Failure;
use super::reconcile;
use super::sink::{Sink, resource_key};
use crate::model::{Change, DeadLetter, DeadState, Feed, NewDeadLetter, Progress, Target, TargetChange, TargetKind};
use crate::store::Store;

/// Changes read from the feed at a time.
const PAGE: usize = 200;
/// How often progress (the cursor, counts) is stored while delivering.
const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// After this many changes parked in a row the target, not the changes, is taken to fail.
const BREAKER: u32 = 3;

/// How a delivery attempt series ended.
enum Outcome {
    Delivered,
    Parked { answer: String, attempts: u32 },
    Stopped,
}

/// One target's loop.
pub struct Worker<S: Store> {
    store: Arc<S>,
    target: Target,
    sink: Sink<S>,
    stop: watch::Receiver<bool>,
    /// Moves when an admin changed something of the targets (a decision on dead letters, a
    /// reconciliation asked for).
    reload: watch::Receiver<u64>,
    /// Resources with an open dead letter: their later changes wait behind it.
    held: HashSet<String>,
    pending: Progress,
    last_flush: Instant,
    parked_in_a_row: u32,
    /// When the last reconciliation finished (for `sync_every_secs`).
    last_sync: Instant,
}

/// A delay around `d`, ±20%, so that retries of many targets do not fall in step.
fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 2];
    let r = if getrandom::fill(&mut b).is_ok() { u16::from_le_bytes(b) as f64 / u16::MAX as f64 } else { 0.5 };
    d.mul_f64(0.8 + 0.4 * r)
}

impl<S: Store> Worker<S> {
    /// A loop for `target`, delivering through `sink`, until `stop` turns true; `reload`
    /// moves when an admin changed something of the targets.
    pub fn new(store: Arc<S>, target: Target, sink: Sink<S>, stop: watch::Receiver<bool>, reload: watch::Receiver<u64>) -> Worker<S> {
        let pending = Progress { cursor: target.cursor, ..Default::default() };
        Worker { store, target, sink, stop, reload, held: HashSet::new(), pending, last_flush: Instant::now(), parked_in_a_row: 0, last_sync: Instant::now() }
    }

    /// Takes in what an admin changed: a reconciliation asked for, dead letters to retry or
    /// skip.
    async fn reload(&mut self) {
        self.reload.borrow_and_update();
        match self.store.target(self.target.id).await {
            Ok(Some(t)) => self.target.needs_sync |= t.needs_sync,
            Ok(None) => return,
            Err(e) => tracing::warn!(target = %self.target.name, error = %e, "reading the target failed"),
        }
        if let Err(e) = self.settle_open().await {
            tracing::warn!(target = %self.target.name, error = %e, "settling dead letters failed");
        }
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleeps `d`, or less if asked to stop; returns whether to go on.
    async fn pause(&mut self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.stop.changed() => {}
        }
        !self.stopping()
    }

    async fn flush(&mut self, force: bool) {
        let due = force || self.last_flush.elapsed() >= FLUSH_EVERY;
        if !due || (self.pending.delivered == 0 && self.pending.error.is_none() && self.pending.cursor <= self.target.cursor) {
            return;
        }
        let cursor = self.pending.cursor;
        let p = std::mem::replace(&mut self.pending, Progress { cursor, ..Default::default() });
        match self.store.record_progress(self.target.id, p.clone()).await {
            Ok(()) => {
                self.target.cursor = self.target.cursor.max(p.cursor);
                self.last_flush = Instant::now();
            }
            Err(e) => {
                tracing::warn!(target = %self.target.name, error = %e, "recording delivery progress failed; trying again");
                self.pending.delivered += p.delivered;
            }
        }
    }

    /// Runs until stopped.
    pub async fn run(mut self) {
        tracing::info!(tenant = %self.target.tenant, target = %self.target.name, cursor = self.target.cursor, "delivery started");
        if let Err(e) = self.settle_open().await {
            tracing::warn!(target = %self.target.name, error = %e, "reading the dead letters failed");
        }
        let mut commits = self.store.subscribe_commits();
        while !self.stopping() {
            if self.reload.has_changed().unwrap_or(false) {
                self.reload().await;
            }
            if let Some(every) = self.target.settings.sync_every_secs
                && self.target.kind == TargetKind::Scim
                && self.last_sync.elapsed() >= Duration::from_secs(every.max(1))
            {
                // The scheduled reconciliation repairs edits made in the target by hand.
                self.target.needs_sync = true;
            }
            if self.target.needs_sync && !self.sync().await {
                continue;
            }
            let feed = match self.store.changes(self.target.tenant_id, self.pending.cursor, PAGE).await {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(target = %self.target.name, error = %e, "reading the change feed failed");
                    self.pause(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let changes = match feed {
                Feed::Changes { changes, .. } => changes,
                Feed::Expired { oldest } => {
                    // Down longer than the feed keeps changes: a SCIM target is reconciled; a
                    // webhook receiver is told what it missed, so it lists the directory again.
                    tracing::warn!(target = %self.target.name, cursor = self.pending.cursor, oldest, "the target fell behind the feed's retention");
                    match &self.sink {
                        Sink::Scim(_) => self.target.needs_sync = true,
                        Sink::Webhook(w) => {
                            let gap = (self.pending.cursor, oldest);
                            let sent = tokio::select! {
                                r = w.deliver_gap(gap) => r,
                                _ = self.stop.changed() => continue,
                            };
                            match sent {
                                Ok(()) => {
                                    self.pending.cursor = oldest;
                                    self.flush(true).await;
                                }
                                Err(f) => {
                                    self.pending.error = Some(f.describe().to_string());
                                    self.flush(true).await;
                                    self.pause(jitter(Duration::from_millis(self.target.settings.retry_base_ms))).await;
                                }
                            }
                        }
                    }
                    continue;
                }
            };
            if changes.is_empty() {
                self.flush(true).await;
                let reload = tokio::select! {
                    _ = commits.changed() => false,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => false,
                    _ = self.stop.changed() => false,
                    _ = self.reload.changed() => true,
                };
                if reload {
                    self.reload().await;
                }
                continue;
            }
            for change in changes {
                if !self.process(change).await {
                    break;
                }
                self.flush(false).await;
            }
        }
        self.flush(true).await;
        tracing::info!(target = %self.target.name, cursor = self.pending.cursor, "delivery stopped");
    }

    /// Delivers (or parks, or holds) one change; false when stopped before it was done.
    async fn process(&mut self, change: Change) -> bool {
        let key = resource_key(&change);
        let letter = |state, attempts, answer| NewDeadLetter { seq: change.seq, resource: key.clone(), event: serde_json::to_value(&change).unwrap_or_default(), state, attempts, answer };
        if self.held.contains(&key) {
            let held = letter(DeadState::Held, 0, None);
            return self.park(held, change.seq).await;
        }
        match self.attempt(&change, 0).await {
            Outcome::Delivered => {
                self.pending.delivered += 1;
                self.pending.cursor = change.seq;
                self.pending.error = None;
                crate::metrics::get().delivery(&self.target.tenant, &self.target.name, "delivered");
                true
            }
            Outcome::Parked { answer, attempts } => {
                tracing::warn!(target = %self.target.name, seq = change.seq, resource = %key, %answer, "delivery parked");
                self.held.insert(key.clone());
                self.park(letter(DeadState::Parked, attempts, Some(answer)), change.seq).await
            }
            Outcome::Stopped => false,
        }
    }

    async fn park(&mut self, letter: NewDeadLetter, seq: i64) -> bool {
        self.flush(true).await;
        let parked = letter.state == DeadState::Parked;
        loop {
            match self.store.park(self.target.id, vec![letter.clone()], seq).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(target = %self.target.name, error = %e, "parking a change failed; trying again");
                    if !self.pause(Duration::from_secs(1)).await {
                        return false;
                    }
                }
            }
        }
        if parked {
            crate::metrics::get().delivery(&self.target.tenant, &self.target.name, "parked");
        }
        self.pending.cursor = seq;
        self.target.cursor = self.target.cursor.max(seq);
        true
    }

    /// Tries a change until it is delivered, parked or the loop is stopped.
    async fn attempt(&mut self, change: &Change, mut attempts: u32) -> Outcome {
        let s = self.target.settings.clone();
        let mut busy = Duration::from_millis(s.retry_base_ms);
        loop {
            let result = tokio::select! {
                r = self.sink.deliver(change) => r,
                _ = self.stop.changed() => return Outcome::Stopped,
            };
            let wait = match result {
                Ok(()) => {
                    self.parked_in_a_row = 0;
                    return Outcome::Delivered;
                }
                Err(failure) => {
                    crate::metrics::get().delivery(&self.target.tenant, &self.target.name, "failed");
                    self.pending.error = Some(failure.describe().to_string());
                    match failure {
                        Failure::Refused { answer } if self.parked_in_a_row < BREAKER => {
                            attempts += 1;
                            if attempts >= s.max_attempts.max(1) {
                                self.parked_in_a_row += 1;
                                return Outcome::Parked { answer, attempts };
                            }
                            let backoff = Duration::from_millis(s.retry_base_ms.saturating_mul(1 << attempts.min(20)).min(s.retry_max_ms));
                            jitter(backoff)
                        }
                        Failure::Refused { .. } => {
                            // Parked several in a row: the target is failing, not the changes.
                            busy = (busy * 2).min(Duration::from_millis(s.retry_max_ms));
                            jitter(busy)
                        }
                        Failure::Busy { retry_after, .. } => {
                            let w = retry_after.unwrap_or_else(|| jitter(busy));
                            busy = (busy * 2).min(Duration::from_millis(s.retry_max_ms));
                            w
                        }
                    }
                }
            };
            self.flush(true).await;
            if !self.pause(wait).await {
                return Outcome::Stopped;
            }
        }
    }

    /// Settles what an admin decided on dead letters: a resource whose first open letter is
    /// to be retried (or whose parked letter was skipped) gets its letters delivered again in
    /// order, until one fails (it is parked again) or none is left.
    async fn settle_open(&mut self) -> Result<(), crate::store::StoreError> {
        let open = self.store.dead_letters(self.target.id, true).await?;
        let mut by_resource: BTreeMap<String, Vec<DeadLetter>> = BTreeMap::new();
        for d in open {
            by_resource.entry(d.resource.clone()).or_default().push(d);
        }
        self.held = by_resource.keys().cloned().collect();
        for (resource, letters) in by_resource {
            if letters.first().is_some_and(|d| d.state == DeadState::Parked) {
                continue;
            }
            let mut cleared = true;
            for d in letters {
                let Ok(change) = serde_json::from_value::<Change>(d.event.clone()) else {
                    self.store.settle_dead(d.id, DeadState::Skipped, d.attempts, Some("the stored event could not be read".into())).await?;
                    continue;
                };
                match self.attempt(&change, 0).await {
                    Outcome::Delivered => {
                        self.store.settle_dead(d.id, DeadState::Delivered, d.attempts + 1, None).await?;
                        crate::metrics::get().delivery(&self.target.tenant, &self.target.name, "delivered");
                    }
                    Outcome::Parked { answer, attempts } => {
                        self.store.settle_dead(d.id, DeadState::Parked, d.attempts + attempts, Some(answer)).await?;
                        cleared = false;
                        break;
                    }
                    Outcome::Stopped => return Ok(()),
                }
            }
            if cleared {
                self.held.remove(&resource);
            }
        }
        Ok(())
    }

    /// Reconciles the target with the directory (SCIM), or for a webhook target starts at
    /// the feed's head; then follows the feed from the position the reconciliation started
    /// at. Returns whether the loop may go on.
    async fn sync(&mut self) -> bool {
        let head = match self.store.change_cursor(self.target.tenant_id).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(target = %self.target.name, error = %e, "reading the feed's head failed");
                return self.pause(Duration::from_secs(1)).await;
            }
        };
        if let (TargetKind::Scim, Sink::Scim(scim)) = (self.target.kind, &self.sink) {
            let result = match reconcile::plan(&*self.store, &self.target, scim).await {
                Ok(plan) => reconcile::apply(scim, &plan).await.map(|done| (plan, done)),
                Err(f) => Err(f),
            };
            match result {
                Ok((plan, done)) => {
                    tracing::info!(target = %self.target.name, actions = plan.actions.len(), failed = done.failed.len(), "reconciled with the directory");
                    if let Some((what, why)) = done.failed.first() {
                        self.pending.error = Some(format!("reconciliation: {what}: {why}"));
                    }
                }
                Err(f) => {
                    tracing::warn!(target = %self.target.name, error = %f.describe(), "reconciliation failed; trying again");
                    self.pending.error = Some(format!("reconciliation: {}", f.describe()));
                    self.flush(true).await;
                    let wait = match f {
                        Failure::Busy { retry_after: Some(w), .. } => w,
                        _ => jitter(Duration::from_millis(self.target.settings.retry_max_ms.min(30_000))),
                    };
                    return self.pause(wait).await;
                }
            }
        }
        // A webhook target has nothing to reconcile: it goes on from its own cursor.
        let synced_at = (self.target.kind == TargetKind::Scim).then_some(head);
        let change = TargetChange { needs_sync: Some(false), synced_at, ..Default::default() };
        match self.store.update_target(self.target.id, change).await {
            Ok(t) => {
                self.target.needs_sync = false;
                self.last_sync = Instant::now();
                self.pending.cursor = self.pending.cursor.max(t.cursor);
                self.target.cursor = t.cursor;
                true
            }
            Err(e) => {
                tracing::warn!(target = %self.target.name, error = %e, "recording the reconciliation failed");
                self.pause(Duration::from_secs(1)).await
            }
        }
    }
}
