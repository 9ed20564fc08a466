//! ProxyActions: actions addressed to the proxy itself (`ProxyAction: <name>`), answered in the
//! astmanproxy 1.x shapes (`ProxyResponse: Success|Failure|Error`), plus the client's ActionID
//! as the second line when it sent one (1.x echoed none, so clients could not correlate them).
//!
//! Unlike 1.x, ProxyActions need a logged-in client when `authrequired = yes` (1.x bug B2), and
//! `ListServers` never shows a secret. `AddServer`/`DropServer` need the permission model of the
//! user named in `adminusers`; their input is validated (1.x overflowed its buffers on it).

use astmanproxy_handlers::{Message, RawValue};

use super::state::{ClientState, Flow};

pub mod format;
pub mod lists;
mod response;
pub mod servers;

pub use response::proxy_response;

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

fn denied(id: Option<&RawValue>) -> Message {
    proxy_response("Error", id).with("Message", "Permission denied")
}

/// Answers `ProxyAction: <action>` (`None`: unknown) for `client`.
pub fn apply(client: &mut ClientState, action: Option<ProxyAction>, message: &Message, id: Option<&RawValue>) -> Flow {
    if !client.authenticated() {
        // 1.x let unauthenticated clients run every ProxyAction (bug B2).
        client.sink.send_message(denied(id));
        return Flow::Continue;
    }
    let admin = client.is_admin();
    let hub = &client.hub;
    let answer = match action {
        // Every client's address and user, every server's host and AMI user: for admins,
        // unless `openproxylists` opens them as in 1.x.
        Some(action @ (ProxyAction::ListSessions | ProxyAction::ListServers))
            if !admin && !hub.config().open_proxy_lists =>
        {
            tracing::info!(user = ?client.user, ?action, "ProxyAction denied: not in adminusers (openproxylists = no)");
            denied(id)
        }
        Some(ProxyAction::ListSessions) => lists::list_sessions(hub, id),
        Some(ProxyAction::ListServers) => lists::list_servers(hub, id),
        Some(ProxyAction::ListIOHandlers) => lists::list_io_handlers(id),
        Some(ProxyAction::SetOutputFormat) => format::set_output_format(client, message, id),
        Some(ProxyAction::SetAutoFilter) => format::set_auto_filter(message, id),
        Some(ProxyAction::Logoff) => return super::logoff::apply(id),
        Some(ProxyAction::AddServer | ProxyAction::DropServer) if !admin => denied(id),
        Some(ProxyAction::AddServer) => servers::add_server(hub, message, id),
        Some(ProxyAction::DropServer) => servers::drop_server(hub, message, id),
        None => proxy_response("Error", id).with("Message", "Invalid Proxy Action"),
    };
    client.sink.send_message(answer);
    Flow::Continue
}
