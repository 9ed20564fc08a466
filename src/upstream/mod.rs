//! Upstream sessions: persistent, self-healing AMI sessions per Asterisk server (`actionsessions`
//! of them: the event session and action sessions, shared out by the `pool` module).
//!
//! [`spawn`] starts the supervisor task of each session of one server and returns its [`UpstreamHandle`]. The
//! supervisor connects, reads the banner, logs in (MD5 challenge, plain secret as fallback), waits
//! for `FullyBooted`, then hands the socket to the session loop (the `session` module), which owns the
//! socket and the ActionID route map. When the connection drops, every pending action is answered
//! with an error and the supervisor reconnects with capped exponential backoff plus jitter
//! ([`Backoff`]): a login that reached `FullyBooted` starts the count over, so a restarted
//! Asterisk is tried again after about `retryinterval`, whatever happened before. While the server is down, actions sent to it are answered at once. A
//! server that is down never stops the process.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use astmanproxy_handlers::{Message, RawValue};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::client::sink::ClientSink;
use crate::config::ServerConfig;
use crate::hub::Hub;
use crate::metrics::{Metrics, ServerLabels};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

mod backoff;
mod connect;
mod originate;
mod pool;
mod session;

pub use backoff::{backoff_delay, Backoff};
use pool::Job;

pub use crate::config::MAX_ACTION_SESSIONS;

/// Capacity of a server's request queue. Requests are small; a full queue means Asterisk is
/// not taking actions as fast as clients send them, and the client gets `Server busy` at once.
pub const REQUEST_QUEUE: usize = 4096;

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

/// An action on its way to a server, with where its answers go.
#[derive(Debug)]
pub struct Request {
    /// The action as the client sent it (its ActionID is replaced upstream).
    pub action: Message,
    /// The client's queue.
    pub reply: ClientSink,
    /// The client's own ActionID, restored byte for byte on every answer (`None`: answers carry
    /// none).
    pub original_id: Option<RawValue>,
}

/// A request the server could not take, with the reason to tell the client.
#[derive(Debug)]
pub struct Rejected {
    /// The request, to be answered.
    pub request: Request,
    /// Why it was refused.
    pub reason: String,
}

/// State shared between a server's task and its handles; the counters are the server's
/// Prometheus series.
#[derive(Debug)]
struct ServerState {
    status: AtomicU8,
    ami_version: Mutex<Option<String>>,
    last_error: Mutex<Option<String>>,
    labels: ServerLabels,
    connected: Gauge,
    connects: Counter,
    actions: Counter,
    events: Counter,
    /// Shared by every event of this server, so that writers count what they deliver.
    events_sent: Arc<Counter>,
    pending: Gauge,
    session_connected: Gauge,
}

impl ServerState {
    /// The state of session `index`: session 0 (the event session) owns the server's series;
    /// the extra action sessions add to its action, event and pending counts only.
    fn new(name: &str, metrics: &Metrics, index: usize) -> Self {
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
    inner: Arc<HandleInner>,
}

#[derive(Debug)]
struct HandleInner {
    config: ServerConfig,
    state: Arc<ServerState>,
    tx: mpsc::Sender<Request>,
    cancel: CancellationToken,
    /// 0: the event session (the server's handle); 1..: an extra action session.
    index: usize,
    /// Originates waiting for their `OriginateResponse`, shared by the server's sessions.
    originates: Arc<originate::Originates>,
    /// The extra action sessions (only in the server's handle).
    extras: Vec<UpstreamHandle>,
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

    fn set_status(&self, status: Status) {
        self.inner.state.status.store(status as u8, Ordering::Release);
        self.inner.state.connected.set(i64::from(status == Status::Connected));
        self.inner.state.session_connected.set(i64::from(status == Status::Connected));
    }

    fn set_error(&self, error: Option<String>) {
        *self.inner.state.last_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }

    fn set_ami_version(&self, version: String) {
        *self.inner.state.ami_version.lock().unwrap_or_else(|e| e.into_inner()) = Some(version);
    }
}

/// Starts the session task of one server under `parent`'s cancellation and `tracker`.
///
/// The server keeps `actionsessions` AMI sessions (see the `pool` module): the event session,
/// whose handle is returned, and extra action sessions with `Events: off`.
pub fn spawn(config: ServerConfig, hub: Hub, parent: &CancellationToken, tracker: &TaskTracker) -> UpstreamHandle {
    let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
    let cancel = parent.child_token();
    let originates = Arc::new(originate::Originates::default());
    let count = hub.config().action_sessions.clamp(1, MAX_ACTION_SESSIONS);
    let new_handle = |index: usize, extras: Vec<UpstreamHandle>| {
        let mut config = config.clone();
        if index > 0 {
            config.events = "off".to_string();
        }
        UpstreamHandle {
            inner: Arc::new(HandleInner {
                state: Arc::new(ServerState::new(&config.name, hub.metrics(), index)),
                config,
                tx: tx.clone(),
                cancel: cancel.clone(),
                index,
                originates: originates.clone(),
                extras,
            }),
        }
    };
    let extras: Vec<UpstreamHandle> = (1..count).map(|i| new_handle(i, Vec::new())).collect();
    let handle = new_handle(0, extras.clone());
    let cfg = handle.config();
    // Every line of this server names its host and port (IPv6 in brackets).
    let addr = if cfg.host.contains(':') {
        format!("[{}]:{}", cfg.host, cfg.port)
    } else {
        format!("{}:{}", cfg.host, cfg.port)
    };
    let mut slots = Vec::with_capacity(count);
    for session in std::iter::once(&handle).chain(&extras) {
        let (job_tx, job_rx) = mpsc::channel(REQUEST_QUEUE);
        let index = session.inner.index;
        let span = if index == 0 {
            tracing::info_span!("upstream", server = %handle.name(), %addr)
        } else {
            tracing::info_span!("upstream", server = %handle.name(), %addr, session = index)
        };
        tracker.spawn(supervise(session.clone(), hub.clone(), job_rx).instrument(span));
        slots.push(pool::Slot::new(session.clone(), job_tx, hub.metrics(), index));
    }
    tracker.spawn(pool::dispatch(rx, slots, hub, cancel));
    handle
}

/// Answers a request at once with `Response: Error`.
pub fn reject(request: Request, server: &str, message: &str) {
    let mut answer = Message::response_with_id("Error", request.original_id.as_ref(), Some(message));
    answer.push("Server", server);
    request.reply.send_message(answer);
    request.reply.end_action();
}

/// A proxy-made `ProxyServerStatus` event.
fn status_event(server: &str, status: Status, reason: Option<&str>) -> Message {
    let mut m = Message::with_capacity(5);
    m.push("Event", "ProxyServerStatus");
    m.push("Privilege", "system,all");
    m.push("Status", status.name());
    if let Some(r) = reason {
        m.push("Reason", r);
    }
    m.push("Server", server);
    m
}

/// The `FullyBooted` announced to clients when a server (re)connects: Asterisk's own, or a
/// proxy-made one when its session did not get one, with `Server:`.
fn booted_event(server: &str, booted: Option<Message>, hub: &Hub) -> Message {
    let mut m = booted.unwrap_or_else(|| {
        let uptime = hub.uptime_secs().to_string();
        Message::new()
            .with("Event", "FullyBooted")
            .with("Privilege", "system,all")
            .with("Uptime", uptime.clone())
            .with("LastReload", uptime)
            .with("Status", "Fully Booted")
    });
    m.set("Server", server);
    m
}

/// The TLS connector of a `use_ssl` server (`None` for plain TCP).
fn tls_connector(
    server: &ServerConfig,
    cfg: &crate::config::Config,
) -> Result<Option<tokio_rustls::TlsConnector>, crate::tls::TlsError> {
    if !server.use_ssl {
        return Ok(None);
    }
    let insecure = cfg.tls.insecure_servers.iter().any(|n| n.eq_ignore_ascii_case(&server.name));
    if insecure {
        tracing::warn!(
            "TLS certificate of this server is NOT verified (tlsinsecure); anyone on the path can impersonate it"
        );
    }
    crate::tls::connector(&cfg.tls, insecure).map(Some)
}

async fn supervise(handle: UpstreamHandle, hub: Hub, mut rx: mpsc::Receiver<Job>) {
    let main = handle.inner.index == 0;
    let cfg = hub.config().clone();
    let cancel = handle.inner.cancel.clone();
    let mut backoff = Backoff::new(cfg.retry_interval, cfg.retry_max);
    let tls = match tls_connector(handle.config(), &cfg) {
        Ok(tls) => tls,
        Err(e) => {
            tracing::error!(error = %e, "cannot set up TLS to this server; giving up on it");
            handle.set_error(Some(e.to_string()));
            handle.set_status(Status::Failed);
            tokio::select! {
                () = reject_forever(&mut rx, &handle) => {}
                () = cancel.cancelled() => {}
            }
            handle.set_status(Status::Stopped);
            return;
        }
    };
    loop {
        handle.set_status(Status::Connecting);
        let attempt = connect::connect(handle.config(), &cfg, tls.as_ref());
        let outcome = tokio::select! {
            r = reject_while(attempt, &mut rx, &handle) => r,
            () = cancel.cancelled() => break,
        };
        let delay = match outcome {
            Ok(mut conn) => {
                handle.set_ami_version(conn.ami_version.clone());
                handle.set_error(None);
                handle.inner.state.connects.inc();
                handle.set_status(Status::Connected);
                tracing::info!(ami_version = %conn.ami_version, "connected and logged in");
                if main {
                    hub.publish(crate::event::SharedEvent::new(status_event(handle.name(), Status::Connected, None)));
                    // Client libraries resynchronise on FullyBooted: after a drop, and for
                    // clients that logged in while the server was down (they got none).
                    hub.publish(crate::event::SharedEvent::new(booted_event(handle.name(), conn.booted.take(), &hub)));
                }
                let reason = session::run(conn, &handle, &hub, &mut rx).await;
                let stopping = cancel.is_cancelled();
                handle.set_status(if stopping { Status::Stopped } else { Status::Disconnected });
                handle.set_error(Some(reason.clone()));
                if main {
                    hub.publish(crate::event::SharedEvent::new(status_event(
                        handle.name(),
                        Status::Disconnected,
                        Some(&reason),
                    )));
                }
                if stopping {
                    tracing::info!("session ended: {reason}");
                    break;
                }
                tracing::warn!(reason = %reason, "connection lost");
                // The login reached FullyBooted: whatever failed before, Asterisk is back (or
                // the network blinked), so the count starts over.
                backoff.session_ended()
            }
            Err(e) => {
                let delay = backoff.failed();
                hub.metrics().server_connect_failures.get_or_create(&handle.inner.state.labels).inc();
                tracing::warn!(error = %e, failures = backoff.failures(), "cannot connect");
                handle.set_error(Some(e.to_string()));
                handle.set_status(Status::Disconnected);
                delay
            }
        };
        if cfg.max_retries > 0 && backoff.failures() >= cfg.max_retries {
            tracing::error!(failures = backoff.failures(), "giving up on this server (maxretries reached)");
            handle.set_status(Status::Failed);
            tokio::select! {
                () = reject_forever(&mut rx, &handle) => {}
                () = cancel.cancelled() => {}
            }
            break;
        }
        tracing::debug!(?delay, "reconnecting after delay");
        tokio::select! {
            () = reject_while(tokio::time::sleep(delay), &mut rx, &handle) => {}
            () = cancel.cancelled() => break,
        }
    }
    handle.set_status(Status::Stopped);
    rx.close();
    while let Ok(job) = rx.try_recv() {
        reject(job.request, handle.name(), &format!("Server {} has been stopped", handle.name()));
    }
}

/// Runs `fut` while answering every incoming request with an error.
async fn reject_while<F: std::future::Future>(
    fut: F,
    rx: &mut mpsc::Receiver<Job>,
    handle: &UpstreamHandle,
) -> F::Output {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            out = &mut fut => return out,
            Some(job) = rx.recv() => {
                let status = handle.status();
                reject(job.request, handle.name(), &format!("Server {} is not connected: {}", handle.name(), status.name()));
            }
        }
    }
}

async fn reject_forever(rx: &mut mpsc::Receiver<Job>, handle: &UpstreamHandle) {
    while let Some(job) = rx.recv().await {
        reject(
            job.request,
            handle.name(),
            &format!("Server {} is not connected: Failed (maxretries reached)", handle.name()),
        );
    }
}
