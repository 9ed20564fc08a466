//! What the proxy does with each message a client sends.
//!
//! Answers made here keep Asterisk's layout: `Response:` first, `ActionID:` second (when the
//! client sent one), then `Message:`; client libraries ignore blocks that start otherwise.

use std::net::SocketAddr;
use std::sync::Arc;

use astmanproxy_handlers::{Message, RawValue};

use super::writer::ClientShared;
use crate::auth::{self, Credentials, LoginError, Policy};
use crate::event::ClassMask;
use crate::hub::Hub;
use crate::route::{self, ClientId, ClientSink, Refusal, ToClient};

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

/// The answer to `Action: Logoff` and `ProxyAction: Logoff`, as Asterisk words it.
/// Actions the proxy answers itself (the others go to Asterisk).
fn is_local(action: &str) -> bool {
    ["login", "challenge", "logoff", "events", "beaconshowserver", "beaconshowconfiguration"]
        .iter()
        .any(|a| a.eq_ignore_ascii_case(action))
}

fn goodbye(id: Option<&RawValue>) -> Message {
    Message::response_with_id("Goodbye", id, Some("Thanks for all the fish."))
}

/// The reader-side state of one client.
pub struct ClientSession {
    id: ClientId,
    peer: SocketAddr,
    hub: Hub,
    sink: ClientSink,
    shared: Arc<ClientShared>,
    user: Option<String>,
    challenge: Option<String>,
    policy: Arc<Policy>,
}

impl ClientSession {
    /// A session that has not logged in yet.
    pub fn new(id: ClientId, peer: SocketAddr, hub: Hub, sink: ClientSink, shared: Arc<ClientShared>) -> Self {
        Self { id, peer, hub, sink, shared, user: None, challenge: None, policy: Policy::open() }
    }

    /// Whether the client may act (logged in, or the proxy is open).
    pub fn authenticated(&self) -> bool {
        self.user.is_some() || !self.hub.config().auth_required
    }

    fn reply(&self, response: &str, action_id: Option<&RawValue>, message: Option<&str>) {
        self.sink.send_message(Message::response_with_id(response, action_id, message));
    }

    /// Asterisk answers the actions of a connection strictly in order (clients such as pyst2
    /// match answers by order alone): an answer the proxy makes itself waits until the actions
    /// sent before it have their answers queued, bounded as they are (`actiontimeout`).
    pub async fn after_earlier_answers(&self) {
        if self.sink.unanswered() > 0 {
            let limit = self.hub.config().action_timeout + super::ANSWER_GRACE;
            let _ = tokio::time::timeout(limit, self.sink.actions_done()).await;
        }
    }

    /// Handles one message from the client.
    pub async fn handle(&mut self, message: Message) -> Flow {
        // The client's ActionID byte for byte: every answer carries it back unchanged.
        let action_id = message.get_value("ActionID");
        let id = action_id.as_ref();
        let forwarded = self.authenticated()
            && !message.contains("ProxyAction")
            && message.action().is_some_and(|a| !is_local(a.trim()));
        if !forwarded {
            self.after_earlier_answers().await;
        }
        if let Some(name) = message.get("ProxyAction").map(str::to_owned) {
            return self.proxy_action(&name, &message, id);
        }
        let Some(action) = message.action().map(|a| a.trim().to_ascii_lowercase()) else {
            if !self.authenticated() {
                self.reply("Error", id, Some("Permission denied"));
            } else {
                self.reply("Error", id, Some("Missing action in request"));
            }
            return Flow::Continue;
        };
        match action.as_str() {
            "login" => return self.login(&message, id).await,
            "challenge" => self.challenge(&message, id),
            "logoff" => return Flow::Logoff(goodbye(id)),
            _ if !self.authenticated() => self.reply("Error", id, Some("Permission denied")),
            "events" => self.events(&message, id),
            "beaconshowserver" => self.beacon_show_server(&message, id).await,
            "beaconshowconfiguration" => self.beacon_show_configuration(id),
            _ => self.forward(message, action_id).await,
        }
        Flow::Continue
    }

    fn proxy_action(&mut self, name: &str, message: &Message, id: Option<&RawValue>) -> Flow {
        use crate::proxy_action::{self as pa, ProxyAction};
        if !self.authenticated() {
            // 1.x let unauthenticated clients run every ProxyAction (bug B2).
            let mut answer = pa::proxy_response("Error", id);
            answer.push("Message", "Permission denied");
            self.sink.send_message(answer);
            return Flow::Continue;
        }
        let admin = self.user.as_ref().is_some_and(|u| self.hub.config().admin_users.iter().any(|a| a == u));
        let answer = match ProxyAction::from_name(name) {
            // Every client's address and user, every server's host and AMI user: for admins,
            // unless `openproxylists` opens them as in 1.x.
            Some(action @ (ProxyAction::ListSessions | ProxyAction::ListServers))
                if !admin && !self.hub.config().open_proxy_lists =>
            {
                tracing::info!(user = ?self.user, ?action, "ProxyAction denied: not in adminusers (openproxylists = no)");
                pa::proxy_response("Error", id).with("Message", "Permission denied")
            }
            Some(ProxyAction::ListSessions) => pa::list_sessions(&self.hub, id),
            Some(ProxyAction::ListServers) => pa::list_servers(&self.hub, id),
            Some(ProxyAction::ListIOHandlers) => pa::list_io_handlers(id),
            Some(ProxyAction::SetOutputFormat) => {
                let wanted = message.get("OutputFormat").unwrap_or_default();
                match wanted.parse::<astmanproxy_handlers::OutputFormat>() {
                    Ok(format) => {
                        self.shared.set_format(format);
                        self.hub.set_client_format(self.id, format.name());
                        pa::proxy_response("Success", id).with("OutputFormat", format.name())
                    }
                    Err(e) => pa::proxy_response("Failure", id)
                        .with("Message", e.to_string())
                        .with("OutputFormat", self.shared.format().name()),
                }
            }
            Some(ProxyAction::SetAutoFilter) => {
                let value = message.get("AutoFilter").unwrap_or("off").trim().to_ascii_lowercase();
                let level = match value.as_str() {
                    "on" => "1",
                    "unique" => "2",
                    _ => "0",
                };
                // Responses are always isolated per client in 2.x; the mode is acknowledged.
                pa::proxy_response("Success", id).with("AutoFilter", level)
            }
            Some(ProxyAction::Logoff) => return Flow::Logoff(goodbye(id)),
            Some(action @ (ProxyAction::AddServer | ProxyAction::DropServer)) => {
                if !admin {
                    pa::proxy_response("Error", id).with("Message", "Permission denied")
                } else if action == ProxyAction::AddServer {
                    pa::add_server(&self.hub, message, id)
                } else {
                    pa::drop_server(&self.hub, message, id)
                }
            }
            None => pa::proxy_response("Error", id).with("Message", "Invalid Proxy Action"),
        };
        self.sink.send_message(answer);
        Flow::Continue
    }

    async fn login(&mut self, message: &Message, id: Option<&RawValue>) -> Flow {
        let username = message.get("Username").unwrap_or_default().trim();
        let credentials = if message.get("AuthType").is_some_and(|t| t.eq_ignore_ascii_case("md5")) {
            Credentials::AmiMd5 { challenge: self.challenge.as_deref(), key: message.get("Key") }
        } else {
            Credentials::AmiSecret(message.get("Secret").unwrap_or_default())
        };
        let outcome =
            auth::login(&self.hub.auth_gate(&self.shared.labels()), username, self.peer.ip(), credentials).await;
        // A challenge is good for one login attempt only.
        self.challenge = None;
        let grant = match outcome {
            Ok(grant) => grant,
            Err(error) => {
                let text = match error {
                    LoginError::LockedOut(lockout) => lockout.message(),
                    _ => "Authentication failed",
                };
                self.user = None;
                self.reply("Error", id, Some(text));
                self.sink.send(ToClient::Close);
                return Flow::Close;
            }
        };
        let mask = message.get("Events").map_or(ClassMask::ALL, ClassMask::parse);
        self.start_session(&grant.user, grant.policy, mask);
        // The position is taken before the answer is queued: every event published from the
        // moment the login succeeded reaches the client, after its `Success`.
        let position = self.hub.subscribe();
        self.reply("Success", id, Some("Authentication accepted"));
        let system = ClassMask::parse("system");
        // FullyBooted means booted: at once when the client's default server is ready; else
        // when that server connects (the upstream session announces it then, see `upstream`).
        let ready = self
            .hub
            .server(self.policy.default_server())
            .is_some_and(|s| s.status() == crate::upstream::Status::Connected);
        if ready && mask.allows(system) && self.policy.reads(system) {
            let uptime = self.hub.uptime_secs().to_string();
            let booted = Message::new()
                .with("Event", "FullyBooted")
                .with("Privilege", "system,all")
                .with("Uptime", uptime.clone())
                .with("LastReload", uptime)
                .with("Status", "Fully Booted");
            self.sink.send_message(booted);
        }
        self.sink.send(ToClient::Subscribe(position));
        Flow::Continue
    }

    /// Logs in `username` without a Login action: the transport authenticated it already (HTTP
    /// Basic on a WebSocket upgrade, an AJAM session). Events start flowing at once.
    pub fn preauthenticate(&mut self, username: &str) {
        self.start_session(username, Policy::of(&self.hub.users(), username), ClassMask::ALL);
        self.sink.send(ToClient::Subscribe(self.hub.subscribe()));
    }

    /// The logged-in state of `username`: its rights, its name, its event mask.
    fn start_session(&mut self, username: &str, policy: Arc<Policy>, mask: ClassMask) {
        self.policy = policy;
        self.sink.send(ToClient::Policy(self.policy.clone()));
        tracing::info!(user = %username, "client logged in");
        self.user = Some(username.to_string());
        self.hub.set_client_user(self.id, username);
        self.shared.set_mask(mask);
    }

    /// `Action: BeaconShowServer`: answered by the proxy, never forwarded.
    async fn beacon_show_server(&mut self, message: &Message, id: Option<&RawValue>) {
        let servers = match message.get("Server") {
            Some(name) => match self.hub.server(Some(name)) {
                Some(s) => vec![s],
                None => {
                    self.reply("Error", id, Some(&format!("Unknown server {name}")));
                    return;
                }
            },
            None => self.hub.servers(),
        };
        let mut data = Vec::with_capacity(servers.len());
        for server in servers {
            let mut probe = Message::new().with("Action", "BeaconShowServer");
            if self.policy.check_action(&mut probe, server.name()).is_err() {
                continue;
            }
            match crate::beacon::gather::data_for(&self.hub, &server).await {
                Ok(mut d) => {
                    d.posting = crate::beacon::report::posting(self.hub.config(), server.name());
                    data.push(d)
                }
                Err(e) => tracing::info!(server = %server.name(), "no Beacon data: {e}"),
            }
        }
        for m in crate::beacon::show_server_events(&data, id) {
            self.sink.send_message(m);
        }
    }

    /// `Action: BeaconShowConfiguration`: the running Beacon configuration (proxy passwords
    /// masked), answered by the proxy.
    fn beacon_show_configuration(&mut self, id: Option<&RawValue>) {
        let mut answer = Message::response_with_id("Success", id, None);
        for (key, value) in self.hub.config().beacon.describe() {
            answer.push(key, value);
        }
        self.sink.send_message(answer);
    }

    fn challenge(&mut self, message: &Message, id: Option<&RawValue>) {
        if !message.get("AuthType").is_some_and(|t| t.eq_ignore_ascii_case("md5")) {
            self.reply("Error", id, Some("Must specify AuthType"));
            return;
        }
        // Unpredictable and fresh for every challenge (1.x used an unseeded rand()).
        let nonce = (rand::random::<u64>() % 1_000_000_000_000).to_string();
        let mut answer = Message::response_with_id("Success", id, None);
        answer.push("Challenge", nonce.clone());
        self.challenge = Some(nonce);
        self.sink.send_message(answer);
    }

    fn events(&mut self, message: &Message, id: Option<&RawValue>) {
        let mask = ClassMask::parse(message.get("EventMask").unwrap_or("off"));
        self.shared.set_mask(mask);
        let mut answer = Message::response_with_id("Success", id, None);
        answer.push("Events", if mask.is_on() { "On" } else { "Off" });
        self.sink.send_message(answer);
    }

    async fn forward(&mut self, action: Message, original_id: Option<RawValue>) {
        let sink = &self.sink;
        let routed = route::forward(
            |server| self.hub.server(server),
            action,
            original_id,
            &self.policy,
            sink,
            self.hub.config().max_pending_actions,
            |max| sink.try_begin_action(max),
        );
        if let Err(refused) = routed {
            if let Refusal::Denied { server, action, why } = &refused.refusal {
                tracing::info!(user = ?self.user, action = %action, server = %server, why = %why, "action denied");
            }
            self.after_earlier_answers().await;
            self.sink.send_message(refused.answer());
        }
    }
}
