//! AJAM-compatible endpoints (Asterisk's AMI over HTTP): `/rawman` (plain AMI text), `/mxml`
//! (XML), and `/arawman`, `/amxml` (the same, each request authenticated with HTTP Basic), plus
//! cookie sessions for the 1.x-style `/`, `/json` and `/xml` when they come without Basic
//! credentials.
//!
//! As in Asterisk (see `25-http-rawman.cap` and `26-http-mxml.cap`): `Action=Login` opens a
//! session named by the `mansession_id` cookie; later requests carry the cookie; events of the
//! session are queued and returned by `Action=WaitEvent`; `Logoff` ends it; a request without a
//! valid session gets `Permission denied` (and a fresh cookie, as Asterisk answers). Every answer
//! has `Cache-Control: no-cache, no-store`, `Pragma: SuppressEvents` and the cookie with
//! `Max-Age` = `httpsessiontimeout`. Events never appear in an answer other than `WaitEvent`'s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use astmanproxy_handlers::{ajam, standard, Message, OutputFormat};
use bytes::{Bytes, BytesMut};
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use super::actions::{
    answered_by_proxy, body, check_credentials, login, run_action, too_many_failures, unauthorized, ActionRequest,
};
use super::front::{plain, Front};
use super::mansession::{new_session_id, ManSession, ManSessionError};
use crate::auth::{digest, Credentials, LoginError, Policy};

/// How an endpoint writes its answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Render {
    /// `/rawman`: AMI text.
    Rawman,
    /// `/mxml`: `<ajax-response>`.
    Mxml,
    /// `/`, `/json`, `/xml`: the format chosen by `?format=`, the path, `Accept` or the config.
    Format(OutputFormat),
}

/// Answers one request of a session endpoint. `auth_required` for `/arawman` and `/amxml`,
/// which take HTTP Digest (as Asterisk does) or Basic on every request.
pub async fn handle(
    mut request: ActionRequest,
    peer: SocketAddr,
    front: &Front,
    render: Option<Render>,
    auth_required: bool,
) -> Response<Full<Bytes>> {
    let hub = &front.hub;
    let render = render.unwrap_or_else(|| Render::Format(request.take_format(hub.config().output_format)));
    let mut action = match request.action() {
        Ok(a) => a,
        Err(response) => return response,
    };
    let name = action.action().unwrap_or_default().trim().to_ascii_lowercase();
    let original_id = action.action_id().map(str::to_owned);
    let mut session = request.session.as_deref().and_then(|id| front.sessions.get(id));
    // A session opened only to answer this one request (HTTP Basic, no cookie, not a Login or a
    // WaitEvent) is closed again after it.
    let mut transient = false;
    // A session opened by this request, whose cookie nobody has yet.
    let mut opened = false;
    let transport_user = if let Some((user, secret)) = &request.basic {
        if let Err(response) = check_credentials(user, secret, peer, hub).await {
            return response;
        }
        Some(user.clone())
    } else if let Some(creds) = &request.digest {
        match check_digest(creds, &request, peer, hub).await {
            Ok(()) => Some(creds.username.clone()),
            Err(response) => return response,
        }
    } else if auth_required {
        return unauthorized_any(false);
    } else {
        None
    };
    if let Some(user) = &transport_user {
        if session.as_ref().and_then(|s| s.user()).as_deref() != Some(user.as_str()) {
            session = front.sessions.open(peer, Some(user.clone()));
            if session.is_none() {
                return too_many_sessions();
            }
            opened = true;
            transient = request.session.is_none() && name != "login" && name != "waitevent";
        }
    }
    let session = match session {
        Some(s) => s,
        // A Login opens a session; on an open proxy (`authrequired = no`) so does any action the
        // proxy answers itself (only for this request, but for WaitEvent).
        None if name == "login" || (!hub.config().auth_required && answered_by_proxy(&action, hub)) => {
            transient = name != "login" && name != "waitevent";
            opened = true;
            match front.sessions.open(peer, None) {
                Some(s) => s,
                None => return too_many_sessions(),
            }
        }
        None if !hub.config().auth_required => {
            // An open proxy answers other actions without keeping a session.
            let messages = match run_action(action, &Policy::open(), hub).await {
                Ok(m) => m,
                Err(status) => return plain(status, "no answer from Asterisk in time"),
            };
            return answer(&messages, render, &new_session_id(), front);
        }
        None => {
            // Nothing is kept for a request without a session: only a cookie is handed out.
            let denied = Message::response_with("Error", original_id.as_deref(), Some("Permission denied"));
            return answer(&[denied], render, &new_session_id(), front);
        }
    };
    // When the HTTP client goes away mid-request, hyper drops this future: a session it opened
    // is closed then instead of waiting for the reaper.
    let mut close_if_dropped = CloseOnDrop(opened.then(|| session.clone()));
    let authenticated = session.user().is_some() || !hub.config().auth_required;
    let messages = if name == "waitevent" {
        if !authenticated {
            vec![Message::response_with("Error", original_id.as_deref(), Some("Permission denied"))]
        } else {
            wait_event(&session, &action, original_id.as_deref(), front).await
        }
    } else if action.get("ProxyAction").is_some_and(|p| p.trim().eq_ignore_ascii_case("SetOutputFormat")) {
        let text = "SetOutputFormat does not apply to HTTP: use ?format=, the path or the Accept header";
        vec![Message::response_with("Error", original_id.as_deref(), Some(text))]
    } else {
        action.remove_all("format");
        let limit = hub.config().action_timeout + Duration::from_secs(1);
        match session.request(action, limit).await {
            Ok(m) => m,
            Err(ManSessionError::Timeout) => {
                return plain(StatusCode::GATEWAY_TIMEOUT, "no answer from Asterisk in time")
            }
            Err(ManSessionError::Closed) => {
                vec![Message::response_with("Error", original_id.as_deref(), Some("HTTP session closed"))]
            }
        }
    };
    close_if_dropped.0 = None;
    if name == "logoff" || transient {
        session.close();
    }
    answer(&messages, render, session.id(), front)
}

/// Closes the session it holds when dropped.
struct CloseOnDrop(Option<Arc<ManSession>>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Some(session) = self.0.take() {
            session.close();
        }
    }
}

/// `WaitEvent`: the queued events, or the first to come within `Timeout` seconds (at most
/// `httpsessiontimeout`), framed as Asterisk frames them.
async fn wait_event(session: &Arc<ManSession>, action: &Message, id: Option<&str>, front: &Front) -> Vec<Message> {
    let max = front.hub.config().http.session_timeout;
    let timeout = action
        .get("Timeout")
        .and_then(|t| t.trim().parse::<u64>().ok())
        .map_or(max, |s| Duration::from_secs(s).min(max));
    let events = session.wait_events(timeout).await;
    let mut out = Vec::with_capacity(events.len() + 2);
    out.push(Message::response_with("Success", id, Some("Waiting for Event completed.")));
    out.extend(events);
    let mut complete = Message::new().with("Event", "WaitEventComplete");
    if let Some(id) = id {
        complete.push("ActionID", id);
    }
    out.push(complete);
    out
}

/// Checks HTTP Digest credentials like any login ([`crate::auth::login`]).
async fn check_digest(
    creds: &digest::DigestCredentials,
    request: &ActionRequest,
    peer: SocketAddr,
    hub: &crate::hub::Hub,
) -> Result<(), Response<Full<Bytes>>> {
    let credentials = Credentials::Digest { header: creds, method: &request.method, uri: &request.uri };
    match login(&creds.username, credentials, peer, hub).await {
        Ok(_) => Ok(()),
        Err(LoginError::LockedOut(lockout)) => Err(too_many_failures(lockout)),
        // An old nonce is no failed login: the client retries with the new one.
        Err(LoginError::StaleNonce) => Err(unauthorized_any(true)),
        Err(_) => Err(unauthorized_any(false)),
    }
}

/// 401 offering HTTP Digest (with a fresh nonce, `stale` when the last one expired) and Basic.
fn unauthorized_any(stale: bool) -> Response<Full<Bytes>> {
    let mut r = unauthorized();
    if let Ok(value) = HeaderValue::from_str(&digest::challenge(stale)) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        r.headers_mut().append(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"asterisk\""));
    }
    r
}

fn too_many_sessions() -> Response<Full<Bytes>> {
    plain(StatusCode::SERVICE_UNAVAILABLE, "too many HTTP sessions (httpmaxsessions)")
}

/// The answer with Asterisk's headers and the session cookie.
fn answer(messages: &[Message], render: Render, session_id: &str, front: &Front) -> Response<Full<Bytes>> {
    let mut response = match render {
        Render::Rawman | Render::Mxml => {
            let mut out = BytesMut::new();
            let content_type = if render == Render::Mxml {
                ajam::encode_mxml(messages, &mut out);
                "text/xml"
            } else {
                for m in messages {
                    standard::encode(m, &mut out);
                }
                "text/plain"
            };
            let mut r = Response::new(Full::new(out.freeze()));
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-store"));
            r
        }
        Render::Format(format) => body(messages, format),
    };
    let max_age = front.hub.config().http.session_timeout.as_secs();
    let cookie = format!("mansession_id=\"{session_id}\"; Version=1; Max-Age={max_age}; HttpOnly; SameSite=Strict");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("SuppressEvents"));
    response
}
