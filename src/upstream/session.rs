//! The connected session loop of one Asterisk server.
//!
//! One task owns the socket and the route map (proxy ActionID -> client, original ActionID),
//! so the map needs no lock. The loop reads continuously: writes to Asterisk go through an
//! output buffer drained in the same `select!`, so a slow write never stops the reader, and the
//! reader never waits on a client (client queues never block). Every action gets a proxy-unique
//! ActionID; answers, list items, list Complete events and async `OriginateResponse` events go to
//! the one client that asked, with its own ActionID restored (or removed when it sent none).

use std::collections::HashMap;
use std::sync::OnceLock;

use astmanproxy_handlers::{standard, DecodeError, Kind, Message};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::connect::{Connection, LOGOFF_GRACE};
use super::context::Context;
use super::disconnect::Disconnect;
use super::handle::UpstreamHandle;
use super::originate::{self, Arrival, Owner, Parked};
use super::pool::{Job, Ticket};
use crate::config::AutoFilter;
use crate::event::SharedEvent;
use crate::route::{self, Request};

/// Stop taking new actions while this many bytes wait to be written to Asterisk.
const OUTPUT_HIGH_WATER: usize = 256 * 1024;

/// Room made in the read buffer before each read: large reads keep syscalls per event low.
const READ_CHUNK: usize = 64 * 1024;

/// At most this many queued actions are taken per loop turn (fairness with reading).
const REQUESTS_PER_TURN: usize = 64;

/// Where the answers to one forwarded action go.
struct Route {
    owner: Option<Owner>,
    started: Instant,
    deadline: Instant,
    is_command: bool,
    /// An Originate sent with `Async: true` (by the client, or by the proxy for a synchronous
    /// one: then `sync_ring` is its `Timeout`).
    async_originate: bool,
    sync_ring: Option<std::time::Duration>,
    in_list: bool,
    /// Frees the session in the dispatcher when the route ends (dropped with it).
    _ticket: Option<Ticket>,
}

/// The ActionID prefix of this process: random, so that ActionIDs of other AMI users of the same
/// Asterisk cannot be mistaken for ours.
fn id_prefix() -> &'static str {
    static PREFIX: OnceLock<String> = OnceLock::new();
    PREFIX.get_or_init(|| format!("amp2-{:08x}-", rand::random::<u32>()))
}

struct Session<'a> {
    handle: &'a UpstreamHandle,
    ctx: &'a Context,
    routes: HashMap<String, Route>,
    seq: u64,
    out: BytesMut,
    ping: Option<(String, Instant)>,
}

/// Runs a logged-in connection until it fails or the server is stopped; returns why it ended.
pub async fn run(conn: Connection, handle: &UpstreamHandle, ctx: &Context, rx: &mut mpsc::Receiver<Job>) -> Disconnect {
    let Connection { stream, mut rbuf, mut decoder, .. } = conn;
    let (mut reader, mut writer) = tokio::io::split(stream);
    let cfg = ctx.config();
    let cancel = handle.inner.cancel.clone();
    let mut s = Session { handle, ctx, routes: HashMap::new(), seq: 0, out: BytesMut::new(), ping: None };
    let tick_every = cfg.ping_interval.min(cfg.ping_timeout).min(std::time::Duration::from_secs(1)) / 2;
    let mut tick = tokio::time::interval(tick_every.max(std::time::Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_read = Instant::now();
    let mut stalled_since: Option<Instant> = None;

    // Messages already buffered during login.
    if let Err(reason) = s.drain_decoded(&mut decoder, &mut rbuf) {
        s.fail_all(&reason);
        return reason;
    }

    // Shared by the server's sessions: each adds its own change.
    let pending = handle.inner.state.pending.clone();
    let mut counted: i64 = 0;
    let reason = loop {
        let now_pending = i64::try_from(s.routes.len()).unwrap_or(i64::MAX);
        pending.inc_by(now_pending - counted);
        counted = now_pending;
        let take_requests = s.out.len() < OUTPUT_HIGH_WATER;
        // Without this, a full BytesMut would read 64 bytes at a time.
        rbuf.reserve(READ_CHUNK);
        // Not biased: under a continuous event flood the read branch is always ready, and a fixed
        // order would starve writes and new actions. tokio picks a random ready branch.
        tokio::select! {
            () = cancel.cancelled() => {
                s.out.clear();
                let logoff = Message::new().with("Action", "Logoff").with("ActionID", format!("{}logoff", id_prefix()));
                tracing::trace!(ami = ?logoff, "to Asterisk");
                standard::encode(&logoff, &mut s.out);
                // Best effort: Asterisk is told goodbye, but shutdown never waits long for it.
                let _ = tokio::time::timeout(LOGOFF_GRACE, writer.write_all(&s.out)).await;
                break Disconnect::Stopped;
            }
            read = reader.read_buf(&mut rbuf) => match read {
                Ok(0) => break Disconnect::Closed,
                Ok(_) => {
                    last_read = Instant::now();
                    if let Err(reason) = s.drain_decoded(&mut decoder, &mut rbuf) {
                        break reason;
                    }
                }
                Err(e) => break Disconnect::Read(e),
            },
            written = writer.write(&s.out), if !s.out.is_empty() => match written {
                Ok(0) => break Disconnect::Closed,
                Ok(n) => {
                    s.out.advance(n);
                    stalled_since = (!s.out.is_empty()).then(Instant::now);
                }
                Err(e) => break Disconnect::Write(e),
            },
            Some(job) = rx.recv(), if take_requests => {
                s.forward(job, &mut decoder);
                for _ in 1..REQUESTS_PER_TURN {
                    match rx.try_recv() {
                        Ok(job) => s.forward(job, &mut decoder),
                        Err(_) => break,
                    }
                }
                if stalled_since.is_none() && !s.out.is_empty() {
                    stalled_since = Some(Instant::now());
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                if let Some((_, deadline)) = &s.ping {
                    if now >= *deadline {
                        break Disconnect::PingTimeout(cfg.ping_timeout);
                    }
                } else if now.duration_since(last_read) >= cfg.ping_interval {
                    s.send_ping(now + cfg.ping_timeout);
                    stalled_since.get_or_insert(now);
                }
                if let Some(since) = stalled_since {
                    if !s.out.is_empty() && now.duration_since(since) >= cfg.asterisk_write_timeout {
                        break Disconnect::WriteStalled(cfg.asterisk_write_timeout);
                    }
                }
                s.expire(now);
            }
        }
    };
    s.fail_all(&reason);
    pending.dec_by(counted);
    reason
}

impl Session<'_> {
    fn drain_decoded(
        &mut self,
        decoder: &mut astmanproxy_handlers::AmiDecoder,
        rbuf: &mut BytesMut,
    ) -> Result<(), Disconnect> {
        loop {
            match decoder.decode(rbuf) {
                Ok(Some(message)) => self.dispatch(message, decoder),
                Ok(None) => return Ok(()),
                Err(e) if e.can_continue() => self.on_skipped(&e, decoder),
                Err(e) => return Err(Disconnect::BadInput(e)),
            }
        }
    }

    /// A message from Asterisk broke a codec limit and was skipped; the session goes on. When it
    /// was the answer to a client's action, that client gets an error at once instead of
    /// waiting for `actiontimeout`. A list item is lost alone: the list goes on.
    fn on_skipped(&mut self, error: &DecodeError, decoder: &mut astmanproxy_handlers::AmiDecoder) {
        tracing::warn!(error = %error, "skipped a message from Asterisk");
        let Some(id) = error.action_id().map(|id| String::from_utf8_lossy(id).into_owned()) else {
            return;
        };
        let Some(route) = self.routes.get(&id) else {
            return;
        };
        if route.in_list {
            return;
        }
        if route.is_command {
            decoder.command_answered();
        }
        let Some(route) = self.routes.remove(&id) else {
            return;
        };
        if self.ping.as_ref().is_some_and(|(p, _)| *p == id) {
            self.ping = None;
        }
        if let Some(owner) = route.owner {
            answer_error(owner, self.handle.name(), &format!("Answer from Asterisk skipped: {error}"));
        }
    }

    fn forward(&mut self, job: Job, decoder: &mut astmanproxy_handlers::AmiDecoder) {
        let Job { request: Request { mut action, reply, original_id }, ticket } = job;
        if reply.is_closed() {
            reply.end_action(original_id.as_ref());
            return;
        }
        self.seq += 1;
        let id = format!("{}{}", id_prefix(), self.seq);
        action.set("ActionID", id.clone());
        let name = action.action().unwrap_or_default();
        let is_command = name.eq_ignore_ascii_case("Command");
        let is_originate = name.eq_ignore_ascii_case("Originate");
        // A synchronous Originate would hold this session for a whole ring: it goes as an async
        // one, and its client is answered from the OriginateResponse (see `originate`).
        let sync_ring =
            (is_originate && !action.get("Async").is_some_and(is_true)).then(|| originate::ring_timeout(&action));
        if sync_ring.is_some() {
            action.set("Async", "true");
        }
        let async_originate = is_originate;
        if is_command {
            decoder.expect_command_output();
        }
        tracing::trace!(ami = ?action, "to Asterisk");
        standard::encode(&action, &mut self.out);
        self.handle.inner.state.actions.inc();
        let started = Instant::now();
        let deadline = started + self.ctx.config().action_timeout;
        let owner = Some(Owner { sink: reply, original_id });
        let route =
            Route { owner, started, deadline, is_command, async_originate, sync_ring, in_list: false, _ticket: ticket };
        self.routes.insert(id, route);
    }

    fn send_ping(&mut self, deadline: Instant) {
        self.seq += 1;
        let id = format!("{}{}", id_prefix(), self.seq);
        let ping = Message::new().with("Action", "Ping").with("ActionID", id.clone());
        tracing::trace!(ami = ?ping, "to Asterisk");
        standard::encode(&ping, &mut self.out);
        self.routes.insert(
            id.clone(),
            Route {
                owner: None,
                started: Instant::now(),
                deadline,
                is_command: false,
                async_originate: false,
                sync_ring: None,
                in_list: false,
                _ticket: None,
            },
        );
        self.ping = Some((id, deadline));
    }

    fn dispatch(&mut self, message: Message, decoder: &mut astmanproxy_handlers::AmiDecoder) {
        tracing::trace!(ami = ?message, "from Asterisk");
        match message.kind() {
            Kind::Response => self.on_response(message, decoder),
            Kind::Event => self.on_event(message),
            _ => tracing::debug!(?message, "ignoring a block that is neither response nor event"),
        }
    }

    fn on_response(&mut self, message: Message, decoder: &mut astmanproxy_handlers::AmiDecoder) {
        let Some(id) = message.action_id().map(str::to_owned) else {
            tracing::debug!(?message, "response without ActionID cannot be routed");
            return;
        };
        let Some(route) = self.routes.get_mut(&id) else {
            tracing::debug!(action_id = %id, "response for an unknown or expired action");
            return;
        };
        if route.is_command && message.body().is_none() {
            decoder.command_answered();
        }
        if route.owner.is_none() {
            self.routes.remove(&id);
            if self.ping.as_ref().is_some_and(|(p, _)| *p == id) {
                self.ping = None;
            }
            return;
        }
        let cfg = self.ctx.config();
        let list_start = message.get("EventList").is_some_and(|v| v.eq_ignore_ascii_case("start"));
        let originate_queued =
            route.async_originate && message.response().is_some_and(|r| r.eq_ignore_ascii_case("Success"));
        if list_start {
            route.in_list = true;
            route.deadline = Instant::now() + cfg.action_timeout;
        }
        if originate_queued && !list_start {
            self.park(&id, message);
            return;
        }
        let name = self.handle.name();
        if let Some(owner) = &route.owner {
            deliver(owner, message, name);
        }
        if !list_start {
            self.finish(&id);
        }
    }

    /// An Originate answered `Success`: the session is free again; its route waits, in the
    /// server's shared table, for the `OriginateResponse`, which may come on another session.
    /// A synchronous one's client gets no answer yet.
    fn park(&mut self, id: &str, answer: Message) {
        let Some(mut route) = self.routes.remove(id) else { return };
        let Some(owner) = route.owner.take() else { return };
        let cfg = self.ctx.config();
        let sync = route.sync_ring.is_some();
        let wait = route.sync_ring.map_or(cfg.originate_timeout, |ring| ring + cfg.originate_margin);
        if !sync {
            owner.sink.originate_queued();
            deliver(&owner, answer, self.handle.name());
            // The action's own answer is complete (AJAM returns it now, as Asterisk's /rawman
            // does); the OriginateResponse that follows is an event of the session.
            owner.sink.answered(owner.original_id.as_ref());
        }
        let parked = Parked { owner, sync, started: route.started, deadline: Instant::now() + wait };
        if let Some((parked, event)) = self.handle.inner.originates.park(id.to_string(), parked) {
            self.originate_response(parked, event);
        }
    }

    /// The `OriginateResponse` of a parked Originate: an async one's client gets the event, a
    /// synchronous one's the answer Asterisk would have given.
    fn originate_response(&self, parked: Parked, event: Message) {
        parked.settle();
        if parked.sync {
            deliver(&parked.owner, originate::sync_answer(&event), self.handle.name());
        } else {
            if self.ctx.config().autofilter == AutoFilter::Off {
                let mut copy = event.clone();
                copy.remove("ActionID");
                self.broadcast(copy);
            }
            deliver(&parked.owner, event, self.handle.name());
        }
        parked.owner.sink.end_action(parked.owner.original_id.as_ref());
        self.ctx.metrics().observe_latency(&self.handle.inner.state.labels, parked.started.elapsed());
    }

    fn on_event(&mut self, message: Message) {
        self.handle.inner.state.events.inc();
        if let Some(id) = message.action_id().filter(|id| id.starts_with(id_prefix())).map(str::to_owned) {
            if message.event().is_some_and(|e| e.eq_ignore_ascii_case("OriginateResponse"))
                && !self.routes.get(&id).is_some_and(|r| r.in_list)
            {
                if let Arrival::Matched(parked, event) = self.handle.inner.originates.arrived(&id, message) {
                    self.originate_response(parked, event);
                }
                return;
            }
            let Some(route) = self.routes.get(&id) else {
                tracing::debug!(action_id = %id, "event for an expired action dropped");
                return;
            };
            let done = message.get("EventList").is_some_and(|v| v.eq_ignore_ascii_case("Complete"));
            let also_broadcast = !route.in_list && self.ctx.config().autofilter == AutoFilter::Off;
            if also_broadcast {
                let mut copy = message.clone();
                copy.remove("ActionID");
                self.broadcast(copy);
            }
            if let Some(owner) = &route.owner {
                deliver(owner, message, self.handle.name());
            }
            if done {
                self.finish(&id);
            }
            return;
        }
        if self.handle.inner.index != 0 {
            // Events come from the event session only, never twice (an action session logs in
            // with `Events: off`; whatever Asterisk sends it anyway is not passed on).
            tracing::debug!(event = ?message.event(), "event on an action session not passed on");
            return;
        }
        self.broadcast(message);
    }

    fn broadcast(&self, mut message: Message) {
        message.push("Server", self.handle.name());
        self.ctx.publish(SharedEvent::counted(message, self.handle.inner.state.events_sent.clone()));
    }

    /// Removes a route whose final answer was delivered.
    fn finish(&mut self, id: &str) {
        if let Some(route) = self.routes.remove(id) {
            if let Some(owner) = route.owner {
                owner.sink.end_action(owner.original_id.as_ref());
                self.ctx.metrics().observe_latency(&self.handle.inner.state.labels, route.started.elapsed());
            }
        }
    }

    /// Answers routes whose deadline passed.
    fn expire(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .routes
            .iter()
            .filter(|(_, r)| r.owner.is_some() && r.deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            let Some(route) = self.routes.remove(&id) else { continue };
            let Some(owner) = route.owner else { continue };
            let why = format!("Timeout waiting for an answer from server {}", self.handle.name());
            answer_error(owner, self.handle.name(), &why);
        }
        if self.handle.inner.index == 0 {
            let cfg = self.ctx.config();
            for parked in self.handle.inner.originates.expire(now, cfg.action_timeout) {
                let why = format!("Timeout waiting for the OriginateResponse from server {}", self.handle.name());
                self.unpark(parked, &why);
            }
        }
    }

    /// A parked Originate whose `OriginateResponse` will not come: a synchronous one is answered
    /// with an error, an async one (answered already) just ends.
    fn unpark(&self, parked: Parked, why: &str) {
        parked.settle();
        if parked.sync {
            answer_error(parked.owner, self.handle.name(), why);
        } else {
            parked.owner.sink.end_action(parked.owner.original_id.as_ref());
        }
    }

    /// Answers every pending action with an error (the connection is gone).
    fn fail_all(&mut self, reason: &Disconnect) {
        let name = self.handle.name().to_string();
        let why = format!("Server {name} disconnected before answering: {reason}");
        for (_, route) in self.routes.drain() {
            let Some(owner) = route.owner else { continue };
            answer_error(owner, &name, &why);
        }
        // The OriginateResponses come on the event session: when it goes, they will not come.
        // An async Originate was answered already (a second answer would confuse the client).
        if self.handle.inner.index == 0 {
            for parked in self.handle.inner.originates.drain() {
                self.unpark(parked, &why);
            }
        }
    }
}

fn answer_error(owner: Owner, server: &str, text: &str) {
    route::answer_error(owner.sink, owner.original_id, server, text);
}

/// Sends a message to its owner with the owner's ActionID restored and `Server:` added.
fn deliver(owner: &Owner, mut message: Message, server: &str) {
    match &owner.original_id {
        Some(original) => message.set_value("ActionID", original),
        None => {
            message.remove("ActionID");
        }
    }
    message.push("Server", server);
    owner.sink.send_message(message);
}

fn is_true(v: &str) -> bool {
    matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "yes" | "1" | "on")
}
