//! The Beacon REST API's JSON bodies (DESIGN 7), shared by the reporter (which sends them) and
//! the collector (which reads them). Additive only: unknown fields are ignored on input, and every
//! field but the version has a default, so older and newer peers keep working together.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

/// The `Server` object: one Asterisk server's report (`POST /servers`, `PUT /servers/{id}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerReport {
    /// The server id the collector issued (absent on the first registration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// What Asterisk says of itself.
    #[serde(default)]
    pub asterisk: AsteriskInfo,
    /// Its operating system, as far as AMI can tell.
    #[serde(default)]
    pub operating_system: OperatingSystem,
    /// A name the operator chose (`private_name`), never required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_name: Option<String>,
}

/// `Server.asterisk`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsteriskInfo {
    /// Version name and number.
    #[serde(default)]
    pub version: Version,
    /// Loaded modules.
    #[serde(default)]
    pub modules: Vec<ModuleInfo>,
    /// Run time and call counts.
    #[serde(default)]
    pub stats: Stats,
}

/// `Server.asterisk.version`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// `22.10.1`.
    #[serde(default)]
    pub name: String,
    /// major*10000 + minor*100 + patch (`221001`).
    #[serde(default)]
    pub number: u64,
}

/// One entry of `Server.asterisk.modules`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleInfo {
    /// `app_queue.so`.
    #[serde(default)]
    pub name: String,
    /// Its description.
    #[serde(default)]
    pub description: String,
    /// `Running`, `Not Running`, ...
    #[serde(default)]
    pub status: String,
    /// `core`, `extended`, `deprecated`, ...
    #[serde(default)]
    pub support_level: String,
}

/// `Server.asterisk.stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Startup and reload times.
    #[serde(default)]
    pub run_time: RunTime,
    /// Call counts.
    #[serde(default)]
    pub calls: Calls,
}

/// `Server.asterisk.stats.run_time`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunTime {
    /// As `CoreStatus` reports it (`2026-11-22 10:39:23`).
    #[serde(default)]
    pub startup_time: String,
    /// As `CoreStatus` reports it.
    #[serde(default)]
    pub last_reload_time: String,
}

/// `Server.asterisk.stats.calls`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Calls {
    /// Active calls.
    #[serde(default)]
    pub active: u64,
    /// Calls processed since start.
    #[serde(default)]
    pub processed: u64,
}

/// `Server.operating_system`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatingSystem {
    /// `Linux`.
    #[serde(default)]
    pub sys_name: String,
    /// Empty where AMI cannot tell it.
    #[serde(default)]
    pub release: String,
    /// Empty where AMI cannot tell it.
    #[serde(default)]
    pub version: String,
    /// `x86_64`.
    #[serde(default)]
    pub machine: String,
}

/// `Token`: what a server presents on its next update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// The token.
    pub id: String,
    /// When it was issued; written in RFC 3339, read leniently (and from `issue` too).
    #[serde(alias = "issue", deserialize_with = "lenient_date")]
    pub issued: DateTime<Utc>,
}

/// `ServerToken`: the answer to a registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerToken {
    /// The first token.
    pub token: Token,
    /// The registered server, with its new `id`.
    pub server: ServerReport,
}

/// A text that is no date [`parse_lenient_date`] knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a date: {0:?}")]
pub struct NotADate(pub String);

/// Reads a date in RFC 3339, or without an offset (taken as UTC), with a space or `T`, with or
/// without seconds, or a bare date.
///
/// # Errors
/// Text that is none of these.
pub fn parse_lenient_date(text: &str) -> Result<DateTime<Utc>, NotADate> {
    let t = text.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d.with_timezone(&Utc));
    }
    if let Ok(d) = DateTime::parse_from_rfc2822(t) {
        return Ok(d.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"] {
        if let Ok(d) = NaiveDateTime::parse_from_str(t, format) {
            return Ok(d.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    Err(NotADate(t.to_string()))
}

fn lenient_date<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_lenient_date(&text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_dates_are_read_leniently_and_written_in_rfc3339() {
        for text in [
            r#"{"id":"t","issued":"2026-12-01T08:00:00Z"}"#,
            r#"{"id":"t","issue":"2026-12-01T08:00:00+00:00"}"#,
            r#"{"id":"t","issued":"2026-12-01 08:00:00"}"#,
            r#"{"id":"t","issued":"2026-12-01T08:00"}"#,
        ] {
            let token: Token = serde_json::from_str(text).unwrap();
            assert_eq!(token.issued.to_rfc3339(), "2026-12-01T08:00:00+00:00", "{text}");
        }
        let written =
            serde_json::to_string(&Token { id: "t".into(), issued: parse_lenient_date("2026-12-01").unwrap() });
        assert_eq!(written.unwrap(), r#"{"id":"t","issued":"2026-12-01T00:00:00Z"}"#);
        assert!(serde_json::from_str::<Token>(r#"{"id":"t","issued":"yesterday"}"#).is_err());
    }

    #[test]
    fn reports_tolerate_missing_and_unknown_fields() {
        let report: ServerReport =
            serde_json::from_str(r#"{"asterisk":{"version":{"name":"18.1.0"}},"extra":{"x":1}}"#).unwrap();
        assert_eq!(report.asterisk.version.name, "18.1.0");
        assert!(report.asterisk.modules.is_empty());
        assert_eq!(report.operating_system, OperatingSystem::default());
    }
}
