//! What a command may read and change of one client, and what the connection does next.

use std::net::SocketAddr;
use std::sync::Arc;

use astmanproxy_handlers::{Message, RawValue};

use crate::auth::Policy;
use crate::client::writer::ClientShared;
use crate::event::ClassMask;
use crate::hub::Hub;
use crate::route::sink::{ClientId, ClientSink, ToClient};

/// Whether the connection goes on after a message.
pub enum Flow {
    /// Keep reading.
    Continue,
    /// Stop reading; the writer flushes and closes.
    Close,
    /// The client logged off: once the actions it sent before are answered (bounded by
    /// `actiontimeout`), send this `Goodbye` and close.
    Logoff(Message),
}

/// What a command may read and change of one client: who it is, its queue, and its login.
pub struct ClientState {
    /// The client's id in the hub.
    pub id: ClientId,
    /// Its address.
    pub peer: SocketAddr,
    /// The registries.
    pub hub: Hub,
    /// Its queue.
    pub sink: ClientSink,
    /// What its writer reads (format, event mask).
    pub shared: Arc<ClientShared>,
    /// The logged-in user.
    pub user: Option<String>,
    /// The nonce of the last `Challenge` (good for one login attempt).
    pub challenge: Option<String>,
    /// Its rights.
    pub policy: Arc<Policy>,
}

impl ClientState {
    /// A client that has not logged in yet.
    pub fn new(id: ClientId, peer: SocketAddr, hub: Hub, sink: ClientSink, shared: Arc<ClientShared>) -> Self {
        Self { id, peer, hub, sink, shared, user: None, challenge: None, policy: Policy::open() }
    }

    /// Whether the client may act (logged in, or the proxy is open).
    pub fn authenticated(&self) -> bool {
        self.user.is_some() || !self.hub.config().auth_required
    }

    /// Sends a `Response:` answer.
    pub fn reply(&self, response: &str, action_id: Option<&RawValue>, message: Option<&str>) {
        self.sink.send_message(Message::response_with_id(response, action_id, message));
    }

    /// Whether the logged-in user is in `adminusers`.
    pub fn is_admin(&self) -> bool {
        self.user.as_ref().is_some_and(|u| self.hub.config().admin_users.iter().any(|a| a == u))
    }

    /// The logged-in state of `username`: its rights, its name, its event mask.
    pub fn start_session(&mut self, username: &str, policy: Arc<Policy>, mask: ClassMask) {
        self.policy = policy;
        self.sink.send(ToClient::Policy(self.policy.clone()));
        tracing::info!(user = %username, "client logged in");
        self.user = Some(username.to_string());
        self.hub.set_client_user(self.id, username);
        self.shared.set_mask(mask);
    }
}
