//! The hub: registries shared by every task.
//!
//! It is a registry: the upstream sessions by name (in configuration order; the first is the
//! default route) and the connected clients by id. It holds the [`Context`] the upstream sessions
//! are started with (configuration, metrics, the event bus they publish to); upstream never sees
//! the hub. It is a typed handle with methods: no lock guard ever leaves it, so nothing can hold
//! one across an `.await`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use dashmap::DashMap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::AuthLimiter;
use crate::config::{Config, ServerConfig, Users};
use crate::event::{EventRing, SharedEvent};
use crate::extension::Extensions;
use crate::metrics::Metrics;
use crate::route::{ClientId, ClientSink, EventBus, PeerSlots};
use crate::upstream::{Context, UpstreamHandle};

/// Why a server could not be added.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// A server of that name (case-insensitive) is registered already.
    #[error("a server named {0} exists already")]
    Exists(String),
}

/// Where a live server came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A `host =` line of the configuration file: a reload may change or remove it.
    File,
    /// `ProxyAction: AddServer` at run time: a reload leaves it alone.
    AddServer,
}

/// What the hub knows of a connected client (for `ListSessions` and metrics).
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// Peer address.
    pub peer: SocketAddr,
    /// Logged-in user, once authenticated.
    pub user: Option<String>,
    /// Output format name.
    pub format: &'static str,
    /// The client kind (`ami`, `ajam`, `ws`).
    pub kind: &'static str,
    /// The client's queue.
    pub sink: ClientSink,
}

/// Shared registries. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    context: Context,
    users: RwLock<Arc<Users>>,
    /// The live servers, in order, each with where it came from.
    servers: RwLock<Vec<(UpstreamHandle, Origin)>>,
    clients: DashMap<ClientId, ClientInfo>,
    next_client: AtomicU64,
    /// Actions in flight per address of HTTP 1.x requests (`maxpendingactions`).
    http_slots: PeerSlots,
    servers_token: CancellationToken,
    servers_tracker: TaskTracker,
    auth_limiter: AuthLimiter,
    extensions: Extensions,
}

impl Hub {
    /// A hub whose event buffer holds `config.client_event_buffer` bytes of recent events.
    pub fn new(config: Config, users: Users) -> Self {
        let events: Arc<dyn EventBus> = Arc::new(EventRing::new(config.client_event_buffer));
        let auth_limit = config.auth_limit;
        Self {
            inner: Arc::new(HubInner {
                context: Context::new(Arc::new(config), Metrics::new(), events),
                users: RwLock::new(Arc::new(users)),
                servers: RwLock::new(Vec::new()),
                clients: DashMap::new(),
                next_client: AtomicU64::new(1),
                http_slots: PeerSlots::default(),
                servers_token: CancellationToken::new(),
                servers_tracker: TaskTracker::new(),
                auth_limiter: AuthLimiter::new(auth_limit),
                extensions: Extensions::default(),
            }),
        }
    }

    /// The configuration the proxy runs with, shared (cloning it is cheap: plain data, never
    /// changed while running; a reload builds a new one).
    pub fn config(&self) -> &Arc<Config> {
        self.inner.context.config()
    }

    /// Actions in flight per address of HTTP 1.x requests.
    pub fn http_slots(&self) -> &PeerSlots {
        &self.inner.http_slots
    }

    /// The services that answer some actions themselves (Beacon's), found by name.
    pub fn extensions(&self) -> &Extensions {
        &self.inner.extensions
    }

    /// Failed-login counters per client address.
    pub fn auth_limiter(&self) -> &AuthLimiter {
        &self.inner.auth_limiter
    }

    /// What a login over a transport of `kind` is checked against ([`crate::auth::login`]).
    pub fn auth_gate(&self, kind: &crate::metrics::KindLabels) -> crate::auth::Gate<'_> {
        crate::auth::Gate {
            config: self.config(),
            users: self.users(),
            limiter: self.auth_limiter(),
            failures: self.metrics().auth_failures.get_or_create(kind).clone(),
        }
    }

    /// The proxy's metrics.
    pub fn metrics(&self) -> &Metrics {
        self.inner.context.metrics()
    }

    /// The users allowed to log in (a snapshot; reloads swap it whole).
    pub fn users(&self) -> Arc<Users> {
        self.inner.users.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the users (SIGHUP reload).
    pub fn set_users(&self, users: Users) {
        *self.inner.users.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(users);
    }

    /// Seconds since the proxy started (the `Uptime` of proxy-made `FullyBooted`).
    pub fn uptime_secs(&self) -> u64 {
        self.inner.context.uptime_secs()
    }

    /// Starts an upstream session for `server` and registers it (appended: the first
    /// registered is the default route), remembering where it came from.
    ///
    /// # Errors
    /// A server with the same name (case-insensitive) exists already.
    pub fn spawn_server(&self, server: ServerConfig, origin: Origin) -> Result<UpstreamHandle, SpawnError> {
        if self.server(Some(&server.name)).is_some() {
            return Err(SpawnError::Exists(server.name));
        }
        let context = self.inner.context.clone();
        let handle = crate::upstream::spawn(server, context, &self.inner.servers_token, &self.inner.servers_tracker);
        self.inner.servers.write().unwrap_or_else(|e| e.into_inner()).push((handle.clone(), origin));
        Ok(handle)
    }

    /// Stops and forgets the server named `name`: it logs off Asterisk and answers its pending
    /// actions with an error. Returns false when there is no such server.
    pub fn drop_server(&self, name: &str) -> bool {
        match self.remove_server(name) {
            Some(handle) => {
                handle.stop();
                self.metrics().remove_server(&Metrics::server(handle.name()));
                true
            }
            None => false,
        }
    }

    /// Runs a background task (admin listener, reload handler) until shutdown begins: it is
    /// cancelled with the server sessions, before clients are drained.
    pub fn spawn_background<F>(&self, task: impl FnOnce(CancellationToken) -> F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let token = self.inner.servers_token.child_token();
        let fut = task(token.clone());
        self.inner.servers_tracker.spawn(async move {
            tokio::select! {
                () = fut => {}
                () = token.cancelled() => {}
            }
        });
    }

    /// Stops every server session and waits for them (bounded by `deadline`); false on timeout.
    pub async fn stop_servers(&self, deadline: tokio::time::Instant) -> bool {
        self.inner.servers_token.cancel();
        self.inner.servers_tracker.close();
        // An extension may hold this hub: forgetting them lets it go.
        self.inner.extensions.clear();
        tokio::time::timeout_at(deadline, self.inner.servers_tracker.wait()).await.is_ok()
    }

    /// The live servers that came from the configuration file, with their settings (a reload
    /// diffs against them; the registry is the one list of servers).
    pub fn file_servers(&self) -> Vec<ServerConfig> {
        let servers = self.inner.servers.read().unwrap_or_else(|e| e.into_inner());
        servers.iter().filter(|(_, o)| *o == Origin::File).map(|(h, _)| h.config().clone()).collect()
    }

    /// Removes an upstream session by name; returns it.
    pub fn remove_server(&self, name: &str) -> Option<UpstreamHandle> {
        let mut servers = self.inner.servers.write().unwrap_or_else(|e| e.into_inner());
        let i = servers.iter().position(|(s, _)| s.name().eq_ignore_ascii_case(name))?;
        Some(servers.remove(i).0)
    }

    /// The server named `name` (case-insensitive), or the default one when `name` is `None`.
    pub fn server(&self, name: Option<&str>) -> Option<UpstreamHandle> {
        let servers = self.inner.servers.read().unwrap_or_else(|e| e.into_inner());
        let found = match name {
            Some(n) => servers.iter().find(|(s, _)| s.name().eq_ignore_ascii_case(n.trim())),
            None => servers.first(),
        };
        found.map(|(s, _)| s.clone())
    }

    /// Every server, in order.
    pub fn servers(&self) -> Vec<UpstreamHandle> {
        self.inner.servers.read().unwrap_or_else(|e| e.into_inner()).iter().map(|(s, _)| s.clone()).collect()
    }

    /// The banner line sent to clients: `forcebanner`, else `Asterisk Call Manager/<v>` with the
    /// AMI version the default server announced, else `defaultamiversion`.
    pub fn banner(&self) -> String {
        if let Some(banner) = &self.config().force_banner {
            return banner.clone();
        }
        let version = self
            .server(None)
            .and_then(|s| s.ami_version())
            .unwrap_or_else(|| self.config().default_ami_version.clone());
        format!("Asterisk Call Manager/{version}")
    }

    /// Publishes a broadcast event to every subscribed client.
    pub fn publish(&self, event: Arc<SharedEvent>) {
        self.inner.context.publish(event);
    }

    /// The event bus, from which every client's writer reads.
    pub fn events(&self) -> &Arc<dyn EventBus> {
        self.inner.context.bus()
    }

    /// The position from which a client that subscribes now receives events: every event
    /// published after this call.
    pub fn subscribe(&self) -> u64 {
        self.events().subscribe()
    }

    /// A fresh client id.
    pub fn next_client_id(&self) -> ClientId {
        self.inner.next_client.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers a connected client.
    pub fn add_client(&self, id: ClientId, info: ClientInfo) {
        self.inner.clients.insert(id, info);
    }

    /// Records the user a client logged in as.
    pub fn set_client_user(&self, id: ClientId, user: &str) {
        if let Some(mut info) = self.inner.clients.get_mut(&id) {
            info.user = Some(user.to_string());
        }
    }

    /// Records a client's new output format.
    pub fn set_client_format(&self, id: ClientId, format: &'static str) {
        if let Some(mut info) = self.inner.clients.get_mut(&id) {
            info.format = format;
        }
    }

    /// Forgets a client.
    pub fn remove_client(&self, id: ClientId) {
        self.inner.clients.remove(&id);
    }

    /// A snapshot of the connected clients.
    pub fn clients(&self) -> Vec<(ClientId, ClientInfo)> {
        self.inner.clients.iter().map(|e| (*e.key(), e.value().clone())).collect()
    }

    /// Number of connected clients.
    pub fn client_count(&self) -> usize {
        self.inner.clients.len()
    }
}
