//! `beacon.conf`: the `[general]` section and one section per Beacon server ("target"), parsed
//! from the sectioned `key = value` text of [`crate::config::raw::parse_sections`] into the typed
//! [`BeaconConfig`], with errors naming the file and line like the main configuration.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::NaiveTime;

use crate::config::raw::parse_sections;
use crate::config::{ConfigError, ConfigWarning, Secret, Value};

use super::PUBLIC_URL;

/// The shortest report interval a file may ask for; shorter values become this, with a warning.
pub const MIN_INTERVAL_MINUTES: u64 = 60;
/// The interval when none is given (6 hours).
pub const DEFAULT_INTERVAL_MINUTES: u64 = 360;
/// Intervals from here on are refused: a token must be used again within 48 hours.
pub const MAX_INTERVAL_MINUTES: u64 = 48 * 60;
/// Where the state file goes when `statefile` is not set.
pub const DEFAULT_STATE_FILE: &str = "/var/lib/astmanproxy/beacon-state.json";

/// The Beacon reporting configuration (`beacon.conf`). The default sends nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeaconConfig {
    /// The file it was read from (`None`: there was none, reporting is off).
    pub source: Option<PathBuf>,
    /// Dev mode (passed in by the binary, see [`super::dev_mode`]): the public Beacon server is
    /// refused, in the file and again before any connection. On by default in debug builds.
    pub dev_mode: bool,
    /// `[general] enabled` (default no): nothing is ever sent unless yes.
    pub enabled: bool,
    /// `[general] private_name`: sent with every report (optional).
    pub private_name: Option<String>,
    /// `[general] statefile`: server ids, tokens and posting times (JSON, mode 0600); relative
    /// to the directory of `beacon.conf`.
    pub state_file: PathBuf,
    /// One entry per target section, in file order.
    pub targets: Vec<Target>,
}

impl Default for BeaconConfig {
    fn default() -> Self {
        Self {
            source: None,
            dev_mode: cfg!(debug_assertions),
            enabled: false,
            private_name: None,
            state_file: PathBuf::from(DEFAULT_STATE_FILE),
            targets: Vec::new(),
        }
    }
}

/// An HTTP CONNECT proxy toward a target (`proxy = user:pass@host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySetting {
    /// Proxy host.
    pub host: String,
    /// Proxy port.
    pub port: u16,
    /// Basic auth user and password, when given.
    pub auth: Option<(String, Secret)>,
}

impl ProxySetting {
    /// `user:pass@host:port` or `host:port`.
    ///
    /// # Errors
    /// A missing host or port, or a port that is not a number.
    pub fn parse(text: &str) -> Result<ProxySetting, ProxySettingError> {
        let text = text.trim();
        let text = text.strip_prefix("http://").unwrap_or(text);
        let (auth, addr) = match text.rsplit_once('@') {
            Some((auth, addr)) => {
                let (user, pass) = auth.split_once(':').unwrap_or((auth, ""));
                if user.is_empty() {
                    return Err(ProxySettingError::EmptyUser);
                }
                (Some((user.to_string(), Secret::new(pass))), addr)
            }
            None => (None, text),
        };
        let (host, port) = addr.rsplit_once(':').ok_or(ProxySettingError::NoPort)?;
        let host = host.trim_matches(['[', ']']);
        if host.is_empty() {
            return Err(ProxySettingError::NoHost);
        }
        let port = port.parse::<u16>().ok().filter(|p| *p > 0).ok_or(ProxySettingError::BadPort)?;
        Ok(ProxySetting { host: host.to_string(), port, auth })
    }

    /// As written, with the password masked.
    pub fn masked(&self) -> String {
        match &self.auth {
            Some((user, _)) => format!("{user}:********@{}:{}", self.host, self.port),
            None => format!("{}:{}", self.host, self.port),
        }
    }
}

/// What is wrong with a `proxy` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxySettingError {
    /// `:pass@host:port`.
    #[error("empty user before `@` (user:pass@host:port)")]
    EmptyUser,
    /// No `:port`.
    #[error("missing port (user:pass@host:port)")]
    NoPort,
    /// `user:pass@:port`.
    #[error("missing host (user:pass@host:port)")]
    NoHost,
    /// A port that is not 1-65535.
    #[error("the port is not a port number")]
    BadPort,
}

/// One Beacon server to report to (a section of `beacon.conf`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The section name.
    pub name: String,
    /// `url`: the API base (`https://.../api/v1`, no trailing slash); `public` is [`PUBLIC_URL`].
    pub url: String,
    /// `proxy`: an HTTP CONNECT proxy.
    pub proxy: Option<ProxySetting>,
    /// `interval` (minutes in the file): time between reports. The file cannot go under 60
    /// minutes; code (tests) may set anything.
    pub interval: Duration,
    /// `start_time` (`HH:MM`, local time): the first report goes at its next occurrence.
    pub start_time: Option<NaiveTime>,
    /// `verify_cert` (default yes).
    pub verify_cert: bool,
    /// `ca_path`: a PEM file of extra trusted roots (relative to the directory of `beacon.conf`).
    pub ca_path: Option<PathBuf>,
    /// `jitter` (seconds, default 300): each server adds a random delay up to this to its
    /// schedule, so that many proxies do not report at the same second.
    pub jitter: Duration,
    /// `timeout` (seconds, default 30): connect plus the whole request.
    pub timeout: Duration,
    /// `retry_min` (seconds, default 60): the first backoff after a failure, and the shortest
    /// wait between two attempts.
    pub retry_min: Duration,
    /// `retry_max` (seconds, default 3600): the backoff cap.
    pub retry_max: Duration,
    /// `retry_after_max` (seconds, default 21600): the longest `Retry-After` obeyed as is.
    pub retry_after_max: Duration,
}

impl Target {
    /// A target with every default, reporting to `url`.
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Target {
        Target {
            name: name.into(),
            url: url.into().trim_end_matches('/').to_string(),
            proxy: None,
            interval: Duration::from_secs(DEFAULT_INTERVAL_MINUTES * 60),
            start_time: None,
            verify_cert: true,
            ca_path: None,
            jitter: Duration::from_secs(300),
            timeout: Duration::from_secs(30),
            retry_min: Duration::from_secs(60),
            retry_max: Duration::from_secs(3600),
            retry_after_max: Duration::from_secs(6 * 3600),
        }
    }
}

impl BeaconConfig {
    /// True when reports are sent: `enabled = yes` and at least one target.
    pub fn sending(&self) -> bool {
        self.enabled && !self.targets.is_empty()
    }

    /// The Beacon configuration of the proxy configured by `config` (its `beaconconfig` file),
    /// with the binary's `dev_mode`.
    ///
    /// # Errors
    /// As [`BeaconConfig::load`].
    pub fn for_proxy(
        config: &crate::config::Config,
        dev_mode: bool,
    ) -> Result<(BeaconConfig, Vec<ConfigWarning>), ConfigError> {
        match &config.beacon_config {
            Some(path) => Self::load(path, dev_mode),
            None => Ok((BeaconConfig { dev_mode, ..BeaconConfig::default() }, Vec::new())),
        }
    }

    /// Reads `path`; a missing file is a configuration without reporting. With `enabled = yes`,
    /// each `ca_path` is read too.
    ///
    /// # Errors
    /// An unreadable file, [`BeaconConfig::parse`] fails, or a `ca_path` holds no certificate.
    pub fn load(path: &Path, dev_mode: bool) -> Result<(BeaconConfig, Vec<ConfigWarning>), ConfigError> {
        let (cfg, warnings) = match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path, dev_mode)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((BeaconConfig { dev_mode, ..BeaconConfig::default() }, Vec::new()))
            }
            Err(source) => return Err(ConfigError::Io { path: path.to_path_buf(), source }),
        };
        for target in cfg.targets.iter().filter(|_| cfg.enabled) {
            if let Some(ca) = &target.ca_path {
                // `ca_path <file>: <problem>`, as the sender would report it.
                crate::tls::load_certs(ca).map_err(|e| ConfigError::Invalid {
                    path: path.to_path_buf(),
                    message: format!("target [{}]: ca_path {e}", target.name),
                })?;
            }
        }
        Ok((cfg, warnings))
    }

    /// Validates `beacon.conf` text; `path` names the file in errors. With `dev_mode`, a target
    /// on the public Beacon server is an error while sending is enabled.
    ///
    /// # Errors
    /// A syntax error or invalid value (file and line), an `http://` url, an interval of 48 hours
    /// or more, a target without `url`, two targets with the same name or url.
    pub fn parse(text: &str, path: &Path, dev_mode: bool) -> Result<(BeaconConfig, Vec<ConfigWarning>), ConfigError> {
        let sections = parse_sections(text).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            line: e.line,
            message: e.message,
        })?;
        let mut cfg = BeaconConfig { source: Some(path.to_path_buf()), dev_mode, ..BeaconConfig::default() };
        let mut warnings = Vec::new();
        let mut public_line = None;
        // Relative file names are relative to this file's directory.
        let dir = path.parent().unwrap_or(Path::new(""));
        for section in &sections {
            let general = section.name.is_empty() || section.name.eq_ignore_ascii_case("general");
            if general {
                for raw in &section.lines {
                    let v = Value { raw, path };
                    match raw.key.as_str() {
                        "enabled" => cfg.enabled = v.boolean()?,
                        "private_name" => cfg.private_name = v.optional(),
                        "statefile" => cfg.state_file = dir.join(v.nonempty()?),
                        _ => warnings.push(v.unknown()),
                    }
                }
                continue;
            }
            if cfg.targets.iter().any(|t| t.name.eq_ignore_ascii_case(&section.name)) {
                return Err(ConfigError::Syntax {
                    path: path.to_path_buf(),
                    line: section.line,
                    message: format!("a target named [{}] exists already", section.name),
                });
            }
            let mut target = Target::new(&section.name, "");
            for raw in &section.lines {
                let v = Value { raw, path };
                let t = &mut target;
                match raw.key.as_str() {
                    "url" => {
                        t.url = url(&v)?;
                        if reqwest::Url::parse(&t.url).is_ok_and(|u| super::is_public_host(&u)) {
                            public_line = Some(raw.line);
                        }
                    }
                    "proxy" => t.proxy = v.optional().map(|_| proxy(&v)).transpose()?,
                    "interval" => t.interval = interval(&v, &mut warnings)?,
                    "start_time" => t.start_time = v.optional().map(|_| start_time(&v)).transpose()?,
                    "verify_cert" => t.verify_cert = v.boolean()?,
                    "ca_path" => t.ca_path = v.optional().map(|p| dir.join(p)),
                    "jitter" => t.jitter = Duration::from_secs(v.parse("a number of seconds")?),
                    "timeout" => t.timeout = seconds(&v)?,
                    "retry_min" => t.retry_min = seconds(&v)?,
                    "retry_max" => t.retry_max = seconds(&v)?,
                    "retry_after_max" => t.retry_after_max = seconds(&v)?,
                    _ => warnings.push(v.unknown()),
                }
            }
            if target.url.is_empty() {
                return Err(ConfigError::Syntax {
                    path: path.to_path_buf(),
                    line: section.line,
                    message: format!("target [{}] has no url", section.name),
                });
            }
            if let Some(other) = cfg.targets.iter().find(|t| t.url == target.url) {
                return Err(ConfigError::Syntax {
                    path: path.to_path_buf(),
                    line: section.line,
                    message: format!("target [{}] has the url of [{}]", section.name, other.name),
                });
            }
            target.retry_max = target.retry_max.max(target.retry_min);
            cfg.targets.push(target);
        }
        if let (true, true, Some(line)) = (dev_mode, cfg.enabled, public_line) {
            return Err(ConfigError::Syntax {
                path: path.to_path_buf(),
                line,
                message: format!(
                    "dev mode (--beacon-dev, ASTMANPROXY_BEACON_DEV=1 or a debug build) never reports to the public \
                     Beacon server {PUBLIC_URL}; use a test collector or set enabled = no"
                ),
            });
        }
        Ok((cfg, warnings))
    }

    /// Every setting as `(key, value)` pairs, in the order `beacon show configuration` prints
    /// them and `BeaconShowConfiguration` answers them (`Target<N>...` per target). Proxy
    /// passwords are masked.
    pub fn describe(&self) -> Vec<(String, String)> {
        let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
        let mut out = vec![
            ("File".to_string(), self.source.as_ref().map(|p| p.display().to_string()).unwrap_or_default()),
            ("Enabled".to_string(), yes_no(self.enabled)),
            ("Sending".to_string(), yes_no(self.sending())),
            ("PrivateName".to_string(), self.private_name.clone().unwrap_or_default()),
            ("StateFile".to_string(), self.state_file.display().to_string()),
            ("TargetCount".to_string(), self.targets.len().to_string()),
        ];
        for (i, t) in self.targets.iter().enumerate() {
            let n = i + 1;
            let mut push = |k: &str, v: String| out.push((format!("Target{n}{k}"), v));
            push("Name", t.name.clone());
            push("Url", t.url.clone());
            push("Interval", (t.interval.as_secs() / 60).to_string());
            push("StartTime", t.start_time.map(|s| s.format("%H:%M").to_string()).unwrap_or_default());
            push("VerifyCert", yes_no(t.verify_cert));
            push("CaPath", t.ca_path.as_ref().map(|p| p.display().to_string()).unwrap_or_default());
            push("Proxy", t.proxy.as_ref().map(ProxySetting::masked).unwrap_or_default());
            push("Jitter", t.jitter.as_secs().to_string());
        }
        out
    }

    /// The text of `astmanproxy beacon show configuration`.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let file = self.source.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "(none)".to_string());
        let _ = writeln!(out, "Beacon configuration: {file}");
        let _ = writeln!(out, "Enabled: {}", if self.enabled { "yes" } else { "no" });
        let _ = writeln!(
            out,
            "Sending: {}",
            if self.sending() { "yes" } else { "no (nothing is ever sent; data is only gathered and shown)" }
        );
        let _ = writeln!(out, "Private Name: {}", self.private_name.as_deref().unwrap_or(""));
        let _ = writeln!(out, "State File: {}", self.state_file.display());
        let _ = writeln!(out, "Targets: {}", self.targets.len());
        for t in &self.targets {
            let _ = writeln!(out);
            let _ = writeln!(out, "[{}]", t.name);
            let _ = writeln!(out, "  URL: {}", t.url);
            let _ = writeln!(out, "  Interval: {} minutes", t.interval.as_secs() / 60);
            let start = t.start_time.map(|s| s.format("%H:%M").to_string());
            let _ = writeln!(out, "  Start Time: {}", start.as_deref().unwrap_or("(when the server is ready)"));
            let _ = writeln!(out, "  Jitter: up to {} s", t.jitter.as_secs());
            let _ = writeln!(out, "  Verify Certificate: {}", if t.verify_cert { "yes" } else { "no" });
            let ca = t.ca_path.as_ref().map(|p| p.display().to_string());
            let _ = writeln!(out, "  CA Path: {}", ca.as_deref().unwrap_or(""));
            let _ = writeln!(out, "  Proxy: {}", t.proxy.as_ref().map(ProxySetting::masked).unwrap_or_default());
        }
        out
    }
}

/// `proxy` as written, the password masked (also when it does not parse).
fn mask_proxy(text: &str) -> String {
    match text.rsplit_once('@') {
        Some((auth, addr)) => format!("{}:********@{addr}", auth.split(':').next().unwrap_or_default()),
        None => text.to_string(),
    }
}

fn proxy(v: &Value<'_>) -> Result<ProxySetting, ConfigError> {
    ProxySetting::parse(&v.raw.value).map_err(|reason| v.invalid(&mask_proxy(&v.raw.value), reason.to_string()))
}

fn seconds(v: &Value<'_>) -> Result<Duration, ConfigError> {
    v.positive::<u64>().map(Duration::from_secs)
}

fn url(v: &Value<'_>) -> Result<String, ConfigError> {
    v.parse_with(|s| {
        if s.eq_ignore_ascii_case("public") {
            return Ok(PUBLIC_URL.to_string());
        }
        let url = reqwest::Url::parse(s).map_err(|e| format!("not a URL ({e})"))?;
        match url.scheme() {
            "https" if url.host_str().is_some_and(|h| !h.is_empty()) => {
                Ok(url.as_str().trim_end_matches('/').to_string())
            }
            "https" => Err("no host".to_string()),
            "http" => Err("Beacon reports go over HTTPS only; use https://".to_string()),
            other => Err(format!("unsupported scheme {other:?}; use https://")),
        }
    })
}

fn interval(v: &Value<'_>, warnings: &mut Vec<ConfigWarning>) -> Result<Duration, ConfigError> {
    let minutes: u64 = v.parse("a number of minutes")?;
    if minutes >= MAX_INTERVAL_MINUTES {
        return Err(v.invalid(
            &v.raw.value,
            format!("must be under {MAX_INTERVAL_MINUTES} minutes (48 h): a token must be used again within 48 hours"),
        ));
    }
    if minutes < MIN_INTERVAL_MINUTES {
        warnings.push(ConfigWarning {
            path: v.path.to_path_buf(),
            line: v.raw.line,
            message: format!(
                "interval {minutes} is under {MIN_INTERVAL_MINUTES} minutes; using {MIN_INTERVAL_MINUTES}"
            ),
        });
    }
    Ok(Duration::from_secs(minutes.max(MIN_INTERVAL_MINUTES) * 60))
}

fn start_time(v: &Value<'_>) -> Result<NaiveTime, ConfigError> {
    v.parse_with(|s| NaiveTime::parse_from_str(s, "%H:%M").map_err(|_| "not HH:MM (local time)".to_string()))
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
