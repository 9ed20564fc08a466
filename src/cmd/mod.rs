//! The actions the proxy answers itself, parsed once from a [`Message`] into one [`Command`] and
//! applied to the client's state ([`ClientState`]), each in its own file (mini-redis's `cmd/`):
//! `Login` ([`login`]), `Challenge` ([`challenge`]), `Logoff` ([`logoff`]), `Events`
//! ([`events`]), every `ProxyAction` ([`proxy`]) and the actions of registered extensions
//! (Beacon's, [`crate::extension`]). Every transport asks [`Command::parse`] which actions are
//! local; the others go to Asterisk.
//!
//! Answers made here keep Asterisk's layout: `Response:` first, `ActionID:` second (when the
//! client sent one), then `Message:`; client libraries ignore blocks that start otherwise.

use std::sync::Arc;

use astmanproxy_handlers::{Message, RawValue};

use crate::extension::{Caller, Extension, Extensions};

pub mod challenge;
pub mod events;
pub mod login;
pub mod logoff;
pub mod proxy;
pub mod state;

pub use proxy::ProxyAction;
pub use state::{ClientState, Flow};

/// An action the proxy answers itself.
#[derive(Clone)]
pub enum Command {
    /// `Action: Login` (plain or MD5 after a `Challenge`).
    Login,
    /// `Action: Challenge` (`AuthType: md5`).
    Challenge,
    /// `Action: Logoff`.
    Logoff,
    /// `Action: Events` (`EventMask`).
    Events,
    /// `Action: WaitEvent`: answered by an AJAM session (`http::ajam`); a plain AMI connection
    /// forwards it to Asterisk, as 1.x did.
    WaitEvent,
    /// `Action: Filter` with `Event` and no `Operation`: a WebSocket's event filter, answered by
    /// the WebSocket bridge (`http::ws`); elsewhere Asterisk's own `Filter` action.
    Filter,
    /// `ProxyAction: <name>` (`None`: a name the proxy does not know).
    Proxy(Option<ProxyAction>),
    /// An action a registered extension answers (Beacon's).
    Extension(Arc<dyn Extension>),
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Extension(e) => write!(f, "Extension({:?})", e.names()),
            Self::Proxy(p) => write!(f, "Proxy({p:?})"),
            other => f.write_str(other.name()),
        }
    }
}

impl Command {
    /// The command `message` asks for, or `None` for an action that goes to Asterisk. A
    /// `ProxyAction` header wins over `Action`; names are case-insensitive.
    pub fn parse(message: &Message, extensions: &Extensions) -> Option<Command> {
        if let Some(name) = message.get("ProxyAction") {
            return Some(Command::Proxy(ProxyAction::from_name(name)));
        }
        let action = message.action()?.trim();
        let command = match action.to_ascii_lowercase().as_str() {
            "login" => Command::Login,
            "challenge" => Command::Challenge,
            "logoff" => Command::Logoff,
            "events" => Command::Events,
            "waitevent" => Command::WaitEvent,
            "filter" if message.contains("Event") && !message.contains("Operation") => Command::Filter,
            _ => return extensions.find(action).map(Command::Extension),
        };
        Some(command)
    }

    /// Whether a client session answers it ([`Command::apply`]); `WaitEvent` and `Filter` belong
    /// to their transports and go to Asterisk on a plain AMI connection.
    pub fn answered_by_client(&self) -> bool {
        !matches!(self, Command::WaitEvent | Command::Filter)
    }

    /// Whether an HTTP request asking for it runs on an (AJAM) session: everything but the
    /// WebSocket's `Filter`.
    pub fn answered_by_http_session(&self) -> bool {
        !matches!(self, Command::Filter)
    }

    fn name(&self) -> &'static str {
        match self {
            Command::Login => "Login",
            Command::Challenge => "Challenge",
            Command::Logoff => "Logoff",
            Command::Events => "Events",
            Command::WaitEvent => "WaitEvent",
            Command::Filter => "Filter",
            Command::Proxy(_) => "ProxyAction",
            Command::Extension(_) => "Extension",
        }
    }

    /// Answers `message` (which parsed to `self`) on `client`; `id` is its ActionID.
    pub async fn apply(self, client: &mut ClientState, message: &Message, id: Option<&RawValue>) -> Flow {
        let needs_login = !matches!(self, Command::Login | Command::Challenge | Command::Logoff | Command::Proxy(_));
        if needs_login && !client.authenticated() {
            client.reply("Error", id, Some("Permission denied"));
            return Flow::Continue;
        }
        match self {
            Command::Login => return login::apply(client, message, id).await,
            Command::Challenge => challenge::apply(client, message, id),
            Command::Logoff => return logoff::apply(id),
            Command::Events => events::apply(client, message, id),
            Command::Proxy(action) => return proxy::apply(client, action, message, id),
            Command::Extension(extension) => {
                let caller = Caller { policy: &client.policy, user: client.user.as_deref() };
                for answer in extension.answer(message, caller).await {
                    client.sink.send_message(answer);
                }
            }
            // Not answered by a client session (see `answered_by_client`).
            Command::WaitEvent | Command::Filter => {
                client.reply("Error", id, Some("Invalid/unknown command"));
            }
        }
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extension::Answer;

    struct Named;

    impl Extension for Named {
        fn names(&self) -> &[&'static str] {
            &["BeaconShowServer"]
        }

        fn answer<'a>(&'a self, _: &'a Message, _: Caller<'a>) -> Answer<'a> {
            Box::pin(async { Vec::new() })
        }
    }

    fn parse(pairs: &[(&str, &str)], extensions: &Extensions) -> Option<Command> {
        Command::parse(&Message::from_pairs(pairs.iter().copied()), extensions)
    }

    #[test]
    fn one_parse_says_which_actions_are_local_on_every_transport() {
        let none = Extensions::default();
        let named = |pairs: &[(&str, &str)]| parse(pairs, &none).map(|c| c.name());
        assert_eq!(named(&[("Action", " LOGIN ")]), Some("Login"));
        assert_eq!(named(&[("Action", "challenge")]), Some("Challenge"));
        assert_eq!(named(&[("Action", "Logoff")]), Some("Logoff"));
        assert_eq!(named(&[("Action", "Events")]), Some("Events"));
        assert_eq!(named(&[("Action", "WaitEvent")]), Some("WaitEvent"));
        assert_eq!(named(&[("Action", "Filter"), ("Event", "Hangup")]), Some("Filter"));
        // Asterisk's own Filter action (with an Operation) goes to Asterisk.
        assert_eq!(named(&[("Action", "Filter"), ("Operation", "Add"), ("Filter", "x")]), None);
        assert_eq!(named(&[("Action", "Ping")]), None);
        assert_eq!(named(&[("ActionID", "1")]), None);
        // ProxyAction wins over Action; unknown ones are still the proxy's.
        assert!(matches!(
            parse(&[("Action", "Ping"), ("ProxyAction", "listservers")], &none),
            Some(Command::Proxy(Some(ProxyAction::ListServers)))
        ));
        assert!(matches!(parse(&[("ProxyAction", "Frobnicate")], &none), Some(Command::Proxy(None))));
        // Extensions' actions are local only once registered.
        assert_eq!(named(&[("Action", "BeaconShowServer")]), None);
        let registered = Extensions::default();
        registered.register(Arc::new(Named));
        assert!(matches!(parse(&[("Action", "beaconshowserver")], &registered), Some(Command::Extension(_))));
        // WaitEvent and Filter belong to their transports; Filter is not an HTTP session action.
        let wait = parse(&[("Action", "WaitEvent")], &none).unwrap();
        assert!(!wait.answered_by_client() && wait.answered_by_http_session());
        let filter = parse(&[("Action", "Filter"), ("Event", "Hangup")], &none).unwrap();
        assert!(!filter.answered_by_client() && !filter.answered_by_http_session());
    }
}
