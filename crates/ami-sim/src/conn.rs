//! One simulated AMI connection: a reader that answers actions strictly in order, and a writer
//! task that drains the connection's bounded queue. Answers and broadcast events share that
//! queue, so their order is kept, and a slow reader only ever blocks its own reader task.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use astmanproxy_handlers::{standard, AmiDecoder, Message};
use bytes::{Bytes, BytesMut};
use md5::{Digest, Md5};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::mask::EventMask;
use super::script::{self, Session};
use super::AmiSim;

/// Small queued items are gathered into one write of up to this many bytes.
const WRITE_BATCH: usize = 64 * 1024;

/// Delay between an async Originate's answer and the call's events.
const EVENTS_DELAY: Duration = Duration::from_millis(10);

/// What the simulator keeps of an open connection.
pub(super) struct ConnShared {
    /// Key in the simulator's connection table.
    pub id: u64,
    /// The connection's queue; an empty item asks the writer to flush and close.
    pub tx: mpsc::Sender<Bytes>,
    /// Event classes it receives ([`EventMask`] bits).
    pub mask: AtomicU32,
    /// Logged in: broadcast events reach it.
    pub logged_in: AtomicBool,
    /// Cancelled to drop the connection at once.
    pub cancel: CancellationToken,
}

impl ConnShared {
    /// Queues a broadcast without waiting; a full queue closes the connection (Asterisk drops
    /// clients that do not read).
    pub fn push(&self, bytes: Bytes) -> bool {
        match self.tx.try_send(bytes) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::debug!(conn = self.id, "simulator: queue full, dropping a slow reader");
                self.cancel.cancel();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Whether an event of `classes` goes to this connection.
    pub fn wants(&self, classes: EventMask) -> bool {
        self.logged_in.load(Ordering::Acquire)
            && !self.cancel.is_cancelled()
            && EventMask(self.mask.load(Ordering::Acquire)).allows(classes)
    }
}

/// Serves one connection until the client leaves, logs off, fails to log in or is killed.
pub(super) async fn serve(sim: AmiSim, stream: TcpStream, conn: Arc<ConnShared>, rx: mpsc::Receiver<Bytes>) {
    let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
    let session = Session {
        account: String::new(),
        id: conn.id,
        local: stream.local_addr().unwrap_or(unspecified),
        remote: stream.peer_addr().unwrap_or(unspecified),
        since: SystemTime::now(),
    };
    let (reader, writer) = stream.into_split();
    let writing = tokio::spawn(write_loop(writer, rx, conn.cancel.clone()));
    let banner = Bytes::from(format!("Asterisk Call Manager/{}\r\n", sim.options().ami_version));
    if conn.tx.send(banner).await.is_ok() {
        let mut s = SessionState { sim: sim.clone(), conn: conn.clone(), session, challenge: None };
        s.read_loop(reader).await;
    }
    conn.logged_in.store(false, Ordering::Release);
    if !conn.cancel.is_cancelled() {
        // Let the writer flush the last answer (Goodbye, Authentication failed), then close.
        let _ = tokio::time::timeout(Duration::from_secs(1), conn.tx.send(Bytes::new())).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), writing).await;
    }
    conn.cancel.cancel();
    sim.forget(conn.id);
}

async fn write_loop(mut writer: OwnedWriteHalf, mut rx: mpsc::Receiver<Bytes>, cancel: CancellationToken) {
    let mut batch = BytesMut::new();
    loop {
        let first = tokio::select! {
            () = cancel.cancelled() => return,
            item = rx.recv() => match item {
                Some(bytes) if !bytes.is_empty() => bytes,
                _ => break,
            },
        };
        // Gather what else is queued into one write; a big item (a flood chunk) goes as it is.
        let mut close = false;
        let bytes = if first.len() >= WRITE_BATCH {
            first
        } else {
            batch.extend_from_slice(&first);
            while batch.len() < WRITE_BATCH {
                match rx.try_recv() {
                    Ok(next) if next.is_empty() => {
                        close = true;
                        break;
                    }
                    Ok(next) => batch.extend_from_slice(&next),
                    Err(_) => break,
                }
            }
            batch.split().freeze()
        };
        let written = tokio::select! {
            () = cancel.cancelled() => return,
            r = writer.write_all(&bytes) => r,
        };
        if written.is_err() {
            cancel.cancel();
            return;
        }
        if close {
            break;
        }
    }
    let _ = writer.shutdown().await;
}

/// The reader side's state.
struct SessionState {
    sim: AmiSim,
    conn: Arc<ConnShared>,
    session: Session,
    /// The nonce of `Action: Challenge`, kept for the session as Asterisk does.
    challenge: Option<String>,
}

enum Flow {
    Continue,
    /// Flush what is queued, then close.
    Close,
}

impl SessionState {
    async fn read_loop(&mut self, mut reader: OwnedReadHalf) {
        let mut decoder = AmiDecoder::default();
        let mut buf = BytesMut::with_capacity(4096);
        loop {
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(action)) => {
                        if let Flow::Close = self.handle(action).await {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(e) if e.can_continue() => {}
                    Err(_) => return,
                }
            }
            let read = tokio::select! {
                () = self.conn.cancel.cancelled() => return,
                r = reader.read_buf(&mut buf) => r,
            };
            if !matches!(read, Ok(n) if n > 0) {
                self.conn.cancel.cancel();
                return;
            }
        }
    }

    /// Queues an answer, waiting while the queue is full (only this reader waits).
    async fn send(&self, message: &Message) {
        let _ = self.conn.tx.send(standard::encode_to_bytes(message)).await;
    }

    fn logged_in(&self) -> bool {
        self.conn.logged_in.load(Ordering::Acquire)
    }

    async fn handle(&mut self, action: Message) -> Flow {
        if self.logged_in() {
            self.sim.record(&action);
        }
        let id = action.action_id().map(str::to_owned);
        let id = id.as_deref();
        let Some(name) = action.action().map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned) else {
            self.send(&script::missing_action(id)).await;
            self.report_bad_format("Action: NONE");
            return Flow::Continue;
        };
        match name.to_ascii_lowercase().as_str() {
            "login" => return self.login(&action, id).await,
            "challenge" => {
                if !action.get("AuthType").is_some_and(|t| t.trim().eq_ignore_ascii_case("md5")) {
                    self.send(&script::error(id, "Must specify AuthType")).await;
                    return Flow::Continue;
                }
                let nonce = self.challenge.get_or_insert_with(|| (rand::random::<u32>() >> 1).to_string()).clone();
                self.send(&script::challenge(id, &nonce)).await;
                return Flow::Continue;
            }
            "logoff" => {
                self.conn.logged_in.store(false, Ordering::Release);
                self.send(&script::goodbye(id)).await;
                return Flow::Close;
            }
            _ if !self.logged_in() => {
                self.send(&script::permission_denied(id)).await;
                return Flow::Continue;
            }
            "events" => {
                let mask = EventMask::parse(action.get("EventMask").unwrap_or(""));
                self.conn.mask.store(mask.0, Ordering::Release);
                self.send(&script::events_set(id, mask.is_on())).await;
                return Flow::Continue;
            }
            "ping" if !self.sim.options().ping_replies => return Flow::Continue,
            _ => {}
        }
        if self.sim.is_held(&name) {
            return Flow::Continue;
        }
        tokio::select! {
            () = self.sim.pass_gate(&name) => {}
            () = self.conn.cancel.cancelled() => return Flow::Close,
        }
        let Some(answer) = script::answer_to(&action, &name, id) else {
            self.send(&script::unknown_action(&name, id)).await;
            self.report_bad_format(&format!("Action: {name}"));
            return Flow::Continue;
        };
        if self.sim.drops_mid_list(&name) {
            for m in answer.reply.iter().take(2) {
                self.send(m).await;
            }
            return Flow::Close;
        }
        if let Some((_, slow)) = self.sim.options().slow_action.as_ref().filter(|(n, _)| n.eq_ignore_ascii_case(&name))
        {
            tokio::time::sleep(*slow).await;
        }
        // One action at a time: a synchronous Originate holds this session while the call rings.
        let ring = self.sim.options().originate_ring.filter(|_| name.eq_ignore_ascii_case("Originate"));
        let (delay, events_delay) = match ring {
            Some(ring) if !answer.delay.is_zero() => (ring, EVENTS_DELAY),
            Some(ring) => (Duration::ZERO, ring),
            None => (answer.delay, EVENTS_DELAY),
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let legacy = self.sim.options().legacy_command && name.eq_ignore_ascii_case("Command");
        for m in &answer.reply {
            if legacy {
                self.send(&script::legacy_command(m)).await;
            } else {
                self.send(m).await;
            }
        }
        if !answer.events.is_empty() && self.sim.sends_followers() {
            let sim = self.sim.clone();
            tokio::spawn(async move {
                tokio::time::sleep(events_delay).await;
                for event in &answer.events {
                    sim.emit_ref(event);
                }
            });
        }
        Flow::Continue
    }

    /// Broadcasts `RequestBadFormat`, as Asterisk does after answering a bad request (19, 20).
    fn report_bad_format(&self, request_type: &str) {
        if self.logged_in() {
            self.sim.emit(script::request_bad_format(&self.session, request_type));
        }
    }

    async fn login(&mut self, action: &Message, id: Option<&str>) -> Flow {
        let opts = self.sim.options();
        let user = action.get("Username").unwrap_or("").trim();
        let user_ok = user.eq_ignore_ascii_case(&opts.username);
        let secret_ok = if action.get("AuthType").is_some_and(|t| t.trim().eq_ignore_ascii_case("md5")) {
            let expected = self.challenge.as_ref().map(|c| format!("{:x}", Md5::digest(format!("{c}{}", opts.secret))));
            matches!((expected, action.get("Key")), (Some(e), Some(k)) if e.eq_ignore_ascii_case(k.trim()))
        } else {
            action.get("Secret") == Some(opts.secret.as_str())
        };
        if !(user_ok && secret_ok) {
            self.conn.logged_in.store(false, Ordering::Release);
            tokio::time::sleep(opts.auth_fail_delay).await;
            self.send(&script::auth_failed(id)).await;
            return Flow::Close;
        }
        let mask = action.get("Events").map_or(EventMask::ALL, EventMask::parse);
        self.conn.mask.store(mask.0, Ordering::Release);
        self.session.account = user.to_string();
        self.send(&script::login_accepted(id)).await;
        let booted = script::fully_booted();
        if mask.allows(EventMask::of_event(&booted)) {
            self.send(&booted).await;
        }
        self.conn.logged_in.store(true, Ordering::Release);
        self.sim.count_login();
        // Every session reading security events hears of the login, this one included.
        self.sim.emit(script::successful_auth(&self.session));
        Flow::Continue
    }
}
