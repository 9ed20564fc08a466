//! The caller side of a server: its [`UpstreamHandle`], its [`Status`] and the state its sessions
//! share with the handle (the server's Prometheus series).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use astmanproxy_handlers::Message;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::originate;
use crate::config::ServerConfig;
use crate::metrics::{Metrics, ServerLabels};
use crate::route::{self, Rejected, Request};

/// Capacity of a server's request queue. Requests are small; a full queue means Asterisk is
/// not taking actions as fast as clients send them, and the client gets `Server busy` at once.
pub const REQUEST_QUEUE: usize = 4096;

/// The largest answer [`UpstreamHandle::call`] takes (`module show` is about 31 KB).
pub const CALL_BYTES: usize = 4 * 1024 * 1024;

/// Connection state of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Connecting or logging in.
    Connecting = 0,
    /// Logged in and ready (after `FullyBooted`).
    Connected = 1,
    /// Down; waiting to reconnect.
    Disconnected = 2,
    /// Given up after `maxretries` consecutive failures.
    Failed = 3,
    /// Dropped or shutting down.
    Stopped = 4,
}

impl Status {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Connecting,
            1 => Self::Connected,
            2 => Self::Disconnected,
            3 => Self::Failed,
            _ => Self::Stopped,
        }
    }

    /// Name shown to clients.
    pub fn name(self) -> &'static str {
        match self {
            Self::Connecting => "Connecting",
            Self::Connected => "Connected",
            Self::Disconnected => "Disconnected",
            Self::Failed => "Failed",
            Self::Stopped => "Stopped",
        }
    }
}

/// State shared between a server's task and its handles; the counters are the server's
/// Prometheus series.
#[derive(Debug)]
pub(super) struct ServerState {
    pub(super) status: AtomicU8,
    pub(super) ami_version: Mutex<Option<String>>,
    pub(super) last_error: Mutex<Option<String>>,
    pub(super) labels: ServerLabels,
    pub(super) connected: Gauge,
    pub(super) connects: Counter,
    pub(super) actions: Counter,
    pub(super) events: Counter,
    /// Shared by every event of this server, so that writers count what they deliver.
    pub(super) events_sent: Arc<Counter>,
    pub(super) pending: Gauge,
    pub(super) session_connected: Gauge,
}

impl ServerState {
    /// The state of session `index`: session 0 (the event session) owns the server's series;
    /// the extra action sessions add to its action, event and pending counts only.
    pub(super) fn new(name: &str, metrics: &Metrics, index: usize) -> Self {
        let labels = Metrics::server(name);
        let main = index == 0;
        let gauge = |f: &prometheus_client::metrics::family::Family<ServerLabels, Gauge>| {
            if main {
                f.get_or_create(&labels).clone()
            } else {
                Gauge::default()
            }
        };
        Self {
            status: AtomicU8::new(Status::Connecting as u8),
            ami_version: Mutex::new(None),
            last_error: Mutex::new(None),
            connected: gauge(&metrics.server_connected),
            connects: if main { metrics.server_connects.get_or_create(&labels).clone() } else { Counter::default() },
            actions: metrics.server_actions.get_or_create(&labels).clone(),
            events: metrics.server_events.get_or_create(&labels).clone(),
            events_sent: Arc::new(metrics.server_events_sent.get_or_create(&labels).clone()),
            pending: metrics.server_pending.get_or_create(&labels).clone(),
            session_connected: metrics.session_connected.get_or_create(&Metrics::session(&labels, index)).clone(),
            labels,
        }
    }
}

/// Caller side of one upstream session. Cheap to clone.
#[derive(Debug, Clone)]
pub struct UpstreamHandle {
    pub(super) inner: Arc<HandleInner>,
}

#[derive(Debug)]
pub(super) struct HandleInner {
    pub(super) config: ServerConfig,
    pub(super) state: Arc<ServerState>,
    pub(super) tx: mpsc::Sender<Request>,
    pub(super) cancel: CancellationToken,
    /// 0: the event session (the server's handle); 1..: an extra action session.
    pub(super) index: usize,
    /// Originates waiting for their `OriginateResponse`, shared by the server's sessions.
    pub(super) originates: Arc<originate::Originates>,
    /// The extra action sessions (only in the server's handle).
    pub(super) extras: Vec<UpstreamHandle>,
}

impl UpstreamHandle {
    /// The server's name (used by `Server:` routing).
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// The server's configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// Current connection state.
    pub fn status(&self) -> Status {
        Status::from_u8(self.inner.state.status.load(Ordering::Acquire))
    }

    /// The AMI version from the server's last banner.
    pub fn ami_version(&self) -> Option<String> {
        self.inner.state.ami_version.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Why the last connection attempt failed or the last connection ended.
    pub fn last_error(&self) -> Option<String> {
        self.inner.state.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Successful connections so far.
    pub fn connects(&self) -> u64 {
        self.inner.state.connects.get()
    }

    /// Actions forwarded so far.
    pub fn actions(&self) -> u64 {
        self.inner.state.actions.get()
    }

    /// Events received so far.
    pub fn events(&self) -> u64 {
        self.inner.state.events.get()
    }

    /// Sends an action to the server.
    ///
    /// # Errors
    /// Gives the request back with a reason when the server is not connected or its queue is
    /// full; the caller answers the client at once.
    pub fn submit(&self, request: Request) -> Result<(), Box<Rejected>> {
        let status = self.status();
        if status != Status::Connected {
            let why = self.last_error().map(|e| format!(" ({e})")).unwrap_or_default();
            let reason = format!("Server {} is not connected: {}{why}", self.name(), status.name());
            return Err(Box::new(Rejected { request, reason }));
        }
        self.inner.tx.try_send(request).map_err(|e| {
            let (request, reason) = match e {
                mpsc::error::TrySendError::Full(r) => (r, format!("Server {} is busy, try again", self.name())),
                mpsc::error::TrySendError::Closed(r) => (r, format!("Server {} has been dropped", self.name())),
            };
            Box::new(Rejected { request, reason })
        })
    }

    /// Sends one action and waits for its whole answer (a response; a list up to its Complete
    /// event; an async Originate up to its `OriginateResponse`), complete when this server's
    /// session ends its route, also with an error on a timeout or a disconnect.
    ///
    /// # Errors
    /// The server could not take the action, or the answer exceeded [`CALL_BYTES`].
    pub async fn call(&self, action: Message) -> Result<route::Answer, route::CallError> {
        route::call(self, action, None, CALL_BYTES).await
    }

    /// AMI sessions of this server that are logged in, and how many it keeps.
    pub fn sessions_connected(&self) -> (usize, usize) {
        let all = std::iter::once(self).chain(&self.inner.extras);
        let up = all.filter(|h| h.status() == Status::Connected).count();
        (up, 1 + self.inner.extras.len())
    }

    /// Stops this server's session: it logs off, answers its pending actions and ends.
    pub fn stop(&self) {
        self.inner.cancel.cancel();
    }

    pub(super) fn set_status(&self, status: Status) {
        self.inner.state.status.store(status as u8, Ordering::Release);
        self.inner.state.connected.set(i64::from(status == Status::Connected));
        self.inner.state.session_connected.set(i64::from(status == Status::Connected));
    }

    pub(super) fn set_error(&self, error: Option<String>) {
        *self.inner.state.last_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }

    pub(super) fn set_ami_version(&self, version: String) {
        *self.inner.state.ami_version.lock().unwrap_or_else(|e| e.into_inner()) = Some(version);
    }
}

impl route::Upstream for UpstreamHandle {
    fn name(&self) -> &str {
        UpstreamHandle::name(self)
    }

    fn submit(&self, request: Request) -> Result<(), Box<Rejected>> {
        UpstreamHandle::submit(self, request)
    }
}
