//! The writer task of one client: drains its queue and its broadcast receiver, batches, writes.
//!
//! Responses come through the client's own queue ([`SinkReceiver`]); broadcast events through a
//! `tokio::sync::broadcast` receiver subscribed at login, filtered here by the client's event
//! mask. Everything ready is gathered into one buffer (up to [`BATCH_BYTES`]) and written with
//! one `write_all` under `clientwritetimeout`. A client that falls more than `clienteventqueue`
//! events behind gets the configured lag policy: a final `Event: ProxyClientLagged` and a close
//! (default), or its missed events dropped and counted.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use astmanproxy_handlers::{Message, OutputFormat};
use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio_util::sync::CancellationToken;

use super::sink::{SinkReceiver, ToClient};
use crate::config::LagPolicy;
use crate::event::{ClassMask, SharedEvent};
use crate::hub::Hub;
use crate::metrics::KindLabels;
use crate::policy::Policy;

/// Gather at most this many bytes before writing (one syscall for many small events).
pub const BATCH_BYTES: usize = 64 * 1024;

/// State the reader and the writer of one client share.
#[derive(Debug)]
pub struct ClientShared {
    mask: AtomicU32,
    dropped: AtomicU64,
    format: AtomicU8,
    kind: &'static str,
}

impl ClientShared {
    /// Events on, nothing dropped, the given format; `kind` labels the client's metrics (`ami`,
    /// `ws`, ...).
    pub fn new(format: OutputFormat, kind: &'static str) -> Self {
        Self {
            mask: AtomicU32::new(ClassMask::ALL.0),
            dropped: AtomicU64::new(0),
            format: AtomicU8::new(format.index() as u8),
            kind,
        }
    }

    /// The metrics labels of this client's kind.
    pub fn labels(&self) -> KindLabels {
        KindLabels { kind: self.kind }
    }

    /// The client's event mask.
    pub fn mask(&self) -> ClassMask {
        ClassMask(self.mask.load(Ordering::Relaxed))
    }

    /// Changes the client's event mask.
    pub fn set_mask(&self, mask: ClassMask) {
        self.mask.store(mask.0, Ordering::Relaxed);
    }

    /// Events dropped for this client under the `drop` lag policy.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The output format.
    pub fn format(&self) -> OutputFormat {
        OutputFormat::from_index(usize::from(self.format.load(Ordering::Relaxed)))
    }

    /// Changes the output format (`ProxyAction: SetOutputFormat`); applies to what is written next.
    pub fn set_format(&self, format: OutputFormat) {
        self.format.store(format.index() as u8, Ordering::Relaxed);
    }
}

enum Step {
    Continue,
    Close,
}

/// Runs the writer until the queue says `Close`, the client is cancelled, or a write fails.
pub async fn run<W: AsyncWrite + Unpin>(
    mut out: W,
    mut rx: SinkReceiver,
    hub: Hub,
    shared: Arc<ClientShared>,
    cancel: CancellationToken,
) {
    let cfg = hub.config();
    let mut events: Option<broadcast::Receiver<Arc<SharedEvent>>> = None;
    let mut policy = Policy::open();
    let mut buf = BytesMut::new();
    loop {
        let step = tokio::select! {
            biased;
            () = cancel.cancelled() => Step::Close,
            item = rx.recv() => match item {
                Some(item) => take(item, &mut buf, &mut events, &mut policy, &hub, &shared),
                None => Step::Close,
            },
            ev = recv_event(&mut events) => on_event(ev, &mut buf, &shared, &policy, &hub),
        };
        let mut step = step;
        while matches!(step, Step::Continue) && buf.len() < BATCH_BYTES {
            if let Some(item) = rx.try_recv() {
                step = take(item, &mut buf, &mut events, &mut policy, &hub, &shared);
                continue;
            }
            let Some(receiver) = events.as_mut() else { break };
            match receiver.try_recv() {
                Ok(ev) => step = on_event(Ok(ev), &mut buf, &shared, &policy, &hub),
                Err(TryRecvError::Lagged(n)) => {
                    step = on_event(Err(RecvError::Lagged(n)), &mut buf, &shared, &policy, &hub)
                }
                Err(_) => break,
            }
        }
        if !buf.is_empty() {
            match tokio::time::timeout(cfg.client_write_timeout, out.write_all(&buf)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "client write failed");
                    break;
                }
                Err(_) => {
                    tracing::info!(timeout = ?cfg.client_write_timeout, "client stopped reading; disconnecting");
                    hub.metrics().lag_disconnects.get_or_create(&shared.labels()).inc();
                    break;
                }
            }
            buf.clear();
            if buf.capacity() > 4 * BATCH_BYTES {
                // Give memory back after a burst (a long list) so idle clients stay small.
                buf = BytesMut::new();
            }
        }
        if matches!(step, Step::Close) {
            break;
        }
    }
    let _ = tokio::time::timeout(cfg.client_write_timeout, out.shutdown()).await;
    cancel.cancel();
}

fn take(
    item: ToClient,
    buf: &mut BytesMut,
    events: &mut Option<broadcast::Receiver<Arc<SharedEvent>>>,
    policy: &mut Arc<Policy>,
    hub: &Hub,
    shared: &ClientShared,
) -> Step {
    match item {
        ToClient::Message(m) => shared.format().encode(&m, buf),
        ToClient::Raw(bytes) => buf.extend_from_slice(&bytes),
        ToClient::Policy(p) => *policy = p,
        ToClient::Subscribe => {
            if events.is_none() {
                *events = Some(hub.subscribe());
            }
        }
        ToClient::Close => return Step::Close,
    }
    Step::Continue
}

fn on_event(
    ev: Result<Arc<SharedEvent>, RecvError>,
    buf: &mut BytesMut,
    shared: &ClientShared,
    policy: &Policy,
    hub: &Hub,
) -> Step {
    match ev {
        Ok(event) => {
            if shared.mask().allows(event.classes()) && (policy.is_open() || policy.allows_event(&event)) {
                buf.extend_from_slice(event.bytes(shared.format()));
            }
            Step::Continue
        }
        Err(RecvError::Lagged(missed)) => match hub.config().lag_policy {
            LagPolicy::Drop => {
                shared.dropped.fetch_add(missed, Ordering::Relaxed);
                hub.metrics().events_dropped.get_or_create(&shared.labels()).inc_by(missed);
                tracing::debug!(missed, "slow client: events dropped");
                Step::Continue
            }
            LagPolicy::Disconnect => {
                tracing::warn!(missed, "slow client fell behind the event stream; disconnecting");
                hub.metrics().lag_disconnects.get_or_create(&shared.labels()).inc();
                let notice = Message::new()
                    .with("Event", "ProxyClientLagged")
                    .with("Privilege", "system,all")
                    .with("Dropped", missed.to_string())
                    .with("Message", "Client too slow for the event stream; disconnecting");
                shared.format().encode(&notice, buf);
                Step::Close
            }
        },
        Err(RecvError::Closed) => Step::Close,
    }
}

async fn recv_event(events: &mut Option<broadcast::Receiver<Arc<SharedEvent>>>) -> Result<Arc<SharedEvent>, RecvError> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
