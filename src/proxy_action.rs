//! ProxyActions: actions addressed to the proxy itself (`ProxyAction: <name>`), answered in the
//! astmanproxy 1.x shapes (`ProxyResponse: Success|Failure|Error`), plus the client's ActionID
//! as the second line when it sent one (1.x echoed none, so clients could not correlate them).
//!
//! Unlike 1.x, ProxyActions need a logged-in client when `authrequired = yes` (1.x bug B2), and
//! `ListServers` never shows a secret. `AddServer`/`DropServer` need the permission model of the
//! users work and answer `Failure` until it lands.

use astmanproxy_handlers::{Message, OutputFormat};

use crate::hub::Hub;

/// The ProxyActions this proxy knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyAction {
    /// Lists connected clients and servers.
    ListSessions,
    /// Lists the configured servers and their state.
    ListServers,
    /// Lists the input and output formats.
    ListIOHandlers,
    /// Changes this client's output format.
    SetOutputFormat,
    /// Sets this client's autofilter mode (isolation is always on in 2.x).
    SetAutoFilter,
    /// Ends the session like `Action: Logoff`.
    Logoff,
    /// Adds an Asterisk server at run time (admin only).
    AddServer,
    /// Drops an Asterisk server at run time (admin only).
    DropServer,
}

impl ProxyAction {
    /// Parses the `ProxyAction:` value (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        let all = [
            ("listsessions", Self::ListSessions),
            ("listservers", Self::ListServers),
            ("listiohandlers", Self::ListIOHandlers),
            ("setoutputformat", Self::SetOutputFormat),
            ("setautofilter", Self::SetAutoFilter),
            ("logoff", Self::Logoff),
            ("addserver", Self::AddServer),
            ("dropserver", Self::DropServer),
        ];
        all.iter().find(|(n, _)| n.eq_ignore_ascii_case(name.trim())).map(|(_, a)| *a)
    }
}

/// A `ProxyResponse:` answer with the ActionID second.
pub fn proxy_response(status: &str, action_id: Option<&str>) -> Message {
    let mut m = Message::with_capacity(8);
    m.push("ProxyResponse", status);
    if let Some(id) = action_id {
        m.push("ActionID", id);
    }
    m
}

/// The answer to `ListSessions`.
pub fn list_sessions(hub: &Hub, action_id: Option<&str>) -> Message {
    let mut m = proxy_response("Success", action_id);
    let mut clients = hub.clients();
    clients.sort_by_key(|(id, _)| *id);
    for (id, info) in clients {
        m.push("ProxyClientSession", info.peer.ip().to_string());
        m.push("ProxyClientID", id.to_string());
        m.push("ProxyClientUser", info.user.unwrap_or_default());
        m.push("ProxyClientInputHandler", "standard");
        m.push("ProxyClientOutputHandler", info.format);
    }
    for server in hub.servers() {
        m.push("ProxyServerSession", server.name());
    }
    m
}

/// The answer to `ListServers` (1.x line layout; never the secret).
pub fn list_servers(hub: &Hub, action_id: Option<&str>) -> Message {
    let mut m = proxy_response("Success", action_id);
    for server in hub.servers() {
        let c = server.config();
        m.push(
            "ProxyListServer I",
            format!(
                "{} H: {} U: {} P: {} E: {} S: {}",
                c.name,
                c.host,
                c.username,
                c.port,
                c.events,
                server.status().name()
            ),
        );
    }
    m
}

/// The answer to `ListIOHandlers`.
pub fn list_io_handlers(action_id: Option<&str>) -> Message {
    let mut m = proxy_response("Success", action_id);
    m.push("InputHandler", "standard");
    for format in OutputFormat::ALL {
        m.push("OutputHandler", format.name());
    }
    m
}
