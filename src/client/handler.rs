//! What the proxy does with each message a client sends: an action the proxy answers itself
//! ([`Command`]) is applied here, in order with the answers before it; any other goes to
//! Asterisk.

use std::net::SocketAddr;
use std::sync::Arc;

use astmanproxy_handlers::{Message, RawValue};

use super::writer::ClientShared;
use crate::auth::Policy;
use crate::cmd::state::ClientState;
use crate::cmd::Command;
use crate::event::ClassMask;
use crate::hub::Hub;
use crate::route::{self, ClientId, ClientSink, Refusal, ToClient};

pub use crate::cmd::state::Flow;

/// The reader-side state of one client.
pub struct ClientReader {
    client: ClientState,
}

impl ClientReader {
    /// A session that has not logged in yet.
    pub fn new(id: ClientId, peer: SocketAddr, hub: Hub, sink: ClientSink, shared: Arc<ClientShared>) -> Self {
        Self { client: ClientState::new(id, peer, hub, sink, shared) }
    }

    /// Whether the client may act (logged in, or the proxy is open).
    pub fn authenticated(&self) -> bool {
        self.client.authenticated()
    }

    fn reply(&self, response: &str, action_id: Option<&RawValue>, message: Option<&str>) {
        self.client.reply(response, action_id, message);
    }

    /// Asterisk answers the actions of a connection strictly in order (clients such as pyst2
    /// match answers by order alone): an answer the proxy makes itself waits until the actions
    /// sent before it have their answers queued, bounded as they are (`actiontimeout`).
    pub async fn after_earlier_answers(&self) {
        if self.client.sink.unanswered() > 0 {
            let limit = self.client.hub.config().action_timeout + route::ANSWER_GRACE;
            let _ = tokio::time::timeout(limit, self.client.sink.actions_done()).await;
        }
    }

    /// Handles one message from the client.
    pub async fn handle(&mut self, message: Message) -> Flow {
        // The client's ActionID byte for byte: every answer carries it back unchanged.
        let action_id = message.get_value("ActionID");
        let id = action_id.as_ref();
        let command = Command::parse(&message, self.client.hub.extensions()).filter(Command::answered_by_client);
        let forwarded = self.authenticated() && command.is_none() && message.action().is_some();
        if !forwarded {
            self.after_earlier_answers().await;
        }
        if let Some(command) = command {
            let flow = command.apply(&mut self.client, &message, id).await;
            // The command's answer is queued whole (a Logoff's Goodbye comes later, once the
            // earlier actions are answered: it is marked then).
            if !matches!(flow, Flow::Logoff(_)) {
                self.client.sink.answered(id);
            }
            return flow;
        }
        if message.action().is_none() {
            if !self.authenticated() {
                self.reply("Error", id, Some("Permission denied"));
            } else {
                self.reply("Error", id, Some("Missing action in request"));
            }
        } else if !self.authenticated() {
            self.reply("Error", id, Some("Permission denied"));
        } else {
            self.forward(message, action_id).await;
            return Flow::Continue;
        }
        self.client.sink.answered(id);
        Flow::Continue
    }

    /// Logs in `username` without a Login action: the transport authenticated it already (HTTP
    /// Basic on a WebSocket upgrade, an AJAM session). Events start flowing at once.
    pub fn preauthenticate(&mut self, username: &str) {
        let policy = Policy::of(&self.client.hub.users(), username);
        self.client.start_session(username, policy, ClassMask::ALL);
        self.client.sink.send(ToClient::Subscribe(self.client.hub.subscribe()));
    }

    async fn forward(&mut self, action: Message, original_id: Option<RawValue>) {
        let sink = &self.client.sink;
        let routed = route::forward(
            |server| self.client.hub.server(server),
            action,
            original_id,
            &self.client.policy,
            sink,
            self.client.hub.config().max_pending_actions,
            |max| sink.try_begin_action(max),
        );
        if let Err(refused) = routed {
            if let Refusal::Denied { server, action, why } = &refused.refusal {
                tracing::info!(user = ?self.client.user, action = %action, server = %server, why = %why, "action denied");
            }
            self.after_earlier_answers().await;
            self.client.sink.send_message(refused.answer());
            self.client.sink.answered(refused.original_id.as_ref());
        }
    }
}
