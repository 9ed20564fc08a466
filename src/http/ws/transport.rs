//! The WebSocket transport of a client session: text frames of JSON actions in, one text frame
//! per answer or event out.
//!
//! [`WsInput`] decodes each text frame's JSON object once into a [`Message`] (the socket's own
//! `Filter` is answered here); [`WsOutput`] frames each message the writer gives it, and each
//! shared event as the JSON bytes the event buffer keeps ([`SharedEvent::bytes`]), not decoded
//! again. The socket's event filter is applied at the message level: an event (an `Event`
//! header) without an `ActionID` passes only when its name is in the filter.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use astmanproxy_handlers::{json, Message, OutputFormat};
use bytes::{Bytes, BytesMut};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::error::Error as WsError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message as WsMessage, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use crate::client::transport::{CloseReason, Input, Output, Received, WriteFailure};
use crate::event::SharedEvent;

/// How long the close handshake may take before the socket is dropped.
pub const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// What the input and the output of one socket share: the event filter, and the close code the
/// input chose (a message over the limit).
#[derive(Default)]
pub struct SocketState {
    /// The event names the socket lets through (`None`: all).
    filter: Mutex<Option<HashSet<String>>>,
    close: Mutex<Option<(CloseCode, String)>>,
}

impl SocketState {
    fn filter(&self) -> std::sync::MutexGuard<'_, Option<HashSet<String>>> {
        self.filter.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn close(&self) -> std::sync::MutexGuard<'_, Option<(CloseCode, String)>> {
        self.close.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The reading half of a socket.
pub struct WsInput<S> {
    source: SplitStream<WebSocketStream<S>>,
    state: Arc<SocketState>,
    limit: usize,
}

/// The writing half of a socket.
pub struct WsOutput<S> {
    sink: SplitSink<WebSocketStream<S>, WsMessage>,
    state: Arc<SocketState>,
    /// Frames not yet taken by the socket (a stalled flush keeps the rest, in order).
    frames: VecDeque<WsMessage>,
    bytes: usize,
    /// The proxy's shutdown: sockets are closed with 1001 then.
    shutdown: CancellationToken,
}

/// The two halves of `socket`, whose messages are at most `limit` bytes.
pub fn split<S>(socket: WebSocketStream<S>, limit: usize, shutdown: CancellationToken) -> (WsInput<S>, WsOutput<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (sink, source) = socket.split();
    let state = Arc::new(SocketState::default());
    let input = WsInput { source, state: state.clone(), limit };
    (input, WsOutput { sink, state, frames: VecDeque::new(), bytes: 0, shutdown })
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Input for WsInput<S> {
    async fn next(&mut self) -> Received {
        loop {
            // Cancel safe: a frame is taken whole or not at all.
            let Some(frame) = self.source.next().await else { return Received::End };
            return match frame {
                Ok(WsMessage::Text(text)) => match read_action(text.as_str()) {
                    Ok(Action::Forward(message)) => Received::Message(message),
                    Ok(Action::Filter { names, action_id }) => {
                        let answer = filter_answer(&names, action_id);
                        *self.state.filter() = names;
                        Received::Reply(answer)
                    }
                    Err(why) => Received::Invalid(why.to_string()),
                },
                Ok(WsMessage::Binary(_)) => Received::Invalid(
                    "binary frames are not supported: send one JSON action per text frame".to_string(),
                ),
                // Pings are answered by tungstenite; a Close is answered too, and the stream ends.
                Ok(_) => continue,
                Err(WsError::Capacity(e)) => {
                    tracing::info!(error = %e, "WebSocket message over the limit; closing");
                    let reason = format!("message too big (limit {} bytes)", self.limit);
                    *self.state.close() = Some((CloseCode::Size, reason));
                    Received::Failed
                }
                Err(e) => {
                    tracing::debug!(error = %e, "WebSocket read ended");
                    Received::End
                }
            };
        }
    }

    async fn finish(mut self) {
        // Our close frame is out: give the client a moment to answer it.
        let drain = async { while let Some(Ok(_)) = self.source.next().await {} };
        let _ = tokio::time::timeout(CLOSE_WAIT, drain).await;
    }
}

impl<S> WsOutput<S> {
    /// Queues one frame of `bytes` (one encoded message, its line end dropped).
    fn push(&mut self, mut bytes: Bytes) {
        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            bytes.truncate(bytes.len() - 1);
        }
        if bytes.is_empty() {
            return;
        }
        self.bytes += bytes.len();
        // No copy: the frame shares the encoded bytes (an event's with every other socket).
        let text =
            Utf8Bytes::try_from(bytes.clone()).unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned().into());
        self.frames.push_back(WsMessage::Text(text));
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Output for WsOutput<S> {
    fn message(&mut self, message: Message, format: OutputFormat) {
        if !passes(&message, &self.state.filter()) {
            return;
        }
        let mut out = BytesMut::with_capacity(message.encoded_len_hint() + 32);
        format.encode(&message, &mut out);
        self.push(out.freeze());
    }

    fn raw(&mut self, bytes: Bytes) {
        self.push(bytes);
    }

    fn event(&mut self, event: &SharedEvent, format: OutputFormat) {
        // Only a socket with a filter looks into its events.
        let pass = {
            let filter = self.state.filter();
            filter.is_none() || passes(&event.message(), &filter)
        };
        if !pass {
            return;
        }
        self.push(event.bytes(format).clone());
    }

    fn buffered(&self) -> usize {
        self.bytes
    }

    async fn flush(&mut self, stall: Duration) -> Result<(), WriteFailure> {
        // A frame is cheap to clone (shared bytes); it leaves the queue once the socket took it.
        while let Some(frame) = self.frames.front().cloned() {
            step(tokio::time::timeout(stall, self.sink.feed(frame)).await)?;
            if let Some(WsMessage::Text(sent)) = self.frames.pop_front() {
                self.bytes -= sent.len();
            }
        }
        step(tokio::time::timeout(stall, self.sink.flush()).await)
    }

    async fn close(&mut self, why: CloseReason, stall: Duration) {
        let chosen = self.state.close().take();
        let (code, reason) = match why {
            CloseReason::Failed => return,
            // After the final notice, bounded as the notice was.
            CloseReason::Stalled => {
                tracing::info!("WebSocket client stopped reading; disconnecting");
                let frame = CloseFrame { code: CloseCode::Policy, reason: "client stopped reading".into() };
                let _ = tokio::time::timeout(stall, self.sink.send(WsMessage::Close(Some(frame)))).await;
                return;
            }
            _ if chosen.is_some() => chosen.unwrap_or((CloseCode::Normal, String::new())),
            _ if self.shutdown.is_cancelled() => (CloseCode::Away, "proxy shutting down".to_string()),
            CloseReason::Lagged => (CloseCode::Policy, "client too slow for the event stream".to_string()),
            _ => (CloseCode::Normal, "session ended".to_string()),
        };
        let frame = CloseFrame { code, reason: reason.into() };
        let _ = tokio::time::timeout(CLOSE_WAIT, self.sink.send(WsMessage::Close(Some(frame)))).await;
    }
}

/// A timed socket write as a writer's result. The HTTP front's own write limit
/// (`clientwritetimeout` too) is a stall as well.
fn step(result: Result<Result<(), WsError>, tokio::time::error::Elapsed>) -> Result<(), WriteFailure> {
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(WsError::Io(e))) if e.kind() == std::io::ErrorKind::TimedOut => Err(WriteFailure::Stalled),
        Ok(Err(e)) => Err(WriteFailure::Io(std::io::Error::other(e))),
        Err(_) => Err(WriteFailure::Stalled),
    }
}

/// Whether a message passes the socket's event filter: answers (messages with an `ActionID`)
/// and non-events always do.
fn passes(message: &Message, filter: &Option<HashSet<String>>) -> bool {
    let Some(names) = filter else { return true };
    let Some(name) = message.event() else { return true };
    message.contains("ActionID") || names.contains(&name.trim().to_ascii_lowercase())
}

/// What a text frame asks for.
#[derive(Debug)]
enum Action {
    /// An action for the session.
    Forward(Message),
    /// Set this socket's event filter.
    Filter { names: Option<HashSet<String>>, action_id: Option<String> },
}

/// Why a text frame is not an action.
#[derive(Debug, thiserror::Error)]
enum FrameError {
    /// Not JSON at all.
    #[error("invalid JSON action: {0}")]
    Json(#[from] serde_json::Error),
    /// JSON, but not one object.
    #[error("invalid JSON action: expected one object per text frame")]
    NotAnObject,
    /// An object whose values cannot be AMI headers.
    #[error(transparent)]
    Fields(#[from] json::JsonInputError),
}

/// Reads one text frame: a JSON object, or the socket's own `Filter`.
fn read_action(text: &str) -> Result<Action, FrameError> {
    let value: serde_json::Value = serde_json::from_str(text)?;
    let serde_json::Value::Object(object) = value else {
        return Err(FrameError::NotAnObject);
    };
    let text_of = |key: &str| {
        object.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    let is_filter = text_of("Action").is_some_and(|a| a.trim().eq_ignore_ascii_case("filter"));
    if is_filter && text_of("Operation").is_none() {
        if let Some(events) = text_of("Event") {
            let names: HashSet<String> =
                events.split(',').map(|n| n.trim().to_ascii_lowercase()).filter(|n| !n.is_empty()).collect();
            let names = (!names.is_empty() && !names.contains("*")).then_some(names);
            return Ok(Action::Filter { names, action_id: text_of("ActionID") });
        }
    }
    Ok(Action::Forward(json::decode_object(object)?))
}

/// The answer to a `Filter`.
fn filter_answer(names: &Option<HashSet<String>>, action_id: Option<String>) -> Message {
    let mut m = Message::with_capacity(4);
    m.push("Response", "Success");
    if let Some(id) = action_id {
        m.push("ActionID", id);
    }
    m.push("Message", "Event filter set");
    let mut list: Vec<&str> = names.iter().flatten().map(String::as_str).collect();
    list.sort_unstable();
    m.push("Event", if list.is_empty() { "*".to_string() } else { list.join(",") });
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(names: &[&str]) -> Option<HashSet<String>> {
        Some(names.iter().map(|n| n.to_ascii_lowercase()).collect())
    }

    fn json_of(m: &Message) -> String {
        let mut out = BytesMut::new();
        json::encode(m, &mut out);
        String::from_utf8(out.to_vec()).unwrap().trim_end().to_string()
    }

    #[test]
    fn filter_keeps_named_events_and_every_answer() {
        let f = filter(&["Hangup"]);
        assert!(passes(&Message::new().with("Event", "Hangup").with("Channel", "x"), &f));
        assert!(!passes(&Message::new().with("Event", "Newchannel").with("Channel", "x"), &f));
        assert!(passes(&Message::new().with("Event", "CoreShowChannel").with("ActionID", "1"), &f));
        assert!(!passes(&Message::new().with("Event", "Newchannel").with("Note", "\",\"ActionID\":"), &f));
        assert!(passes(&Message::new().with("Response", "Success"), &f));
        assert!(passes(&Message::new().with("Event", "Newchannel"), &None));
    }

    #[test]
    fn frames_are_objects_decoded_once() {
        let Ok(Action::Forward(m)) = read_action("{\n \"Action\": \"Ping\",\n \"ActionID\": 7\n}") else {
            panic!("not forwarded");
        };
        assert_eq!(json_of(&m), "{\"Action\":\"Ping\",\"ActionID\":\"7\"}");
        assert!(read_action("[1]").unwrap_err().to_string().contains("one object"));
        assert!(read_action("{nope").unwrap_err().to_string().starts_with("invalid JSON action"));
        assert!(read_action(r#"{"Action":"Ping","X":{"y":1}}"#)
            .unwrap_err()
            .to_string()
            .starts_with("invalid JSON action"));
        let Ok(Action::Filter { names, action_id }) =
            read_action(r#"{"Action":"Filter","Event":"A, b","ActionID":"f"}"#)
        else {
            panic!("not a filter");
        };
        assert_eq!(action_id.as_deref(), Some("f"));
        assert_eq!(
            json_of(&filter_answer(&names, None)),
            r#"{"Response":"Success","Message":"Event filter set","Event":"a,b"}"#
        );
        assert!(matches!(read_action(r#"{"Action":"Filter","Event":"*"}"#), Ok(Action::Filter { names: None, .. })));
        assert!(matches!(read_action(r#"{"Action":"Filter","Operation":"Add","Filter":"x"}"#), Ok(Action::Forward(_))));
    }
}
