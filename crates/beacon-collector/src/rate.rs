//! Rate limits per client address (governor keyed limiters, in memory): one for registrations,
//! a looser one for updates, one for `/stats`.
//!
//! An IPv4 client is keyed by its address, an IPv6 client by its /64 network (one host usually
//! holds a whole /64). Limits are per hour with a burst of the same size: `5` means five
//! requests at once, then one more every 12 minutes. Zero turns a limit off.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

/// One keyed limiter (or none, when its limit is 0).
pub struct Limiter {
    inner: Option<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").field("enabled", &self.inner.is_some()).finish()
    }
}

impl Limiter {
    /// A limiter allowing `per_hour` requests per hour and client (0: unlimited).
    pub fn per_hour(per_hour: u32) -> Limiter {
        let inner = NonZeroU32::new(per_hour).map(|n| DefaultKeyedRateLimiter::keyed(Quota::per_hour(n)));
        Limiter { inner, clock: DefaultClock::default() }
    }

    /// Counts one request of `peer`: `Err(wait)` when it is over the limit, with the time until
    /// the next request would be allowed (at least one second).
    pub fn check(&self, peer: IpAddr) -> Result<(), Duration> {
        let Some(limiter) = &self.inner else { return Ok(()) };
        limiter
            .check_key(&key(peer))
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()).max(Duration::from_secs(1)))
    }

    /// Forgets the clients whose limit has fully replenished (bounds the memory).
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.inner {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// The key of a client address: IPv4 as is (and IPv4-mapped IPv6 as IPv4), IPv6 by its /64.
pub fn key(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// `Retry-After` in whole seconds, rounded up.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_apply_per_client() {
        let l = Limiter::per_hour(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(l.check(a).is_ok() && l.check(a).is_ok());
        let wait = l.check(a).unwrap_err();
        assert!(wait > Duration::from_secs(60) && wait <= Duration::from_secs(1800), "{wait:?}");
        assert!(l.check(b).is_ok());
        let off = Limiter::per_hour(0);
        assert!((0..100).all(|_| off.check(a).is_ok()));
        l.forget_idle();
    }

    #[test]
    fn ipv6_is_keyed_by_its_64() {
        let k = |s: &str| key(s.parse().unwrap());
        assert_eq!(k("2001:db8:1:2:aaaa::1"), k("2001:db8:1:2:bbbb::2"));
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
        assert_eq!(k("::ffff:192.0.2.1"), k("192.0.2.1"));
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
    }
}
