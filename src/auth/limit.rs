//! Limits on failed logins: a lock-out per (address, user name) and a ceiling per address.
//!
//! - **Per user** (`authlimit`): one address may fail `authlimit` logins for one user name
//!   within a minute; past that, that user's logins from that address are refused at once,
//!   without checking the secret, until the minute is over. Other users from the same address
//!   (a web server, a NAT) are not affected. A successful login clears the pair.
//! - **Per address** (`authlimitaddress`): a much higher ceiling on the failed logins of one
//!   address for all user names together, against spraying many names. Past it, every login
//!   from the address is refused until the minute is over. Addresses in `authlimitexempt` skip
//!   it (not the per-user lock-out). A success does not clear it: one good account must not
//!   buy a sprayer a fresh minute.
//!
//! Only attempts whose credentials were checked count; a refused attempt costs nothing and
//! counts nothing, so a client hammering a locked name cannot lock out its whole address.
//! A lock-out is logged once, when it starts. Both tables are pruned as they grow and capped, so
//! a scan from many addresses or with many names cannot grow them without bound.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use dashmap::DashMap;
use tokio::time::Instant;

use crate::config::Config;

/// The window over which failures are counted.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Entries kept before expired ones are pruned (the threshold then follows the table's size).
const PRUNE_ABOVE: usize = 10_000;

/// Most entries one table holds; new keys past it are not tracked until old ones expire.
pub const MAX_ENTRIES: usize = 100_000;

/// How often a full table is scanned for expired entries at most.
const PRUNE_FULL_EVERY: Duration = Duration::from_secs(1);

/// Longest user name kept as a key (longer names are cut at a character boundary).
pub const MAX_USER_KEY: usize = 128;

/// Which limit refuses a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lockout {
    /// Too many failures for this user name from this address (`authlimit`).
    User,
    /// Too many failures from this address for all names together (`authlimitaddress`).
    Address,
}

impl Lockout {
    /// The configuration key of the limit.
    pub fn key(self) -> &'static str {
        match self {
            Lockout::User => "authlimit",
            Lockout::Address => "authlimitaddress",
        }
    }

    /// The `Message:` of a refused AMI login.
    pub fn message(self) -> &'static str {
        match self {
            Lockout::User => {
                "Authentication failed: too many failed logins for this user from this address, try again later"
            }
            Lockout::Address => "Authentication failed: too many failed logins from this address, try again later",
        }
    }

    /// The body of a refused HTTP login (429).
    pub fn http_text(self) -> &'static str {
        match self {
            Lockout::User => "too many failed logins for this user from this address, try again later (authlimit)",
            Lockout::Address => "too many failed logins from this address, try again later (authlimitaddress)",
        }
    }
}

/// Failures counted in one window.
#[derive(Debug, Clone, Copy)]
struct Window {
    failures: u32,
    started: Instant,
}

impl Window {
    fn live(&self) -> bool {
        self.started.elapsed() < WINDOW
    }
}

/// One bounded table of windows.
#[derive(Debug)]
struct Table<K: std::hash::Hash + Eq> {
    windows: DashMap<K, Window>,
    prune_at: AtomicUsize,
    last_prune: Mutex<Instant>,
}

impl<K: std::hash::Hash + Eq + Clone> Table<K> {
    fn new() -> Self {
        Self {
            windows: DashMap::new(),
            prune_at: AtomicUsize::new(PRUNE_ABOVE),
            last_prune: Mutex::new(Instant::now()),
        }
    }

    /// Drops expired windows once the table has doubled since the last time (so a table full
    /// of live entries is not scanned on every failure), or at most every second when full.
    fn prune(&self) {
        let len = self.windows.len();
        let due = len > self.prune_at.load(Ordering::Relaxed);
        let full = len >= MAX_ENTRIES;
        if !due && !full {
            return;
        }
        {
            let mut last = self.last_prune.lock().unwrap_or_else(|e| e.into_inner());
            if !due && last.elapsed() < PRUNE_FULL_EVERY {
                return;
            }
            *last = Instant::now();
        }
        self.windows.retain(|_, w| w.live());
        self.prune_at.store(PRUNE_ABOVE.max(self.windows.len() * 2), Ordering::Relaxed);
    }

    fn reached(&self, key: &K, limit: u32) -> bool {
        limit > 0 && self.windows.get(key).is_some_and(|w| w.failures >= limit && w.live())
    }

    /// Counts one failure; true when it is the one that reaches `limit` (the lock-out starts).
    fn count(&self, key: &K, limit: u32) -> bool {
        if limit == 0 {
            return false;
        }
        self.prune();
        if self.windows.len() >= MAX_ENTRIES && !self.windows.contains_key(key) {
            return false;
        }
        let mut entry = self.windows.entry(key.clone()).or_insert(Window { failures: 0, started: Instant::now() });
        if !entry.live() {
            *entry = Window { failures: 0, started: Instant::now() };
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.failures == limit
    }

    fn clear(&self, key: &K) {
        self.windows.remove(key);
    }

    fn len(&self) -> usize {
        self.windows.len()
    }
}

/// Failed-login counters per (address, user name) and per address.
#[derive(Debug)]
pub struct AuthLimiter {
    limit: u32,
    users: Table<(IpAddr, Box<str>)>,
    addresses: Table<IpAddr>,
}

/// The user-name part of a key: at most [`MAX_USER_KEY`] bytes.
fn user_key(ip: IpAddr, user: &str) -> (IpAddr, Box<str>) {
    let mut end = user.len().min(MAX_USER_KEY);
    while !user.is_char_boundary(end) {
        end -= 1;
    }
    (ip, user[..end].into())
}

/// The per-address ceiling that applies to `ip` (0 = none): `authlimitaddress`, unless `ip` is
/// in `authlimitexempt`.
fn address_limit(cfg: &Config, ip: IpAddr) -> u32 {
    if cfg.auth_limit_exempt.iter().any(|net| net.contains(&ip)) {
        0
    } else {
        cfg.auth_limit_address
    }
}

impl AuthLimiter {
    /// A limiter allowing `limit` failures per (address, user name) per minute (`authlimit`,
    /// 0 = no limit). The per-address ceiling and its exemptions are read from the
    /// configuration passed to each call.
    pub fn new(limit: u32) -> Self {
        Self { limit, users: Table::new(), addresses: Table::new() }
    }

    /// Whether a login by `user` from `ip` is refused now, and by which limit.
    pub fn check(&self, cfg: &Config, ip: IpAddr, user: &str) -> Option<Lockout> {
        if self.users.reached(&user_key(ip, user), self.limit) {
            Some(Lockout::User)
        } else if self.addresses.reached(&ip, address_limit(cfg, ip)) {
            Some(Lockout::Address)
        } else {
            None
        }
    }

    /// Counts a failed login by `user` from `ip`; logs a lock-out when this failure starts one.
    /// Returns the lock-outs it started (for tests; the log is the user-visible part).
    pub fn record_failure(&self, cfg: &Config, ip: IpAddr, user: &str) -> Vec<Lockout> {
        let mut started = Vec::new();
        let key = user_key(ip, user);
        if self.users.count(&key, self.limit) {
            tracing::warn!(
                peer = %ip,
                user = %key.1,
                "login lock-out: {} failed logins for this user from this address; \
                 refused for up to {}s (authlimit)",
                self.limit,
                WINDOW.as_secs()
            );
            started.push(Lockout::User);
        }
        let address_limit = address_limit(cfg, ip);
        if self.addresses.count(&ip, address_limit) {
            tracing::warn!(
                peer = %ip,
                "login lock-out: {address_limit} failed logins from this address; every login from it \
                 refused for up to {}s (authlimitaddress)",
                WINDOW.as_secs()
            );
            started.push(Lockout::Address);
        }
        started
    }

    /// Clears `user` from `ip` after a successful login (the per-address count stays).
    pub fn record_success(&self, ip: IpAddr, user: &str) {
        self.users.clear(&user_key(ip, user));
    }

    /// Entries in the (address, user) table and in the address table.
    pub fn sizes(&self) -> (usize, usize) {
        (self.users.len(), self.addresses.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(address_limit: u32, exempt: &[&str]) -> Config {
        Config {
            auth_limit_address: address_limit,
            auth_limit_exempt: exempt.iter().map(|n| n.parse().unwrap()).collect(),
            ..Config::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_user_is_locked_out_per_address_until_the_window_passes() {
        let cfg = config(100, &[]);
        let limiter = AuthLimiter::new(3);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..2 {
            assert_eq!(limiter.check(&cfg, ip, "mallory"), None);
            assert!(limiter.record_failure(&cfg, ip, "mallory").is_empty());
        }
        // The third failure starts the lock-out, once.
        assert_eq!(limiter.record_failure(&cfg, ip, "mallory"), [Lockout::User]);
        assert_eq!(limiter.check(&cfg, ip, "mallory"), Some(Lockout::User));
        assert!(limiter.record_failure(&cfg, ip, "mallory").is_empty(), "a lock-out is announced once");
        // Another user from the same address, the same user from another address: not locked.
        assert_eq!(limiter.check(&cfg, ip, "alice"), None);
        assert_eq!(limiter.check(&cfg, other, "mallory"), None);
        tokio::time::advance(WINDOW - Duration::from_millis(1)).await;
        assert_eq!(limiter.check(&cfg, ip, "mallory"), Some(Lockout::User));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(limiter.check(&cfg, ip, "mallory"), None);
        // A new window: one failure is not a lock-out; a success clears the pair.
        assert!(limiter.record_failure(&cfg, ip, "mallory").is_empty());
        assert_eq!(limiter.check(&cfg, ip, "mallory"), None);
        limiter.record_failure(&cfg, ip, "mallory");
        limiter.record_success(ip, "mallory");
        limiter.record_failure(&cfg, ip, "mallory");
        assert_eq!(limiter.check(&cfg, ip, "mallory"), None);
        assert_eq!(AuthLimiter::new(0).check(&cfg, ip, "mallory"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn spraying_names_hits_the_address_ceiling_unless_exempt() {
        let limiter = AuthLimiter::new(3);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let cfg = config(5, &[]);
        for i in 0..4 {
            assert!(limiter.record_failure(&cfg, ip, &format!("user{i}")).is_empty());
        }
        assert_eq!(limiter.check(&cfg, ip, "alice"), None);
        assert_eq!(limiter.record_failure(&cfg, ip, "user4"), [Lockout::Address]);
        assert_eq!(limiter.check(&cfg, ip, "alice"), Some(Lockout::Address));
        // A success does not clear the address.
        limiter.record_success(ip, "alice");
        assert_eq!(limiter.check(&cfg, ip, "alice"), Some(Lockout::Address));
        // The same counts under an exemption: the ceiling does not apply, the per-user one does.
        let exempt = config(5, &["192.0.2.0/24"]);
        assert_eq!(limiter.check(&exempt, ip, "alice"), None);
        let user = "user0".to_string();
        limiter.record_failure(&exempt, ip, &user);
        assert_eq!(limiter.record_failure(&exempt, ip, &user), [Lockout::User]);
        assert_eq!(limiter.check(&exempt, ip, &user), Some(Lockout::User));
        // 0 turns the ceiling off.
        assert_eq!(limiter.check(&config(0, &[]), ip, "alice"), None);
        tokio::time::advance(WINDOW).await;
        assert_eq!(limiter.check(&cfg, ip, "alice"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_tables_stay_bounded() {
        let cfg = config(0, &[]);
        let limiter = AuthLimiter::new(10);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        // A long name is one key, cut to MAX_USER_KEY bytes (even inside a character).
        let long = "é".repeat(MAX_USER_KEY);
        for _ in 0..10 {
            limiter.record_failure(&cfg, ip, &long);
        }
        assert_eq!(limiter.check(&cfg, ip, &long[..MAX_USER_KEY]), Some(Lockout::User));
        assert_eq!(limiter.check(&cfg, ip, &format!("{long}x")), Some(Lockout::User));
        // Expired entries are pruned once the table passes the threshold.
        for i in 0..PRUNE_ABOVE {
            limiter.record_failure(&cfg, ip, &i.to_string());
        }
        tokio::time::advance(WINDOW).await;
        limiter.record_failure(&cfg, ip, "a");
        limiter.record_failure(&cfg, ip, "b");
        assert!(limiter.sizes().0 <= 2, "{:?}", limiter.sizes());
        // Live entries are capped.
        for i in 0..MAX_ENTRIES + 10 {
            limiter.record_failure(&cfg, ip, &format!("n{i}"));
        }
        assert_eq!(limiter.sizes().0, MAX_ENTRIES);
        // A full table is pruned too once its entries expire.
        tokio::time::advance(WINDOW).await;
        limiter.record_failure(&cfg, ip, "late");
        assert_eq!(limiter.sizes().0, 1);
    }
}
