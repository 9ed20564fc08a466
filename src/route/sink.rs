//! The caller side of a client's outgoing queue.
//!
//! Upstream sessions and the client's own reader push responses into a [`ClientSink`]; the
//! client's writer task drains it. The queue is bounded in bytes, not in messages, so that a long
//! but legitimate list (thousands of `QueueMember` items) never trips it while a client that stops
//! reading is cut off once `clientmaxpendingbytes` are waiting. Pushing never blocks: the upstream
//! reader must never wait on a client. Responses are never dropped: when the budget is exceeded
//! the client is disconnected instead.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use astmanproxy_handlers::{Message, RawValue};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Identifier of a client connection, unique for the life of the process.
pub type ClientId = u64;

/// What the writer task of a client receives.
#[derive(Debug)]
pub enum ToClient {
    /// A message for this client only (its ActionID already restored).
    Message(Message),
    /// Start receiving broadcast events from this position of the shared buffer (queued at
    /// login, before the `Success` answer, so no event published after the login is missed).
    Subscribe(u64),
    /// Flush what is queued, then close the connection.
    Close,
    /// Bytes written as they are (the banner).
    Raw(bytes::Bytes),
    /// The logged-in user's rights, applied to the events that follow.
    Policy(Arc<crate::auth::Policy>),
    /// The answer to the action with this ActionID (as the client sent it) is complete: queued
    /// after its last message, by the upstream session when it ends the action's route or by the
    /// client session after an action the proxy answered itself. Only for clients that asked
    /// ([`ClientSink::mark_answers`]: AJAM sessions, which hand each answer to its HTTP request).
    Answered(Option<RawValue>),
}

/// Caller side of one client's queue. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ClientSink {
    inner: Arc<SinkInner>,
    tx: mpsc::UnboundedSender<ToClient>,
}

#[derive(Debug)]
struct SinkInner {
    id: ClientId,
    queued_bytes: AtomicUsize,
    max_bytes: usize,
    in_flight: AtomicUsize,
    /// Of those, async `Originate`s already answered, waiting only for their `OriginateResponse`.
    originates: AtomicUsize,
    /// Woken when the last action in flight ends (see [`ClientSink::actions_done`]).
    idle: tokio::sync::Notify,
    overflowed: AtomicBool,
    delivered: AtomicU64,
    cancel: CancellationToken,
    /// Whether the writer wants [`ToClient::Answered`] after each complete answer.
    mark_answers: AtomicBool,
}

/// The writer's end of the queue.
pub struct SinkReceiver {
    inner: Arc<SinkInner>,
    rx: mpsc::UnboundedReceiver<ToClient>,
}

/// Creates a queue for client `id` with a byte budget; `cancel` is cancelled on overflow.
pub fn channel(id: ClientId, max_bytes: usize, cancel: CancellationToken) -> (ClientSink, SinkReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let inner = Arc::new(SinkInner {
        id,
        queued_bytes: AtomicUsize::new(0),
        max_bytes,
        in_flight: AtomicUsize::new(0),
        originates: AtomicUsize::new(0),
        idle: tokio::sync::Notify::new(),
        overflowed: AtomicBool::new(false),
        delivered: AtomicU64::new(0),
        cancel,
        mark_answers: AtomicBool::new(false),
    });
    (ClientSink { inner: inner.clone(), tx }, SinkReceiver { inner, rx })
}

fn cost(item: &ToClient) -> usize {
    match item {
        ToClient::Message(m) => m.encoded_len_hint(),
        ToClient::Raw(b) => b.len(),
        ToClient::Subscribe(_) | ToClient::Close | ToClient::Policy(_) | ToClient::Answered(_) => 0,
    }
}

impl ClientSink {
    /// The client's id.
    pub fn id(&self) -> ClientId {
        self.inner.id
    }

    /// Queues an item. Returns false when the client is gone or over its byte budget (it is
    /// then disconnected: responses are never silently dropped).
    pub fn send(&self, item: ToClient) -> bool {
        let size = cost(&item);
        let queued = self.inner.queued_bytes.fetch_add(size, Ordering::Relaxed) + size;
        if queued > self.inner.max_bytes {
            self.inner.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            if !self.inner.overflowed.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    client = self.inner.id,
                    limit = self.inner.max_bytes,
                    "client queue full, disconnecting"
                );
                self.inner.cancel.cancel();
            }
            return false;
        }
        if self.tx.send(item).is_err() {
            self.inner.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Queues a message.
    pub fn send_message(&self, message: Message) -> bool {
        self.send(ToClient::Message(message))
    }

    /// Whether the client's connection is closed or closing.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed() || self.inner.cancel.is_cancelled()
    }

    /// Reserves one in-flight action slot; false when `max` are already in flight.
    pub fn try_begin_action(&self, max: usize) -> bool {
        self.inner.in_flight.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).is_ok()
    }

    /// Releases the in-flight slot of the action whose ActionID (as the client sent it) is
    /// `action_id`: its final answer was routed (see [`ClientSink::answered`]).
    pub fn end_action(&self, action_id: Option<&RawValue>) {
        let _ = self.inner.in_flight.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        self.answered(action_id);
        self.wake_if_answered();
    }

    /// Asks for a [`ToClient::Answered`] after each complete answer (set once, before the first
    /// action).
    pub fn mark_answers(&self) {
        self.inner.mark_answers.store(true, Ordering::Release);
    }

    /// The answer to `action_id` is complete: tells the writer when it asked
    /// ([`ClientSink::mark_answers`]). The one place that knows is whoever answered: the upstream
    /// session (through [`ClientSink::end_action`]) or the proxy's own command.
    pub fn answered(&self, action_id: Option<&RawValue>) {
        if self.inner.mark_answers.load(Ordering::Acquire) {
            self.send(ToClient::Answered(action_id.cloned()));
        }
    }

    /// An async `Originate` in flight was answered (`Success`, call queued): only its
    /// `OriginateResponse` is still to come, which a Logoff does not wait for (Asterisk answers
    /// the Logoff at once too).
    pub fn originate_queued(&self) {
        self.inner.originates.fetch_add(1, Ordering::AcqRel);
        self.wake_if_answered();
    }

    /// That `Originate`'s route ended (its `OriginateResponse` came, it expired or the server
    /// went away); called before [`ClientSink::end_action`].
    pub fn originate_settled(&self) {
        let _ = self.inner.originates.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Actions in flight whose answer has not been queued yet.
    pub fn unanswered(&self) -> usize {
        self.inner.in_flight.load(Ordering::Acquire).saturating_sub(self.inner.originates.load(Ordering::Acquire))
    }

    fn wake_if_answered(&self) {
        if self.unanswered() == 0 {
            self.inner.idle.notify_waiters();
        }
    }

    /// Waits until every action in flight has its answer queued (an async `Originate` counts once
    /// its `Success` is: its `OriginateResponse` may take a whole call). Cancel safe.
    pub async fn actions_done(&self) {
        self.wait_until(|s| s.unanswered() == 0).await;
    }

    /// Waits until no action is in flight: every route taken for this sink has ended (its
    /// final answer queued, or its error: the upstream session decides). Cancel safe.
    pub async fn routes_ended(&self) {
        self.wait_until(|s| s.in_flight() == 0).await;
    }

    /// Waits until `done` holds; woken when the last unanswered action is answered (no action
    /// in flight implies none unanswered, so both waits are woken).
    async fn wait_until(&self, done: impl Fn(&Self) -> bool) {
        loop {
            let notified = self.inner.idle.notified();
            tokio::pin!(notified);
            // Registered before the check, so an end between the check and the wait is seen.
            notified.as_mut().enable();
            if done(self) {
                return;
            }
            notified.await;
        }
    }

    /// Actions in flight.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::Relaxed)
    }

    /// Bytes waiting in the queue.
    pub fn queued_bytes(&self) -> usize {
        self.inner.queued_bytes.load(Ordering::Relaxed)
    }

    /// Whether the client was cut off for exceeding its budget.
    pub fn overflowed(&self) -> bool {
        self.inner.overflowed.load(Ordering::Relaxed)
    }
}

impl SinkReceiver {
    /// Receives the next item (cancel safe).
    pub async fn recv(&mut self) -> Option<ToClient> {
        let item = self.rx.recv().await?;
        self.account(&item);
        Some(item)
    }

    /// Receives an item if one is ready.
    pub fn try_recv(&mut self) -> Option<ToClient> {
        let item = self.rx.try_recv().ok()?;
        self.account(&item);
        Some(item)
    }

    fn account(&self, item: &ToClient) {
        self.inner.queued_bytes.fetch_sub(cost(item), Ordering::Relaxed);
        self.inner.delivered.fetch_add(1, Ordering::Relaxed);
    }
}
