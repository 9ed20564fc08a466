//! The reporter tasks: one per (target, Asterisk server), started by [`watch_servers`] for every
//! server the hub has (servers added later too). Each waits for its server to be logged in,
//! waits for the next posting, gathers fresh data, sends it (`POST` the first time, `PUT` with
//! the token after), stores the answer in the board and the state file, and starts over.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::Instrument;

use super::schedule::{backoff, decide, jitter_offset, next_posting, Decision, Plan, RetryPolicy};
use super::send::{Answer, Sender};
use super::Target;
use crate::beacon::cache::Cache;
use crate::beacon::gather;
use crate::hub::Hub;
use crate::upstream::{Status, UpstreamHandle};
use astmanproxy_beacon_wire::clock::Clock;
use astmanproxy_beacon_wire::wire::Token;

/// How often the list of servers is checked for new ones, and how often a reporter checks
/// whether its server is logged in.
pub const SERVER_POLL: Duration = Duration::from_millis(500);

/// The longest single sleep while waiting for a posting time: the clock is read again after it,
/// so a suspended machine or a clock change does not delay a report by more than this.
pub const MAX_SLEEP: Duration = Duration::from_secs(60);

/// Starts a reporter for each (target, server) pair, now and for servers added later, until
/// shutdown. A reporter whose server is dropped ends; re-adding the server starts a new one.
pub async fn watch_servers(hub: Hub, reporting: Reporting, clock: Arc<dyn Clock>) {
    let running: Arc<Mutex<HashSet<(String, String)>>> = Arc::default();
    // One client per target, shared by its servers' reporters; a target whose client cannot be
    // built is reported once and skipped.
    let mut targets = Vec::new();
    for target in &reporting.config.targets {
        match Sender::new(target, reporting.config.dev_mode) {
            Ok(sender) => targets.push((Arc::new(target.clone()), sender)),
            Err(e) => tracing::error!(target = %target.name, "Beacon reporting to {} not started: {e}", target.url),
        }
    }
    loop {
        for server in hub.servers() {
            for (target, sender) in &targets {
                let key = (target.url.clone(), server.name().to_ascii_lowercase());
                if !running.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(key.clone()) {
                    continue;
                }
                let reporter = Reporter {
                    hub: hub.clone(),
                    reporting: reporting.clone(),
                    target: target.clone(),
                    sender: sender.clone(),
                    server: server.name().to_string(),
                    clock: clock.clone(),
                };
                let span = tracing::info_span!("beacon", target = %target.name, server = %server.name());
                let running = running.clone();
                hub.spawn_background(move |_| {
                    async move {
                        reporter.run().await;
                        running.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&key);
                    }
                    .instrument(span)
                });
            }
        }
        tokio::time::sleep(SERVER_POLL).await;
    }
}

/// What the reporters share: the Beacon configuration, the board they fill and the data cache.
#[derive(Clone)]
pub struct Reporting {
    /// `beacon.conf`.
    pub config: Arc<super::BeaconConfig>,
    /// The live state (`BeaconShowServer`'s `Posting` fields).
    pub board: super::Board,
    /// The data gathered per server.
    pub cache: Arc<Cache>,
}

/// One (target, server) reporter.
struct Reporter {
    hub: Hub,
    reporting: Reporting,
    target: Arc<Target>,
    sender: Sender,
    server: String,
    clock: Arc<dyn Clock>,
}

impl Reporter {
    async fn run(self) {
        let plan = Plan {
            interval: self.target.interval,
            start_time: self.target.start_time,
            jitter: jitter_offset(self.target.jitter, rand::random::<f64>()),
        };
        let policy = RetryPolicy {
            min: self.target.retry_min,
            max: self.target.retry_max,
            retry_after_max: self.target.retry_after_max,
        };
        let mut triggers = self.reporting.board.triggers();
        if *triggers.borrow() > 0 {
            // A trigger counts for reporters that start after it too.
            triggers.mark_changed();
        }
        let mut anchor = self.entry().and_then(|e| e.last_posting);
        loop {
            if self.connected().await.is_none() {
                return;
            }
            let next = next_posting(self.clock.now(), &plan, anchor, &chrono::Local);
            self.set_next(Some(next));
            tracing::debug!(%next, "next Beacon report");
            self.wait_until(next, &mut triggers).await;
            match self.report(&policy).await {
                Some(at) => anchor = Some(at),
                None => return,
            }
        }
    }

    fn entry(&self) -> Option<super::Entry> {
        self.reporting.board.get(&self.target.url, &self.server)
    }

    fn set_next(&self, next: Option<DateTime<Utc>>) {
        self.reporting.board.update(&self.target.url, &self.server, |e| e.next_posting = next);
    }

    async fn save(&self) {
        let Reporting { board, config, .. } = &self.reporting;
        if let Err(e) = board.save(&config.state_file).await {
            tracing::warn!("Beacon state not saved (ids kept in memory only): {e}");
        }
    }

    /// The server once it is logged in; `None` when it has been dropped.
    async fn connected(&self) -> Option<UpstreamHandle> {
        loop {
            let handle = self.hub.server(Some(&self.server))?;
            if handle.status() == Status::Connected {
                return Some(handle);
            }
            tokio::time::sleep(SERVER_POLL).await;
        }
    }

    /// Sleeps until `next` by the clock, or until a trigger.
    async fn wait_until(&self, next: DateTime<Utc>, triggers: &mut tokio::sync::watch::Receiver<u64>) {
        loop {
            let Ok(left) = (next - self.clock.now()).to_std() else { return };
            if left.is_zero() {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(left.min(MAX_SLEEP)) => {}
                changed = triggers.changed() => {
                    if changed.is_ok() {
                        tracing::info!("Beacon report triggered");
                        return;
                    }
                    tokio::time::sleep(left.min(MAX_SLEEP)).await;
                }
            }
        }
    }

    async fn pause(&self, wait: Duration) {
        self.set_next(chrono::Duration::from_std(wait).ok().map(|w| self.clock.now() + w));
        tokio::time::sleep(wait).await;
    }

    /// Sends one report, with retries. Returns the time to count the next interval from (the
    /// accepted report, or a refused one that is not retried), `None` when the server is gone.
    async fn report(&self, policy: &RetryPolicy) -> Option<DateTime<Utc>> {
        let mut failures = 0u32;
        loop {
            let handle = self.connected().await?;
            let data = match gather::gather(&handle).await {
                Ok(d) => {
                    self.reporting.cache.store(&self.server, d.clone());
                    d
                }
                Err(e) => {
                    failures += 1;
                    let wait = backoff(failures, policy);
                    tracing::warn!(?wait, "Beacon data not gathered: {e}");
                    self.pause(wait).await;
                    continue;
                }
            };
            let registered = self.entry().and_then(|e| e.server_id.zip(e.token));
            let private_name = self.reporting.config.private_name.as_deref();
            let report = data.to_report(registered.as_ref().map(|(id, _)| id.as_str()), private_name);
            let outcome = match &registered {
                Some((id, token)) => match self.sender.update(id, token, &report).await {
                    Ok(Answer::Ok(token)) => return Some(self.accepted(id, token).await),
                    Ok(Answer::Status { code, retry_after, detail }) => (code, retry_after, detail),
                    Err(e) => (None, None, e.to_string()),
                },
                None => match self.sender.register(&report).await {
                    Ok(Answer::Ok(answer)) => match answer.server.id.filter(|id| !id.is_empty()) {
                        Some(id) => {
                            tracing::info!(server_id = %id, "registered with Beacon server {}", self.target.url);
                            return Some(self.accepted(&id, answer.token).await);
                        }
                        None => (None, None, "registration answer without a server id".to_string()),
                    },
                    Ok(Answer::Status { code, retry_after, detail }) => (code, retry_after, detail),
                    Err(e) => (None, None, e.to_string()),
                },
            };
            let (code, retry_after, detail) = outcome;
            let now = self.clock.now();
            match decide(code, retry_after.as_deref(), now, registered.is_none(), policy) {
                Decision::Register => {
                    tracing::warn!(status = ?code, "Beacon server refused the id or token: registering a new server id");
                    self.reporting.board.update(&self.target.url, &self.server, |e| {
                        e.server_id = None;
                        e.token = None;
                        e.token_issued = None;
                    });
                    self.save().await;
                }
                Decision::Wait(wait) => {
                    tracing::warn!(?wait, "Beacon server is rate-limiting (429): waiting as asked");
                    self.pause(wait).await;
                }
                Decision::Accept | Decision::Backoff => {
                    failures += 1;
                    let wait = backoff(failures, policy);
                    tracing::warn!(status = ?code, ?wait, "Beacon report failed: {detail}");
                    self.pause(wait).await;
                }
                Decision::GiveUp => {
                    tracing::error!(status = ?code, "Beacon report refused, next try at the next interval: {detail}");
                    return Some(now);
                }
            }
        }
    }

    /// Stores an accepted report's token and time, and saves the state file.
    async fn accepted(&self, id: &str, token: Token) -> DateTime<Utc> {
        let now = self.clock.now();
        self.reporting.board.update(&self.target.url, &self.server, |e| {
            e.server_id = Some(id.to_string());
            e.token = Some(token.id);
            e.token_issued = Some(token.issued);
            e.last_posting = Some(now);
        });
        tracing::info!(server_id = %id, "Beacon report accepted by {}", self.target.url);
        self.save().await;
        now
    }
}
