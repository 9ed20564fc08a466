//! The routing core: where actions and events pass between clients and servers.
//!
//! - [`sink`]: a client's outgoing queue ([`ClientSink`], [`ToClient`]), into which upstream
//!   sessions route answers;
//! - [`Request`], [`Rejected`], [`reject`]: an action on its way to a server and the answer when a
//!   server cannot take it;
//! - [`forward`]: the one routing rule of every transport (pick the server, check the user's
//!   rights and `maxpendingactions`, submit);
//! - [`Call`]: send one action and take its whole answer, complete when the upstream session
//!   says so;
//! - [`EventBus`]: publish, subscribe, read from a position.
//!
//! It sits below `upstream` and `hub` (it imports only `handlers`, `config`, `auth` and
//! `event`): a server is seen through the small [`Upstream`] trait.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use astmanproxy_handlers::{Message, RawValue};

use crate::auth::{Denied, Policy};

mod bus;
mod call;
mod request;
pub mod sink;

pub use bus::{EventBus, Wait};
pub use call::{Answer, Call, CallError};
pub use request::{answer_error, reject, Rejected, Request};
pub use sink::{ClientId, ClientSink, SinkReceiver, ToClient};

/// How long past its own bound (`actiontimeout`, for an Originate its `Timeout`) a waiter gives
/// an action to be answered: the upstream session answers an action with a timeout error at its
/// bound (checked every half second at most), and that error should still reach the client.
pub const ANSWER_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// A server as routing sees it.
pub trait Upstream {
    /// Its name (what `Server:` names).
    fn name(&self) -> &str;

    /// Sends an action to it.
    ///
    /// # Errors
    /// Gives the request back with a reason when the server cannot take it now.
    fn submit(&self, request: Request) -> Result<(), Box<Rejected>>;
}

/// Why an action was not routed; the client is answered `Response: Error` with its text.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// No `host =` line at all.
    #[error("No Asterisk server is configured")]
    NoServer,
    /// `Server:` (or the user's default) names no server.
    #[error("Unknown server {0}")]
    UnknownServer(String),
    /// The user may not send this action to this server.
    #[error("Permission denied")]
    Denied {
        /// The server.
        server: String,
        /// The action's name.
        action: String,
        /// What the policy said.
        why: Denied,
    },
    /// The client has `maxpendingactions` actions in flight already.
    #[error("Too many pending actions (limit {max})")]
    TooMany {
        /// The server.
        server: String,
        /// `maxpendingactions`.
        max: usize,
    },
}

impl Refusal {
    /// The answer to the client: `Response: Error`, its ActionID, the reason, and `Server:` when
    /// a server was chosen.
    pub fn answer(&self, original_id: Option<&RawValue>) -> Message {
        let mut m = Message::response_with_id("Error", original_id, Some(&self.to_string()));
        if let Self::Denied { server, .. } | Self::TooMany { server, .. } = self {
            m.push("Server", server.as_str());
        }
        m
    }
}

/// An action refused before reaching a server, with the client's ActionID for the answer.
#[derive(Debug)]
pub struct Refused {
    /// Why.
    pub refusal: Refusal,
    /// The client's ActionID.
    pub original_id: Option<RawValue>,
}

impl Refused {
    /// The answer to the client ([`Refusal::answer`]).
    pub fn answer(&self) -> Message {
        self.refusal.answer(self.original_id.as_ref())
    }
}

/// Routes one action of a client: the server named by `Server:` (else the user's default, else
/// the first), if the user may send it there and if `take_slot(max_pending)` gives it one of
/// the client's `maxpendingactions` slots, is given the request; when it cannot take it, the
/// client is answered at once. Every transport routes through here.
///
/// # Errors
/// Why the action was refused before reaching a server; the caller answers the client.
pub fn forward<U: Upstream>(
    servers: impl FnOnce(Option<&str>) -> Option<U>,
    mut action: Message,
    original_id: Option<RawValue>,
    policy: &Policy,
    reply: &ClientSink,
    max_pending: usize,
    take_slot: impl FnOnce(usize) -> bool,
) -> Result<U, Box<Refused>> {
    let refused = |refusal, original_id| Box::new(Refused { refusal, original_id });
    let wanted = action.get("Server").map(str::to_owned).or_else(|| policy.default_server().map(str::to_owned));
    let Some(server) = servers(wanted.as_deref()) else {
        return Err(refused(wanted.map_or(Refusal::NoServer, Refusal::UnknownServer), original_id));
    };
    if let Err(why) = policy.check_action(&mut action, server.name()) {
        let (server, action) = (server.name().to_string(), action.action().unwrap_or_default().to_string());
        return Err(refused(Refusal::Denied { server, action, why }, original_id));
    }
    if !take_slot(max_pending) {
        let server = server.name().to_string();
        return Err(refused(Refusal::TooMany { server, max: max_pending }, original_id));
    }
    if let Err(rejected) = server.submit(Request { action, reply: reply.clone(), original_id }) {
        tracing::debug!(server = %server.name(), "{}", rejected.reason);
        reject(rejected.request, server.name(), &rejected.reason);
    }
    Ok(server)
}

/// Sends `action` to `server` and waits for its whole answer (see [`Call`]).
///
/// # Errors
/// The server could not take it, or the answer was larger than `max_bytes`.
pub async fn call(
    server: &impl Upstream,
    action: Message,
    original_id: Option<RawValue>,
    max_bytes: usize,
) -> Result<Answer, CallError> {
    let call = Call::new(max_bytes);
    call.sink().try_begin_action(usize::MAX);
    let request = Request { action, reply: call.sink().clone(), original_id };
    if let Err(rejected) = server.submit(request) {
        return Err(CallError::Rejected(rejected.reason));
    }
    call.answer().await
}

/// Actions in flight per client address, for transports without a connection per client
/// (HTTP 1.x actions): `maxpendingactions` holds per address there.
#[derive(Debug, Default)]
pub struct PeerSlots {
    taken: Mutex<HashMap<IpAddr, usize>>,
}

/// One action slot of an address, given back when dropped.
#[derive(Debug)]
pub struct PeerSlot<'a> {
    slots: &'a PeerSlots,
    peer: IpAddr,
}

impl PeerSlots {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.taken.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes a slot of `peer`; `None` when `max` are taken.
    pub fn take(&self, peer: IpAddr, max: usize) -> Option<PeerSlot<'_>> {
        let mut taken = self.lock();
        let n = taken.entry(peer).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(PeerSlot { slots: self, peer })
    }

    /// Slots taken by `peer` now.
    pub fn taken(&self, peer: IpAddr) -> usize {
        self.lock().get(&peer).copied().unwrap_or(0)
    }
}

impl Drop for PeerSlot<'_> {
    fn drop(&mut self) {
        let mut taken = self.slots.lock();
        if let Some(n) = taken.get_mut(&self.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                taken.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_slots_hold_max_per_address_and_come_back() {
        let slots = PeerSlots::default();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let one = slots.take(a, 2).unwrap();
        let _two = slots.take(a, 2).unwrap();
        assert!(slots.take(a, 2).is_none());
        assert!(slots.take(b, 2).is_some());
        drop(one);
        assert_eq!(slots.taken(a), 1);
        assert!(slots.take(a, 2).is_some());
    }

    #[test]
    fn refusals_name_the_server_once_chosen() {
        let m = Refusal::TooMany { server: "pbx".into(), max: 3 }.answer(Some(&"7".into()));
        assert_eq!(m.get("Message"), Some("Too many pending actions (limit 3)"));
        assert_eq!(m.get("Server"), Some("pbx"));
        assert_eq!(m.get("ActionID"), Some("7"));
        assert!(Refusal::UnknownServer("x".into()).answer(None).get("Server").is_none());
    }
}
