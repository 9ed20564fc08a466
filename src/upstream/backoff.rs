//! Reconnect pacing of one server.

use std::time::Duration;

/// Reconnect pacing of one server: how long to wait before the next attempt, and how many
/// attempts in a row have failed (for `maxretries`).
///
/// A failed attempt (no TCP connection, no AMI banner, login refused, dropped before
/// `FullyBooted`) doubles the delay from `retryinterval` up to `retrymax`. A session that was
/// logged in and booted starts the count over when it ends: its loss is retried after the first
/// `retryinterval` (jittered), never at once, so a server that accepts the login and drops at
/// once is tried about once per `retryinterval`, not in a tight loop.
#[derive(Debug, Clone)]
pub struct Backoff {
    failures: u32,
    base: Duration,
    max: Duration,
}

impl Backoff {
    /// Pacing from `retryinterval` (`base`) and `retrymax` (`max`).
    pub fn new(base: Duration, max: Duration) -> Self {
        Self { failures: 0, base, max }
    }

    /// An attempt failed: the delay before the next one.
    pub fn failed(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        backoff_delay(self.failures, self.base, self.max)
    }

    /// A logged-in, booted session ended: the count starts over; the delay before the next
    /// attempt is the first one.
    pub fn session_ended(&mut self) -> Duration {
        self.failures = 0;
        backoff_delay(1, self.base, self.max)
    }

    /// Failed attempts since the last session that reached `FullyBooted`.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// The reconnect delay after `failures` consecutive failures: `base * 2^(failures-1)`, capped at
/// `max`, times a jitter factor in [0.8, 1.2). A `base` of zero counts as one second: never a
/// tight loop.
pub fn backoff_delay(failures: u32, base: Duration, max: Duration) -> Duration {
    let base = if base.is_zero() { Duration::from_secs(1) } else { base };
    let exp = failures.saturating_sub(1).min(16);
    let delay = base.saturating_mul(1 << exp).min(max.max(base));
    delay.mul_f64(rand::random_range(0.8..1.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        for _ in 0..50 {
            let d1 = backoff_delay(1, base, max);
            assert!(d1 >= Duration::from_millis(800) && d1 < Duration::from_millis(1200));
            let d3 = backoff_delay(3, base, max);
            assert!(d3 >= Duration::from_millis(3200) && d3 < Duration::from_millis(4800));
            let d30 = backoff_delay(30, base, max);
            assert!(d30 >= Duration::from_secs(48) && d30 < Duration::from_secs(72));
            assert!(backoff_delay(1, Duration::ZERO, max) >= Duration::from_millis(800));
        }
    }

    fn within(d: Duration, nominal: Duration) -> bool {
        d >= nominal.mul_f64(0.8) && d < nominal.mul_f64(1.2)
    }

    #[test]
    fn a_booted_session_starts_the_count_over() {
        let (base, max) = (Duration::from_secs(1), Duration::from_secs(5));
        let mut b = Backoff::new(base, max);
        // A long outage: the delay doubles up to retrymax and stays there.
        let delays: Vec<_> = (0..10).map(|_| b.failed()).collect();
        for (i, nominal) in [1, 2, 4, 5, 5, 5, 5, 5, 5, 5].into_iter().enumerate() {
            assert!(within(delays[i], Duration::from_secs(nominal)), "attempt {i}: {:?}", delays[i]);
        }
        assert_eq!(b.failures(), 10);
        // Asterisk is back: a login with FullyBooted, then it restarts again, five times.
        for _ in 0..5 {
            let d = b.session_ended();
            assert!(within(d, base), "{d:?}");
            assert_eq!(b.failures(), 0);
        }
        // The first failure after that is the first step again, not the cap.
        assert!(within(b.failed(), base));
    }

    #[test]
    fn a_server_that_drops_after_login_is_never_retried_in_a_tight_loop() {
        for base in [Duration::ZERO, Duration::from_millis(1), Duration::from_secs(2)] {
            let mut b = Backoff::new(base, Duration::from_secs(5));
            let floor = if base.is_zero() { Duration::from_millis(800) } else { base.mul_f64(0.8) };
            for _ in 0..100 {
                assert!(b.session_ended() >= floor);
            }
        }
    }

    #[test]
    fn no_delay_ever_goes_past_retrymax_after_the_jitter() {
        let (base, max) = (Duration::from_secs(1), Duration::from_secs(5));
        let mut b = Backoff::new(base, max);
        for i in 0..1000 {
            let d = if i % 7 == 0 { b.session_ended() } else { b.failed() };
            assert!(d < max.mul_f64(1.2), "{d:?}");
        }
        // retrymax below retryinterval: retryinterval wins (never shorter than the first step).
        let mut b = Backoff::new(Duration::from_secs(3), Duration::from_secs(1));
        assert!(within(b.failed(), Duration::from_secs(3)));
    }
}
