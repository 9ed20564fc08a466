//! The collector's routes and their answers (all `application/json`):
//!
//! - `POST /servers` with a `Server` body: 201 with a `ServerToken` (new server id and token);
//! - `PUT /servers/{id}?tokenId=...` with a `Server` body: 200 with a fresh `Token`, 401 when
//!   the token rules refuse it, 404 for an unknown server;
//! - `GET /stats?days=N`: the aggregates of [`super::stats`].
//!
//! Errors are `{"error": "..."}`: 400 bad body or query, 404 unknown path or server, 405 wrong
//! method (with `Allow`), 413 body too large, 429 over a rate limit (with `Retry-After`), 500
//! database trouble (details only in the log).

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;

use super::db::{StoredReport, Updated};
use super::rate::{retry_after_secs, Limiter};
use super::tokens::{self, Decision};
use super::{validate, Collector, CollectorError};
use astmanproxy_beacon_wire::wire::{ServerReport, ServerToken, Token};

/// An answer.
pub type Answer = Response<Full<Bytes>>;

/// The `Error` body.
#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

/// A JSON answer with `status`.
fn json<T: Serialize>(status: StatusCode, body: &T) -> Answer {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| br#"{"error":"internal error"}"#.to_vec());
    json_bytes(status, Bytes::from(bytes))
}

/// An answer of already serialized JSON.
fn json_bytes(status: StatusCode, body: Bytes) -> Answer {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A JSON error answer.
pub fn error(status: StatusCode, message: &str) -> Answer {
    json(status, &ErrorBody { error: message })
}

fn method_not_allowed(allow: &'static str) -> Answer {
    let mut r = error(StatusCode::METHOD_NOT_ALLOWED, &format!("method not allowed: use {allow}"));
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

fn internal(e: &CollectorError) -> Answer {
    tracing::error!(error = %e, "beacon collector");
    error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

/// Counts the request against `limiter`: `Some(429 answer)` when over it.
fn rate_limited(limiter: &Limiter, peer: SocketAddr, what: &str) -> Option<Answer> {
    let wait = limiter.check(peer.ip()).err()?;
    let secs = retry_after_secs(wait);
    tracing::debug!(%peer, what, retry_after = secs, "beacon collector: rate limited");
    let mut r = error(StatusCode::TOO_MANY_REQUESTS, &format!("too many {what} from this address; retry later"));
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    Some(r)
}

/// Answers one request from `peer`.
pub async fn handle(collector: &Collector, req: Request<Incoming>, peer: SocketAddr) -> Answer {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    match path.strip_prefix("/servers") {
        Some("") if method == Method::POST => register(collector, req, peer).await,
        Some("") => method_not_allowed("POST"),
        Some(rest) if rest.len() > 1 && rest.starts_with('/') && !rest[1..].contains('/') => {
            if method == Method::PUT {
                update(collector, req, peer, &rest[1..]).await
            } else {
                method_not_allowed("PUT")
            }
        }
        _ if path == "/stats" && method == Method::GET => stats(collector, &req, peer).await,
        _ if path == "/stats" => method_not_allowed("GET"),
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}

/// How many bytes past the cap are read and thrown away before a 413, so that the client is
/// not reset while it still sends (a larger declared body is refused unread).
pub const LINGER: usize = 1024 * 1024;

/// Why a body was not read.
enum BodyError {
    TooLarge,
    Broken,
}

/// Reads a body of at most `max` bytes, keeping at most `max` in memory.
async fn read_capped(mut body: Incoming, max: usize) -> Result<Bytes, BodyError> {
    let mut buf = BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| BodyError::Broken)?.into_data() else { continue };
        seen = seen.saturating_add(data.len());
        if seen <= max {
            buf.extend_from_slice(&data);
        } else if seen > max.saturating_add(LINGER) {
            return Err(BodyError::TooLarge);
        }
    }
    if seen > max {
        Err(BodyError::TooLarge)
    } else {
        Ok(buf.freeze())
    }
}

/// Reads the body within the size cap and the request time, and parses it as a `Server`.
async fn read_server(collector: &Collector, req: Request<Incoming>) -> Result<ServerReport, Answer> {
    let config = collector.config();
    let too_large = || error(StatusCode::PAYLOAD_TOO_LARGE, &format!("body larger than {} bytes", config.max_body));
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > config.max_body.saturating_add(LINGER) as u64) {
        return Err(too_large());
    }
    let bytes = match tokio::time::timeout(config.request_timeout, read_capped(req.into_body(), config.max_body)).await
    {
        Err(_) => return Err(error(StatusCode::REQUEST_TIMEOUT, "body not received in time")),
        Ok(Err(BodyError::TooLarge)) => return Err(too_large()),
        Ok(Err(BodyError::Broken)) => return Err(error(StatusCode::BAD_REQUEST, "cannot read the body")),
        Ok(Ok(bytes)) => bytes,
    };
    validate::parse_server(&bytes, &config.limits).map_err(|e| error(StatusCode::BAD_REQUEST, &e.to_string()))
}

/// The time now, to the millisecond (what the database keeps).
fn now(collector: &Collector) -> DateTime<Utc> {
    let t = collector.inner.clock.now();
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

async fn register(collector: &Collector, req: Request<Incoming>, peer: SocketAddr) -> Answer {
    if let Some(r) = rate_limited(&collector.inner.register, peer, "registrations") {
        return r;
    }
    let mut report = match read_server(collector, req).await {
        Ok(r) => r,
        Err(answer) => return answer,
    };
    let id = tokens::new_server_id();
    let token = tokens::new_token();
    let issued = now(collector);
    report.id = Some(id.clone());
    let stored = match StoredReport::of(&report) {
        Ok(s) => s,
        Err(e) => return internal(&e),
    };
    if let Err(e) = collector.inner.db.register(id.clone(), tokens::hash_token(&token), issued, stored).await {
        return internal(&e);
    }
    tracing::info!(server = %id, "beacon collector: server registered");
    let mut r = json(StatusCode::CREATED, &ServerToken { token: Token { id: token, issued }, server: report });
    if let Ok(location) = HeaderValue::from_str(&format!("/servers/{id}")) {
        r.headers_mut().insert(header::LOCATION, location);
    }
    r
}

async fn update(collector: &Collector, req: Request<Incoming>, peer: SocketAddr, id: &str) -> Answer {
    if let Some(r) = rate_limited(&collector.inner.update, peer, "updates") {
        return r;
    }
    if !tokens::is_server_id(id) {
        return error(StatusCode::NOT_FOUND, "unknown server");
    }
    let presented = query_param(&req, "tokenId");
    let mut report = match read_server(collector, req).await {
        Ok(r) => r,
        Err(answer) => return answer,
    };
    if report.id.as_deref().is_some_and(|body_id| body_id != id) {
        return error(StatusCode::BAD_REQUEST, "the id in the body is not the one in the path");
    }
    report.id = Some(id.to_string());
    let stored = match StoredReport::of(&report) {
        Ok(s) => s,
        Err(e) => return internal(&e),
    };
    match collector.inner.db.update(id.to_string(), presented, now(collector), stored).await {
        Ok(Updated::Accepted(token, decision)) => {
            tracing::debug!(server = %id, ?decision, "beacon collector: server updated");
            json(StatusCode::OK, &token)
        }
        Ok(Updated::Refused(Decision::Missing)) => error(
            StatusCode::UNAUTHORIZED,
            "a token is required: the last one was issued less than 48 hours ago (pass tokenId)",
        ),
        Ok(Updated::Refused(_)) => error(StatusCode::UNAUTHORIZED, "wrong token"),
        Ok(Updated::Unknown) => error(StatusCode::NOT_FOUND, "unknown server"),
        Err(e) => internal(&e),
    }
}

async fn stats(collector: &Collector, req: &Request<Incoming>, peer: SocketAddr) -> Answer {
    if let Some(r) = rate_limited(&collector.inner.stats, peer, "stats requests") {
        return r;
    }
    let max = collector.config().max_stats_days;
    let days = match query_param(req, "days") {
        None => 30.min(max),
        Some(text) => match text.parse::<u32>() {
            Ok(d) if (1..=max).contains(&d) => d,
            _ => return error(StatusCode::BAD_REQUEST, &format!("days must be a whole number from 1 to {max}")),
        },
    };
    let ttl = collector.config().stats_cache;
    if let Some(body) = collector.inner.stats_cache.get(days, ttl) {
        return json_bytes(StatusCode::OK, body);
    }
    let since = now(collector) - chrono::Duration::days(i64::from(days));
    let min_group = collector.config().min_group;
    let report = match collector.inner.db.aggregate_since(since, min_group).await {
        Ok(a) => a.finish(days, since, min_group),
        Err(e) => return internal(&e),
    };
    match serde_json::to_vec(&report) {
        Ok(body) => {
            let body = Bytes::from(body);
            collector.inner.stats_cache.put(days, body.clone(), ttl);
            json_bytes(StatusCode::OK, body)
        }
        Err(e) => internal(&CollectorError::Internal(e.to_string())),
    }
}

/// The first value of query parameter `name`, if any.
fn query_param<B>(req: &Request<B>, name: &str) -> Option<String> {
    let query = req.uri().query()?;
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}
