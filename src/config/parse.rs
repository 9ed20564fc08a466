//! Validation of the raw `key = value` lines into the typed [`Config`].

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use astmanproxy_handlers::{Charset, Limits, OutputFormat};

use super::raw::{parse_lines, RawLine};
use super::{AutoFilter, Config, ConfigError, ConfigWarning, LagPolicy, Secret, ServerConfig, TlsConfig, Users};

/// The keys of `astmanproxy.conf`, for the "did you mean" of an unknown key (a key missing here
/// only loses its suggestion; a test checks that every one is known to [`Config::parse`]).
pub(crate) const KNOWN_KEYS: &[&str] = &[
    "host",
    "listenaddress",
    "listenport",
    "listenbacklog",
    "retryinterval",
    "retrymax",
    "maxretries",
    "autofilter",
    "authrequired",
    "asteriskwritetimeout",
    "clientwritetimeout",
    "inputformat",
    "outputformat",
    "charset",
    "forcebanner",
    "defaultamiversion",
    "logfile",
    "proc_user",
    "proc_group",
    "maxlinelength",
    "maxmessagesize",
    "maxheaders",
    "clienteventqueue",
    "clienteventbuffer",
    "clientmaxpendingbytes",
    "lagpolicy",
    "maxclients",
    "maxpendingactions",
    "connecttimeout",
    "logintimeout",
    "pinginterval",
    "pingtimeout",
    "actiontimeout",
    "originatetimeout",
    "originatemargin",
    "actionsessions",
    "authfaildelay",
    "acceptencryptedconnection",
    "acceptunencryptedconnection",
    "certfile",
    "sslclienthellotimeout",
    "tlscert",
    "tlskey",
    "tlslistenport",
    "tlshandshaketimeout",
    "tlscafile",
    "authlimit",
    "authlimitaddress",
    "authlimitexempt",
    "openproxylists",
    "authtimeout",
    "adminusers",
    "tlsinsecure",
    "proxykey",
    "httplistenport",
    "httpsessiontimeout",
    "httpmaxsessions",
    "httpeventqueue",
    "httpdetecttimeout",
    "httpmaxbody",
    "httpallowedorigins",
    "httpprefix",
    "adminlisten",
    "readyshare",
    "beaconconfig",
    "shutdowngrace",
    "filterlocal",
    "debug",
];

impl Default for Config {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            listen_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            listen_port: 1234,
            listen_backlog: crate::listen::DEFAULT_BACKLOG,
            retry_interval: Duration::from_secs(1),
            retry_max: Duration::from_secs(5),
            max_retries: 0,
            autofilter: AutoFilter::On,
            auth_required: true,
            asterisk_write_timeout: Duration::from_millis(5000),
            client_write_timeout: Duration::from_millis(10_000),
            input_format: "standard".to_string(),
            output_format: OutputFormat::Standard,
            force_banner: None,
            default_ami_version: "11.0.0".to_string(),
            log_file: None,
            proc_user: None,
            proc_group: None,
            limits: Limits::default(),
            client_event_queue: None,
            client_event_buffer: 64 * 1024 * 1024,
            client_max_pending_bytes: 16 * 1024 * 1024,
            lag_policy: LagPolicy::Disconnect,
            max_clients: 10_000,
            max_pending_actions: 1024,
            connect_timeout: Duration::from_secs(5),
            login_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(15),
            ping_timeout: Duration::from_secs(5),
            action_timeout: Duration::from_secs(60),
            originate_timeout: Duration::from_secs(300),
            originate_margin: Duration::from_millis(5000),
            action_sessions: 2,
            auth_fail_delay: Duration::from_millis(1000),
            tls: TlsConfig {
                accept_encrypted: false,
                accept_unencrypted: true,
                cert_file: None,
                client_hello_timeout: Duration::from_millis(500),
                cert: None,
                key: None,
                listen_port: None,
                handshake_timeout: Duration::from_secs(10),
                ca_file: None,
                insecure_servers: Vec::new(),
            },
            proxy_key: None,
            admin_listen: None,
            http_listen_port: None,
            http: super::HttpConfig::default(),
            admin_users: Vec::new(),
            auth_limit: 10,
            auth_limit_address: 100,
            auth_limit_exempt: Vec::new(),
            open_proxy_lists: false,
            auth_timeout: Duration::from_secs(30),
            beacon_config: None,
            sources: None,
            ready_share: 0.5,
            shutdown_grace: Duration::from_secs(5),
            users: Users::default(),
        }
    }
}

impl Config {
    /// Reads and validates a configuration file.
    ///
    /// # Errors
    /// The file cannot be read, or [`Config::parse`] fails.
    pub fn load(path: &Path) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.to_path_buf(), source })?;
        let (mut cfg, mut warnings) = Self::parse(&text, path)?;
        let dir = path.parent().unwrap_or(Path::new(""));
        let beacon_path = dir.join(cfg.beacon_config.as_deref().unwrap_or(Path::new("beacon.conf")));
        if cfg.beacon_config.is_some() && !beacon_path.exists() {
            let line =
                parse_lines(&text).ok().and_then(|l| l.iter().rev().find(|r| r.key == "beaconconfig").map(|r| r.line));
            warnings.push(ConfigWarning {
                path: path.to_path_buf(),
                line: line.unwrap_or(0),
                message: format!("beaconconfig {} not found: Beacon reporting is off", beacon_path.display()),
            });
        }
        cfg.beacon_config = Some(beacon_path);
        Ok((cfg, warnings))
    }

    /// Validates configuration text; `path` names the file in errors and warnings.
    ///
    /// # Errors
    /// A syntax error or an invalid value, naming the file and line.
    pub fn parse(text: &str, path: &Path) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
        let lines = parse_lines(text).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            line: e.line,
            message: e.message,
        })?;
        let mut cfg = Config::default();
        let mut warnings = Vec::new();
        let mut host_lines = Vec::new();
        for raw in &lines {
            let v = Value { raw, path };
            let c = &mut cfg;
            match raw.key.as_str() {
                "host" => {
                    c.servers.push(v.server()?);
                    host_lines.push(raw.line);
                }
                "listenaddress" => c.listen_address = v.address()?,
                "listenport" => c.listen_port = v.parse("a port number")?,
                "listenbacklog" => c.listen_backlog = v.backlog()?,
                "retryinterval" => c.retry_interval = Duration::from_secs(v.parse("a number of seconds")?),
                "retrymax" => c.retry_max = Duration::from_secs(v.parse("a number of seconds")?),
                "maxretries" => c.max_retries = v.parse("a number")?,
                "autofilter" => c.autofilter = v.autofilter()?,
                "authrequired" => c.auth_required = v.boolean()?,
                "asteriskwritetimeout" => c.asterisk_write_timeout = v.millis()?,
                "clientwritetimeout" => c.client_write_timeout = v.millis()?,
                "inputformat" => c.input_format = v.input_format()?,
                "outputformat" => {
                    c.output_format = v.parse_with(|s| s.parse::<OutputFormat>().map_err(|e| e.to_string()))?
                }
                "charset" => c.limits.charset = v.parse_with(|s| s.parse::<Charset>().map_err(|e| e.to_string()))?,
                "forcebanner" => c.force_banner = v.optional(),
                "defaultamiversion" => c.default_ami_version = v.nonempty()?,
                "logfile" => c.log_file = v.optional().map(PathBuf::from),
                "proc_user" => c.proc_user = v.optional(),
                "proc_group" => c.proc_group = v.optional(),
                "maxlinelength" => c.limits.max_line = v.positive()?,
                "maxmessagesize" => c.limits.max_message = v.positive()?,
                "maxheaders" => c.limits.max_headers = v.positive()?,
                "clienteventqueue" => {
                    c.client_event_queue = Some(v.positive()?);
                    warnings.push(ConfigWarning {
                        path: v.path.to_path_buf(),
                        line: v.raw.line,
                        message: "clienteventqueue is no longer used and is ignored: events are buffered by \
                                  bytes (clienteventbuffer) and a client is cut off by write progress \
                                  (clientwritetimeout)"
                            .to_string(),
                    });
                }
                "clienteventbuffer" => c.client_event_buffer = v.positive()?,
                "clientmaxpendingbytes" => c.client_max_pending_bytes = v.positive()?,
                "lagpolicy" => c.lag_policy = v.lag_policy()?,
                "maxclients" => c.max_clients = v.positive()?,
                "maxpendingactions" => c.max_pending_actions = v.positive()?,
                "connecttimeout" => c.connect_timeout = v.millis()?,
                "logintimeout" => c.login_timeout = v.millis()?,
                "pinginterval" => c.ping_interval = Duration::from_secs(v.positive::<u64>()?),
                "pingtimeout" => c.ping_timeout = v.millis()?,
                "actiontimeout" => c.action_timeout = Duration::from_secs(v.positive::<u64>()?),
                "originatetimeout" => c.originate_timeout = Duration::from_secs(v.positive::<u64>()?),
                "originatemargin" => c.originate_margin = v.millis()?,
                "actionsessions" => c.action_sessions = v.action_sessions()?,
                "authfaildelay" => c.auth_fail_delay = v.millis()?,
                "acceptencryptedconnection" => c.tls.accept_encrypted = v.boolean()?,
                "acceptunencryptedconnection" => c.tls.accept_unencrypted = v.boolean()?,
                "certfile" => c.tls.cert_file = v.optional().map(PathBuf::from),
                "sslclienthellotimeout" => c.tls.client_hello_timeout = v.millis()?,
                "tlscert" => c.tls.cert = v.optional().map(PathBuf::from),
                "tlskey" => c.tls.key = v.optional().map(PathBuf::from),
                "tlslistenport" => c.tls.listen_port = v.optional_parse("a port number")?,
                "tlshandshaketimeout" => c.tls.handshake_timeout = v.millis()?,
                "tlscafile" => c.tls.ca_file = v.optional().map(PathBuf::from),
                "authlimit" => c.auth_limit = v.parse("a number")?,
                "authlimitaddress" => c.auth_limit_address = v.parse("a number")?,
                "authlimitexempt" => c.auth_limit_exempt = v.networks()?,
                "openproxylists" => {
                    c.open_proxy_lists = v.boolean()?;
                    if c.open_proxy_lists {
                        warnings.push(ConfigWarning {
                            path: path.to_path_buf(),
                            line: raw.line,
                            message: "openproxylists = yes: ListSessions and ListServers answer every logged-in \
                                      user (client addresses and user names, Asterisk hosts and AMI users), \
                                      not only adminusers"
                                .to_string(),
                        });
                    }
                }
                "authtimeout" => c.auth_timeout = Duration::from_secs(v.parse("a number of seconds")?),
                "adminusers" => {
                    c.admin_users =
                        raw.value.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_string).collect()
                }
                "tlsinsecure" => {
                    c.tls.insecure_servers =
                        raw.value.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_string).collect()
                }
                "proxykey" => c.proxy_key = v.optional().map(Secret::new),
                "httplistenport" => c.http_listen_port = v.optional_parse("a port number")?,
                "httpsessiontimeout" => c.http.session_timeout = Duration::from_secs(v.positive::<u64>()?),
                "httpmaxsessions" => c.http.max_sessions = v.positive::<usize>()?,
                "httpeventqueue" => c.http.event_queue = v.positive::<usize>()?,
                "httpdetecttimeout" => c.http.detect_timeout = Duration::from_millis(v.parse("a number of ms")?),
                "httpmaxbody" => c.http.max_body = v.positive::<usize>()?,
                "httpprefix" => {
                    let prefix = raw.value.trim().trim_matches('/');
                    if prefix.contains(['?', '#', ' ']) {
                        return Err(v.invalid(&raw.value, "a path prefix such as asterisk (no ?, # or spaces)"));
                    }
                    c.http.prefix = prefix.to_string();
                }
                "httpallowedorigins" => {
                    c.http.allowed_origins =
                        raw.value.split(',').map(str::trim).filter(|o| !o.is_empty()).map(str::to_string).collect()
                }
                "adminlisten" => c.admin_listen = v.optional_parse("an address:port like 127.0.0.1:9180")?,
                "readyshare" => c.ready_share = v.share()?,
                "beaconconfig" => c.beacon_config = v.optional().map(PathBuf::from),
                "shutdowngrace" => c.shutdown_grace = Duration::from_secs(v.parse("a number of seconds")?),
                // 1.x keys with no effect here: `filterlocal` never worked in 1.x, `debug` is `-d`.
                "filterlocal" | "debug" => {}
                _ => warnings.push(v.unknown_among(KNOWN_KEYS)),
            }
        }
        name_servers(&mut cfg.servers, &host_lines, path)?;
        Ok((cfg, warnings))
    }

    /// Defaults plus `servers`, listening on port 0 (tests and tools).
    pub fn for_tests(servers: Vec<ServerConfig>) -> Config {
        Config { servers, listen_port: 0, ..Config::default() }
    }
}

/// Gives servers that share a name `host:port` names; still duplicated names are an error, naming
/// the line (`lines[i]` is the line of `servers[i]`).
fn name_servers(servers: &mut [ServerConfig], lines: &[usize], path: &Path) -> Result<(), ConfigError> {
    let at = |i: usize, message: String| ConfigError::Syntax {
        path: path.to_path_buf(),
        line: lines.get(i).copied().unwrap_or(0),
        message,
    };
    for i in 0..servers.len() {
        let (host, port) = (&servers[i].host, servers[i].port);
        if let Some(first) = servers[..i].iter().position(|o| o.host.eq_ignore_ascii_case(host) && o.port == port) {
            let first_line = lines.get(first).copied().unwrap_or(0);
            return Err(at(
                i,
                format!("Asterisk server {host}:{port} is configured twice (first at line {first_line})"),
            ));
        }
        let clash = servers[..i].iter().any(|s| s.name.eq_ignore_ascii_case(&servers[i].name));
        if clash {
            let s = &mut servers[i];
            s.name = format!("{}:{}", s.host, s.port);
            if servers[..i].iter().any(|o| o.name.eq_ignore_ascii_case(&servers[i].name)) {
                return Err(at(
                    i,
                    format!("two servers are named {:?}; give one a name (7th field of host =)", servers[i].name),
                ));
            }
        }
    }
    Ok(())
}

/// The known key closest to `key` (at most 2 edits, or a third of its length), if any.
pub(crate) fn suggest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    let limit = (key.chars().count() / 3).max(2);
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance (insertions, deletions, substitutions), ignoring ASCII case.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_ascii_lowercase().chars().collect();
    let b: Vec<char> = b.to_ascii_lowercase().chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1).min(row[j] + 1).min(diagonal + usize::from(ca != cb));
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// One value being validated, with what an error needs to name it (shared with `beacon.conf`).
pub(crate) struct Value<'a> {
    pub(crate) raw: &'a RawLine,
    pub(crate) path: &'a Path,
}

impl Value<'_> {
    /// The "unknown key ignored" warning of this line.
    pub(crate) fn unknown(&self) -> ConfigWarning {
        ConfigWarning {
            path: self.path.to_path_buf(),
            line: self.raw.line,
            message: format!("unknown key {:?} ignored", self.raw.key),
        }
    }

    /// [`Value::unknown`] with a "did you mean" from `known`.
    pub(crate) fn unknown_among(&self, known: &[&str]) -> ConfigWarning {
        let mut warning = self.unknown();
        if let Some(key) = suggest(&self.raw.key, known) {
            warning.message = format!("unknown key {:?} ignored; did you mean {key}?", self.raw.key);
        }
        warning
    }

    pub(crate) fn invalid(&self, value: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::InvalidValue {
            path: self.path.to_path_buf(),
            line: self.raw.line,
            key: self.raw.key.clone(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn parse_with<T>(&self, f: impl FnOnce(&str) -> Result<T, String>) -> Result<T, ConfigError> {
        f(&self.raw.value).map_err(|reason| self.invalid(&self.raw.value, reason))
    }

    pub(crate) fn parse<T: std::str::FromStr>(&self, what: &str) -> Result<T, ConfigError> {
        self.parse_with(|s| s.parse::<T>().map_err(|_| format!("not {what}")))
    }

    pub(crate) fn positive<T: std::str::FromStr + PartialOrd + Default>(&self) -> Result<T, ConfigError> {
        let n: T = self.parse("a positive number")?;
        if n <= T::default() {
            return Err(self.invalid(&self.raw.value, "must be greater than 0"));
        }
        Ok(n)
    }

    /// `actionsessions`: 1 to [`crate::config::MAX_ACTION_SESSIONS`].
    pub(crate) fn action_sessions(&self) -> Result<usize, ConfigError> {
        let n: usize = self.positive()?;
        if n > crate::config::MAX_ACTION_SESSIONS {
            return Err(self.invalid(&self.raw.value, format!("at most {}", crate::config::MAX_ACTION_SESSIONS)));
        }
        Ok(n)
    }

    /// A listen backlog: 1 to 2^31-1 connections.
    pub(crate) fn backlog(&self) -> Result<u32, ConfigError> {
        let n: u32 = self.positive()?;
        if n > crate::listen::MAX_BACKLOG {
            return Err(self.invalid(&self.raw.value, format!("at most {}", crate::listen::MAX_BACKLOG)));
        }
        Ok(n)
    }

    fn millis(&self) -> Result<Duration, ConfigError> {
        Ok(Duration::from_millis(self.positive::<u64>()?))
    }

    pub(crate) fn boolean(&self) -> Result<bool, ConfigError> {
        self.parse_with(|s| parse_bool(s).ok_or_else(|| "not yes/no, on/off, true/false or 1/0".to_string()))
    }

    pub(crate) fn optional(&self) -> Option<String> {
        (!self.raw.value.is_empty()).then(|| self.raw.value.clone())
    }

    fn optional_parse<T: std::str::FromStr>(&self, what: &str) -> Result<Option<T>, ConfigError> {
        match self.optional() {
            None => Ok(None),
            Some(_) => self.parse(what).map(Some),
        }
    }

    /// A comma-separated list of networks (`10.0.0.0/8, 127.0.0.1/32`; a bare address is one
    /// host); empty is none.
    fn networks(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        let mut nets = Vec::new();
        for item in self.raw.value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let net = match item.parse::<ipnet::IpNet>() {
                Ok(net) => net.trunc(),
                Err(_) => match item.parse::<IpAddr>() {
                    Ok(ip) => ipnet::IpNet::from(ip),
                    Err(_) => {
                        return Err(self.invalid(item, "not a network in CIDR form like 10.0.0.0/8 or an address"))
                    }
                },
            };
            nets.push(net);
        }
        Ok(nets)
    }

    fn share(&self) -> Result<f64, ConfigError> {
        self.parse_with(|s| match s.parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
            _ => Err("not a share between 0 and 1".to_string()),
        })
    }

    pub(crate) fn nonempty(&self) -> Result<String, ConfigError> {
        self.optional().ok_or_else(|| self.invalid("", "must not be empty"))
    }

    fn address(&self) -> Result<IpAddr, ConfigError> {
        self.parse_with(|s| match s {
            "*" | "" => Ok(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            _ => s.trim_matches(['[', ']']).parse().map_err(|_| "not an IP address (use * for all)".to_string()),
        })
    }

    fn autofilter(&self) -> Result<AutoFilter, ConfigError> {
        self.parse_with(|s| match s.to_ascii_lowercase().as_str() {
            "off" | "0" | "no" => Ok(AutoFilter::Off),
            "on" | "1" | "yes" => Ok(AutoFilter::On),
            "unique" | "2" => Ok(AutoFilter::Unique),
            _ => Err("not off, on or unique".to_string()),
        })
    }

    fn lag_policy(&self) -> Result<LagPolicy, ConfigError> {
        self.parse_with(|s| match s.to_ascii_lowercase().as_str() {
            "disconnect" => Ok(LagPolicy::Disconnect),
            "drop" => Ok(LagPolicy::Drop),
            _ => Err("not disconnect or drop".to_string()),
        })
    }

    fn input_format(&self) -> Result<String, ConfigError> {
        self.parse_with(|s| match s.to_ascii_lowercase().as_str() {
            f @ ("standard" | "xml" | "json") => Ok(f.to_string()),
            _ => Err("unknown input format (known: standard, xml, json)".to_string()),
        })
    }

    /// `host = host, port, user, secret, events, use_ssl[, name]`.
    fn server(&self) -> Result<ServerConfig, ConfigError> {
        let fields: Vec<&str> = self.raw.value.split(',').map(str::trim).collect();
        // Never echo the secret in an error.
        let shown =
            fields.iter().enumerate().map(|(i, f)| if i == 3 { "********" } else { f }).collect::<Vec<_>>().join(", ");
        const NAMES: [&str; 6] = ["host", "port", "user", "secret", "events", "use_ssl"];
        // `system,call` as the events field splits into two fields: name the events field, not
        // the use_ssl field that the second class lands in.
        const CLASS_LIST: &str =
            "an event class list in the events field (field 5) is written with `|` (`system|call`), \
             since commas separate the fields";
        if fields.len() > 7 {
            return Err(self.invalid(
                &shown,
                format!("too many fields (host, port, user, secret, events, use_ssl[, name]); {CLASS_LIST}"),
            ));
        }
        for (i, name) in NAMES.iter().enumerate() {
            if fields.get(i).is_none_or(|f| f.is_empty()) {
                return Err(self.invalid(
                    &shown,
                    format!("missing field {} ({name}) of host, port, user, secret, events, use_ssl", i + 1),
                ));
            }
        }
        let port = fields[1]
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| self.invalid(&shown, "the port is not a port number"))?;
        let use_ssl = parse_bool(fields[5]).ok_or_else(|| {
            let reason = if fields[5].chars().all(|c| c.is_ascii_alphabetic() || c == '|') {
                format!("field 6 (use_ssl) is `{}`, not on or off; {CLASS_LIST}", fields[5])
            } else {
                format!("field 6 (use_ssl) is `{}`, not on or off", fields[5])
            };
            self.invalid(&shown, reason)
        })?;
        let name = fields.get(6).filter(|n| !n.is_empty()).unwrap_or(&fields[0]).to_string();
        Ok(ServerConfig {
            name,
            host: fields[0].to_string(),
            port,
            username: fields[2].to_string(),
            secret: Secret::new(fields[3]),
            // A class list cannot use commas inside the comma-separated line: `system|call`.
            events: fields[4].replace('|', ","),
            use_ssl,
        })
    }
}

/// yes/no, on/off, true/false, 1/0 (any case).
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "yes" | "on" | "true" | "1" => Some(true),
        "no" | "off" | "false" | "0" => Some(false),
        _ => None,
    }
}
