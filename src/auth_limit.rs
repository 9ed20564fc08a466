//! Per-address limit on failed logins (`authlimit`).
//!
//! Each client address may fail `authlimit` logins within a minute; past that, its logins are
//! refused at once, without checking the secret, until the minute is over. A successful login
//! clears the address. The table is pruned as it grows, so a scan from many addresses cannot
//! grow it without bound.

use std::net::IpAddr;
use std::time::Duration;

use dashmap::DashMap;
use tokio::time::Instant;

/// The window over which failures are counted.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Entries kept before expired ones are pruned.
const PRUNE_ABOVE: usize = 10_000;

/// Failed-login counters per client address.
#[derive(Debug)]
pub struct AuthLimiter {
    limit: u32,
    failures: DashMap<IpAddr, (u32, Instant)>,
}

impl AuthLimiter {
    /// A limiter allowing `limit` failures per address per minute (0 = no limit).
    pub fn new(limit: u32) -> Self {
        Self { limit, failures: DashMap::new() }
    }

    /// Whether `ip` has used up its failures for this window.
    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        if self.limit == 0 {
            return false;
        }
        self.failures.get(&ip).is_some_and(|e| e.0 >= self.limit && e.1.elapsed() < WINDOW)
    }

    /// Counts a failed login from `ip`.
    pub fn record_failure(&self, ip: IpAddr) {
        if self.limit == 0 {
            return;
        }
        if self.failures.len() > PRUNE_ABOVE {
            self.failures.retain(|_, e| e.1.elapsed() < WINDOW);
        }
        let mut entry = self.failures.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    /// Clears `ip` after a successful login.
    pub fn record_success(&self, ip: IpAddr) {
        self.failures.remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn blocks_after_the_limit_until_the_window_passes() {
        let limiter = AuthLimiter::new(3);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert!(!limiter.is_blocked(ip));
            limiter.record_failure(ip);
        }
        assert!(limiter.is_blocked(ip));
        assert!(!limiter.is_blocked(other));
        tokio::time::advance(WINDOW).await;
        assert!(!limiter.is_blocked(ip));
        limiter.record_failure(ip);
        assert!(!limiter.is_blocked(ip));
        limiter.record_success(ip);
        assert!(!AuthLimiter::new(0).is_blocked(ip));
    }
}
