//! An AMI simulator that behaves like Asterisk 22.10.1 as recorded in `tests/fixtures/*.cap`
//! (see `tests/fixtures/CAPTURES.md`). It serves the integration tests and the benchmark tool;
//! the proxy itself never uses it.
//!
//! [`AmiSim::start`] binds a real TCP listener on 127.0.0.1:0. Every reply is a recorded
//! message, embedded at compile time and replayed with the asker's ActionID:
//! - the banner `Asterisk Call Manager/<ami_version>` at once (01);
//! - `Login` with `Secret`, or `Challenge` (`AuthType: MD5`, a decimal nonce) then `Login` with
//!   `AuthType: MD5` and `Key` = md5hex(nonce + secret) (03). Success: `Authentication
//!   accepted`, `FullyBooted` (when the session's events include `system`) and a broadcast
//!   `SuccessfulAuth` security event (01, 18). Failure: after
//!   [`SimOptions::auth_fail_delay`], `Authentication failed`, then the connection is closed (02);
//! - before login every action but `Login`/`Challenge`/`Logoff` gets `Permission denied`, and the
//!   connection stays open (23); `Logoff` answers `Goodbye` and closes (21);
//! - `Events: on|off|class,list` at Login and `Action: Events` with `EventMask` set the
//!   connection's event mask (`Events: On|Off`, 18); broadcast events reach a logged-in
//!   connection when their `Privilege:` classes pass its mask;
//! - `Ping` (04, with a fresh `Timestamp`), `CoreSettings` (05), `CoreStatus` (06),
//!   `ModuleCheck` (11), `Command` with every recorded CLI command (`core show version`, `module
//!   show`, `core show calls`, `core show uptime [seconds]`, `dialplan show ami-test`, ...; 07-10)
//!   and the recorded `No such command` error for any other; with
//!   [`SimOptions::legacy_command`] in the Asterisk 11 `Response: Follows` framing;
//! - the EventLists `CoreShowChannels` (13, two channels), `Status` (14, optionally one
//!   `Channel`), `QueueStatus` (15) and `QueueSummary` (16, optionally one `Queue`);
//! - `Originate`: `Async: true` answers `Originate successfully queued` and shortly after
//!   broadcasts the recorded call's events with an `OriginateResponse` carrying the asker's
//!   ActionID (17; a `Local/999@...` channel fails as in 17b); without `Async` the answer comes
//!   after [`SYNC_ORIGINATE_DELAY`], then the call's events (17b), holding the session meanwhile
//!   (`Local/999@...`: `Response: Error` / `Originate failed` at once); with
//!   [`SimOptions::originate_ring`] both wait that ring time (the sync answer, the async
//!   `OriginateResponse`); without `Channel` the recorded error (20);
//! - [`SimOptions::slow_action`]: one action answered only after a delay, holding its session;
//! - an unknown action gets `Invalid/unknown command` and a message without `Action:` gets
//!   `Missing action in request`, each followed by a broadcast `RequestBadFormat` (19, 20).
//!
//! Pipelined actions are answered strictly in order (24). Each connection has a reader task and
//! a writer task joined by a bounded queue ([`CONNECTION_QUEUE`] items) that answers and events
//! share: reading never blocks event writes, and a connection whose queue overflows is closed,
//! as Asterisk drops clients that do not read. The decoder limits, the list of received actions
//! (the last [`RECEIVED_KEPT`]) and the queues are all bounded.
//!
//! Test hooks: [`AmiSim::emit`], [`AmiSim::emit_wire`], [`AmiSim::emit_many`],
//! [`AmiSim::kill_connections`], [`AmiSim::set_drop_mid_list`], [`AmiSim::set_hold`],
//! [`AmiSim::set_gate`] (with [`AmiSim::gated`] and [`AmiSim::open_gate`]: a late answer,
//! released by the test), [`AmiSim::received`], [`SimOptions::ping_replies`].

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use astmanproxy_handlers::{standard, AmiDecoder, Message};
use astmanproxy_net::listen;
use bytes::BytesMut;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

mod conn;
mod mask;
mod script;
pub mod standalone;

use conn::ConnShared;
pub use mask::EventMask;
pub use script::SYNC_ORIGINATE_DELAY;

/// Items queued per connection (answers, events, flood chunks) before it counts as a slow reader
/// and is closed. Queued event bytes are shared between connections, not copied.
pub const CONNECTION_QUEUE: usize = 8192;

/// How many received actions [`AmiSim::received`] keeps (the most recent).
pub const RECEIVED_KEPT: usize = 10_000;

/// Copies of one event per queued chunk in [`AmiSim::emit_many`].
const FLOOD_CHUNK: usize = 512;

/// How the simulator behaves.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// The AMI user name (compared without regard to case, as Asterisk does).
    pub username: String,
    /// The AMI secret.
    pub secret: String,
    /// The AMI protocol version in the banner (`11.0.0` for Asterisk 22).
    pub ami_version: String,
    /// Answer `Command` in the Asterisk 11-13 framing: `Response: Follows`, `Privilege:
    /// Command`, the ActionID, the raw CLI lines, `--END COMMAND--`.
    pub legacy_command: bool,
    /// Answer `Ping`; `false` never does (a half-open upstream, for deadline tests).
    pub ping_replies: bool,
    /// Delay before `Authentication failed` (Asterisk: about 1 s).
    pub auth_fail_delay: Duration,
    /// How long an Originated call rings before it is answered: a synchronous `Originate` holds
    /// its session that long before its answer (Asterisk runs one action at a time per session),
    /// an async one's `OriginateResponse` comes that long after `Originate successfully queued`.
    /// `None`: [`SYNC_ORIGINATE_DELAY`] for a synchronous one, about 10 ms for an async one.
    pub originate_ring: Option<Duration>,
    /// An action that takes this long before it is answered (a long `Command`, a large
    /// `QueueStatus`), holding its session meanwhile, as Asterisk does.
    pub slow_action: Option<(String, Duration)>,
}

impl Default for SimOptions {
    /// `admin` / `adminpass`, AMI `11.0.0`, modern Command output, Ping answered, 1 s auth delay.
    fn default() -> Self {
        Self {
            username: "admin".to_string(),
            secret: "adminpass".to_string(),
            ami_version: "11.0.0".to_string(),
            legacy_command: false,
            ping_replies: true,
            auth_fail_delay: Duration::from_secs(1),
            originate_ring: None,
            slow_action: None,
        }
    }
}

/// A running simulator: a cheap, cloneable handle. Dropping every handle leaves it running;
/// [`AmiSim::shutdown`] stops it.
#[derive(Clone)]
pub struct AmiSim {
    inner: Arc<Inner>,
}

struct Inner {
    addr: SocketAddr,
    options: SimOptions,
    conns: Mutex<HashMap<u64, Arc<ConnShared>>>,
    next_conn: AtomicU64,
    received: Mutex<VecDeque<Message>>,
    logins: AtomicUsize,
    drop_mid_list: Mutex<Option<String>>,
    hold: Mutex<Option<String>>,
    /// The events that follow answers (an Originate's call) are not sent.
    no_followers: std::sync::atomic::AtomicBool,
    gate: Gate,
    stop: CancellationToken,
    accept_task: Mutex<Option<JoinHandle<()>>>,
}

/// A late answer: actions of one name wait at the gate, in their connection's reader, until the
/// test lets them through (so the actions after them on that connection wait too, in order).
struct Gate {
    action: Mutex<Option<String>>,
    /// Actions that reached the gate so far.
    arrived: tokio::sync::watch::Sender<usize>,
    /// Answers let through and not yet taken.
    open: tokio::sync::Semaphore,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            action: Mutex::new(None),
            arrived: tokio::sync::watch::Sender::new(0),
            open: tokio::sync::Semaphore::new(0),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl AmiSim {
    /// Starts a simulator on 127.0.0.1 with a free port (see [`AmiSim::addr`]).
    ///
    /// # Errors
    /// The listener cannot be bound.
    pub async fn start(options: SimOptions) -> std::io::Result<AmiSim> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), options).await
    }

    /// Starts a simulator on `addr`, e.g. the port of one that was shut down (restart tests).
    ///
    /// # Errors
    /// The listener cannot be bound (the port is in use).
    pub async fn start_on(addr: SocketAddr, options: SimOptions) -> std::io::Result<AmiSim> {
        let listener = crate::listen::bind(addr, crate::listen::DEFAULT_BACKLOG)?;
        let sim = AmiSim {
            inner: Arc::new(Inner {
                addr: listener.local_addr()?,
                options,
                conns: Mutex::new(HashMap::new()),
                next_conn: AtomicU64::new(1),
                received: Mutex::new(VecDeque::new()),
                logins: AtomicUsize::new(0),
                drop_mid_list: Mutex::new(None),
                hold: Mutex::new(None),
                no_followers: std::sync::atomic::AtomicBool::new(false),
                gate: Gate::default(),
                stop: CancellationToken::new(),
                accept_task: Mutex::new(None),
            }),
        };
        let task = tokio::spawn(sim.clone().accept(listener));
        *lock(&sim.inner.accept_task) = Some(task);
        Ok(sim)
    }

    async fn accept(self, listener: TcpListener) {
        loop {
            let accepted = tokio::select! {
                () = self.inner.stop.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let Ok((stream, _)) = accepted else {
                // Out of file descriptors and the like: try again shortly.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (tx, rx) = mpsc::channel(CONNECTION_QUEUE);
            let conn = Arc::new(ConnShared {
                id: self.inner.next_conn.fetch_add(1, Ordering::Relaxed),
                tx,
                mask: AtomicU32::new(EventMask::ALL.0),
                logged_in: AtomicBool::new(false),
                cancel: CancellationToken::new(),
            });
            lock(&self.inner.conns).insert(conn.id, conn.clone());
            tokio::spawn(conn::serve(self.clone(), stream, conn, rx));
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The options it was started with.
    pub fn options(&self) -> &SimOptions {
        &self.inner.options
    }

    /// Broadcasts an event to every logged-in connection whose event mask passes the event's
    /// `Privilege:` classes (an event without a known class reaches only connections with
    /// events fully on).
    pub fn emit(&self, event: Message) {
        self.emit_ref(&event);
    }

    /// Broadcasts one event given as its exact wire bytes (one message, closing empty line
    /// included), sent unchanged: for bytes that are not UTF-8, as a Latin-1 caller name is.
    /// Who gets it is judged as for [`emit`](Self::emit).
    pub fn emit_wire(&self, wire: &[u8]) {
        let mut buf = BytesMut::from(wire);
        let event = AmiDecoder::default().decode(&mut buf).ok().flatten().unwrap_or_default();
        let bytes = bytes::Bytes::copy_from_slice(wire);
        for conn in self.eligible(EventMask::of_event(&event)) {
            conn.push(bytes.clone());
        }
    }

    fn emit_ref(&self, event: &Message) {
        let bytes = standard::encode_to_bytes(event);
        for conn in self.eligible(EventMask::of_event(event)) {
            conn.push(bytes.clone());
        }
    }

    /// Broadcasts `n` byte-identical copies of `event` (no sequence header is added), encoded
    /// once and queued in chunks of 512 copies shared by every connection, for flood tests and
    /// benchmarks. A connection that cannot keep up is closed.
    pub fn emit_many(&self, event: &Message, n: usize) {
        let one = standard::encode_to_bytes(event);
        let per_chunk = FLOOD_CHUNK.min(n);
        let mut chunk = BytesMut::with_capacity(one.len() * per_chunk);
        for _ in 0..per_chunk {
            chunk.extend_from_slice(&one);
        }
        let chunk = chunk.freeze();
        let (full, rest) = (n / FLOOD_CHUNK, n % FLOOD_CHUNK);
        for conn in self.eligible(EventMask::of_event(event)) {
            let queued = (0..full).all(|_| conn.push(chunk.clone()));
            if queued && rest > 0 {
                conn.push(chunk.slice(..rest * one.len()));
            }
        }
    }

    fn eligible(&self, classes: EventMask) -> Vec<Arc<ConnShared>> {
        lock(&self.inner.conns).values().filter(|c| c.wants(classes)).cloned().collect()
    }

    /// Drops every open connection abruptly, without a goodbye (an Asterisk restart). The
    /// listener keeps accepting.
    pub fn kill_connections(&self) {
        let conns: Vec<_> = lock(&self.inner.conns).drain().map(|(_, c)| c).collect();
        for conn in conns {
            conn.cancel.cancel();
        }
    }

    /// Stops listening (the port is free again when this returns) and drops every connection.
    pub async fn shutdown(&self) {
        self.inner.stop.cancel();
        let task = lock(&self.inner.accept_task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        self.kill_connections();
    }

    /// Connections currently open.
    pub fn connection_count(&self) -> usize {
        lock(&self.inner.conns).values().filter(|c| !c.cancel.is_cancelled()).count()
    }

    /// Successful logins so far.
    pub fn login_count(&self) -> usize {
        self.inner.logins.load(Ordering::Relaxed)
    }

    /// Every message received from logged-in connections, in arrival order (the last
    /// [`RECEIVED_KEPT`]).
    pub fn received(&self) -> Vec<Message> {
        lock(&self.inner.received).iter().cloned().collect()
    }

    /// When the named list action (e.g. `CoreShowChannels`) is asked, send its start response
    /// and one item, then close the connection. `None` turns this off.
    pub fn set_drop_mid_list(&self, action: Option<&str>) {
        *lock(&self.inner.drop_mid_list) = action.map(str::to_string);
    }

    /// Never answer the named action (it stays pending; later actions are still answered).
    /// `None` turns this off.
    pub fn set_hold(&self, action: Option<&str>) {
        *lock(&self.inner.hold) = action.map(str::to_string);
    }

    /// Answer the named action (e.g. `Ping`) only once [`AmiSim::open_gate`] lets it through; until
    /// then its connection answers nothing after it either, as a busy Asterisk would. `None`
    /// turns this off (actions already waiting still wait for `open_gate`).
    pub fn set_gate(&self, action: Option<&str>) {
        *lock(&self.inner.gate.action) = action.map(str::to_string);
    }

    /// Waits until `n` actions in all have reached the gate (they are received, not answered).
    pub async fn gated(&self, n: usize) {
        let mut arrived = self.inner.gate.arrived.subscribe();
        let _ = arrived.wait_for(|&count| count >= n).await;
    }

    /// Lets `n` answers waiting at the gate (or the next ones to arrive) through.
    pub fn open_gate(&self, n: usize) {
        self.inner.gate.open.add_permits(n);
    }

    /// Waits at the gate if `action` is the gated one.
    async fn pass_gate(&self, action: &str) {
        if !Self::names(&self.inner.gate.action, action) {
            return;
        }
        self.inner.gate.arrived.send_modify(|count| *count += 1);
        if let Ok(permit) = self.inner.gate.open.acquire().await {
            permit.forget();
        }
    }

    fn record(&self, action: &Message) {
        let mut received = lock(&self.inner.received);
        if received.len() >= RECEIVED_KEPT {
            received.pop_front();
        }
        received.push_back(action.clone());
    }

    fn count_login(&self) {
        self.inner.logins.fetch_add(1, Ordering::Relaxed);
    }

    fn forget(&self, conn: u64) {
        lock(&self.inner.conns).remove(&conn);
    }

    /// With `true`, the broadcast events that follow an answer (the call of an async
    /// `Originate`, its `OriginateResponse` among them) are not sent: a call that never ends.
    pub fn set_no_followers(&self, on: bool) {
        self.inner.no_followers.store(on, Ordering::Relaxed);
    }

    fn sends_followers(&self) -> bool {
        !self.inner.no_followers.load(Ordering::Relaxed)
    }

    fn is_held(&self, action: &str) -> bool {
        Self::names(&self.inner.hold, action)
    }

    fn drops_mid_list(&self, action: &str) -> bool {
        Self::names(&self.inner.drop_mid_list, action)
    }

    fn names(slot: &Mutex<Option<String>>, action: &str) -> bool {
        lock(slot).as_deref().is_some_and(|a| a.eq_ignore_ascii_case(action))
    }
}

#[cfg(test)]
mod tests;
