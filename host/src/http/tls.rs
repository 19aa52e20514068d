//! TLS where Mapwright listens (IdPs provision only to HTTPS endpoints): rustls with the
//! certificate and key files of `[server.tls]`, read again when they change (a renewed
//! certificate) without dropping a connection: connections keep the session they
//! negotiated, new ones get the new certificate. Files that do not load are logged and the
//! previous certificate keeps serving.
//!
//! Handshakes run in tasks of their own, so a slow or silent client holds up nobody; a
//! handshake not done in 10 s is dropped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How often the files are looked at for a change.
const RELOAD_EVERY: Duration = Duration::from_secs(2);
/// A handshake slower than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The certificate chain and private key files (PEM).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate, then its chain.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The server's TLS settings from the files.
fn load(files: &TlsFiles) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("reading the certificate {}", files.cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("reading the certificate {}", files.cert.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {}", files.cert.display());
    let key = PrivateKeyDer::from_pem_file(&files.key).with_context(|| format!("reading the private key {}", files.key.display()))?;
    // ring: the provider the workspace already builds (reqwest's). rustls deprecates it for
    // lacking post-quantum key exchange; aws-lc-rs would add a C toolchain to the build.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate and the private key do not go together")?;
    // The server speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// What the files hold now (to tell a change), or `None` when they cannot be read.
fn fingerprint(files: &TlsFiles) -> Option<[u8; 32]> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in [&files.cert, &files.key] {
        h.update(std::fs::read(p).ok()?);
        h.update([0]);
    }
    Some(h.finalize().into())
}

/// Checks that the files load (at start, before the server announces itself).
pub fn check(files: &TlsFiles) -> anyhow::Result<()> {
    load(files).map(|_| ())
}

/// A listener handing out connections whose TLS handshake is done.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl TlsListener {
    /// Serves TLS on `tcp` with the certificate in `files` (refused now if it does not load).
    pub fn start(tcp: TcpListener, files: TlsFiles) -> anyhow::Result<TlsListener> {
        let addr = tcp.local_addr()?;
        let current = Arc::new(RwLock::new(load(&files)?));
        let (tx, ready) = mpsc::channel(64);
        let reloader = tokio::spawn(reload(files, current.clone()));
        let acceptor = tokio::spawn(accept_loop(tcp, current, tx));
        Ok(TlsListener { ready, addr, tasks: vec![reloader, acceptor] })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn accept_loop(tcp: TcpListener, current: Arc<RwLock<Arc<rustls::ServerConfig>>>, ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>) {
    loop {
        let (stream, peer) = match tcp.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: pause rather than spin.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        super::no_delay(&stream);
        let Ok(config) = current.read().map(|c| c.clone()) else { return };
        let ready = ready.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(config).accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = ready.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

async fn reload(files: TlsFiles, current: Arc<RwLock<Arc<rustls::ServerConfig>>>) {
    let mut seen = fingerprint(&files);
    let mut tick = tokio::time::interval(RELOAD_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // File reads off the async workers.
        let f = files.clone();
        let Ok((now, loaded)) = tokio::task::spawn_blocking(move || {
            let now = fingerprint(&f);
            let loaded = (now.is_some() && now != seen).then(|| load(&f));
            (now, loaded)
        })
        .await
        else {
            continue;
        };
        let Some(loaded) = loaded else { continue };
        seen = now;
        match loaded {
            Ok(config) => {
                if let Ok(mut c) = current.write() {
                    *c = config;
                }
                tracing::info!(cert = %files.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => tracing::error!(error = format!("{e:#}"), "the changed TLS files do not load; the previous certificate keeps serving"),
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accepting task is gone (the listener is being dropped): nothing more comes.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}
