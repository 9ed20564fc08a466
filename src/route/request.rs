//! An action on its way to a server, and the answer when a server cannot take it.

use astmanproxy_handlers::{Message, RawValue};

use super::sink::ClientSink;

/// An action on its way to a server, with where its answers go.
#[derive(Debug)]
pub struct Request {
    /// The action as the client sent it (its ActionID is replaced upstream).
    pub action: Message,
    /// The client's queue (or a [`super::Call`]'s).
    pub reply: ClientSink,
    /// The client's own ActionID, restored byte for byte on every answer (`None`: answers carry
    /// none).
    pub original_id: Option<RawValue>,
}

/// A request the server could not take, with the reason to tell the client.
#[derive(Debug)]
pub struct Rejected {
    /// The request, to be answered.
    pub request: Request,
    /// Why it was refused.
    pub reason: String,
}

/// Answers a request at once with `Response: Error` and ends its route.
pub fn reject(request: Request, server: &str, message: &str) {
    let mut answer = Message::response_with_id("Error", request.original_id.as_ref(), Some(message));
    answer.push("Server", server);
    request.reply.send_message(answer);
    request.reply.end_action(request.original_id.as_ref());
}

/// Ends the route of an answer owner with `Response: Error` (the server dropped, timed out).
pub fn answer_error(reply: ClientSink, original_id: Option<RawValue>, server: &str, text: &str) {
    reject(Request { action: Message::new(), reply, original_id }, server, text);
}
