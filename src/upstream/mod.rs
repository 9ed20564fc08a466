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

use std::sync::Arc;

use astmanproxy_handlers::Message;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::ServerConfig;

mod backoff;
mod connect;
mod context;
mod disconnect;
mod error;
mod handle;
mod originate;
mod pool;
mod session;

pub use crate::route::{reject, Rejected, Request};
pub use backoff::{backoff_delay, Backoff};
pub use context::Context;
pub use disconnect::Disconnect;
pub use error::UpstreamError;
use handle::{HandleInner, ServerState};
pub use handle::{Status, UpstreamHandle, CALL_BYTES, REQUEST_QUEUE};
use pool::Job;

pub use crate::config::MAX_ACTION_SESSIONS;

/// Starts the session task of one server under `parent`'s cancellation and `tracker`.
///
/// The server keeps `actionsessions` AMI sessions (see the `pool` module): the event session,
/// whose handle is returned, and extra action sessions with `Events: off`.
pub fn spawn(config: ServerConfig, ctx: Context, parent: &CancellationToken, tracker: &TaskTracker) -> UpstreamHandle {
    let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
    let cancel = parent.child_token();
    let originates = Arc::new(originate::Originates::default());
    let count = ctx.config().action_sessions.clamp(1, MAX_ACTION_SESSIONS);
    let new_handle = |index: usize, extras: Vec<UpstreamHandle>| {
        let mut config = config.clone();
        if index > 0 {
            config.events = "off".to_string();
        }
        UpstreamHandle {
            inner: Arc::new(HandleInner {
                state: Arc::new(ServerState::new(&config.name, ctx.metrics(), index)),
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
        tracker.spawn(supervise(session.clone(), ctx.clone(), job_rx).instrument(span));
        slots.push(pool::Slot::new(session.clone(), job_tx, ctx.metrics(), index));
    }
    tracker.spawn(pool::dispatch(rx, slots, ctx, cancel));
    handle
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
fn booted_event(server: &str, booted: Option<Message>, ctx: &Context) -> Message {
    let mut m = booted.unwrap_or_else(|| {
        let uptime = ctx.uptime_secs().to_string();
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

async fn supervise(handle: UpstreamHandle, ctx: Context, mut rx: mpsc::Receiver<Job>) {
    let main = handle.inner.index == 0;
    let cfg = ctx.config().clone();
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
                    ctx.publish(crate::event::SharedEvent::new(status_event(handle.name(), Status::Connected, None)));
                    // Client libraries resynchronise on FullyBooted: after a drop, and for
                    // clients that logged in while the server was down (they got none).
                    ctx.publish(crate::event::SharedEvent::new(booted_event(handle.name(), conn.booted.take(), &ctx)));
                }
                let reason = session::run(conn, &handle, &ctx, &mut rx).await;
                let stopping = cancel.is_cancelled();
                handle.set_status(if stopping { Status::Stopped } else { Status::Disconnected });
                let reason = reason.to_string();
                handle.set_error(Some(reason.clone()));
                if main {
                    ctx.publish(crate::event::SharedEvent::new(status_event(
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
                ctx.metrics().server_connect_failures.get_or_create(&handle.inner.state.labels).inc();
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
