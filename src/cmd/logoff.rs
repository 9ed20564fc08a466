//! `Action: Logoff` and `ProxyAction: Logoff`.

use astmanproxy_handlers::{Message, RawValue};

use super::state::Flow;

/// The answer to a logoff, as Asterisk words it.
pub fn goodbye(id: Option<&RawValue>) -> Message {
    Message::response_with_id("Goodbye", id, Some("Thanks for all the fish."))
}

/// Ends the session once the earlier actions are answered.
pub fn apply(id: Option<&RawValue>) -> Flow {
    Flow::Logoff(goodbye(id))
}
