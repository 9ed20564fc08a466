//! The Beacon data gathered per server, kept for [`REFRESH`] so that `BeaconShowServer` and the
//! reporters do not ask Asterisk more often.

use std::time::{Duration, Instant};

use dashmap::DashMap;

use super::data::ServerData;

/// How long gathered data is reused before it is gathered again.
pub const REFRESH: Duration = Duration::from_secs(60);

/// Data per server name (case-insensitive), with when it was gathered.
#[derive(Default)]
pub struct Cache(DashMap<String, (Instant, ServerData)>);

impl Cache {
    /// Data of `server` gathered less than `max_age` ago (a copy: no guard escapes).
    pub fn get(&self, server: &str, max_age: Duration) -> Option<ServerData> {
        let entry = self.0.get(&server.to_ascii_lowercase())?;
        (entry.0.elapsed() < max_age).then(|| entry.1.clone())
    }

    /// Stores freshly gathered data.
    pub fn store(&self, server: &str, data: ServerData) {
        self.0.insert(server.to_ascii_lowercase(), (Instant::now(), data));
    }
}
