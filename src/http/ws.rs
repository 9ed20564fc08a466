//! `/ws`: a WebSocket carrying JSON actions in and JSON answers and events out.
//!
//! The upgrade is answered by hyper (`hyper::upgrade::on`); the socket is then framed by
//! tokio-tungstenite and served as an ordinary client session ([`crate::client::serve_with`],
//! kind `ws`, JSON output) over the socket's own transport (`transport`: frames in and out,
//! [`Message`](astmanproxy_handlers::Message)s to and from the session, no byte pipe). A
//! WebSocket client so gets exactly what a TCP client gets: its own answers only, its user's
//! permissions and event classes, `Events` masks, the writer's backpressure, write timeout and
//! lag policy.
//!
//! - Authentication: HTTP Basic on the upgrade request (a wrong secret gets `401` and no
//!   upgrade), or, without Basic, a first `{"Action":"Login",...}` message; until then the
//!   session answers `Permission denied` and sends no event.
//! - In: each text frame is one JSON action object, decoded once into the session's action. Binary
//!   frames and text that is not a JSON object get a JSON error message; the connection goes on.
//!   A frame or message over `maxmessagesize` closes the socket with code 1009.
//! - Out: each answer and each event is one text frame (an event's JSON is the event buffer's,
//!   encoded once for all sockets).
//! - `{"Action":"Filter","Event":"Newchannel,Hangup"}` (an `Event` header and no `Operation`)
//!   keeps only those events (by name, case-insensitive) on this socket; `"Event":""` or `"*"`
//!   lets all through again. Answers to actions are never filtered. It is answered here.
//! - Close: when the session ends (Logoff, failed Login, lag policy, `clientwritetimeout`) the
//!   socket is closed (1000, or 1008 after `ProxyClientLagged`); when the socket closes the
//!   session ends; at shutdown sockets are closed with 1001.

use std::net::SocketAddr;

use astmanproxy_handlers::OutputFormat;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use super::actions;
use super::front::{plain, Front};
use crate::client::{self, ClientOptions};

mod transport;

pub use transport::CLOSE_WAIT;

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

/// Runs one WebSocket connection: a client session over the socket's own transport.
async fn bridge<S>(io: S, peer: SocketAddr, user: Option<String>, front: Front)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limit = front.hub.config().limits.max_message;
    let config = WebSocketConfig::default().max_message_size(Some(limit)).max_frame_size(Some(limit));
    let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
    let (input, output) = transport::split(socket, limit, front.cancel.clone());
    let options =
        ClientOptions { kind: "ws", banner: false, format: Some(OutputFormat::Json), user, mark_answers: false };
    client::serve_with(input, output, peer, front.hub.clone(), front.cancel.clone(), options).await;
    tracing::debug!(%peer, "WebSocket closed");
}
