//! The test collector: a recording HTTPS server (rcgen certificates) that answers as the Beacon
//! API says, or as a test scripts it; and a CONNECT proxy with basic auth.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::support::WAIT;

/// A temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("astmanproxy-beacon-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The state file once `done` holds for it (it is written after the board is updated).
pub async fn saved(
    path: &Path,
    done: impl Fn(&astmanproxy::beacon::report::StateFile) -> bool,
) -> astmanproxy::beacon::report::StateFile {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(state) = astmanproxy::beacon::report::state::load(path) {
            if done(&state) {
                return state;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "state file {} never as expected", path.display());
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// One request the collector saw.
#[derive(Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: serde_json::Value,
    pub at: Instant,
}

#[derive(Default)]
struct CollectorState {
    /// Answers to give instead of the API's, in order: status and `Retry-After`.
    script: Mutex<VecDeque<(u16, Option<String>)>>,
    /// Server id -> current token.
    tokens: Mutex<HashMap<String, String>>,
    counter: AtomicUsize,
    connections: AtomicUsize,
}

/// A recording HTTPS collector on 127.0.0.1:0.
pub struct FakeCollector {
    pub addr: SocketAddr,
    pub ca: PathBuf,
    pub requests: mpsc::UnboundedReceiver<Seen>,
    state: Arc<CollectorState>,
}

impl FakeCollector {
    pub async fn start(dir: &Path) -> FakeCollector {
        let acceptor = crate::support::pki::Pki::in_dir(dir).acceptor();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(CollectorState::default());
        let (tx, requests) = mpsc::unbounded_channel();
        let accept_state = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accept_state.connections.fetch_add(1, Ordering::SeqCst);
                let (acceptor, state, tx) = (acceptor.clone(), accept_state.clone(), tx.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else { return };
                    let service = hyper::service::service_fn(move |req| answer(req, state.clone(), tx.clone()));
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
                });
            }
        });
        FakeCollector { addr, ca: dir.join("ca.pem"), requests, state }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/api/v1", self.addr.port())
    }

    /// The next answers are these statuses (with `Retry-After`), whatever the request; status 0
    /// never answers.
    pub fn script(&self, answers: &[(u16, Option<&str>)]) {
        let mut script = self.state.script.lock().unwrap();
        script.extend(answers.iter().map(|(c, r)| (*c, r.map(str::to_owned))));
    }

    pub async fn next(&mut self) -> Seen {
        tokio::time::timeout(WAIT, self.requests.recv()).await.expect("no request to the collector").unwrap()
    }

    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }
}

async fn answer(
    req: hyper::Request<hyper::body::Incoming>,
    state: Arc<CollectorState>,
    tx: mpsc::UnboundedSender<Seen>,
) -> Result<hyper::Response<Full<Bytes>>, hyper::Error> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let raw = req.into_body().collect().await?.to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&raw).unwrap_or(serde_json::Value::Null);
    let _ = tx.send(Seen {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        body: body.clone(),
        at: Instant::now(),
    });
    let reply = |code: u16, json: serde_json::Value| {
        hyper::Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(json.to_string())))
            .unwrap()
    };
    let scripted = state.script.lock().unwrap().pop_front();
    if let Some((code, retry_after)) = scripted {
        if code == 0 {
            // Status 0: never answer (a hung collector).
            std::future::pending::<()>().await;
        }
        let mut response = reply(code, serde_json::json!({"error": "scripted"}));
        if let Some(r) = retry_after {
            response.headers_mut().insert("retry-after", r.parse().unwrap());
        }
        return Ok(response);
    }
    let n = state.counter.fetch_add(1, Ordering::SeqCst) + 1;
    let token = serde_json::json!({"id": format!("tok-{n}"), "issued": "2026-12-01T08:00:00Z"});
    if method == "POST" && path == "/api/v1/servers" {
        let id = format!("srv-{n}");
        state.tokens.lock().unwrap().insert(id.clone(), format!("tok-{n}"));
        let mut server = body;
        server["id"] = serde_json::Value::String(id);
        return Ok(reply(200, serde_json::json!({"token": token, "server": server})));
    }
    if let (true, Some(id)) = (method == "PUT", path.strip_prefix("/api/v1/servers/")) {
        let given = query.strip_prefix("tokenId=").unwrap_or_default();
        let mut tokens = state.tokens.lock().unwrap();
        if tokens.get(id).map(String::as_str) != Some(given) {
            return Ok(reply(401, serde_json::json!({"error": "bad token"})));
        }
        tokens.insert(id.to_string(), format!("tok-{n}"));
        return Ok(reply(200, token));
    }
    Ok(reply(404, serde_json::json!({"error": "no such route"})))
}

/// A CONNECT proxy that wants `user:pw` and tunnels to wherever it is asked; records the
/// CONNECT lines.
pub async fn connect_proxy() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    let mut byte = [0u8; 1];
                    if client.read_exact(&mut byte).await.is_err() || head.len() > 8192 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let first = head.lines().next().unwrap_or_default().to_string();
                record.lock().unwrap().push(first.clone());
                use base64::Engine;
                let wanted = format!(
                    "proxy-authorization: basic {}",
                    base64::engine::general_purpose::STANDARD.encode("user:pw")
                );
                if !head.to_ascii_lowercase().contains(&wanted.to_ascii_lowercase()) {
                    let _ = client.write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n").await;
                    return;
                }
                let target = first.split_whitespace().nth(1).unwrap_or_default().to_string();
                let Ok(mut upstream) = TcpStream::connect(&target).await else { return };
                let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (addr, seen)
}
