//! 1.x-style HTTP actions: one AMI action per request, as astmanproxy 1.x's http input handler
//! did. `GET /?Action=Ping&ActionID=1` or `POST /` with a form body. The complete answer (the
//! response, a list up to its Complete event, an async Originate up to its `OriginateResponse`:
//! the upstream session ends the route) is the body, in the format chosen by `?format=`,
//! the path (`/json` JSON, `/xml` XML), the `Accept` header (`application/json`, `text/xml`) or
//! `outputformat`. JSON bodies are one array of objects. Users authenticate with HTTP Basic
//! against the users file; their permissions apply as on TCP. AMI errors come back as 200 with
//! `Response: Error` in the body, as Asterisk's own HTTP manager does. Broadcast events never
//! appear in an answer.

// The error of these functions is the HTTP answer itself, built once per request.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;
use std::sync::Arc;

use astmanproxy_handlers::{Message, OutputFormat};
use base64::Engine;
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response, StatusCode};

use super::front::plain;
use crate::auth::{self, Credentials, Lockout, LoginError, Policy};
use crate::cmd::Command;
use crate::hub::Hub;
use crate::route::{self, Call, CallError};

/// Largest request body accepted by default (`httpmaxbody`).
pub const MAX_BODY: usize = 64 * 1024;

/// What a handler needs of a request, read once: its parameters (query string, then a POST form
/// body), and the headers that pick the format, the session and the user.
pub struct ActionRequest {
    /// The path.
    pub path: String,
    /// `key=value` parameters in order.
    pub pairs: Vec<(String, String)>,
    /// The `Accept` header.
    pub accept: String,
    /// The `mansession_id` cookie.
    pub session: Option<String>,
    /// HTTP Basic credentials.
    pub basic: Option<(String, String)>,
    /// HTTP Digest credentials.
    pub digest: Option<auth::digest::DigestCredentials>,
    /// The request method (for Digest).
    pub method: String,
    /// The path and query as sent (for Digest).
    pub uri: String,
}

impl ActionRequest {
    /// Reads the parameters and headers of `req`, the body capped at `httpmaxbody`.
    ///
    /// # Errors
    /// 413 for a body over the cap, 400 for one that cannot be read.
    pub async fn read(req: Request<Incoming>, max_body: usize) -> Result<ActionRequest, Response<Full<Bytes>>> {
        let headers = req.headers();
        let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let session = headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(session_cookie);
        let basic = basic_credentials(headers);
        let digest = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(auth::digest::parse);
        let method = req.method().as_str().to_string();
        let uri = match req.extensions().get::<super::front::OriginalUri>() {
            Some(original) => original.0.clone(),
            None => req.uri().path_and_query().map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string()),
        };
        let path = req.uri().path().to_string();
        let mut pairs: Vec<(String, String)> =
            form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes()).into_owned().collect();
        if req.method() == Method::POST {
            let body = match Limited::new(req.into_body(), max_body).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
                    return Err(plain(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        &format!("body too large (limit {max_body} bytes, httpmaxbody)"),
                    ))
                }
                Err(_) => return Err(plain(StatusCode::BAD_REQUEST, "request body could not be read")),
            };
            pairs.extend(form_urlencoded::parse(&body).into_owned());
        }
        Ok(ActionRequest { path, pairs, accept, session, basic, digest, method, uri })
    }

    /// Takes out the `format` parameter and picks the answer's format: `?format=`, else the path
    /// (`/json`, `/xml`), else `Accept`, else `default`.
    pub fn take_format(&mut self, default: OutputFormat) -> OutputFormat {
        let path_format = match self.path.as_str() {
            "/json" => Some(OutputFormat::Json),
            "/xml" => Some(OutputFormat::Xml),
            _ => None,
        };
        self.pairs
            .iter()
            .position(|(k, _)| k.eq_ignore_ascii_case("format"))
            .map(|i| self.pairs.remove(i).1)
            .and_then(|f| f.parse::<OutputFormat>().ok())
            .or(path_format)
            .or_else(|| {
                if self.accept.contains("json") {
                    Some(OutputFormat::Json)
                } else if self.accept.contains("xml") {
                    Some(OutputFormat::Xml)
                } else {
                    None
                }
            })
            .unwrap_or(default)
    }

    /// The action the parameters make, or 400 when there is neither `Action` nor `ProxyAction`.
    ///
    /// # Errors
    /// 400 without an `Action` (or `ProxyAction`) parameter.
    pub fn action(&self) -> Result<Message, Response<Full<Bytes>>> {
        let action = Message::from_pairs(self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let named = |key: &str| action.get(key).is_some_and(|a| !a.trim().is_empty());
        if !named("Action") && !named("ProxyAction") {
            return Err(plain(StatusCode::BAD_REQUEST, "missing Action parameter"));
        }
        Ok(action)
    }
}

/// The value of a `mansession_id` cookie in a `Cookie:` header (quoted or not).
fn session_cookie(header: &str) -> Option<String> {
    header.split(';').find_map(|part| {
        let (name, value) = part.trim().split_once('=')?;
        (name.trim() == "mansession_id").then(|| value.trim().trim_matches('"').to_string())
    })
}

/// HTTP Basic credentials of a request.
fn basic_credentials(headers: &hyper::HeaderMap) -> Option<(String, String)> {
    let raw = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // The scheme name is case-insensitive (RFC 9110).
        .and_then(|v| v.get(..6).filter(|s| s.eq_ignore_ascii_case("basic ")).map(|_| &v[6..]))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok())?;
    let (name, secret) = raw.split_once(':')?;
    Some((name.to_string(), secret.to_string()))
}

/// Answers one 1.x-style request (`/`, `/json`, `/xml`) carrying HTTP Basic credentials (or to
/// an open proxy): one action, no session.
pub async fn handle(mut request: ActionRequest, peer: SocketAddr, hub: &Hub) -> Response<Full<Bytes>> {
    let policy = match &request.basic {
        Some((name, secret)) => match check_credentials(name, secret, peer, hub).await {
            Ok(p) => p,
            Err(response) => return response,
        },
        None if hub.config().auth_required => return unauthorized(),
        None => Policy::open(),
    };
    let format = request.take_format(hub.config().output_format);
    let action = match request.action() {
        Ok(a) => a,
        Err(response) => return response,
    };
    let answer = match route_action(action, &policy, Some(peer), hub).await {
        Ok(messages) => messages,
        Err(status) => return plain(status, "no answer from Asterisk in time"),
    };
    body(&answer, format)
}

/// 401 asking for HTTP Basic.
pub fn unauthorized() -> Response<Full<Bytes>> {
    let mut r = plain(StatusCode::UNAUTHORIZED, "authentication required");
    r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Basic realm=\"astmanproxy\""));
    r
}

/// The kind label of HTTP logins in `astmanproxy_auth_failures_total`.
pub const HTTP: crate::metrics::KindLabels = crate::metrics::KindLabels { kind: "http" };

/// 429 for a login refused by a failed-login limit, naming it.
pub fn too_many_failures(lockout: Lockout) -> Response<Full<Bytes>> {
    plain(StatusCode::TOO_MANY_REQUESTS, lockout.http_text())
}

/// One HTTP login ([`auth::login`]: the same rules as AMI logins).
///
/// # Errors
/// Why it was refused.
pub async fn login(
    name: &str,
    credentials: Credentials<'_>,
    peer: SocketAddr,
    hub: &Hub,
) -> Result<Arc<Policy>, LoginError> {
    auth::login(&hub.auth_gate(&HTTP), name, peer.ip(), credentials).await.map(|grant| grant.policy)
}

/// Checks a user name and secret (HTTP Basic).
///
/// # Errors
/// 429 while locked out, 401 for wrong credentials.
pub async fn check_credentials(
    name: &str,
    secret: &str,
    peer: SocketAddr,
    hub: &Hub,
) -> Result<Arc<Policy>, Response<Full<Bytes>>> {
    login(name, Credentials::Basic(secret), peer, hub).await.map_err(|error| match error {
        LoginError::LockedOut(lockout) => too_many_failures(lockout),
        _ => unauthorized(),
    })
}

/// HTTP Basic on `req` checked as [`check_credentials`] does, with the name of the user (`None`
/// on an open proxy without credentials).
///
/// # Errors
/// 401 without credentials (unless the proxy is open) or with wrong ones, 429 while blocked.
pub async fn authenticate_user(
    req: &Request<Incoming>,
    peer: SocketAddr,
    hub: &Hub,
) -> Result<(Option<String>, Arc<Policy>), Response<Full<Bytes>>> {
    match basic_credentials(req.headers()) {
        Some((name, secret)) => check_credentials(&name, &secret, peer, hub).await.map(|p| (Some(name), p)),
        None if hub.config().auth_required => Err(unauthorized()),
        None => Ok((None, Policy::open())),
    }
}

/// Whether a client session answers `action` itself ([`Command::parse`]: ProxyActions, Login,
/// Logoff, Challenge, Events, WaitEvent, the extensions' actions): such actions never go to
/// Asterisk, so over HTTP they run on a session.
pub fn answered_by_proxy(action: &Message, hub: &Hub) -> bool {
    Command::parse(action, hub.extensions()).is_some_and(|c| c.answered_by_http_session())
}

/// Routes one action and collects its complete answer, as [`route_action`] does, without a
/// per-address limit (AJAM on an open proxy).
///
/// # Errors
/// As [`route_action`].
pub async fn run_action(action: Message, policy: &Policy, hub: &Hub) -> Result<Vec<Message>, StatusCode> {
    route_action(action, policy, None, hub).await
}

/// Routes one action (the routing rule of every transport, [`route::forward`]; the
/// `maxpendingactions` of `peer`'s address when given) and collects its complete answer: what
/// the upstream session routes until it ends the route ([`Call`]). Actions of the proxy's own
/// session ([`answered_by_proxy`]) are refused, never forwarded: a `Login` reaching Asterisk on
/// the proxy's connection would end it.
///
/// # Errors
/// 504 when no answer came within `actiontimeout` + `originatetimeout` (the session ends every
/// route before), 502 when the answer exceeded `clientmaxpendingbytes`.
pub async fn route_action(
    action: Message,
    policy: &Policy,
    peer: Option<SocketAddr>,
    hub: &Hub,
) -> Result<Vec<Message>, StatusCode> {
    let original_id = action.get_value("ActionID");
    if answered_by_proxy(&action, hub) {
        let text = "This action is answered by the proxy on a session: log in first (cookie) or use /rawman";
        return Ok(vec![Message::response_with_id("Error", original_id.as_ref(), Some(text))]);
    }
    let cfg = hub.config();
    let call = Call::new(cfg.client_max_pending_bytes);
    let mut slot = None;
    let take_slot = |max| {
        if let Some(peer) = peer {
            slot = hub.http_slots().take(peer.ip(), max);
            if slot.is_none() {
                return false;
            }
        }
        call.sink().try_begin_action(usize::MAX)
    };
    let routed = route::forward(
        |server| hub.server(server),
        action,
        original_id,
        policy,
        call.sink(),
        cfg.max_pending_actions,
        take_slot,
    );
    if let Err(refused) = routed {
        return Ok(vec![refused.answer()]);
    }
    let limit = cfg.action_timeout + cfg.originate_timeout + route::ANSWER_GRACE;
    let answer = tokio::time::timeout(limit, call.answer()).await.map_err(|_| StatusCode::GATEWAY_TIMEOUT)?;
    drop(slot);
    match answer {
        Ok(answer) => Ok(answer.messages),
        Err(CallError::TooLarge(_)) => Err(StatusCode::BAD_GATEWAY),
        Err(_) => Err(StatusCode::GATEWAY_TIMEOUT),
    }
}

/// The body of an answer in `format`.
pub fn body(messages: &[Message], format: OutputFormat) -> Response<Full<Bytes>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_scheme_in_any_case_and_cookies_quoted_or_not() {
        for scheme in ["Basic", "basic", "BASIC"] {
            let mut headers = hyper::HeaderMap::new();
            headers.insert(header::AUTHORIZATION, format!("{scheme} YWxpY2U6YWxpY2Vwdw==").parse().unwrap());
            assert_eq!(basic_credentials(&headers), Some(("alice".into(), "alicepw".into())), "{scheme}");
        }
        let mut headers = hyper::HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Bearer x".parse().unwrap());
        assert_eq!(basic_credentials(&headers), None);
        assert_eq!(session_cookie("a=b; mansession_id=\"abc\""), Some("abc".into()));
        assert_eq!(session_cookie("mansession_id=abc"), Some("abc".into()));
        assert_eq!(session_cookie("other=1"), None);
    }
}
