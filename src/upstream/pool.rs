//! The action sessions of one server and the dispatcher that shares them out.
//!
//! Asterisk runs the actions of one AMI session one at a time, so one slow action (a long
//! `Command`, a big `QueueStatus`) holds up every action queued behind it on that session. With
//! `actionsessions = N` the proxy keeps N sessions per server: session 0 is the event session
//! (it logs in with the server's `events`), sessions 1..N-1 log in with `Events: off` and only
//! carry actions. The dispatcher sends each action to a free session (extra sessions first),
//! except that a client with an action still running keeps its session, so one client's actions
//! run in the order it sent them, as on Asterisk. When every session is busy the action waits
//! here, in arrival order, for the first session to become free
//! (`astmanproxy_server_action_waits_total`, `_server_action_wait_seconds`). With N = 1 every
//! action goes to the one session at once, as before.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::context::Context;
use super::handle::{Status, UpstreamHandle};
use crate::metrics::Metrics;
use crate::route::ClientId;
use crate::route::{reject, Request};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

/// How often waiting actions are looked at even when nothing ends (a session came back).
const RECHECK: Duration = Duration::from_millis(200);

/// An action given to one session, with the ticket that frees the session when dropped.
pub(crate) struct Job {
    pub request: Request,
    pub ticket: Option<Ticket>,
}

/// Held while an action runs on a session; dropping it (answered, expired, failed, or an
/// Originate that only waits for its `OriginateResponse`) tells the dispatcher.
pub(crate) struct Ticket {
    session: usize,
    client: ClientId,
    done: mpsc::UnboundedSender<(usize, ClientId)>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let _ = self.done.send((self.session, self.client));
    }
}

/// One session as the dispatcher sees it.
pub(crate) struct Slot {
    pub handle: UpstreamHandle,
    pub tx: mpsc::Sender<Job>,
    busy: usize,
    busy_gauge: Gauge,
}

impl Slot {
    pub fn new(handle: UpstreamHandle, tx: mpsc::Sender<Job>, metrics: &Metrics, index: usize) -> Self {
        let labels = Metrics::session(&Metrics::server(handle.name()), index);
        Self { busy_gauge: metrics.session_busy.get_or_create(&labels).clone(), handle, tx, busy: 0 }
    }
}

struct Dispatcher {
    slots: Vec<Slot>,
    clients: HashMap<ClientId, (usize, usize)>,
    waiting: VecDeque<(Request, Instant)>,
    done: mpsc::UnboundedSender<(usize, ClientId)>,
    waits: Counter,
    wait: Histogram,
}

/// Shares `rx`'s actions out to `slots` until `cancel`.
pub(crate) async fn dispatch(
    mut rx: mpsc::Receiver<Request>,
    slots: Vec<Slot>,
    ctx: Context,
    cancel: CancellationToken,
) {
    let labels = Metrics::server(slots[0].handle.name());
    let (done, mut done_rx) = mpsc::unbounded_channel();
    let mut d = Dispatcher {
        slots,
        clients: HashMap::new(),
        waiting: VecDeque::new(),
        done,
        waits: ctx.metrics().action_waits.get_or_create(&labels).clone(),
        wait: ctx.metrics().action_wait.get_or_create(&labels).clone(),
    };
    let mut tick = tokio::time::interval(RECHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            Some(request) = rx.recv() => d.place(request),
            Some((session, client)) = done_rx.recv() => {
                d.finished(session, client);
                d.drain();
            }
            _ = tick.tick() => d.recheck(),
        }
    }
    let name = d.slots[0].handle.name().to_string();
    rx.close();
    while let Ok(request) = rx.try_recv() {
        d.waiting.push_back((request, Instant::now()));
    }
    for (request, _) in d.waiting.drain(..) {
        reject(request, &name, &format!("Server {name} has been stopped"));
    }
}

impl Dispatcher {
    fn place(&mut self, request: Request) {
        let client = request.reply.id();
        if let Some(&(session, _)) = self.clients.get(&client) {
            self.send(session, request);
        } else if self.waiting.iter().any(|(r, _)| r.reply.id() == client) {
            self.waiting.push_back((request, Instant::now()));
        } else if let Some(session) = self.free() {
            self.send(session, request);
        } else {
            self.waits.inc();
            self.waiting.push_back((request, Instant::now()));
        }
    }

    /// A free session: an extra one first (the event session also carries the events). With
    /// one session, always that one (Asterisk queues the actions, as before).
    fn free(&self) -> Option<usize> {
        if self.slots.len() == 1 {
            return Some(0);
        }
        let connected = |i: &usize| self.slots[*i].handle.status() == Status::Connected;
        let order = (1..self.slots.len()).chain(std::iter::once(0));
        let mut candidates = order.filter(connected).peekable();
        candidates.peek()?;
        candidates.find(|&i| self.slots[i].busy == 0)
    }

    fn send(&mut self, session: usize, request: Request) {
        let client = request.reply.id();
        let slot = &mut self.slots[session];
        slot.busy += 1;
        slot.busy_gauge.set(i64::try_from(slot.busy).unwrap_or(i64::MAX));
        self.clients.entry(client).or_insert((session, 0)).1 += 1;
        let ticket = Ticket { session, client, done: self.done.clone() };
        if let Err(e) = slot.tx.try_send(Job { request, ticket: Some(ticket) }) {
            let name = slot.handle.name().to_string();
            let (job, reason) = match e {
                mpsc::error::TrySendError::Full(j) => (j, format!("Server {name} is busy, try again")),
                mpsc::error::TrySendError::Closed(j) => (j, format!("Server {name} has been dropped")),
            };
            // The ticket goes with the job: the slot is freed again.
            reject(job.request, &name, &reason);
        }
    }

    fn finished(&mut self, session: usize, client: ClientId) {
        let slot = &mut self.slots[session];
        slot.busy = slot.busy.saturating_sub(1);
        slot.busy_gauge.set(i64::try_from(slot.busy).unwrap_or(i64::MAX));
        if let Some(entry) = self.clients.get_mut(&client) {
            entry.1 = entry.1.saturating_sub(1);
            if entry.1 == 0 {
                self.clients.remove(&client);
            }
        }
    }

    /// Gives waiting actions to free sessions, oldest first; the other waiting actions of the same
    /// client go to the same session behind it, keeping that client's order.
    fn drain(&mut self) {
        while !self.waiting.is_empty() {
            let Some(session) = self.free() else { return };
            let Some((request, since)) = self.waiting.pop_front() else { return };
            self.wait.observe(since.elapsed().as_secs_f64());
            let client = request.reply.id();
            self.send(session, request);
            let (same, rest): (VecDeque<_>, VecDeque<_>) =
                std::mem::take(&mut self.waiting).into_iter().partition(|(r, _)| r.reply.id() == client);
            self.waiting = rest;
            for (request, since) in same {
                self.wait.observe(since.elapsed().as_secs_f64());
                self.send(session, request);
            }
        }
    }

    /// Sessions may have come back; when the server is down, waiting actions are answered.
    fn recheck(&mut self) {
        let main = &self.slots[0].handle;
        if main.status() != Status::Connected && !self.waiting.is_empty() {
            let name = main.name().to_string();
            let status = main.status().name();
            for (request, _) in self.waiting.drain(..) {
                reject(request, &name, &format!("Server {name} is not connected: {status}"));
            }
            return;
        }
        self.drain();
    }
}
