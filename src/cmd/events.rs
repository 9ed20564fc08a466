//! `Action: Events`: the client's event mask (`EventMask`, default `off`).

use astmanproxy_handlers::{Message, RawValue};

use super::state::ClientState;
use crate::event::ClassMask;

/// Sets the mask and answers `Events: On|Off`.
pub fn apply(client: &mut ClientState, message: &Message, id: Option<&RawValue>) {
    let mask = ClassMask::parse(message.get("EventMask").unwrap_or("off"));
    client.shared.set_mask(mask);
    let mut answer = Message::response_with_id("Success", id, None);
    answer.push("Events", if mask.is_on() { "On" } else { "Off" });
    client.sink.send_message(answer);
}
