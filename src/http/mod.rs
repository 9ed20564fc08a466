//! The HTTP front on hyper (HTTP/1.1 keep-alive, Content-Length and chunked bodies, capped
//! request bodies), served on `httplistenport` and, when the first bytes of a connection on the
//! AMI port are an HTTP request, there too.
//!
//! Routes:
//! - `/`, `/json`, `/xml` with an `Action` parameter: one action per request ([`actions`]);
//! - `/rawman`, `/mxml`, `/arawman`, `/amxml`: AJAM-compatible cookie sessions ([`ajam`]);
//! - `/ws`: a WebSocket carrying JSON actions and events ([`ws`]);
//! - `/` without an action: the live events page ([`page`]).
//!
//! HTTP-level problems get their status codes (400, 401, 403, 404, 405, 413, 502, 504) and a short
//! body. Actions from a page of another site (an `Origin` other than the proxy's, or a
//! `Sec-Fetch-Site` other than `same-origin` or `none`) get 403: the browser would have added
//! the user's cookie or Basic credentials.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use actions::ActionRequest;
use ajam::Render;

pub mod actions;
mod front;

pub use front::{plain, Front, OriginalUri};
pub mod ajam;
pub mod detect;
/// HTTP Digest lives with the other logins in `auth`.
pub use crate::auth::digest;
pub mod mansession;
pub mod page;
pub use astmanproxy_net::stall;
pub mod ws;

/// How long a client may take to send its request headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves HTTP clients on their own listener (`httplistenport`) until the front's token.
pub async fn serve(listener: TcpListener, front: Front) {
    let (cancel, tracker) = (front.cancel.clone(), front.tracker.clone());
    let write_timeout = front.hub.config().client_write_timeout;
    accept_loop(listener, cancel, tracker, write_timeout, move |req, peer| {
        let front = front.clone();
        async move { route(req, peer, &front).await }
    })
    .await;
}

/// Serves one already-accepted connection (plain or TLS) whose first bytes are an HTTP request:
/// the AMI port's protocol detection hands such connections here.
pub async fn serve_connection<I>(io: I, peer: SocketAddr, front: Front)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (cancel, write_timeout) = (front.cancel.clone(), front.hub.config().client_write_timeout);
    serve_io(io, peer, cancel, write_timeout, move |req, peer| {
        let front = front.clone();
        async move { route(req, peer, &front).await }
    })
    .await;
}

/// Accepts HTTP/1.1 connections until `cancel` and answers each request with `handler`; shared
/// by this front and the admin listener. Slow request headers time out after
/// [`HEADER_READ_TIMEOUT`], answers a client does not read after `write_timeout`; on cancel,
/// connections finish their request in flight and close.
pub async fn accept_loop<H, F>(
    listener: TcpListener,
    cancel: CancellationToken,
    tracker: TaskTracker,
    write_timeout: Duration,
    handler: H,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, peer)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        tracker.spawn(serve_io(stream, peer, cancel.clone(), write_timeout, handler.clone()));
    }
}

/// Serves HTTP/1.1 (with upgrades, for WebSocket) on one connection until it closes or `cancel`.
/// hyper has no write timeout: a client that stops reading its answers is cut off after
/// `write_timeout` (`clientwritetimeout`) instead of holding its connection (and a `maxclients`
/// place) forever.
async fn serve_io<I, H, F>(io: I, peer: SocketAddr, cancel: CancellationToken, write_timeout: Duration, handler: H)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let response = handler(req, peer);
        async move { Ok::<_, Infallible>(response.await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Title-case header names (`Set-Cookie`), as Asterisk writes them: some AJAM clients match
    // them case-sensitively.
    builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).title_case_headers(true);
    let io = stall::StallLimit::new(io, write_timeout);
    let conn = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        () = cancel.cancelled() => conn.as_mut().graceful_shutdown(),
    }
}

/// Takes `httpprefix` off the request's path (`/asterisk/rawman` -> `/rawman`); `None` when the
/// path is not under the prefix.
fn strip_prefix(req: &mut Request<Incoming>, prefix: &str) -> Option<()> {
    if prefix.is_empty() {
        return Some(());
    }
    let original = req.uri().path_and_query().map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
    let rest = req.uri().path().strip_prefix('/')?.strip_prefix(prefix)?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    let path = if rest.is_empty() { "/" } else { rest };
    let new = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    *req.uri_mut() = new.parse().ok()?;
    req.extensions_mut().insert(OriginalUri(original));
    Some(())
}

/// Picks the handler of a request by its path.
async fn route(mut req: Request<Incoming>, peer: SocketAddr, front: &Front) -> Response<Full<Bytes>> {
    if strip_prefix(&mut req, &front.hub.config().http.prefix).is_none() {
        return plain(StatusCode::NOT_FOUND, "not found (the HTTP front is under httpprefix)");
    }
    let path = req.uri().path().to_string();
    let render = match path.as_str() {
        "/ws" => return ws::handle(req, peer, front).await,
        // HEAD like GET (hyper sends no body): monitoring probes and link checkers use it.
        "/" if matches!(*req.method(), Method::GET | Method::HEAD) && page::wants_page(req.uri().query()) => {
            return page::handle()
        }
        "/rawman" | "/arawman" => Some(Render::Rawman),
        "/mxml" | "/amxml" => Some(Render::Mxml),
        "/" | "/json" | "/xml" => None,
        _ => return plain(StatusCode::NOT_FOUND, "not found"),
    };
    if req.method() == Method::HEAD {
        // Probes and link checkers: the endpoint's headers, and never an action run (HEAD is
        // safe by definition; an `?Action=Originate` link must not place calls).
        return head(render, &path);
    }
    if !matches!(*req.method(), Method::GET | Method::POST) {
        return method_not_allowed();
    }
    let allowed = &front.hub.config().http.allowed_origins;
    let listed =
        req.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok()).is_some_and(|o| {
            allowed.iter().any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(o.trim_end_matches('/')))
        });
    let other_site = !listed
        && req.headers().get("sec-fetch-site").is_some_and(|v| !matches!(v.as_bytes(), b"same-origin" | b"none"));
    if !ws::allowed_origin(&req, allowed) || other_site {
        // A page of another site making the browser send an action: the browser would add the
        // session cookie or the Basic credentials it keeps (cross-site request forgery).
        return plain(StatusCode::FORBIDDEN, "cross-origin request refused");
    }
    let request = match ActionRequest::read(req, front.hub.config().http.max_body).await {
        Ok(r) => r,
        Err(response) => return response,
    };
    match render {
        Some(render) => ajam::handle(request, peer, front, Some(render), path.starts_with("/a")).await,
        // The 1.x style: one action per request with Basic (or on an open proxy). With a session
        // cookie, to log in, or for an action the proxy answers itself (ProxyActions,
        // BeaconShowServer, ...): an AJAM session (with Basic, one opened for this request only),
        // answered in the chosen format.
        None if request.session.is_some() || is_login(&request) || answered_by_proxy(&request, &front.hub) => {
            ajam::handle(request, peer, front, None, false).await
        }
        None => actions::handle(request, peer, &front.hub).await,
    }
}

fn is_login(request: &ActionRequest) -> bool {
    request.pairs.iter().any(|(k, v)| k.eq_ignore_ascii_case("action") && v.trim().eq_ignore_ascii_case("login"))
}

fn answered_by_proxy(request: &ActionRequest, hub: &crate::hub::Hub) -> bool {
    request.action().is_ok_and(|a| actions::answered_by_proxy(&a, hub))
}

/// Methods of the action endpoints (the `Allow` header of a 405).
const ALLOW: &str = "GET, POST, HEAD";

fn method_not_allowed() -> Response<Full<Bytes>> {
    let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed: use GET or POST");
    r.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static(ALLOW));
    r
}

/// The answer to HEAD on an action endpoint: its content type, no body, no action.
fn head(render: Option<Render>, path: &str) -> Response<Full<Bytes>> {
    let content_type = match (render, path) {
        (Some(Render::Mxml), _) | (None, "/xml") => "text/xml",
        (None, "/json") => "application/json",
        _ => "text/plain",
    };
    let mut r = Response::new(Full::new(Bytes::new()));
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    r.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static(ALLOW));
    r.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-cache, no-store"));
    r
}
