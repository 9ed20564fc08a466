//! Originates waiting for their `OriginateResponse`, shared by every session of one server.
//!
//! Asterisk sends `OriginateResponse` as an event: to the sessions with call events on, not to
//! the session that sent the `Originate`. With action sessions logged in with `Events: off`, the
//! answer to an `Originate` comes on one session and its `OriginateResponse` on the event
//! session; this table joins them by the proxy's ActionID, whichever session sees which first.
//!
//! A synchronous `Originate` (no `Async: true`) goes upstream as an async one, so that it holds
//! no session for the length of a ring; its client gets, once the `OriginateResponse` comes, the
//! answer Asterisk gives a synchronous Originate (17b):
//! `Response: Success` / `Message: Originate successfully queued` or `Response: Error` /
//! `Message: Originate failed`, and not the `OriginateResponse` event itself.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use astmanproxy_handlers::{Message, RawValue};
use tokio::time::Instant;

use crate::route::ClientSink;

/// At most this many `OriginateResponse`s that came before their Originate's answer are kept.
const EARLY_KEPT: usize = 1024;

/// Who gets the answers to one action.
pub(super) struct Owner {
    pub sink: ClientSink,
    pub original_id: Option<RawValue>,
}

/// An Originate answered `Success` by Asterisk, waiting for its `OriginateResponse`.
pub(super) struct Parked {
    pub owner: Owner,
    /// The client asked for a synchronous Originate: it still waits for its answer.
    pub sync: bool,
    pub started: Instant,
    pub deadline: Instant,
}

impl Parked {
    /// Before it is dropped: an async Originate no longer counts as waiting for its event.
    pub fn settle(&self) {
        if !self.sync {
            self.owner.sink.originate_settled();
        }
    }
}

/// The table of one server.
#[derive(Default)]
pub(super) struct Originates {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    parked: HashMap<String, Parked>,
    /// `OriginateResponse`s whose Originate was not answered yet (another session was faster).
    early: HashMap<String, (Message, Instant)>,
}

/// What became of an `OriginateResponse` handed to [`Originates::arrived`].
pub(super) enum Arrival {
    /// Its Originate was waiting: deliver.
    Matched(Parked, Message),
    /// Kept until its Originate's answer comes.
    Kept,
}

impl std::fmt::Debug for Originates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("Originates").field("parked", &inner.parked.len()).field("early", &inner.early.len()).finish()
    }
}

impl Originates {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Parks an answered Originate; gives it back with its `OriginateResponse` when that came
    /// first.
    pub fn park(&self, id: String, parked: Parked) -> Option<(Parked, Message)> {
        let mut inner = self.lock();
        if let Some((event, _)) = inner.early.remove(&id) {
            return Some((parked, event));
        }
        inner.parked.insert(id, parked);
        None
    }

    /// An `OriginateResponse` with one of the proxy's ActionIDs came, on any session.
    pub fn arrived(&self, id: &str, event: Message) -> Arrival {
        let mut inner = self.lock();
        if let Some(parked) = inner.parked.remove(id) {
            return Arrival::Matched(parked, event);
        }
        if inner.early.len() < EARLY_KEPT {
            inner.early.insert(id.to_string(), (event, Instant::now()));
        }
        Arrival::Kept
    }

    /// Takes the parked Originates whose deadline passed; forgets early events older than
    /// `keep_early`.
    pub fn expire(&self, now: Instant, keep_early: Duration) -> Vec<Parked> {
        let mut inner = self.lock();
        inner.early.retain(|_, (_, at)| now.duration_since(*at) < keep_early);
        let ids: Vec<String> =
            inner.parked.iter().filter(|(_, p)| p.deadline <= now).map(|(id, _)| id.clone()).collect();
        ids.into_iter().filter_map(|id| inner.parked.remove(&id)).collect()
    }

    /// Takes every parked Originate (the event session is gone: no `OriginateResponse` comes).
    pub fn drain(&self) -> Vec<Parked> {
        let mut inner = self.lock();
        inner.early.clear();
        inner.parked.drain().map(|(_, p)| p).collect()
    }
}

/// The `Timeout` of an Originate (ms; Asterisk's default is 30 000).
pub(super) fn ring_timeout(action: &Message) -> Duration {
    let ms = action.get("Timeout").and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(30_000);
    Duration::from_millis(ms)
}

/// The answer Asterisk gives a synchronous Originate, from the `OriginateResponse` of the
/// async one the proxy sent: `Response: Success` -> `Success` / `Originate successfully
/// queued`; anything else -> `Error` / `Originate failed` (17b).
pub(super) fn sync_answer(event: &Message) -> Message {
    let ok = event.get("Response").is_some_and(|r| r.trim().eq_ignore_ascii_case("Success"));
    let mut m = Message::with_capacity(3);
    if ok {
        m.push("Response", "Success");
        m.push("ActionID", event.get("ActionID").unwrap_or_default());
        m.push("Message", "Originate successfully queued");
    } else {
        m.push("Response", "Error");
        m.push("ActionID", event.get("ActionID").unwrap_or_default());
        m.push("Message", "Originate failed");
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_answers_are_shaped_as_asterisk() {
        let ok = Message::new().with("Event", "OriginateResponse").with("ActionID", "x").with("Response", "Success");
        let a = sync_answer(&ok);
        assert_eq!(a.get("Response"), Some("Success"));
        assert_eq!(a.get("Message"), Some("Originate successfully queued"));
        let bad = Message::new().with("Event", "OriginateResponse").with("ActionID", "x").with("Response", "Failure");
        let a = sync_answer(&bad);
        assert_eq!(a.get("Response"), Some("Error"));
        assert_eq!(a.get("Message"), Some("Originate failed"));
        assert_eq!(a.get("ActionID"), Some("x"));
        assert!(a.get("Event").is_none());
    }

    #[test]
    fn the_timeout_header_in_ms_with_asterisks_default() {
        assert_eq!(ring_timeout(&Message::new().with("Timeout", "3000")), Duration::from_secs(3));
        assert_eq!(ring_timeout(&Message::new()), Duration::from_secs(30));
    }
}
