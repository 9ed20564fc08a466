//! The Beacon collector (the `astmanproxy-collector` binary, DESIGN 7): the HTTPS REST API that Beacon
//! reporters post to, storing servers and their latest report in SQLite, with aggregates that
//! never expose one server.
//!
//! - [`tokens`]: the 48-hour token rules, as pure functions;
//! - [`db`]: the SQLite database (WAL, schema version, blocking work off the runtime);
//! - [`validate`]: reading `Server` bodies within field limits;
//! - [`rate`]: rate limits per client address;
//! - [`stats`]: `GET /stats` aggregates with small groups folded into `"other"`;
//! - [`api`]: the routes and their answers; this module serves them over hyper and
//!   tokio-rustls.
//!
//! `docs/beacon-collector.md` describes the whole service; `docs/beacon-openapi.yaml` is its
//! OpenAPI 3.1 description.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use astmanproxy_beacon_wire::clock::Clock;
use astmanproxy_net::tls::TlsError;

pub mod api;
pub mod args;
pub mod db;
pub mod rate;
pub mod stats;
pub mod tokens;
pub mod validate;

pub use args::ServeArgs;
pub use validate::Limits;

/// Everything the collector can be told; every limit has a documented default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorConfig {
    /// The SQLite database file (created if missing).
    pub db: PathBuf,
    /// Largest request body in bytes (413 past it). Default 64 KiB.
    pub max_body: usize,
    /// Field limits of `Server` bodies (400 past them).
    pub limits: Limits,
    /// Registrations (`POST /servers`) per hour and client address; 0: unlimited. Default 5.
    pub register_per_hour: u32,
    /// Updates (`PUT /servers/{id}`) per hour and client address; 0: unlimited. Default 60.
    pub update_per_hour: u32,
    /// `GET /stats` requests per hour and client address; 0: unlimited. Default 600.
    pub stats_per_hour: u32,
    /// Groups of `/stats` with fewer servers than this are folded into `"other"`. Default 3.
    pub min_group: u64,
    /// How long a `/stats` answer is reused for the same window; zero: never. Default 60 s.
    pub stats_cache: Duration,
    /// The largest `days` window `/stats` accepts. Default 3650.
    pub max_stats_days: u32,
    /// Connections served at once; more wait in the listen backlog. Default 1024.
    pub max_connections: usize,
    /// Connections served at once per client address (IPv6: per /64, as the rate limits); more
    /// are closed as soon as they are accepted, so that one address cannot take every slot of
    /// `max_connections`. 0: no limit. Default 32.
    pub max_connections_per_address: usize,
    /// Time for a TLS handshake. Default 10 s.
    pub handshake_timeout: Duration,
    /// Time for a client to send a request's headers, and again for its body; also the longest
    /// a write to a client may make no progress. Default 30 s.
    pub request_timeout: Duration,
    /// At shutdown, how long requests in flight may take to finish. Default 10 s.
    pub shutdown_grace: Duration,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            db: PathBuf::from("beacon-collector.db"),
            max_body: 64 * 1024,
            limits: Limits::default(),
            register_per_hour: 5,
            update_per_hour: 60,
            stats_per_hour: 600,
            min_group: 3,
            stats_cache: Duration::from_secs(60),
            max_stats_days: 3650,
            max_connections: 1024,
            max_connections_per_address: 32,
            handshake_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// What can go wrong starting or running the collector.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    /// The database file cannot be opened or prepared.
    #[error("database {path}: {source}")]
    Db {
        /// The file.
        path: String,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The database was written by a newer collector.
    #[error("database {path}: schema version {found} is newer than this collector's ({})", db::SCHEMA_VERSION)]
    Schema {
        /// The file.
        path: String,
        /// The version found.
        found: i64,
    },
    /// A query failed.
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    /// The certificate or key cannot be used.
    #[error("{0}")]
    Tls(#[from] TlsError),
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A bug or a lost task.
    #[error("internal error: {0}")]
    Internal(String),
}

impl CollectorError {
    fn db(path: &Path, source: rusqlite::Error) -> Self {
        CollectorError::Db { path: path.display().to_string(), source }
    }
}

/// The collector's shared state: configuration, database, clock and rate limiters. Cheap to
/// clone.
#[derive(Clone)]
pub struct Collector {
    inner: Arc<Inner>,
}

struct Inner {
    config: CollectorConfig,
    db: db::Db,
    clock: Arc<dyn Clock>,
    register: rate::Limiter,
    update: rate::Limiter,
    stats: rate::Limiter,
    stats_cache: stats::Cache,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

impl Collector {
    /// Opens the database of `config` (creating it and its schema if needed); `clock` gives
    /// "now" for the token rules and the `/stats` window.
    ///
    /// # Errors
    /// The database cannot be opened or has a newer schema.
    pub fn open(config: CollectorConfig, clock: Arc<dyn Clock>) -> Result<Collector, CollectorError> {
        let db = db::Db::open(&config.db)?;
        Ok(Collector {
            inner: Arc::new(Inner {
                register: rate::Limiter::per_hour(config.register_per_hour),
                update: rate::Limiter::per_hour(config.update_per_hour),
                stats: rate::Limiter::per_hour(config.stats_per_hour),
                stats_cache: stats::Cache::default(),
                config,
                db,
                clock,
            }),
        })
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &CollectorConfig {
        &self.inner.config
    }

    fn forget_idle_clients(&self) {
        self.inner.register.forget_idle();
        self.inner.update.forget_idle();
        self.inner.stats.forget_idle();
    }
}

/// How often the rate limiters forget clients that went quiet.
const FORGET_IDLE_EVERY: Duration = Duration::from_secs(60);

/// Serves HTTPS on `listener` until `shutdown`, then lets requests in flight finish (within
/// [`CollectorConfig::shutdown_grace`]).
///
/// # Errors
/// None yet at run time: failing connections are logged and dropped, accept errors retried.
pub async fn serve(
    collector: Collector,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CollectorError> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(collector.config().max_connections.max(1)));
    let per_address = PerAddress::new(collector.config().max_connections_per_address);
    let mut forget = tokio::time::interval(FORGET_IDLE_EVERY);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            _ = forget.tick() => { collector.forget_idle_clients(); continue; }
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "beacon collector: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(address_slot) = per_address.enter(peer.ip()) else {
            tracing::debug!(%peer, "beacon collector: too many connections from this address, closed");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (collector, acceptor, cancel) = (collector.clone(), acceptor.clone(), cancel.clone());
        tracker.spawn(async move {
            let _permit = (permit, address_slot);
            let timeout = collector.config().handshake_timeout;
            let tls = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "beacon collector: TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "beacon collector: TLS handshake timed out"),
            };
            // hyper has no write timeout: a client that stops reading its answers would keep its
            // slot of `max_connections` forever.
            let tls = astmanproxy_net::stall::StallLimit::new(tls, collector.config().request_timeout);
            serve_connection(collector, tls, peer, cancel).await;
        });
    }
    drop(listener);
    cancel.cancel();
    tracker.close();
    if tokio::time::timeout(collector.config().shutdown_grace, tracker.wait()).await.is_err() {
        tracing::warn!("beacon collector: requests still in flight at the end of the shutdown grace time");
    }
    tracing::info!("beacon collector stopped");
    Ok(())
}

async fn serve_connection<I>(collector: Collector, io: I, peer: SocketAddr, cancel: CancellationToken)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let timeout = collector.config().request_timeout;
    let service = hyper::service::service_fn(move |req| {
        let collector = collector.clone();
        async move { Ok::<_, std::convert::Infallible>(api::handle(&collector, req, peer).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(timeout);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "beacon collector: connection ended");
            }
        }
        () = cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Open connections per client address ([`rate::key`]), within a limit.
#[derive(Clone)]
struct PerAddress {
    limit: usize,
    open: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
}

/// One open connection of an address; dropping it frees its place.
struct AddressSlot {
    of: PerAddress,
    key: std::net::IpAddr,
}

impl PerAddress {
    fn new(limit: usize) -> Self {
        PerAddress { limit, open: Arc::default() }
    }

    /// A place for one more connection of `peer`, `None` when it has its limit already.
    fn enter(&self, peer: std::net::IpAddr) -> Option<AddressSlot> {
        let key = rate::key(peer);
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(key).or_insert(0);
        if self.limit > 0 && *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(AddressSlot { of: self.clone(), key })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.of.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Loads a certificate chain and a private key (PEM files) into a rustls server configuration
/// for HTTP/1.1.
///
/// # Errors
/// Unreadable or empty PEM files, or a key that does not fit the certificate.
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, CollectorError> {
    let certs = astmanproxy_net::tls::load_certs(cert)?;
    let key = astmanproxy_net::tls::load_key(key)?;
    let mut config = rustls::ServerConfig::builder_with_provider(astmanproxy_net::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::from)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(TlsError::from)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
