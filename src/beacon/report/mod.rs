//! Beacon reporting (DESIGN 7): `beacon.conf` ([`config`]), the schedule and retry decisions as
//! pure functions ([`schedule`]), the state file and the live state `BeaconShowServer` shows
//! ([`state`]), the HTTPS client ([`send`]) and one background task per (target, Asterisk
//! server) ([`task`]).
//!
//! Sending is opt-in: without `enabled = yes` and a target, [`start`] logs that nothing is sent
//! and starts nothing. In dev mode ([`dev_mode`]) the public Beacon server is never contacted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::hub::Hub;
use astmanproxy_beacon_wire::clock::Clock;

pub mod config;
pub mod schedule;
pub mod send;
pub mod state;
pub mod task;

pub use config::{BeaconConfig, ProxySetting, Target};
pub use state::{Board, Entry, StateFile};

/// The public Beacon server of the Asterisk project (`url = public`).
pub const PUBLIC_URL: &str = "https://beacon.asterisk.org/api/v1";

/// The host of [`PUBLIC_URL`], refused in dev mode whatever the path.
pub const PUBLIC_HOST: &str = "beacon.asterisk.org";

/// Whether `url` is on the public Beacon server's host ([`PUBLIC_HOST`]), whatever its path, port
/// or case, and also written as a fully qualified name (`beacon.asterisk.org.`).
pub fn is_public_host(url: &reqwest::Url) -> bool {
    url.host_str().is_some_and(|h| h.trim_end_matches('.').eq_ignore_ascii_case(PUBLIC_HOST))
}

/// The environment variable that turns dev mode on (`1`, `yes`, `true`).
pub const DEV_ENV: &str = "ASTMANPROXY_BEACON_DEV";

static DEV_FLAG: AtomicBool = AtomicBool::new(false);

/// Turns dev mode on for this process (`--beacon-dev`).
pub fn set_dev_mode() {
    DEV_FLAG.store(true, Ordering::Relaxed);
}

/// Dev mode: `--beacon-dev`, `ASTMANPROXY_BEACON_DEV=1`, or a debug build (what `cargo test`
/// and `cargo run` build). It refuses the public Beacon server, in the configuration and again
/// before any connection.
pub fn dev_mode() -> bool {
    DEV_FLAG.load(Ordering::Relaxed)
        || cfg!(debug_assertions)
        || std::env::var(DEV_ENV).is_ok_and(|v| crate::config::parse_bool(&v).unwrap_or(false))
}

/// The reporter state of `server` at the first target (what `BeaconShowServer` shows); empty
/// while reporting is off or before the first report.
pub fn posting(config: &crate::config::Config, server: &str) -> crate::beacon::Posting {
    let urls: Vec<&str> = config.beacon.targets.iter().map(|t| t.url.as_str()).collect();
    config.beacon_board.first(&urls, server).map(|e| crate::beacon::Posting::from_entry(&e)).unwrap_or_default()
}

/// Starts reporting when the configuration asks for it, after saying loudly (WARN) what is sent
/// where and how often; otherwise logs that nothing is sent. Loads the state file into the
/// board first, so that a restart keeps its server ids.
pub fn start(hub: &Hub, clock: Arc<dyn Clock>) {
    let beacon = &hub.config().beacon;
    if !beacon.sending() {
        let why = if beacon.enabled { "no target configured" } else { "enabled = no" };
        tracing::info!("Beacon reporting is off ({why}): usage data is only gathered on request, never sent");
        return;
    }
    let board = hub.config().beacon_board.clone();
    match state::load(&beacon.state_file) {
        Ok(loaded) => board.load(loaded),
        Err(e) => tracing::warn!("Beacon state not loaded, servers will register again: {e}"),
    }
    let servers: Vec<String> = hub.servers().iter().map(|s| s.name().to_string()).collect();
    for target in &beacon.targets {
        let via = target.proxy.as_ref().map(|p| format!(" via proxy {}", p.masked())).unwrap_or_default();
        let start = target.start_time.map(|t| format!(", from {} local time", t.format("%H:%M"))).unwrap_or_default();
        tracing::warn!(
            target = %target.name,
            "Beacon reporting is ON: every {} minutes{start} (plus up to {} s jitter), each Asterisk server's \
             usage data (Asterisk version, module list with status and support level, startup and reload times, \
             active and processed calls, OS name and machine{}) is sent to {}{via}; servers now: [{}]; state in {}",
            target.interval.as_secs() / 60,
            target.jitter.as_secs(),
            beacon.private_name.as_ref().map(|n| format!(", private name {n:?}")).unwrap_or_default(),
            target.url,
            servers.join(", "),
            beacon.state_file.display(),
        );
        if !target.verify_cert {
            tracing::warn!(target = %target.name, "verify_cert = no: the certificate of {} is NOT verified", target.url);
        }
    }
    let watch_hub = hub.clone();
    hub.spawn_background(move |_| task::watch_servers(watch_hub, clock));
}
