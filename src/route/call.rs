//! "Send one action and take its whole answer", for callers that are not a client connection
//! (HTTP 1.x actions, Beacon gathering).
//!
//! A call is a private [`ClientSink`]: the upstream session routes the answers into it as it
//! does for any client, and ends the route when it decides the answer is complete (a response, a
//! list up to its Complete event, an async Originate up to its `OriginateResponse`; an error,
//! a timeout or a disconnect end it too). The call waits for that end; it never judges a message
//! final itself.

use std::sync::atomic::{AtomicU64, Ordering};

use astmanproxy_handlers::Message;
use tokio_util::sync::CancellationToken;

use super::sink::{self, ClientId, ClientSink, SinkReceiver, ToClient};

/// Ids of calls, apart from the client ids the hub hands out (which count up from 1).
static NEXT_CALL: AtomicU64 = AtomicU64::new(1 << 62);

/// The answer to one action, complete.
#[derive(Debug, Default)]
pub struct Answer {
    /// Every message of it, in order: the response, list items, the Complete event, the
    /// `OriginateResponse`.
    pub messages: Vec<Message>,
}

impl Answer {
    /// The response (the first message with `Response:`).
    pub fn response(&self) -> Option<&Message> {
        self.messages.iter().find(|m| m.response().is_some())
    }
}

/// Why a call has no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The server could not take the action (down, busy, dropped).
    #[error("{0}")]
    Rejected(String),
    /// The answer was larger than the call's byte budget.
    #[error("the answer was larger than {0} bytes")]
    TooLarge(usize),
    /// The route ended without a message (the caller went away first).
    #[error("the route ended without an answer")]
    NoAnswer,
}

/// One call in progress: its queue, which the upstream session fills.
pub struct Call {
    sink: ClientSink,
    rx: SinkReceiver,
    max_bytes: usize,
}

impl Call {
    /// A call whose answer may take up to `max_bytes` (past that: [`CallError::TooLarge`]).
    pub fn new(max_bytes: usize) -> Self {
        let id: ClientId = NEXT_CALL.fetch_add(1, Ordering::Relaxed);
        let (sink, rx) = sink::channel(id, max_bytes, CancellationToken::new());
        Self { sink, rx, max_bytes }
    }

    /// Where the answers go (the `reply` of its [`super::Request`]).
    pub fn sink(&self) -> &ClientSink {
        &self.sink
    }

    /// Waits until the upstream session ended every route of this call, then takes the answer.
    ///
    /// # Errors
    /// Over its byte budget, or no message came.
    pub async fn answer(mut self) -> Result<Answer, CallError> {
        self.sink.routes_ended().await;
        let mut answer = Answer::default();
        while let Some(item) = self.rx.try_recv() {
            if let ToClient::Message(m) = item {
                answer.messages.push(m);
            }
        }
        if self.sink.overflowed() {
            return Err(CallError::TooLarge(self.max_bytes));
        }
        if answer.messages.is_empty() {
            return Err(CallError::NoAnswer);
        }
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_answer_is_what_came_until_the_route_ended() {
        let call = Call::new(1 << 20);
        let sink = call.sink().clone();
        sink.try_begin_action(usize::MAX);
        let answer = tokio::spawn(call.answer());
        sink.send_message(Message::new().with("Response", "Success").with("Message", "Originate successfully queued"));
        sink.originate_queued();
        tokio::task::yield_now().await;
        assert!(!answer.is_finished(), "an answered async Originate is not complete yet");
        sink.send_message(Message::new().with("Event", "OriginateResponse"));
        sink.originate_settled();
        sink.end_action(None);
        let answer = answer.await.unwrap().unwrap();
        assert_eq!(answer.messages.len(), 2);
        assert_eq!(answer.response().and_then(Message::response), Some("Success"));
    }

    #[tokio::test]
    async fn an_answer_over_the_budget_is_an_error() {
        let call = Call::new(16);
        let sink = call.sink().clone();
        sink.try_begin_action(usize::MAX);
        sink.send_message(Message::new().with("Response", "Success").with("Message", "x".repeat(100)));
        sink.end_action(None);
        assert!(matches!(call.answer().await, Err(CallError::TooLarge(16))));
    }
}
