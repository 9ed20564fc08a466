//! `ListSessions`, `ListServers` and `ListIOHandlers`: what the proxy has, in the 1.x layouts.

use astmanproxy_handlers::{Message, OutputFormat, RawValue};

use super::response::proxy_response;
use crate::hub::Hub;

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
