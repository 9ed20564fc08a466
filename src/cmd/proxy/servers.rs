//! `AddServer` and `DropServer`: Asterisk servers added and dropped at run time (admin only).

use astmanproxy_handlers::{Message, RawValue};

use super::response::proxy_response;
use crate::hub::Hub;

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
    match hub.spawn_server(server, crate::hub::Origin::AddServer) {
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
