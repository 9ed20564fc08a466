//! The admin HTTP listener (`adminlisten`): `/metrics` (the Prometheus text format 0.0.4, or
//! OpenMetrics when the `Accept` header asks for it; see `docs/metrics.md`), `/healthz` (the
//! process is up) and `/readyz` (at least `readyshare` of the servers are logged in).
//!
//! GET and HEAD are served (HEAD: the same status and headers, no body; hyper leaves the body
//! out). Served with hyper over plain TCP; meant for 127.0.0.1 or a private network.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::hub::Hub;
use crate::metrics::{Format, KindLabels, Metrics, CLIENT_KINDS};
use crate::upstream::Status;

/// Serves the admin endpoints until `cancel`.
pub async fn serve(listener: TcpListener, hub: Hub, cancel: CancellationToken, tracker: TaskTracker) {
    let write_timeout = hub.config().client_write_timeout;
    crate::http::accept_loop(listener, cancel, tracker, write_timeout, move |req, _peer| {
        let response = respond(&req, &hub);
        async move { response }
    })
    .await;
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
    response
}

/// Answers one admin request.
pub fn respond(req: &Request<Incoming>, hub: &Hub) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "method not allowed\n".into());
    }
    match req.uri().path() {
        "/metrics" => {
            let metrics = hub.metrics();
            let clients = hub.clients();
            for kind in CLIENT_KINDS {
                let queued: usize =
                    clients.iter().filter(|(_, c)| c.kind == kind).map(|(_, c)| c.sink.queued_bytes()).sum();
                metrics
                    .client_queue_bytes
                    .get_or_create(&KindLabels { kind })
                    .set(i64::try_from(queued).unwrap_or(i64::MAX));
            }
            for server in hub.servers() {
                // A server that never failed shows 0 rather than no series.
                metrics.server_connect_failures.get_or_create(&Metrics::server(server.name())).inc_by(0);
            }
            let accept = req.headers().get(hyper::header::ACCEPT).and_then(|v| v.to_str().ok());
            let format = Format::from_accept(accept);
            let mut response = text(StatusCode::OK, format.content_type(), metrics.encode_as(format));
            response.headers_mut().insert(hyper::header::VARY, hyper::header::HeaderValue::from_static("accept"));
            response
        }
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => {
            let (ready, up, total) = readiness(hub);
            let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            let word = if ready { "ready" } else { "not ready" };
            text(status, "text/plain", format!("{word}: {up}/{total} servers logged in\n"))
        }
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// Whether at least `readyshare` of the servers are logged in (always true without servers).
pub fn readiness(hub: &Hub) -> (bool, usize, usize) {
    let servers = hub.servers();
    let total = servers.len();
    let up = servers.iter().filter(|s| s.status() == Status::Connected).count();
    let needed = (hub.config().ready_share * total as f64).ceil() as usize;
    (up >= needed, up, total)
}
