//! The reporter's decisions as pure functions of time and answers: when the next report goes,
//! the per-server jitter, and what to do after each answer (401, 429, 5xx, network errors).

use std::time::Duration;

use chrono::{DateTime, NaiveTime, TimeZone, Utc};

/// When a server reports, given its target's `interval` and `start_time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Time between reports.
    pub interval: Duration,
    /// The first report goes at the next occurrence of this local time.
    pub start_time: Option<NaiveTime>,
    /// This server's own offset (see [`jitter_offset`]), added to the first report's time (and
    /// so carried by every later one).
    pub jitter: Duration,
}

/// A random offset in `[0, max]` from `unit` in `[0, 1)` (a random draw).
pub fn jitter_offset(max: Duration, unit: f64) -> Duration {
    max.mul_f64(unit.clamp(0.0, 1.0))
}

/// The first moment strictly after `now` whose local time (in `tz`) is `at`. A time that does
/// not exist that day (a daylight-saving gap) moves one hour later.
pub fn next_occurrence<Tz: TimeZone>(now: DateTime<Utc>, at: NaiveTime, tz: &Tz) -> DateTime<Utc> {
    let local_today = now.with_timezone(tz).date_naive();
    for days in 0..3 {
        let Some(date) = local_today.checked_add_days(chrono::Days::new(days)) else { break };
        let naive = date.and_time(at);
        let candidate = tz
            .from_local_datetime(&naive)
            .earliest()
            .or_else(|| tz.from_local_datetime(&(naive + chrono::Duration::hours(1))).earliest());
        if let Some(c) = candidate.map(|c| c.with_timezone(&Utc)) {
            if c > now {
                return c;
            }
        }
    }
    now + chrono::Duration::days(1)
}

/// When the next report goes.
///
/// `anchor` is the last report (or the last attempt that was given up until the next
/// interval). While `anchor + interval` is ahead, that is it, so a restart keeps the rhythm;
/// otherwise (the first report, or one overdue) it is the next `start_time` plus the jitter, or,
/// without `start_time`, now plus the jitter ("shortly after the server is ready").
pub fn next_posting<Tz: TimeZone>(
    now: DateTime<Utc>,
    plan: &Plan,
    anchor: Option<DateTime<Utc>>,
    tz: &Tz,
) -> DateTime<Utc> {
    let interval = chrono::Duration::from_std(plan.interval).unwrap_or(chrono::Duration::MAX);
    if let Some(next) = anchor.and_then(|a| a.checked_add_signed(interval)).filter(|n| *n > now) {
        return next;
    }
    let jitter = chrono::Duration::from_std(plan.jitter).unwrap_or_default();
    let base = match plan.start_time {
        Some(at) => next_occurrence(now, at, tz),
        None => now,
    };
    base + jitter
}

/// Backoff limits after failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first backoff, and the shortest wait between two attempts.
    pub min: Duration,
    /// The backoff cap.
    pub max: Duration,
    /// The longest `Retry-After` obeyed as is.
    pub retry_after_max: Duration,
}

/// What the collector's answer (or its absence) means for the reporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Accepted: store the token and the posting time.
    Accept,
    /// The server id or token is not (or no longer) valid: register a new server id.
    Register,
    /// Rate-limited: try again after this long.
    Wait(Duration),
    /// A network error, a timeout or a server error: try again after the backoff.
    Backoff,
    /// The request itself was refused (400, 413, ...): log it, try again at the next interval.
    GiveUp,
}

/// What to do after an answer with `status` (`None`: no answer at all) to a registration
/// (`registering`) or an update.
pub fn decide(
    status: Option<u16>,
    retry_after: Option<&str>,
    now: DateTime<Utc>,
    registering: bool,
    policy: &RetryPolicy,
) -> Decision {
    match status {
        None => Decision::Backoff,
        Some(200..=299) => Decision::Accept,
        // The id is unknown or the token wrong: a new id. A registration refused that way is
        // a collector problem, not ours: back off.
        Some(401 | 403 | 404 | 410) if !registering => Decision::Register,
        Some(429) => match retry_after.and_then(|r| parse_retry_after(r, now)) {
            Some(wait) => Decision::Wait(wait.clamp(policy.min, policy.retry_after_max.max(policy.min))),
            None => Decision::Backoff,
        },
        Some(408 | 401 | 403 | 404 | 410) => Decision::Backoff,
        Some(400..=499) => Decision::GiveUp,
        Some(_) => Decision::Backoff,
    }
}

/// `Retry-After` as seconds or an HTTP date (relative to `now`; a date in the past is zero).
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let date = DateTime::parse_from_rfc2822(value).ok()?.with_timezone(&Utc);
    Some((date - now).to_std().unwrap_or(Duration::ZERO))
}

/// The wait after `failures` consecutive failures (1 = the first): `min * 2^(failures-1)`,
/// capped at `max`, never under `min`.
pub fn backoff(failures: u32, policy: &RetryPolicy) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    policy.min.saturating_mul(1 << exp).min(policy.max).max(policy.min)
}

#[cfg(test)]
mod tests {
    use super::*;
    use astmanproxy_beacon_wire::clock::{Clock, ManualClock};
    use chrono::FixedOffset;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn first_report_at_the_next_start_time_then_every_interval() {
        let clock = ManualClock::new(at("2026-12-01T10:00:00Z"));
        let plan = Plan { interval: 6 * HOUR, start_time: NaiveTime::from_hms_opt(3, 0, 0), jitter: Duration::ZERO };
        // 03:00 has passed today: tomorrow.
        let first = next_posting(clock.now(), &plan, None, &Utc);
        assert_eq!(first, at("2026-12-02T03:00:00Z"));
        // After the report: every interval from it.
        clock.set(first + chrono::Duration::seconds(2));
        assert_eq!(next_posting(clock.now(), &plan, Some(clock.now()), &Utc), at("2026-12-02T09:00:02Z"));
        // Later today, and in another time zone (03:00 at +02:00 is 01:00 UTC).
        clock.set(at("2026-12-01T00:30:00Z"));
        assert_eq!(next_posting(clock.now(), &plan, None, &Utc), at("2026-12-01T03:00:00Z"));
        let east = FixedOffset::east_opt(2 * 3600).unwrap();
        assert_eq!(next_posting(clock.now(), &plan, None, &east), at("2026-12-01T01:00:00Z"));
    }

    #[test]
    fn without_start_time_shortly_after_ready_and_restarts_keep_the_rhythm() {
        let now = at("2026-12-01T10:00:00Z");
        let plan = Plan { interval: 6 * HOUR, start_time: None, jitter: Duration::from_secs(90) };
        assert_eq!(next_posting(now, &plan, None, &Utc), at("2026-12-01T10:01:30Z"));
        // A restart one hour after the last report: five more hours, no jitter added again.
        assert_eq!(next_posting(now, &plan, Some(at("2026-12-01T09:00:00Z")), &Utc), at("2026-12-01T15:00:00Z"));
        // Overdue (down for a day): shortly.
        assert_eq!(next_posting(now, &plan, Some(at("2026-11-30T01:00:00Z")), &Utc), at("2026-12-01T10:01:30Z"));
        // Overdue with a start time: the next start time.
        let plan = Plan { start_time: NaiveTime::from_hms_opt(12, 0, 0), ..plan };
        assert_eq!(next_posting(now, &plan, Some(at("2026-11-30T01:00:00Z")), &Utc), at("2026-12-01T12:01:30Z"));
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let max = Duration::from_secs(300);
        assert_eq!(jitter_offset(max, 0.0), Duration::ZERO);
        assert!(jitter_offset(max, 0.999_999) <= max);
        assert_eq!(jitter_offset(max, 7.0), max);
        assert_eq!(jitter_offset(Duration::ZERO, 0.5), Duration::ZERO);
        for _ in 0..1000 {
            let j = jitter_offset(max, rand::random::<f64>());
            assert!(j <= max);
        }
    }

    #[test]
    fn answers_map_to_decisions() {
        let now = at("2026-12-01T10:00:00Z");
        let p = RetryPolicy { min: Duration::from_secs(60), max: HOUR, retry_after_max: 6 * HOUR };
        assert_eq!(decide(Some(200), None, now, false, &p), Decision::Accept);
        assert_eq!(decide(Some(201), None, now, true, &p), Decision::Accept);
        assert_eq!(decide(Some(401), None, now, false, &p), Decision::Register);
        assert_eq!(decide(Some(404), None, now, false, &p), Decision::Register);
        assert_eq!(decide(Some(401), None, now, true, &p), Decision::Backoff);
        assert_eq!(decide(Some(429), Some("120"), now, false, &p), Decision::Wait(Duration::from_secs(120)));
        // Bounded both ways.
        assert_eq!(decide(Some(429), Some("1"), now, false, &p), Decision::Wait(Duration::from_secs(60)));
        assert_eq!(decide(Some(429), Some("999999"), now, false, &p), Decision::Wait(6 * HOUR));
        assert_eq!(
            decide(Some(429), Some("Tue, 01 Dec 2026 10:05:00 GMT"), now, false, &p),
            Decision::Wait(Duration::from_secs(300))
        );
        assert_eq!(decide(Some(429), None, now, false, &p), Decision::Backoff);
        assert_eq!(decide(Some(429), Some("later"), now, false, &p), Decision::Backoff);
        assert_eq!(decide(Some(500), None, now, false, &p), Decision::Backoff);
        assert_eq!(decide(Some(503), None, now, true, &p), Decision::Backoff);
        assert_eq!(decide(None, None, now, false, &p), Decision::Backoff);
        assert_eq!(decide(Some(400), None, now, false, &p), Decision::GiveUp);
        assert_eq!(decide(Some(413), None, now, true, &p), Decision::GiveUp);
    }

    #[test]
    fn backoff_doubles_is_capped_and_floored() {
        let p = RetryPolicy { min: Duration::from_secs(60), max: Duration::from_secs(600), retry_after_max: HOUR };
        let waits: Vec<u64> = (1..=6).map(|n| backoff(n, &p).as_secs()).collect();
        assert_eq!(waits, [60, 120, 240, 480, 600, 600]);
        assert_eq!(backoff(0, &p), Duration::from_secs(60));
        assert_eq!(backoff(u32::MAX, &p), Duration::from_secs(600));
        let odd = RetryPolicy { min: Duration::from_secs(60), max: Duration::from_secs(1), retry_after_max: HOUR };
        assert_eq!(backoff(3, &odd), Duration::from_secs(60), "never more often than the minimum");
    }

    #[test]
    fn retry_after_forms() {
        let now = at("2026-12-01T10:00:00Z");
        assert_eq!(parse_retry_after(" 30 ", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Tue, 01 Dec 2026 09:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
