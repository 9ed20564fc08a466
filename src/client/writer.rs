//! The writer task of one client: drains its queue and its broadcast receiver, batches, writes
//! (through the client's [`Output`]: bytes on TCP, frames on a WebSocket, messages for AJAM).
//!
//! Responses come through the client's own queue ([`SinkReceiver`]); broadcast events from the
//! shared event bus ([`EventBus`]), read from the position taken at login and filtered here by the
//! client's event mask and rights. Everything ready is gathered into one buffer (up to
//! [`BATCH_BYTES`]) and written; each write may take `clientwritetimeout` to make progress. A
//! client whose position fell out of the buffer (more than `clienteventbuffer` bytes waiting)
//! gets the configured lag policy: a final `Event: ProxyClientLagged` and a close (default), or
//! its missed events dropped and counted.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use astmanproxy_handlers::{Message, OutputFormat};
use tokio_util::sync::CancellationToken;

use super::transport::{CloseReason, Output, WriteFailure};
use crate::auth::Policy;
use crate::config::LagPolicy;
use crate::event::{ClassMask, Lagged, SentCounter, SharedEvent};
use crate::hub::Hub;
use crate::metrics::KindLabels;
use crate::route::sink::{SinkReceiver, ToClient};
use crate::route::EventBus;

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
    Close(CloseReason),
}

/// Events taken from the shared buffer per lock (the writer then formats them unlocked).
const EVENTS_PER_READ: usize = 64;

/// Runs the writer until the queue says `Close`, the client is cancelled, or a write fails; then
/// closes `out`. The same for every transport: `out` only puts things in its own form.
pub async fn run<O: Output>(
    mut out: O,
    mut rx: SinkReceiver,
    hub: Hub,
    shared: Arc<ClientShared>,
    cancel: CancellationToken,
) {
    let cfg = hub.config();
    let ring = hub.events().clone();
    // The position in the shared event buffer, once subscribed.
    let mut cursor: Option<u64> = None;
    let mut policy = Policy::open();
    // Grows on the first events only: an idle client keeps nothing here.
    let mut taken = Vec::new();
    let reason = loop {
        let mut step = tokio::select! {
            biased;
            () = cancel.cancelled() => Step::Close(CloseReason::Cancelled),
            item = rx.recv() => match item {
                Some(item) => take(item, &mut out, &mut cursor, &mut policy, &shared),
                None => Step::Close(CloseReason::Ended),
            },
            () = wait_events(ring.as_ref(), cursor) => Step::Continue,
        };
        while matches!(step, Step::Continue) && out.buffered() < BATCH_BYTES {
            if let Some(item) = rx.try_recv() {
                step = take(item, &mut out, &mut cursor, &mut policy, &shared);
                continue;
            }
            let Some(at) = cursor.as_mut() else { break };
            match ring.read(at, &mut taken, EVENTS_PER_READ) {
                Ok(()) if taken.is_empty() => break,
                Ok(()) => {
                    let format = shared.format();
                    let mut sent = SentTally::default();
                    for event in taken.drain(..) {
                        if shared.mask().allows(event.classes()) && (policy.is_open() || policy.allows_event(&event)) {
                            out.event(&event, format);
                            sent.add(&event);
                        }
                    }
                }
                Err(lag) => step = on_lag(lag, &mut out, &shared, &hub),
            }
        }
        if out.buffered() > 0 {
            match out.flush(cfg.client_write_timeout).await {
                Ok(()) => {}
                Err(WriteFailure::Io(e)) => {
                    tracing::debug!(error = %e, "client write failed");
                    break CloseReason::Failed;
                }
                Err(WriteFailure::Stalled) => {
                    tracing::warn!(
                        timeout = ?cfg.client_write_timeout,
                        "client stopped reading (no write progress within clientwritetimeout); disconnecting"
                    );
                    hub.metrics().lag_disconnects.get_or_create(&shared.labels()).inc();
                    hub.metrics().cutoff(shared.labels().kind, "writetimeout");
                    // Best effort, as the lag cut-off: the rest of the batch (so that messages
                    // stay whole), then the notice, each write again bounded by the timeout.
                    let notice = lag_notice(None, "Client stopped reading (clientwritetimeout); disconnecting");
                    out.message(notice, shared.format());
                    let _ = out.flush(cfg.client_write_timeout).await;
                    break CloseReason::Stalled;
                }
            }
        }
        if let Step::Close(reason) = step {
            break reason;
        }
    };
    out.close(reason, cfg.client_write_timeout).await;
    cancel.cancel();
}

fn take<O: Output>(
    item: ToClient,
    out: &mut O,
    cursor: &mut Option<u64>,
    policy: &mut Arc<Policy>,
    shared: &ClientShared,
) -> Step {
    match item {
        ToClient::Message(m) => {
            tracing::trace!(ami = ?m, "to client");
            out.message(m, shared.format());
        }
        ToClient::Raw(bytes) => out.raw(bytes),
        ToClient::Answered(id) => out.answered(id),
        ToClient::Policy(p) => *policy = p,
        ToClient::Subscribe(position) => {
            if cursor.is_none() {
                *cursor = Some(position);
            }
        }
        ToClient::Close => return Step::Close(CloseReason::Ended),
    }
    Step::Continue
}

/// The client's position fell out of the shared buffer: more than `clienteventbuffer` bytes of
/// events were waiting for it.
fn on_lag<O: Output>(lag: Lagged, out: &mut O, shared: &ClientShared, hub: &Hub) -> Step {
    let missed = lag.missed;
    match hub.config().lag_policy {
        LagPolicy::Drop => {
            shared.dropped.fetch_add(missed, Ordering::Relaxed);
            hub.metrics().events_dropped.get_or_create(&shared.labels()).inc_by(missed);
            tracing::debug!(missed, "slow client: events dropped");
            Step::Continue
        }
        LagPolicy::Disconnect => {
            tracing::warn!(
                missed,
                budget = hub.config().client_event_buffer,
                "slow client: more than clienteventbuffer bytes of events waiting; disconnecting"
            );
            hub.metrics().lag_disconnects.get_or_create(&shared.labels()).inc();
            hub.metrics().cutoff(shared.labels().kind, "lag");
            let notice = lag_notice(Some(missed), "Client too slow for the event stream; disconnecting");
            out.message(notice, shared.format());
            Step::Close(CloseReason::Lagged)
        }
    }
}

/// Counts delivered events per server, adding to the shared counters once per run of events of
/// one server rather than once per event (thousands of writers share those counters).
#[derive(Default)]
struct SentTally {
    run: Option<(SentCounter, u64)>,
}

impl SentTally {
    fn add(&mut self, event: &SharedEvent) {
        let Some(counter) = event.sent_counter() else { return };
        match &mut self.run {
            Some((current, n)) if Arc::ptr_eq(current, counter) => *n += 1,
            _ => {
                self.flush();
                self.run = Some((counter.clone(), 1));
            }
        }
    }

    fn flush(&mut self) {
        if let Some((counter, n)) = self.run.take() {
            counter.inc_by(n);
        }
    }
}

impl Drop for SentTally {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The last message of a client the proxy cuts off.
fn lag_notice(dropped: Option<u64>, why: &str) -> Message {
    let mut m = Message::with_capacity(4);
    m.push("Event", "ProxyClientLagged");
    m.push("Privilege", "system,all");
    if let Some(n) = dropped {
        m.push("Dropped", n.to_string());
    }
    m.push("Message", why);
    m
}

/// Waits for an event after `cursor`, or forever before the client subscribed.
async fn wait_events(ring: &dyn EventBus, cursor: Option<u64>) {
    match cursor {
        Some(at) => ring.wait(at).await,
        None => std::future::pending().await,
    }
}
