//! The delivery engine of a server: one worker task per active target, started, restarted
//! and stopped as targets are added, changed, paused or removed (by this server or by the
//! CLI: it watches the store's delivery epoch).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::DeliveryService;
use super::worker::Worker;
use crate::store::Store;

/// How often the engine looks for changes to the targets.
const POLL: Duration = Duration::from_millis(250);

/// How long a replica that stopped renewing keeps the delivery lease: another replica takes
/// the targets over after at most this (deliveries are at least once: a target may get an
/// event twice around a takeover, with the same id).
const LEASE_TTL: Duration = Duration::from_secs(10);

struct Running {
    fingerprint: String,
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

/// The running engine; [`DeliveryEngine::stop`] ends every worker.
pub struct DeliveryEngine {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl DeliveryEngine {
    /// Starts delivering every active target of the store.
    pub fn start<S: Store>(service: Arc<DeliveryService<S>>) -> DeliveryEngine {
        let (stop, stopped) = watch::channel(false);
        let handle = tokio::spawn(supervise(service, stopped));
        DeliveryEngine { stop, handle }
    }

    /// Stops every worker (each stores its progress first) and waits for them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.handle.await;
    }
}

async fn supervise<S: Store>(service: Arc<DeliveryService<S>>, mut stopped: watch::Receiver<bool>) {
    let store = service.store().clone();
    let (reload, _) = watch::channel(0u64);
    let mut running: HashMap<i64, Running> = HashMap::new();
    let mut seen_epoch = None;
    // One replica delivers: two delivering one target would send each event twice.
    let mut lease = crate::service::lease::Lease::new("delivery", LEASE_TTL);
    loop {
        if !lease.hold(&*store).await {
            for (_, r) in running.drain() {
                stop_worker(r).await;
            }
            seen_epoch = None;
            tokio::select! {
                _ = tokio::time::sleep(POLL) => continue,
                _ = stopped.changed() => break,
            }
        }
        let epoch = store.delivery_epoch().await.ok();
        // A worker that ended on its own (it should not) is started again.
        let ended: Vec<i64> = running.iter().filter(|(_, r)| r.handle.is_finished()).map(|(id, _)| *id).collect();
        if epoch != seen_epoch || !ended.is_empty() {
            for id in ended {
                running.remove(&id);
            }
            match store.targets(None).await {
                Ok(targets) => {
                    let mut keep = Vec::new();
                    for t in targets.into_iter().filter(|t| !t.paused) {
                        let Ok(fingerprint) = service.fingerprint(&t).await else { continue };
                        keep.push(t.id);
                        if running.get(&t.id).is_some_and(|r| r.fingerprint == fingerprint) {
                            continue;
                        }
                        if let Some(old) = running.remove(&t.id) {
                            stop_worker(old).await;
                        }
                        match service.sink(&t).await {
                            Ok(sink) => {
                                let (stop, stopping) = watch::channel(false);
                                let worker = Worker::new(store.clone(), t.clone(), sink, stopping, reload.subscribe());
                                running.insert(t.id, Running { fingerprint, stop, handle: tokio::spawn(worker.run()) });
                            }
                            Err(e) => tracing::error!(tenant = %t.tenant, target = %t.name, error = %e, "the target cannot be delivered to"),
                        }
                    }
                    let gone: Vec<i64> = running.keys().filter(|id| !keep.contains(id)).copied().collect();
                    for id in gone {
                        if let Some(r) = running.remove(&id) {
                            stop_worker(r).await;
                        }
                    }
                    seen_epoch = epoch;
                    reload.send_modify(|n| *n += 1);
                }
                Err(e) => tracing::warn!(error = %e, "reading the delivery targets failed"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stopped.changed() => break,
        }
    }
    for (_, r) in running.drain() {
        stop_worker(r).await;
    }
    lease.release(&*store).await;
}

async fn stop_worker(r: Running) {
    let _ = r.stop.send(true);
    let _ = r.handle.await;
}
