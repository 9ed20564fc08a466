//! `SetOutputFormat` and `SetAutoFilter`: per-client output settings.

use astmanproxy_handlers::{Message, OutputFormat, RawValue};

use super::response::proxy_response;
use crate::cmd::state::ClientState;

/// `SetOutputFormat`: the client's answers and events from now on in `OutputFormat`.
pub fn set_output_format(client: &ClientState, message: &Message, id: Option<&RawValue>) -> Message {
    let wanted = message.get("OutputFormat").unwrap_or_default();
    match wanted.parse::<OutputFormat>() {
        Ok(format) => {
            client.shared.set_format(format);
            client.hub.set_client_format(client.id, format.name());
            proxy_response("Success", id).with("OutputFormat", format.name())
        }
        Err(e) => proxy_response("Failure", id)
            .with("Message", e.to_string())
            .with("OutputFormat", client.shared.format().name()),
    }
}

/// `SetAutoFilter`: responses are always isolated per client in 2.x; the mode is acknowledged.
pub fn set_auto_filter(message: &Message, id: Option<&RawValue>) -> Message {
    let value = message.get("AutoFilter").unwrap_or("off").trim().to_ascii_lowercase();
    let level = match value.as_str() {
        "on" => "1",
        "unique" => "2",
        _ => "0",
    };
    proxy_response("Success", id).with("AutoFilter", level)
}
