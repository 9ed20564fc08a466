//! An AMI simulator that behaves like Asterisk 22 as recorded in `tests/fixtures/` (used by the
//! integration tests and the benchmark tool; never by the proxy itself).
//!
//! [`AmiSim::start`] binds 127.0.0.1:0 and serves AMI: the banner at once, Login (plain `Secret`
//! or `Challenge`/MD5 `Key`), `FullyBooted`, `Permission denied` before login, a ~1 s delayed
//! `Authentication failed` then close, `Logoff` -> `Goodbye` then close, per-connection
//! `Events:`/`EventMask`, and the recorded answers of `Ping`, `CoreSettings`, `CoreStatus`,
//! `Command` (`core show version`, `module show`, `core show calls`, `core show uptime`, errors),
//! the EventLists `CoreShowChannels`, `Status`, `QueueStatus`, `QueueSummary`, and `Originate`
//! (async: `OriginateResponse` plus the call's events). Pipelined actions are answered in order.
//! Test hooks: [`AmiSim::emit`], [`AmiSim::emit_many`], [`AmiSim::kill_connections`],
//! [`AmiSim::set_drop_mid_list`], [`AmiSim::set_hold`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use astmanproxy_handlers::{standard, Message};
use bytes::{Bytes, BytesMut};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::event::ClassMask;

mod conn;
mod script;

/// Items queued per connection before it counts as a slow reader and is closed (as Asterisk
/// drops clients that do not read).
pub const CONNECTION_QUEUE: usize = 8192;

/// Copies of one event per write in [`AmiSim::emit_many`].
const FLOOD_CHUNK: usize = 512;

/// How the simulator behaves.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// AMI user name.
    pub username: String,
    /// AMI secret.
    pub secret: String,
    /// AMI version in the banner.
    pub ami_version: String,
    /// Answer `Command` in the Asterisk 11-13 `Response: Follows` framing.
    pub legacy_command: bool,
    /// Answer `Ping` (false: never, to test half-open detection).
    pub ping_replies: bool,
    /// Delay before `Authentication failed`.
    pub auth_fail_delay: Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            username: "admin".to_string(),
            secret: "adminpass".to_string(),
            ami_version: "11.0.0".to_string(),
            legacy_command: false,
            ping_replies: true,
            auth_fail_delay: Duration::from_secs(1),
        }
    }
}

/// A running simulator. Cheap to clone.
#[derive(Clone)]
pub struct AmiSim {
    inner: Arc<Inner>,
}

struct Inner {
    addr: SocketAddr,
    options: SimOptions,
    conns: Mutex<Vec<ConnHandle>>,
    received: Mutex<VecDeque<Message>>,
    logins: AtomicUsize,
    drop_mid_list: Mutex<Option<String>>,
    hold: Mutex<Option<String>>,
    kill: Mutex<CancellationToken>,
    stop: CancellationToken,
}

/// What the simulator keeps of each open connection.
#[derive(Clone)]
struct ConnHandle {
    tx: mpsc::Sender<Bytes>,
    mask: Arc<std::sync::atomic::AtomicU32>,
    logged_in: Arc<std::sync::atomic::AtomicBool>,
    cancel: CancellationToken,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl AmiSim {
    /// Starts a simulator on 127.0.0.1:0.
    ///
    /// # Errors
    /// The listener cannot be bound.
    pub async fn start(options: SimOptions) -> std::io::Result<AmiSim> {
        Self::start_on("127.0.0.1:0".parse().map_err(std::io::Error::other)?, options).await
    }

    /// Starts a simulator on a given address (to restart one on the same port).
    ///
    /// # Errors
    /// The listener cannot be bound.
    pub async fn start_on(addr: SocketAddr, options: SimOptions) -> std::io::Result<AmiSim> {
        let listener = TcpListener::bind(addr).await?;
        let sim = AmiSim {
            inner: Arc::new(Inner {
                addr: listener.local_addr()?,
                options,
                conns: Mutex::new(Vec::new()),
                received: Mutex::new(VecDeque::new()),
                logins: AtomicUsize::new(0),
                drop_mid_list: Mutex::new(None),
                hold: Mutex::new(None),
                kill: Mutex::new(CancellationToken::new()),
                stop: CancellationToken::new(),
            }),
        };
        let accepting = sim.clone();
        tokio::spawn(async move { accepting.accept(listener).await });
        Ok(sim)
    }

    async fn accept(self, listener: TcpListener) {
        loop {
            let accepted = tokio::select! {
                () = self.inner.stop.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let Ok((stream, _)) = accepted else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let cancel = lock(&self.inner.kill).child_token();
            let (tx, rx) = mpsc::channel(CONNECTION_QUEUE);
            let handle = ConnHandle {
                tx,
                mask: Arc::new(std::sync::atomic::AtomicU32::new(ClassMask::ALL.0)),
                logged_in: Arc::new(std::sync::atomic::AtomicBool::new(false)),
                cancel,
            };
            {
                let mut conns = lock(&self.inner.conns);
                conns.retain(|c| !c.tx.is_closed() && !c.cancel.is_cancelled());
                conns.push(handle.clone());
            }
            tokio::spawn(conn::serve(self.clone(), stream, handle, rx));
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    fn options(&self) -> &SimOptions {
        &self.inner.options
    }

    /// Sends an event to every logged-in connection whose event mask allows its `Privilege`
    /// classes.
    pub fn emit(&self, event: Message) {
        let mut out = BytesMut::new();
        standard::encode(&event, &mut out);
        self.broadcast(ClassMask::of_event(&event), out.freeze());
    }

    /// Sends `n` copies of `event` (encoded once) to every eligible connection, in writes of up
    /// to 512 copies. No sequence number is added: the copies are byte-identical.
    pub fn emit_many(&self, event: &Message, n: usize) {
        let mut one = BytesMut::new();
        standard::encode(event, &mut one);
        let mut chunk = BytesMut::with_capacity(one.len() * FLOOD_CHUNK.min(n.max(1)));
        for _ in 0..FLOOD_CHUNK.min(n) {
            chunk.extend_from_slice(&one);
        }
        let chunk = chunk.freeze();
        let classes = ClassMask::of_event(event);
        let full = n / FLOOD_CHUNK;
        let rest = n % FLOOD_CHUNK;
        for conn in self.eligible(classes) {
            let mut ok = true;
            for _ in 0..full {
                ok &= conn.push(chunk.clone());
            }
            if rest > 0 && ok {
                conn.push(chunk.slice(..rest * one.len()));
            }
        }
    }

    fn eligible(&self, classes: ClassMask) -> Vec<ConnHandle> {
        lock(&self.inner.conns)
            .iter()
            .filter(|c| c.logged_in.load(Ordering::Relaxed))
            .filter(|c| ClassMask(c.mask.load(Ordering::Relaxed)).allows(classes))
            .cloned()
            .collect()
    }

    fn broadcast(&self, classes: ClassMask, bytes: Bytes) {
        for conn in self.eligible(classes) {
            conn.push(bytes.clone());
        }
    }

    /// Drops every open connection abruptly (an Asterisk restart).
    pub fn kill_connections(&self) {
        let mut kill = lock(&self.inner.kill);
        kill.cancel();
        *kill = CancellationToken::new();
        lock(&self.inner.conns).clear();
    }

    /// Stops listening and drops every connection.
    pub async fn shutdown(&self) {
        self.inner.stop.cancel();
        self.kill_connections();
        // Let the accept task drop its listener so the port can be bound again.
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    /// Connections currently open.
    pub fn connection_count(&self) -> usize {
        lock(&self.inner.conns).iter().filter(|c| !c.tx.is_closed() && !c.cancel.is_cancelled()).count()
    }

    /// Successful logins so far.
    pub fn login_count(&self) -> usize {
        self.inner.logins.load(Ordering::Relaxed)
    }

    /// Every action received after login, in order (the last 10 000).
    pub fn received(&self) -> Vec<Message> {
        lock(&self.inner.received).iter().cloned().collect()
    }

    /// When the named list action is asked, send its start and one item, then close.
    pub fn set_drop_mid_list(&self, action: Option<&str>) {
        *lock(&self.inner.drop_mid_list) = action.map(str::to_string);
    }

    /// Never answer the named action.
    pub fn set_hold(&self, action: Option<&str>) {
        *lock(&self.inner.hold) = action.map(str::to_string);
    }

    fn record(&self, action: &Message) {
        let mut received = lock(&self.inner.received);
        if received.len() >= 10_000 {
            received.pop_front();
        }
        received.push_back(action.clone());
    }

    fn matches(slot: &Mutex<Option<String>>, action: &str) -> bool {
        lock(slot).as_deref().is_some_and(|a| a.eq_ignore_ascii_case(action))
    }
}

impl ConnHandle {
    /// Queues bytes for this connection; a full queue closes it (a slow reader).
    fn push(&self, bytes: Bytes) -> bool {
        if self.tx.try_send(bytes).is_err() {
            self.cancel.cancel();
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests;
