//! Test helpers: start the real proxy on 127.0.0.1:0 against the AMI simulator, and a small AMI
//! client that reads and writes like a client library would.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use ami_sim::{AmiSim, SimOptions};
use astmanproxy::config::{Config, Secret, ServerConfig, Users};
use astmanproxy_handlers::{standard, AmiDecoder, Kind, Message};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub mod collector;
pub mod pki;
pub mod program;

/// How long any single expected message may take before a test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running proxy.
pub struct TestProxy {
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestProxy {
    /// Stops the proxy; true when it finished (within [`WAIT`], the bound for a proxy that
    /// would never finish).
    pub async fn stop_finished(mut self) -> bool {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => tokio::time::timeout(WAIT, task).await.is_ok(),
            None => true,
        }
    }

    /// Stops the proxy and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(WAIT, task).await;
        }
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The users every test knows.
pub fn users() -> Users {
    Users::from_pairs(&[("alice", "alicepw"), ("bob", "bobpw"), ("carol", "carolpw")])
}

/// A server entry for a simulator.
pub fn server(name: &str, addr: SocketAddr) -> ServerConfig {
    ServerConfig {
        name: name.to_string(),
        host: addr.ip().to_string(),
        port: addr.port(),
        username: "admin".to_string(),
        secret: Secret::new("adminpass"),
        events: "on".to_string(),
        use_ssl: false,
    }
}

/// A test configuration: fast failure delays, the test users.
pub fn config(servers: Vec<ServerConfig>) -> Config {
    let mut cfg = Config::for_tests(servers);
    cfg.users = users();
    cfg.auth_fail_delay = Duration::from_millis(50);
    cfg.retry_interval = Duration::from_millis(50);
    cfg.retry_max = Duration::from_millis(200);
    cfg
}

/// Starts the proxy with `cfg` on 127.0.0.1:0.
pub async fn spawn_proxy(cfg: Config) -> TestProxy {
    spawn(cfg, false).await
}

/// Starts the proxy with `cfg` on 127.0.0.1:0, with the admin listener on 127.0.0.1:0 too.
pub async fn spawn_proxy_with_admin(cfg: Config) -> TestProxy {
    spawn(cfg, true).await
}

/// Starts the proxy with a TLS-only listener.
pub async fn spawn_proxy_with_tls(cfg: Config, tls: tokio::net::TcpListener) -> TestProxy {
    spawn_with(cfg, false, Some(tls), None, Default::default()).await
}

/// Starts the proxy with the HTTP front on `http`.
pub async fn spawn_proxy_with_http(cfg: Config, http: tokio::net::TcpListener) -> TestProxy {
    spawn_with(cfg, false, None, Some(http), Default::default()).await
}

/// Starts the proxy with `cfg` and the Beacon service set up with `beacon`.
pub async fn spawn_proxy_with_beacon(cfg: Config, beacon: astmanproxy::beacon::Setup) -> TestProxy {
    spawn_with(cfg, false, None, None, beacon).await
}

/// A proxy with its HTTP front on `http` and the admin endpoint.
pub async fn spawn_proxy_with_http_and_admin(cfg: Config, http: tokio::net::TcpListener) -> TestProxy {
    spawn_with(cfg, true, None, Some(http), Default::default()).await
}

async fn spawn(cfg: Config, with_admin: bool) -> TestProxy {
    spawn_with(cfg, with_admin, None, None, Default::default()).await
}

async fn spawn_with(
    mut cfg: Config,
    with_admin: bool,
    tls: Option<tokio::net::TcpListener>,
    http: Option<tokio::net::TcpListener>,
    beacon: astmanproxy::beacon::Setup,
) -> TestProxy {
    cfg.listen_address = "127.0.0.1".parse().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let admin_listener =
        if with_admin { Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()) } else { None };
    let admin = admin_listener.as_ref().map(|l| l.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let listeners = astmanproxy::Listeners { ami: listener, tls, admin: admin_listener, http };
        astmanproxy::server::serve_with_beacon(cfg, beacon, listeners, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    TestProxy { addr, admin, stop: Some(stop), task: Some(task) }
}

/// A GET of `path` with HTTP Basic credentials `basic` (base64 of `user:secret`) over a fresh
/// connection; returns the whole answer, head and body.
pub async fn http_basic(addr: SocketAddr, path: &str, basic: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Basic {basic}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw)).await.unwrap().unwrap();
    String::from_utf8_lossy(&raw).to_string()
}

/// A plain HTTP/1.1 GET (or other method) over a fresh connection; returns status and body.
pub async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// A simulator with default options.
pub async fn sim() -> AmiSim {
    AmiSim::start(SimOptions::default()).await.unwrap()
}

/// One simulator and a proxy in front of it, named `pbx1`; returns once the proxy is ready.
pub async fn proxy_with_sim() -> (AmiSim, TestProxy) {
    let sim = sim().await;
    let proxy = spawn_proxy(config(vec![server("pbx1", sim.addr())])).await;
    wait_ready(proxy.addr, None).await;
    (sim, proxy)
}

/// Waits until the proxy answers a Ping through server `name` (the default when `None`).
pub async fn wait_ready(addr: SocketAddr, name: Option<&str>) {
    let mut client = AmiClient::login(addr, "alice", "alicepw").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut ping = Message::new().with("Action", "Ping").with("ActionID", "ready");
        if let Some(n) = name {
            ping.push("Server", n);
        }
        client.send(&ping).await;
        let answer = client.response("ready").await;
        if answer.response() == Some("Success") {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "proxy never became ready: {answer:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A test AMI client.
pub struct AmiClient {
    stream: TcpStream,
    buf: BytesMut,
    decoder: AmiDecoder,
    pub banner: String,
}

impl AmiClient {
    /// Connects and reads the banner.
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        let mut c = Self { stream, buf: BytesMut::new(), decoder: AmiDecoder::default(), banner: String::new() };
        c.banner = c.read_banner().await;
        c
    }

    /// Connects with a small kernel receive buffer (a slow reader fills it quickly) and logs in.
    pub async fn login_small_buffer(addr: SocketAddr, user: &str, secret: &str) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(addr).await.unwrap();
        let mut c = Self { stream, buf: BytesMut::new(), decoder: AmiDecoder::default(), banner: String::new() };
        c.banner = c.read_banner().await;
        let answer = c.login_as(user, secret, None).await;
        assert_eq!(answer.response(), Some("Success"));
        c
    }

    /// Reads raw bytes until `end` appears, counting occurrences of `needle`; optionally pausing
    /// `pause` after each read (a slow reader). Returns the count and whether `end` was seen
    /// (false: the connection closed first). Cheap enough to keep up with a flood.
    pub async fn count_until(&mut self, needle: &[u8], end: &[u8], pause: Option<Duration>) -> (usize, bool, Vec<u8>) {
        let mut data = std::mem::take(&mut self.buf).to_vec();
        let (mut count, mut pos, mut end_pos) = (0, 0, 0);
        let mut chunk = vec![0u8; 64 * 1024];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let mut last = None;
            for at in memchr::memmem::find_iter(&data[pos..], needle) {
                count += 1;
                last = Some(pos + at + needle.len());
            }
            pos = last.unwrap_or(pos).max(data.len().saturating_sub(needle.len() - 1));
            if memchr::memmem::find(&data[end_pos..], end).is_some() {
                return (count, true, data);
            }
            end_pos = data.len().saturating_sub(end.len() - 1);
            if let Some(p) = pause {
                tokio::time::sleep(p).await;
            }
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return (count, false, data),
                Ok(Ok(n)) => data.extend_from_slice(&chunk[..n]),
                Err(_) => panic!("count_until: nothing for 60 s"),
            }
        }
    }

    /// Connects without reading the banner.
    pub async fn connect_raw(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        Self { stream, buf: BytesMut::new(), decoder: AmiDecoder::default(), banner: String::new() }
    }

    /// Reads the banner line.
    pub async fn read_banner(&mut self) -> String {
        loop {
            if let Some(line) = self.decoder.decode_line(&mut self.buf).unwrap() {
                return line;
            }
            self.fill().await.expect("connection closed before the banner");
        }
    }

    /// Connects and logs in; panics if the login fails.
    pub async fn login(addr: SocketAddr, user: &str, secret: &str) -> Self {
        let mut c = Self::connect(addr).await;
        let answer = c.login_as(user, secret, None).await;
        assert_eq!(answer.response(), Some("Success"), "login failed: {answer:?}");
        c
    }

    /// Sends a Login and returns its answer.
    pub async fn login_as(&mut self, user: &str, secret: &str, events: Option<&str>) -> Message {
        let mut login = Message::new()
            .with("Action", "Login")
            .with("Username", user)
            .with("Secret", secret)
            .with("ActionID", "login");
        if let Some(e) = events {
            login.push("Events", e);
        }
        self.send(&login).await;
        self.response("login").await
    }

    /// The raw socket (for tests that read other formats).
    pub fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Tells this client's decoder an Asterisk 11 `Response: Follows` answer is coming.
    pub fn expect_command_output(&mut self) {
        self.decoder.expect_command_output();
    }

    /// Writes a message.
    pub async fn send(&mut self, message: &Message) {
        let mut out = BytesMut::new();
        standard::encode(message, &mut out);
        self.stream.write_all(&out).await.unwrap();
    }

    /// Writes raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Half-closes the write side.
    pub async fn shutdown_write(&mut self) {
        self.stream.shutdown().await.unwrap();
    }

    async fn fill(&mut self) -> Option<usize> {
        match self.stream.read_buf(&mut self.buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
        }
    }

    /// The next message, or `None` when the connection closes or `wait` passes.
    pub async fn try_recv(&mut self, wait: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(m) = self.decoder.decode(&mut self.buf).unwrap() {
                return Some(m);
            }
            match tokio::time::timeout_at(deadline, self.fill()).await {
                Ok(Some(_)) => {}
                Ok(None) => return self.decoder.decode_eof(&mut self.buf).ok().flatten(),
                Err(_) => return None,
            }
        }
    }

    /// The next message; panics on timeout or close.
    pub async fn recv(&mut self) -> Message {
        self.try_recv(WAIT).await.expect("no message within the deadline (or connection closed)")
    }

    /// Skips messages until one matches.
    pub async fn recv_until(&mut self, mut pred: impl FnMut(&Message) -> bool) -> Message {
        loop {
            let m = self.recv().await;
            if pred(&m) {
                return m;
            }
        }
    }

    /// The response carrying `action_id` (events before it are skipped).
    pub async fn response(&mut self, action_id: &str) -> Message {
        self.recv_until(|m| m.kind() == Kind::Response && m.action_id() == Some(action_id)).await
    }

    /// Sends an action with an ActionID and returns its response.
    pub async fn action(&mut self, action: &str, action_id: &str, extra: &[(&str, &str)]) -> Message {
        let mut m = Message::new().with("Action", action).with("ActionID", action_id);
        for (k, v) in extra {
            m.push(*k, *v);
        }
        self.send(&m).await;
        self.response(action_id).await
    }

    /// Collects everything that arrives within `wait`.
    pub async fn drain(&mut self, wait: Duration) -> Vec<Message> {
        let mut out = Vec::new();
        while let Some(m) = self.try_recv(wait).await {
            out.push(m);
        }
        out
    }

    /// Reads until the connection closes; returns the number of bytes read. Panics after `wait`.
    pub async fn read_to_close(&mut self, wait: Duration) -> usize {
        let mut total = self.buf.len();
        self.buf.clear();
        let deadline = tokio::time::Instant::now() + wait;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return total,
                Ok(Ok(n)) => total += n,
                Err(_) => panic!("connection still open after {wait:?}"),
            }
        }
    }

    /// True if the peer has closed the connection (reads EOF within `wait`).
    pub async fn is_closed(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if self.decoder.decode(&mut self.buf).unwrap().is_some() {
                continue;
            }
            match tokio::time::timeout_at(deadline, self.fill()).await {
                Ok(Some(_)) => {}
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    }
}

/// Waits until `check` holds, polling; panics with `what` after [`WAIT`]. For states that have
/// no event to wait on (a counter in another task); never a bound on how fast the proxy is.
/// The check may borrow what it captures mutably (an `async` closure: `async || c.ask().await`).
pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The value of the metric series `series` (name with labels, as `/metrics` prints it) on the
/// admin listener `admin`, or 0 when it is absent.
pub async fn metric(admin: SocketAddr, series: &str) -> f64 {
    let (_, body) = http(admin, "GET", "/metrics").await;
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}
