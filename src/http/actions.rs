//! 1.x-style HTTP actions: one AMI action per request, as astmanproxy 1.x's http input handler
//! did. `GET /?Action=Ping&ActionID=1` or `POST /` with a form body. The complete answer (the
//! response, or a list up to its Complete event) is the body, in the format chosen by `?format=`,
//! the path (`/json` JSON, `/xml` XML), the `Accept` header (`application/json`, `text/xml`) or
//! `outputformat`. JSON bodies are one array of objects. Users authenticate with HTTP Basic
//! against the users file; their permissions apply as on TCP. AMI errors come back as 200 with
//! `Response: Error` in the body, as Asterisk's own HTTP manager does. Events never appear in an
//! answer.

use std::net::SocketAddr;

use astmanproxy_handlers::{Message, OutputFormat};
use base64::Engine;
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response, StatusCode};
use tokio_util::sync::CancellationToken;

use super::plain;
use crate::client::sink::{self, ToClient};
use crate::hub::Hub;
use crate::policy::Policy;
use crate::upstream::{reject, Request as UpstreamRequest};

/// Largest request body accepted (a form with one action).
pub const MAX_BODY: usize = 64 * 1024;

/// Answers one 1.x-style request (`/`, `/json`, `/xml`).
pub async fn handle(req: Request<Incoming>, peer: SocketAddr, hub: &Hub) -> Response<Full<Bytes>> {
    let path_format = match req.uri().path() {
        "/json" => Some(OutputFormat::Json),
        "/xml" => Some(OutputFormat::Xml),
        _ => None,
    };
    let policy = match authenticate(&req, peer, hub).await {
        Ok(p) => p,
        Err(response) => return response,
    };
    let mut pairs: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes()).into_owned().collect();
    let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    if req.method() == Method::POST {
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return plain(StatusCode::PAYLOAD_TOO_LARGE, &format!("body too large (limit {MAX_BODY} bytes)")),
        };
        pairs.extend(form_urlencoded::parse(&body).into_owned());
    }
    let format = pairs
        .iter()
        .position(|(k, _)| k.eq_ignore_ascii_case("format"))
        .map(|i| pairs.remove(i).1)
        .and_then(|f| f.parse::<OutputFormat>().ok())
        .or(path_format)
        .or_else(|| {
            if accept.contains("json") {
                Some(OutputFormat::Json)
            } else if accept.contains("xml") {
                Some(OutputFormat::Xml)
            } else {
                None
            }
        })
        .unwrap_or(hub.config().output_format);
    let action = Message::from_pairs(pairs);
    if action.action().is_none_or(|a| a.trim().is_empty()) {
        return plain(StatusCode::BAD_REQUEST, "missing Action parameter");
    }
    let answer = match run_action(action, &policy, hub).await {
        Ok(messages) => messages,
        Err(status) => return plain(status, "no answer from Asterisk in time"),
    };
    body(&answer, format)
}

/// HTTP Basic against the users file (or an open proxy).
pub async fn authenticate(
    req: &Request<Incoming>,
    peer: SocketAddr,
    hub: &Hub,
) -> Result<std::sync::Arc<Policy>, Response<Full<Bytes>>> {
    authenticate_user(req, peer, hub).await.map(|(_, policy)| policy)
}

/// [`authenticate`], with the name of the user who authenticated (`None` on an open proxy
/// without credentials).
pub async fn authenticate_user(
    req: &Request<Incoming>,
    peer: SocketAddr,
    hub: &Hub,
) -> Result<(Option<String>, std::sync::Arc<Policy>), Response<Full<Bytes>>> {
    let unauthorized = || {
        let mut r = plain(StatusCode::UNAUTHORIZED, "authentication required");
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Basic realm=\"astmanproxy\""));
        r
    };
    let credentials = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok());
    let Some((name, secret)) = credentials.as_deref().and_then(|c| c.split_once(':')) else {
        return if hub.config().auth_required { Err(unauthorized()) } else { Ok((None, Policy::open())) };
    };
    let ip = peer.ip();
    if hub.auth_limiter().is_blocked(ip) {
        return Err(plain(StatusCode::TOO_MANY_REQUESTS, "too many failed logins, try again later"));
    }
    let users = hub.users();
    let ok = match users.get(name) {
        Some(user) if user.address_allowed(ip) => {
            let (user, secret) = (user.clone(), secret.to_string());
            tokio::task::spawn_blocking(move || user.check_secret(&secret)).await.unwrap_or(false)
        }
        _ => false,
    };
    if !ok {
        hub.auth_limiter().record_failure(ip);
        hub.metrics().auth_failures.get_or_create(&crate::metrics::KindLabels { kind: "http" }).inc();
        tokio::time::sleep(hub.config().auth_fail_delay).await;
        return Err(unauthorized());
    }
    hub.auth_limiter().record_success(ip);
    Ok((Some(name.to_string()), users.get(name).map_or_else(Policy::open, Policy::for_user)))
}

/// Routes one action and collects its complete answer (response, or list to its Complete event).
pub async fn run_action(mut action: Message, policy: &Policy, hub: &Hub) -> Result<Vec<Message>, StatusCode> {
    let original_id = action.action_id().map(str::to_owned);
    let wanted = action.get("Server").map(str::to_owned).or_else(|| policy.default_server().map(str::to_owned));
    let Some(server) = hub.server(wanted.as_deref()) else {
        let text = wanted.map_or("No Asterisk server is configured".to_string(), |n| format!("Unknown server {n}"));
        return Ok(vec![Message::response_with("Error", original_id.as_deref(), Some(&text))]);
    };
    if policy.check_action(&mut action, server.name()).is_err() {
        let mut m = Message::response_with("Error", original_id.as_deref(), Some("Permission denied"));
        m.push("Server", server.name());
        return Ok(vec![m]);
    }
    let (reply, mut rx) =
        sink::channel(hub.next_client_id(), hub.config().client_max_pending_bytes, CancellationToken::new());
    reply.try_begin_action(usize::MAX);
    if let Err(rejected) = server.submit(UpstreamRequest { action, reply: reply.clone(), original_id }) {
        reject(rejected.request, server.name(), &rejected.reason);
    }
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + hub.config().action_timeout;
    loop {
        let item = tokio::time::timeout_at(deadline, rx.recv()).await.map_err(|_| StatusCode::GATEWAY_TIMEOUT)?;
        let Some(ToClient::Message(m)) = item else { continue };
        let is_list_start = m.get("EventList").is_some_and(|v| v.eq_ignore_ascii_case("start"));
        let is_complete = m.get("EventList").is_some_and(|v| v.eq_ignore_ascii_case("Complete"));
        let is_response = m.response().is_some() && m.event().is_none();
        out.push(m);
        // Done at a response (that does not start a list), or at the list's Complete event.
        if (is_response && !is_list_start) || is_complete {
            return Ok(out);
        }
    }
}

/// The body of an answer in `format`.
fn body(messages: &[Message], format: OutputFormat) -> Response<Full<Bytes>> {
    let mut out = BytesMut::new();
    let content_type = match format {
        OutputFormat::Json => {
            let values: Vec<serde_json::Value> = messages.iter().map(astmanproxy_handlers::json::to_value).collect();
            out.extend_from_slice(serde_json::to_string(&values).unwrap_or_default().as_bytes());
            out.extend_from_slice(b"\n");
            "application/json"
        }
        other => {
            for m in messages {
                other.encode(m, &mut out);
            }
            if other == OutputFormat::Xml {
                "text/xml"
            } else {
                "text/plain"
            }
        }
    };
    let mut r = Response::new(Full::new(out.freeze()));
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    r.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-cache, no-store"));
    r
}
