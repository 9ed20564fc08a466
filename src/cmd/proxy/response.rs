//! The `ProxyResponse:` layout of every ProxyAction answer.

use astmanproxy_handlers::{Message, RawValue};

/// A `ProxyResponse:` answer with the ActionID second.
pub fn proxy_response(status: &str, action_id: Option<&RawValue>) -> Message {
    let mut m = Message::with_capacity(8);
    m.push("ProxyResponse", status);
    if let Some(id) = action_id {
        m.push_value("ActionID", id);
    }
    m
}
