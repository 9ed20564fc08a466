//! `/ws`: a WebSocket carrying JSON actions in and JSON answers and events out.
//!
//! The upgrade is answered by hyper (`hyper::upgrade::on`); the socket is then framed by
//! tokio-tungstenite and bridged, through an in-process pipe (`tokio::io::duplex`), to an
//! ordinary client session ([`crate::client::serve_with`], kind `ws`, JSON output). A WebSocket
//! client so gets exactly what a TCP client gets: its own answers only, its user's permissions
//! and event classes, `Events` masks, the writer's backpressure and the lag policy.
//!
//! - Authentication: HTTP Basic on the upgrade request (a wrong secret gets `401` and no
//!   upgrade), or, without Basic, a first `{"Action":"Login",...}` message; until then the
//!   session answers `Permission denied` and sends no event.
//! - In: each text frame is one JSON action object, written to the session as one line. Binary
//!   frames and text that is not a JSON object get a JSON error message; the connection goes on.
//!   A frame or message over `maxmessagesize` closes the socket with code 1009.
//! - Out: each JSON line of the session is one text frame.
//! - `{"Action":"Filter","Event":"Newchannel,Hangup"}` (an `Event` header and no `Operation`)
//!   keeps only those events (by name, case-insensitive) on this socket; `"Event":""` or `"*"`
//!   lets all through again. Answers to actions are never filtered. It is answered here.
//! - Close: when the session ends (Logoff, failed Login, lag policy) the socket is closed
//!   (1000, or 1008 after `ProxyClientLagged`); when the socket closes the session ends; at
//!   shutdown sockets are closed with 1001.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use astmanproxy_handlers::OutputFormat;
use bytes::{Bytes, BytesMut};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::error::Error as WsError;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message as WsMessage, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use super::{actions, plain, Front, PIPE_BUFFER};
use crate::client::{self, ClientOptions};

/// How long the close handshake may take before the socket is dropped.
pub const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Error and filter answers made by the bridge itself that may wait to be sent.
const CONTROL_QUEUE: usize = 16;

/// Answers `GET /ws`: checks the upgrade and the credentials, then bridges the socket.
pub async fn handle(mut req: Request<Incoming>, peer: SocketAddr, front: &Front) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed: a WebSocket upgrade is a GET");
    }
    let Some(key) = websocket_key(&req) else {
        let mut r = plain(StatusCode::UPGRADE_REQUIRED, "expected a WebSocket upgrade (version 13)");
        r.headers_mut().insert(header::UPGRADE, header::HeaderValue::from_static("websocket"));
        return r;
    };
    if !allowed_origin(&req, &front.hub.config().http.allowed_origins) {
        return plain(StatusCode::FORBIDDEN, "cross-origin WebSocket refused");
    }
    // A socket is a client connection: it holds a `maxclients` place as long as it is open.
    let Ok(permit) = front.limit.clone().try_acquire_owned() else {
        tracing::warn!(%peer, "connection limit reached (maxclients); refusing WebSocket");
        return plain(StatusCode::SERVICE_UNAVAILABLE, "too many connections to the proxy (maxclients)");
    };
    let user = if req.headers().contains_key(header::AUTHORIZATION) {
        match actions::authenticate_user(&req, peer, &front.hub).await {
            Ok((user, _)) => user,
            Err(response) => return response,
        }
    } else {
        None
    };
    let accept = derive_accept_key(key.as_bytes());
    let upgrade = hyper::upgrade::on(&mut req);
    let bridge_front = front.clone();
    front.tracker.spawn(async move {
        match upgrade.await {
            Ok(upgraded) => bridge(TokioIo::new(upgraded), peer, user, bridge_front).await,
            Err(e) => tracing::debug!(%peer, error = %e, "WebSocket upgrade failed"),
        }
        drop(permit);
    });
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, header::HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, header::HeaderValue::from_static("Upgrade"));
    if let Ok(v) = header::HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    r
}

/// The `Sec-WebSocket-Key` of a valid version 13 upgrade request.
fn websocket_key(req: &Request<Incoming>) -> Option<String> {
    let h = req.headers();
    let has = |name: header::HeaderName, token: &str| {
        h.get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    let version_ok = h.get(header::SEC_WEBSOCKET_VERSION).is_some_and(|v| v.as_bytes() == b"13");
    if !(has(header::UPGRADE, "websocket") && has(header::CONNECTION, "upgrade") && version_ok) {
        return None;
    }
    let key = h.get(header::SEC_WEBSOCKET_KEY)?.to_str().ok()?.trim().to_string();
    (!key.is_empty()).then_some(key)
}

/// A browser's request must come from a page of this proxy (`Origin` matches `Host`) or of an
/// origin listed in `httpallowedorigins` (a reverse proxy's public name, a web app of yours): a
/// page of another site cannot ride on credentials the browser keeps. Clients that send no
/// `Origin` (not browsers) pass.
pub(super) fn allowed_origin(req: &Request<Incoming>, allowed: &[String]) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else { return true };
    let host = req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let origin = origin.to_str().unwrap_or_default().trim_end_matches('/');
    if allowed.iter().any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin)) {
        return true;
    }
    let origin_host = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
    origin_host.is_some_and(|o| !host.is_empty() && o.eq_ignore_ascii_case(host))
}

/// What the inbound half asks the outbound half to send.
enum Control {
    /// A JSON message made by the bridge (an error, a filter answer).
    Text(String),
    /// Close the socket with this code and reason.
    Close(CloseCode, String),
}

/// The event names a socket lets through (`None`: all).
type EventFilter = Arc<Mutex<Option<HashSet<String>>>>;

type Sink<S> = SplitSink<WebSocketStream<S>, WsMessage>;
type Source<S> = SplitStream<WebSocketStream<S>>;

/// Runs one WebSocket connection: the client session and the two directions of the bridge.
async fn bridge<S>(io: S, peer: SocketAddr, user: Option<String>, front: Front)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limit = front.hub.config().limits.max_message;
    let config = WebSocketConfig::default().max_message_size(Some(limit)).max_frame_size(Some(limit));
    let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
    let (proxy_end, bridge_end) = tokio::io::duplex(PIPE_BUFFER);
    let options = ClientOptions { kind: "ws", banner: false, format: Some(OutputFormat::Json), user };
    let session = client::serve_with(proxy_end, peer, front.hub.clone(), front.cancel.clone(), options);
    let (from_session, to_session) = tokio::io::split(bridge_end);
    let (sink, source) = socket.split();
    let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
    let filter = EventFilter::default();
    let inbound = inbound(source, to_session, control_tx, filter.clone(), limit);
    let write_timeout = front.hub.config().client_write_timeout;
    let outbound = outbound(sink, from_session, control_rx, filter, front.cancel.clone(), write_timeout);
    let directions = async move {
        tokio::pin!(inbound, outbound);
        tokio::select! {
            () = &mut inbound => outbound.await,
            () = &mut outbound => {
                // Our close frame is out: give the client a moment to answer it.
                let _ = tokio::time::timeout(CLOSE_WAIT, inbound).await;
            }
        }
    };
    tokio::join!(session, directions);
    tracing::debug!(%peer, "WebSocket closed");
}

/// Socket to session: each text frame becomes one JSON action line.
async fn inbound<S>(
    mut source: Source<S>,
    mut to_session: WriteHalf<tokio::io::DuplexStream>,
    control: mpsc::Sender<Control>,
    filter: EventFilter,
    limit: usize,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(frame) = source.next().await {
        match frame {
            Ok(WsMessage::Text(text)) => match read_action(text.as_str()) {
                Ok(Action::Forward(line)) => {
                    if to_session.write_all(line.as_bytes()).await.is_err() {
                        break;
                    }
                }
                Ok(Action::Filter { names, action_id }) => {
                    let answer = filter_answer(&names, action_id);
                    *filter.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = names;
                    if control.send(Control::Text(answer)).await.is_err() {
                        break;
                    }
                }
                Err(why) => {
                    if control.send(Control::Text(error_json(&why))).await.is_err() {
                        break;
                    }
                }
            },
            Ok(WsMessage::Binary(_)) => {
                let why = "binary frames are not supported: send one JSON action per text frame";
                if control.send(Control::Text(error_json(why))).await.is_err() {
                    break;
                }
            }
            // Pings are answered by tungstenite; a Close is answered too, and the stream ends.
            Ok(_) => {}
            Err(WsError::Capacity(e)) => {
                tracing::info!(error = %e, "WebSocket message over the limit; closing");
                let reason = format!("message too big (limit {limit} bytes)");
                let _ = control.send(Control::Close(CloseCode::Size, reason)).await;
                break;
            }
            Err(e) => {
                tracing::debug!(error = %e, "WebSocket read ended");
                break;
            }
        }
    }
    // The session sees end of input, answers what is pending, and ends.
    let _ = to_session.shutdown().await;
}

/// Session to socket: each JSON line becomes one text frame. A client that takes longer than
/// `write_timeout` (`clientwritetimeout`) to take a write is dropped.
async fn outbound<S>(
    mut sink: Sink<S>,
    mut from_session: ReadHalf<tokio::io::DuplexStream>,
    mut control: mpsc::Receiver<Control>,
    filter: EventFilter,
    cancel: tokio_util::sync::CancellationToken,
    write_timeout: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(PIPE_BUFFER);
    let mut lagged = false;
    let mut control_open = true;
    let close = loop {
        tokio::select! {
            biased;
            item = control.recv(), if control_open => match item {
                Some(Control::Text(text)) => {
                    if !matches!(tokio::time::timeout(write_timeout, sink.send(WsMessage::text(text))).await, Ok(Ok(()))) {
                        return;
                    }
                }
                Some(Control::Close(code, reason)) => break (code, reason),
                // The inbound half is done (the client closed): the session ends next.
                None => control_open = false,
            },
            () = cancel.cancelled() => break (CloseCode::Away, "proxy shutting down".to_string()),
            read = from_session.read_buf(&mut buf) => {
                if !matches!(read, Ok(n) if n > 0) {
                    break if cancel.is_cancelled() {
                        (CloseCode::Away, "proxy shutting down".to_string())
                    } else if lagged {
                        (CloseCode::Policy, "client too slow for the event stream".to_string())
                    } else {
                        (CloseCode::Normal, "session ended".to_string())
                    };
                }
                let mut sent = false;
                while let Some(end) = memchr::memchr(b'\n', &buf) {
                    let mut line = buf.split_to(end + 1);
                    line.truncate(end);
                    // No copy: the frame shares the bytes read from the session.
                    let bytes = line.freeze();
                    let line = Utf8Bytes::try_from(bytes.clone())
                        .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned().into());
                    if line.trim().is_empty() || !passes(&line, &filter) {
                        continue;
                    }
                    lagged |= line.starts_with("{\"Event\":\"ProxyClientLagged\"");
                    if !matches!(tokio::time::timeout(write_timeout, sink.feed(WsMessage::text(line))).await, Ok(Ok(()))) {
                        tracing::info!("WebSocket client stopped reading; disconnecting");
                        return;
                    }
                    sent = true;
                }
                if sent && !matches!(tokio::time::timeout(write_timeout, sink.flush()).await, Ok(Ok(()))) {
                    tracing::info!("WebSocket client stopped reading; disconnecting");
                    return;
                }
                if buf.is_empty() && buf.capacity() > 4 * PIPE_BUFFER {
                    buf = BytesMut::with_capacity(PIPE_BUFFER);
                } else if buf.capacity() - buf.len() < 1024 {
                    buf.reserve(PIPE_BUFFER);
                }
            }
        }
    };
    let (code, reason) = close;
    let frame = CloseFrame { code, reason: reason.into() };
    let _ = tokio::time::timeout(CLOSE_WAIT, sink.send(WsMessage::Close(Some(frame)))).await;
}

/// Whether a JSON line passes the socket's event filter: answers (lines with an `ActionID`)
/// and non-events always do.
fn passes(line: &str, filter: &EventFilter) -> bool {
    let guard = filter.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(names) = guard.as_ref() else { return true };
    let Some(rest) = line.strip_prefix("{\"Event\":\"") else { return true };
    // In JSON text a quote inside a value is escaped, so `,"ActionID":` can only be a key.
    if line.contains(",\"ActionID\":") {
        return true;
    }
    let name = rest.split('"').next().unwrap_or_default();
    names.contains(&name.to_ascii_lowercase())
}

/// What a text frame asks for.
#[derive(Debug)]
enum Action {
    /// One JSON action line (with its `\n`) for the session.
    Forward(String),
    /// Set this socket's event filter.
    Filter { names: Option<HashSet<String>>, action_id: Option<String> },
}

/// Reads one text frame: a JSON object, or the bridge's own `Filter`.
fn read_action(text: &str) -> Result<Action, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON action: {e}"))?;
    let serde_json::Value::Object(object) = value else {
        return Err("invalid JSON action: expected one object per text frame".to_string());
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
    // Re-encoded on one line: a pretty-printed frame must not span lines in the session.
    let mut line = serde_json::Value::Object(object).to_string();
    line.push('\n');
    Ok(Action::Forward(line))
}

/// The answer to a `Filter`.
fn filter_answer(names: &Option<HashSet<String>>, action_id: Option<String>) -> String {
    let mut m = serde_json::Map::new();
    m.insert("Response".into(), "Success".into());
    if let Some(id) = action_id {
        m.insert("ActionID".into(), id.into());
    }
    m.insert("Message".into(), "Event filter set".into());
    let mut list: Vec<&str> = names.iter().flatten().map(String::as_str).collect();
    list.sort_unstable();
    m.insert("Event".into(), if list.is_empty() { "*".to_string() } else { list.join(",") }.into());
    serde_json::Value::Object(m).to_string()
}

/// A JSON error message in the session's layout.
fn error_json(why: &str) -> String {
    serde_json::json!({ "Response": "Error", "Message": why }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(names: &[&str]) -> EventFilter {
        Arc::new(Mutex::new(Some(names.iter().map(|n| n.to_ascii_lowercase()).collect())))
    }

    #[test]
    fn filter_keeps_named_events_and_every_answer() {
        let f = filter(&["Hangup"]);
        assert!(passes(r#"{"Event":"Hangup","Channel":"x"}"#, &f));
        assert!(!passes(r#"{"Event":"Newchannel","Channel":"x"}"#, &f));
        assert!(passes(r#"{"Event":"CoreShowChannel","ActionID":"1"}"#, &f));
        assert!(!passes(r#"{"Event":"Newchannel","Note":"\",\"ActionID\":"}"#, &f));
        assert!(passes(r#"{"Response":"Success"}"#, &f));
        assert!(passes(r#"{"Event":"Newchannel"}"#, &EventFilter::default()));
    }

    #[test]
    fn frames_are_objects_on_one_line() {
        let Ok(Action::Forward(line)) = read_action("{\n \"Action\": \"Ping\",\n \"ActionID\": 7\n}") else {
            panic!("not forwarded");
        };
        assert_eq!(line, "{\"Action\":\"Ping\",\"ActionID\":7}\n");
        assert!(read_action("[1]").unwrap_err().contains("one object"));
        assert!(read_action("{nope").unwrap_err().starts_with("invalid JSON action"));
        let Ok(Action::Filter { names, action_id }) =
            read_action(r#"{"Action":"Filter","Event":"A, b","ActionID":"f"}"#)
        else {
            panic!("not a filter");
        };
        assert_eq!(action_id.as_deref(), Some("f"));
        assert_eq!(filter_answer(&names, None), r#"{"Response":"Success","Message":"Event filter set","Event":"a,b"}"#);
        assert!(matches!(read_action(r#"{"Action":"Filter","Event":"*"}"#), Ok(Action::Filter { names: None, .. })));
        assert!(matches!(read_action(r#"{"Action":"Filter","Operation":"Add","Filter":"x"}"#), Ok(Action::Forward(_))));
    }
}
