//! ProxyActions: actions addressed to the proxy itself (`ProxyAction: <name>`), answered in the
//! astmanproxy 1.x shapes (`ProxyResponse: Success|Failure|Error`), plus the client's ActionID
//! as the second line when it sent one (1.x echoed none, so clients could not correlate them).
//!
//! Unlike 1.x, ProxyActions need a logged-in client when `authrequired = yes` (1.x bug B2), and
//! `ListServers` never shows a secret. `AddServer`/`DropServer` need the permission model of the
//! user named in `adminusers`; their input is validated (1.x overflowed its buffers on it).

use astmanproxy_handlers::{Message, OutputFormat, RawValue};

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
pub fn proxy_response(status: &str, action_id: Option<&RawValue>) -> Message {
    let mut m = Message::with_capacity(8);
    m.push("ProxyResponse", status);
    if let Some(id) = action_id {
        m.push_value("ActionID", id);
    }
    m
}

/// The answer to `ListSessions`.
pub fn list_sessions(hub: &Hub, action_id: Option<&RawValue>) -> Message {
    let mut m = proxy_response("Success", action_id);
    let mut clients = hub.clients();
    clients.sort_by_key(|(id, _)| *id);
    for (id, info) in clients {
        m.push("ProxyClientSession", info.peer.ip().to_string());
        m.push("ProxyClientID", id.to_string());
        m.push("ProxyClientUser", info.user.unwrap_or_default());
        m.push("ProxyClientInputHandler", "standard,xml,json");
        m.push("ProxyClientOutputHandler", info.format);
    }
    for server in hub.servers() {
        m.push("ProxyServerSession", server.name());
    }
    m
}

/// The answer to `ListServers` (1.x line layout; never the secret), each server followed by
/// `ProxyServerSessions: <name> <logged in>/<kept>` (its AMI sessions).
pub fn list_servers(hub: &Hub, action_id: Option<&RawValue>) -> Message {
    let mut m = proxy_response("Success", action_id);
    for server in hub.servers() {
        let c = server.config();
        let (up, sessions) = server.sessions_connected();
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
        m.push("ProxyServerSessions", format!("{} {up}/{sessions}", c.name));
    }
    m
}

/// The input formats: standard AMI, XML and JSON actions (recognised per message by their first
/// byte, `<` or `{`), and HTTP requests (recognised per connection on the AMI port).
pub const INPUT_FORMATS: &[&str] = &["standard", "xml", "json", "http"];

/// The answer to `ListIOHandlers`.
pub fn list_io_handlers(action_id: Option<&RawValue>) -> Message {
    let mut m = proxy_response("Success", action_id);
    for input in INPUT_FORMATS {
        m.push("InputHandler", *input);
    }
    for format in OutputFormat::ALL {
        m.push("OutputHandler", format.name());
    }
    m
}

/// Longest host, user, secret, name or events value `AddServer` accepts.
const MAX_FIELD: usize = 256;

/// `AddServer`: starts a session to a new Asterisk server (`Server`, `Port`, `Username`,
/// `Secret`, `Events`, optional `UseSSL` and `Name`).
pub fn add_server(hub: &Hub, message: &Message, action_id: Option<&RawValue>) -> Message {
    let host = message.get("Server").unwrap_or_default().trim();
    let failure = |why: String| {
        tracing::info!(host = %host, "AddServer refused: {why}");
        proxy_response("Failure", action_id).with("Message", format!("Could not add {host}: {why}"))
    };
    let field = |key: &str| message.get(key).map(str::trim).unwrap_or_default();
    for key in ["Server", "Port", "Username", "Secret", "Events"] {
        let value = field(key);
        if value.is_empty() {
            return failure(format!("missing {key}"));
        }
        if value.len() > MAX_FIELD || value.contains(['\r', '\n', ',']) {
            return failure(format!("invalid {key}"));
        }
    }
    let Some(port) = field("Port").parse::<u16>().ok().filter(|p| *p > 0) else {
        return failure("invalid Port".to_string());
    };
    let use_ssl = match message.get("UseSSL").map(str::trim) {
        None | Some("") => false,
        Some(v) => match crate::config::parse_bool(v) {
            Some(b) => b,
            None => return failure("invalid UseSSL".to_string()),
        },
    };
    let name = match field("Name") {
        "" => host.to_string(),
        n if n.len() <= MAX_FIELD => n.to_string(),
        _ => return failure("invalid Name".to_string()),
    };
    let server = crate::config::ServerConfig {
        name,
        host: host.to_string(),
        port,
        username: field("Username").to_string(),
        secret: crate::config::Secret::new(field("Secret")),
        events: field("Events").replace('|', ","),
        use_ssl,
    };
    match hub.spawn_server(server) {
        Ok(handle) => {
            tracing::info!(server = %handle.name(), "server added at run time");
            proxy_response("Success", action_id).with("Message", format!("Added {}", handle.name()))
        }
        Err(why) => failure(why.to_string()),
    }
}

/// `DropServer`: stops a server's session (it logs off; its pending actions are answered).
pub fn drop_server(hub: &Hub, message: &Message, action_id: Option<&RawValue>) -> Message {
    let name = message.get("Server").unwrap_or_default().trim();
    if hub.drop_server(name) {
        tracing::info!(server = %name, "server dropped at run time");
        proxy_response("Success", action_id).with("Message", format!("Dropped {name}"))
    } else {
        proxy_response("Failure", action_id).with("Message", format!("Cannot Drop Server {name}, Does Not Exist"))
    }
}
