//! Server lifecycle: open the store, bind, serve until shutdown, drain in-flight requests.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;

use crate::config::ServerConfig;
use crate::http::{self, AppState, AppStore};
use crate::mapping::{IdentityRegistry, PipelineRegistry};
use crate::service::Service;
use crate::store::Backend;
use crate::service::admin::AdminService;
use crate::service::directory::DirectoryReader;
use crate::service::guard::Guard;

/// A bound server, ready to serve.
pub struct Server {
    listener: tokio::net::TcpListener,
    tls: Option<http::tls::TlsFiles>,
    state: Arc<AppState>,
    addr: SocketAddr,
    purge_every: std::time::Duration,
    change_retention_secs: u64,
    stop: tokio::sync::watch::Sender<bool>,
    store: AppStore,
}

impl Server {
    /// Binds the listener (port 0 picks a free port) over an open store.
    pub async fn bind(cfg: &ServerConfig, store: AppStore) -> anyhow::Result<Server> {
        Server::bind_with(cfg, store, Arc::new(IdentityRegistry::default()), Default::default()).await
    }

    /// Binds with the given per-connection mapping pipelines (rule chains) and guards.
    pub async fn bind_with(cfg: &ServerConfig, store: AppStore, pipelines: Arc<dyn PipelineRegistry>, guard: Arc<Guard>) -> anyhow::Result<Server> {
        let listener = tokio::net::TcpListener::bind(cfg.listen).await.with_context(|| format!("binding {}", cfg.listen))?;
        let addr = listener.local_addr()?;
        let scheme = if cfg.tls.is_some() { "https" } else { "http" };
        let public_url = cfg.public_url.clone().unwrap_or_else(|| format!("{scheme}://{addr}")).trim_end_matches('/').to_string();
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let shared = Arc::new(store.clone());
        let remembered = match (cfg.remembered_users_mib, store.backend()) {
            (Some(mib), _) => mib,
            (None, Backend::Sqlite) => 64,
            (None, Backend::Postgres) => 0,
        };
        let state = Arc::new(AppState {
            service: Service::new(shared.clone(), pipelines).with_guard(guard).with_remembered_users(remembered.saturating_mul(1 << 20)),
            admin: AdminService::new(shared.clone()),
            directory: DirectoryReader::new(shared),
            limiter: Default::default(),
            auth_cache: Default::default(),
            public_url,
            body_limit: cfg.body_limit,
            rules: None,
            delivery: None,
            stopping,
            backend: store.backend(),
        });
        let tls = cfg.tls.as_ref().map(|t| http::tls::TlsFiles { cert: t.cert_file.clone(), key: t.key_file.clone() });
        if let Some(files) = &tls {
            http::tls::check(files)?;
        }
        Ok(Server {
            listener,
            tls,
            state,
            addr,
            purge_every: std::time::Duration::from_secs(cfg.purge_interval_secs.max(1)),
            change_retention_secs: cfg.change_retention_secs,
            stop,
            store,
        })
    }

    /// Serves the admin API's rule endpoints (plugins, chain versions) with this service.
    pub fn with_rules(mut self, rules: Arc<crate::service::rules::RuleManager<AppStore>>) -> Server {
        if let Some(state) = Arc::get_mut(&mut self.state) {
            state.rules = Some(rules);
        }
        self
    }

    /// Serves the admin API's delivery endpoints with this service, and runs its targets.
    pub fn with_delivery(mut self, delivery: Arc<crate::service::delivery::DeliveryService<AppStore>>) -> Server {
        if let Some(state) = Arc::get_mut(&mut self.state) {
            state.delivery = Some(delivery);
        }
        self
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL clients reach it at.
    pub fn public_url(&self) -> &str {
        &self.state.public_url
    }

    /// Serves until `shutdown` resolves, then finishes the requests in flight.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        tracing::info!(addr = %self.addr, "serving");
        let purger = tokio::spawn(purge_loop(self.state.clone(), self.store.clone(), self.purge_every, self.change_retention_secs));
        // Delivery runs beside the requests, never in their path.
        let engine = self.state.delivery.clone().map(crate::service::delivery::engine::DeliveryEngine::start);
        let store = self.store;
        let stop = self.stop;
        let shutdown = async move {
            shutdown.await;
            // Long polls see this and answer, so draining is not held up by them.
            stop.send_replace(true);
        };
        let router = http::router(self.state);
        let served = match self.tls {
            Some(files) => match http::tls::TlsListener::start(self.listener, files) {
                Ok(listener) => axum::serve(listener, router).with_graceful_shutdown(shutdown).await,
                Err(e) => Err(std::io::Error::other(format!("{e:#}"))),
            },
            None => {
                use axum::serve::ListenerExt;
                axum::serve(self.listener.tap_io(|tcp| http::no_delay(tcp)), router).with_graceful_shutdown(shutdown).await
            }
        };
        purger.abort();
        let _ = purger.await;
        if let Some(engine) = engine {
            engine.stop().await;
        }
        // Requests are drained: close the store now rather than leave it to process exit.
        store.close();
        served?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Purges soft-deleted directory entries whose retention has ended, and changes older than
/// the change feed keeps.
/// One replica purges at a time (a lease that outlives a few rounds).
async fn purge_loop(state: Arc<AppState>, store: AppStore, every: std::time::Duration, change_retention_secs: u64) {
    let mut lease = crate::service::lease::Lease::new("purge", (every * 3).max(std::time::Duration::from_secs(30)));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !lease.hold(&store).await {
            continue;
        }
        match state.admin.purge(change_retention_secs).await {
            Ok((0, 0)) => {}
            Ok((entries, changes)) => tracing::info!(entries, changes, "purged deleted entries and change-feed entries past their retention"),
            Err(e) => tracing::error!(error = %e, "purging past retention failed"),
        }
    }
}

/// Registers SIGINT and SIGTERM handlers now, and resolves when either arrives. Call it
/// before announcing the server: a signal sent as soon as the banner is printed must already
/// find the handler, or the default action kills the process without draining.
pub fn shutdown_signal() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        Box::pin(async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {},
                        _ = int.recv() => {},
                    }
                }
                _ => std::future::pending::<()>().await,
            }
            tracing::info!("shutdown requested; draining requests in flight");
        })
    }
    #[cfg(not(unix))]
    {
        Box::pin(async move {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutdown requested; draining requests in flight");
        })
    }
}
