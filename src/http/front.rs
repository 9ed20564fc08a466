//! What every HTTP handler shares: the [`Front`] (hub, tasks, sessions, connection limit), the
//! request's original URI and the short `text/plain` answer.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{header, Response, StatusCode};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::mansession::ManSessions;
use crate::hub::Hub;

/// What every HTTP request handler may use: the hub, and the tasks and shutdown token that
/// long-lived connections (WebSocket) and sessions (AJAM) hang on.
#[derive(Clone)]
pub struct Front {
    /// The proxy's shared state.
    pub hub: Hub,
    /// Cancelled at shutdown.
    pub cancel: CancellationToken,
    /// Tracks tasks that must finish before the proxy exits.
    pub tracker: TaskTracker,
    /// The AJAM cookie sessions.
    pub sessions: ManSessions,
    /// `maxclients`: shared by the AMI port's connections and the WebSocket sessions.
    pub limit: Arc<Semaphore>,
}

impl Front {
    /// The HTTP front of `hub`; its sessions and connections end at `cancel`.
    pub fn new(hub: Hub, cancel: CancellationToken, tracker: TaskTracker) -> Self {
        let sessions = ManSessions::new(hub.clone(), cancel.clone(), tracker.clone());
        let limit = Arc::new(Semaphore::new(hub.config().max_clients.max(1)));
        Self { hub, cancel, tracker, sessions, limit }
    }
}

/// The request's URI as the client sent it, before `httpprefix` was taken off its path (HTTP
/// Digest signs that one).
#[derive(Debug, Clone)]
pub struct OriginalUri(pub String);

/// A short `text/plain` answer with `status`.
pub fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain"));
    r
}
