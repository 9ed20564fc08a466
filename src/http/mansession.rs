//! AJAM sessions: the `mansession_id` cookie sessions of Asterisk's AMI over HTTP.
//!
//! Each session is a real client session ([`crate::client::serve_with`]) over the AJAM transport
//! (an HTTP request's action goes in as a [`Message`]; what the writer gives out is taken as
//! messages, never encoded), so an HTTP user gets exactly what a TCP client gets: the same login,
//! the same permissions and event filters, ProxyActions, isolation of answers. Answers go to the
//! HTTP request that asked (matched by a tag
//! put in front of the request's ActionID and taken off again; the tag starts with a random
//! prefix of the session, so that an event from elsewhere naming a tag, such as a UserEvent
//! with its sender's ActionID, cannot join or end an answer), events go to a bounded queue
//! (`httpeventqueue`, the oldest dropped first) that `WaitEvent` returns. Idle sessions are closed
//! after `httpsessiontimeout`.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use astmanproxy_handlers::{Message, OutputFormat, RawValue};
use bytes::Bytes;
use dashmap::DashMap;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::client::transport::{CloseReason, Input, Output, Received, WriteFailure};
use crate::client::{serve_with, ClientOptions};
use crate::event::SharedEvent;
use crate::hub::Hub;

/// Actions of one session's requests that may wait for the session to take them.
const REQUEST_QUEUE: usize = 64;

/// Start of the tag put in front of each HTTP request's ActionID (then the session's random
/// part, `-`, the request number).
const TAG: &str = "ajam";

/// Why a request to a session got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ManSessionError {
    /// The session ended (logoff, failed login, timeout, shutdown) before answering.
    #[error("the HTTP session is closed")]
    Closed,
    /// No answer within `actiontimeout`.
    #[error("no answer in time")]
    Timeout,
}

/// The AJAM sessions of the proxy. Cheap to clone.
#[derive(Clone)]
pub struct ManSessions {
    inner: Arc<SessionsInner>,
}

struct SessionsInner {
    map: DashMap<String, Arc<ManSession>>,
    hub: Hub,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

/// One AJAM session.
pub struct ManSession {
    id: String,
    /// `ajam<random>-`: the start of this session's tags, never seen outside the proxy.
    tag: String,
    input: mpsc::Sender<Message>,
    state: Mutex<State>,
    events_ready: Notify,
    closed: CancellationToken,
    next_tag: AtomicU64,
    busy: AtomicUsize,
    event_limit: usize,
}

#[derive(Default)]
struct State {
    pending: HashMap<u64, Pending>,
    events: VecDeque<Message>,
    dropped: u64,
    user: Option<String>,
    last_used: Option<Instant>,
}

struct Pending {
    messages: Vec<Message>,
    done: oneshot::Sender<Vec<Message>>,
}

impl ManSessions {
    /// No sessions yet; sessions end at `cancel` and their tasks are tracked by `tracker`.
    pub fn new(hub: Hub, cancel: CancellationToken, tracker: TaskTracker) -> Self {
        let sessions = Self { inner: Arc::new(SessionsInner { map: DashMap::new(), hub, cancel, tracker }) };
        let reaper = sessions.clone();
        sessions.inner.tracker.spawn(async move { reaper.reap().await });
        sessions
    }

    /// The open session with this cookie value, if any.
    pub fn get(&self, id: &str) -> Option<Arc<ManSession>> {
        let session = self.inner.map.get(id).map(|s| s.clone())?;
        (!session.closed.is_cancelled()).then_some(session)
    }

    /// ManSessions open now.
    pub fn len(&self) -> usize {
        self.inner.map.len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.inner.map.is_empty()
    }

    /// Opens a session for a client at `peer`, logged in as `user` when the transport
    /// authenticated it already (HTTP Basic). `None` when `httpmaxsessions` are open.
    pub fn open(&self, peer: SocketAddr, user: Option<String>) -> Option<Arc<ManSession>> {
        let cfg = &self.inner.hub.config().http;
        if self.inner.map.len() >= cfg.max_sessions {
            tracing::warn!(limit = cfg.max_sessions, "HTTP session limit reached (httpmaxsessions)");
            return None;
        }
        let (input, actions) = mpsc::channel(REQUEST_QUEUE);
        let session = Arc::new(ManSession {
            id: new_session_id(),
            tag: format!("{TAG}{:016x}-", rand::random::<u64>()),
            input,
            state: Mutex::new(State { user: user.clone(), last_used: Some(Instant::now()), ..State::default() }),
            events_ready: Notify::new(),
            closed: self.inner.cancel.child_token(),
            next_tag: AtomicU64::new(1),
            busy: AtomicUsize::new(0),
            event_limit: cfg.event_queue,
        });
        self.inner.map.insert(session.id.clone(), session.clone());
        let session_id = session.id.clone();
        // Nothing is encoded: the format only names the session in `ProxyAction: ListSessions`.
        let options = ClientOptions {
            kind: "ajam",
            banner: false,
            format: Some(OutputFormat::Standard),
            user,
            mark_answers: true,
        };
        let (hub, closed) = (self.inner.hub.clone(), session.closed.clone());
        let (output, sessions) = (AjamOutput(session.clone()), self.clone());
        self.inner.tracker.spawn(async move {
            serve_with(AjamInput(actions), output, peer, hub, closed, options).await;
            sessions.inner.map.remove(&session_id);
        });
        Some(session)
    }

    /// Closes sessions idle for longer than `httpsessiontimeout`, until shutdown.
    async fn reap(&self) {
        let timeout = self.inner.hub.config().http.session_timeout;
        let period = (timeout / 4).max(Duration::from_millis(250));
        loop {
            tokio::select! {
                () = self.inner.cancel.cancelled() => return,
                () = tokio::time::sleep(period) => {}
            }
            let now = Instant::now();
            for entry in &self.inner.map {
                let session = entry.value();
                let idle = session.lock().last_used.is_some_and(|t| now.duration_since(t) > timeout);
                if idle && session.busy.load(Ordering::Acquire) == 0 {
                    tracing::debug!("HTTP session idle for httpsessiontimeout; closing");
                    session.closed.cancel();
                }
            }
        }
    }
}

/// A fresh session id: 128 random bits in hex (Asterisk uses 32; a cookie is a credential).
pub fn new_session_id() -> String {
    let bits: u128 = rand::random();
    format!("{bits:032x}")
}

impl ManSession {
    /// The cookie value.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The user logged in on this session, if any.
    pub fn user(&self) -> Option<String> {
        self.lock().user.clone()
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Ends the session.
    pub fn close(&self) {
        self.closed.cancel();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn touch(&self) {
        self.lock().last_used = Some(Instant::now());
    }

    /// Sends one action and returns its complete answer (the response, or a list up to its
    /// Complete event), with the client's own ActionID (or none) restored.
    ///
    /// # Errors
    /// The session ended first, or no answer came within `limit`.
    pub async fn request(&self, mut action: Message, limit: Duration) -> Result<Vec<Message>, ManSessionError> {
        let _busy = Busy::new(&self.busy);
        self.touch();
        let n = self.next_tag.fetch_add(1, Ordering::Relaxed);
        let tagged = match action.action_id() {
            Some(id) => format!("{}{n}-{id}", self.tag),
            None => format!("{}{n}", self.tag),
        };
        action.set("ActionID", tagged);
        let (done, answer) = oneshot::channel();
        self.lock().pending.insert(n, Pending { messages: Vec::new(), done });
        let is_login = action.action().is_some_and(|a| a.trim().eq_ignore_ascii_case("login"));
        let username = action.get("Username").map(|u| u.trim().to_string());
        let sent = tokio::select! {
            sent = self.input.send(action) => sent.is_ok(),
            () = self.closed.cancelled() => false,
        };
        if !sent {
            self.lock().pending.remove(&n);
            return Err(ManSessionError::Closed);
        }
        let result = tokio::select! {
            answer = answer => answer.map_err(|_| ManSessionError::Closed),
            () = tokio::time::sleep(limit) => Err(ManSessionError::Timeout),
        };
        let messages = match result {
            Ok(m) => m,
            Err(e) => {
                // Whatever arrived before the end still answers the request.
                let partial = self.lock().pending.remove(&n).map(|p| p.messages).unwrap_or_default();
                if partial.is_empty() {
                    return Err(e);
                }
                partial
            }
        };
        if is_login && messages.first().and_then(Message::response).is_some_and(|r| r.eq_ignore_ascii_case("success")) {
            self.lock().user = username;
        }
        self.touch();
        Ok(messages)
    }

    /// `WaitEvent`: the queued events, waiting up to `timeout` for the first when none is queued.
    pub async fn wait_events(&self, timeout: Duration) -> Vec<Message> {
        let _busy = Busy::new(&self.busy);
        self.touch();
        let deadline = Instant::now() + timeout;
        loop {
            let ready = self.events_ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            {
                let mut state = self.lock();
                if !state.events.is_empty() {
                    state.last_used = Some(Instant::now());
                    return state.events.drain(..).collect();
                }
            }
            tokio::select! {
                () = ready => {}
                () = tokio::time::sleep_until(deadline) => break,
                () = self.closed.cancelled() => break,
            }
        }
        self.touch();
        Vec::new()
    }

    /// Events dropped because the queue was full.
    pub fn dropped_events(&self) -> u64 {
        self.lock().dropped
    }

    /// The client session ended: what is still waiting is answered with what it got (an empty
    /// answer is an error upstream), `WaitEvent`s return.
    fn finish(&self) {
        self.closed.cancel();
        let pending: Vec<Pending> = self.lock().pending.drain().map(|(_, p)| p).collect();
        for p in pending {
            if !p.messages.is_empty() {
                let _ = p.done.send(p.messages);
            }
        }
        self.events_ready.notify_waiters();
    }

    /// A message of the client session: to the request it answers (by its tag); an event
    /// otherwise. The request is answered when the session says its answer is complete
    /// ([`ManSession::answered`]): this module never guesses which message is the last.
    fn dispatch(&self, mut message: Message) {
        let tag = message.action_id().and_then(|id| untag(&self.tag, id)).map(|(n, id)| (n, id.map(str::to_owned)));
        let mut state = self.lock();
        if let Some((n, original)) = tag {
            match original {
                Some(id) => message.set("ActionID", id),
                None => {
                    message.remove("ActionID");
                }
            }
            if let Some(pending) = state.pending.get_mut(&n) {
                pending.messages.push(message);
                return;
            }
        }
        if message.event().is_some() {
            // Late events of a finished request (an async OriginateResponse) are events too.
            drop(state);
            self.queue_event(message);
        }
    }

    /// The answer to the request tagged in `action_id` is complete: it goes back to its HTTP
    /// request (which may have timed out and gone: nothing to do then).
    fn answered(&self, action_id: Option<&str>) {
        let Some((n, _)) = action_id.and_then(|id| untag(&self.tag, id)) else { return };
        if let Some(p) = self.lock().pending.remove(&n) {
            let _ = p.done.send(p.messages);
        }
    }

    /// Queues an event for `WaitEvent` (`httpeventqueue`: the oldest goes first when full).
    fn queue_event(&self, event: Message) {
        let mut state = self.lock();
        if state.events.len() >= self.event_limit {
            state.events.pop_front();
            state.dropped += 1;
        }
        state.events.push_back(event);
        drop(state);
        self.events_ready.notify_waiters();
    }
}

/// The input of an AJAM session: the actions of its HTTP requests.
struct AjamInput(mpsc::Receiver<Message>);

impl Input for AjamInput {
    async fn next(&mut self) -> Received {
        match self.0.recv().await {
            Some(action) => Received::Message(action),
            None => Received::End,
        }
    }
}

/// The output of an AJAM session: answers to the pending requests, events to the queue.
struct AjamOutput(Arc<ManSession>);

impl Output for AjamOutput {
    fn message(&mut self, message: Message, _format: OutputFormat) {
        self.0.dispatch(message);
    }

    /// An AJAM session has no banner.
    fn raw(&mut self, _bytes: Bytes) {}

    fn answered(&mut self, action_id: Option<RawValue>) {
        self.0.answered(action_id.as_ref().map(RawValue::as_str));
    }

    fn event(&mut self, event: &SharedEvent, _format: OutputFormat) {
        self.0.queue_event(event.message());
    }

    fn buffered(&self) -> usize {
        0
    }

    async fn flush(&mut self, _stall: Duration) -> Result<(), WriteFailure> {
        Ok(())
    }

    async fn close(&mut self, _why: CloseReason, _stall: Duration) {
        self.0.finish();
    }
}

/// Splits an ActionID tagged with `tag` (`<tag>7-abc`) into the request number and the
/// client's own id.
fn untag<'a>(tag: &str, action_id: &'a str) -> Option<(u64, Option<&'a str>)> {
    let rest = action_id.strip_prefix(tag)?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let n = rest[..digits].parse().ok()?;
    match &rest[digits..] {
        "" => Some((n, None)),
        more => more.strip_prefix('-').map(|id| (n, Some(id))),
    }
}

/// Counts a request in progress (the reaper never closes a busy session).
struct Busy<'a>(&'a AtomicUsize);

impl<'a> Busy<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        Self(counter)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip() {
        let tag = "ajam0123456789abcdef-";
        assert_eq!(untag(tag, "ajam0123456789abcdef-7"), Some((7, None)));
        assert_eq!(untag(tag, "ajam0123456789abcdef-7-http-orig"), Some((7, Some("http-orig"))));
        assert_eq!(untag(tag, "ajam0123456789abcdef-7--x"), Some((7, Some("-x"))));
        assert_eq!(untag(tag, "ajam0123456789abcdef-x"), None);
        assert_eq!(untag(tag, "ajam0123456789abcdef-7x"), None);
        assert_eq!(untag(tag, "ajam7"), None);
        assert_eq!(untag(tag, "ajamffffffffffffffff-7"), None);
        assert_eq!(untag(tag, "other"), None);
    }
}
