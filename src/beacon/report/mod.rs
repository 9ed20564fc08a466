//! Beacon reporting (DESIGN 7): `beacon.conf` ([`config`]), the schedule and retry decisions as
//! pure functions ([`schedule`]), the state file and the live state `BeaconShowServer` shows
//! ([`state`]), the HTTPS client ([`send`]) and one background task per (target, Asterisk
//! server) ([`task`]).
//!
//! Sending is opt-in: without `enabled = yes` and a target, [`crate::beacon::Beacon::start`] logs
//! that nothing is sent and starts nothing. In dev mode ([`dev_mode`], decided by the binary) the
//! public Beacon server is never contacted.

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

/// Dev mode, as the binary decides it at start: `--beacon-dev` (`flag`),
/// `ASTMANPROXY_BEACON_DEV=1`, or a debug build (what `cargo test` and `cargo run` build). It
/// refuses the public Beacon server, in the configuration and again before any connection; it
/// is passed to [`BeaconConfig::load`], never read from a global.
pub fn dev_mode(flag: bool) -> bool {
    flag || cfg!(debug_assertions)
        || std::env::var(DEV_ENV).is_ok_and(|v| crate::config::parse_bool(&v).unwrap_or(false))
}
