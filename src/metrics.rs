//! Prometheus metrics (served by the admin listener, see [`crate::admin`]); every metric is
//! listed in `docs/metrics.md`.
//!
//! Per server: `astmanproxy_server_connected`, `_server_connects_total`,
//! `_server_connect_failures_total`, `_server_actions_total`, `_server_events_total`,
//! `_server_events_sent_total`,
//! `_server_pending_actions`, `_server_action_seconds` (histogram).
//! Per client kind: `astmanproxy_clients_connected`, `_client_queue_bytes`,
//! `_client_events_dropped_total`, `_client_lag_disconnects_total`, `_auth_failures_total`.
//! Also `astmanproxy_build_info` and the usual `process_*` metrics (read from `/proc/self` at
//! scrape time, Linux only).
//!
//! Metrics are plain atomics updated on the hot path; queue depths and process figures are read
//! at scrape time. prometheus-client writes OpenMetrics only; [`to_text_format`] turns that into
//! the classic Prometheus text format 0.0.4, which is served by default.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of per-server metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    /// Server name, escaped as a label value (build it with [`Metrics::server`]).
    pub server: String,
}

/// Labels of per-session metrics (session 0 is the event session).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SessionLabels {
    /// Server name, escaped as in [`ServerLabels`].
    pub server: String,
    /// Session number, `0` to `actionsessions - 1`.
    pub session: String,
}

/// Labels of `astmanproxy_client_cutoffs_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CutoffLabels {
    /// Client kind (`ami`).
    pub kind: &'static str,
    /// Why: `lag` (too far behind the event stream) or `writetimeout` (`clientwritetimeout`).
    pub reason: &'static str,
}

/// Labels of per-client-kind metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// Client kind (`ami` for AMI over TCP).
    pub kind: &'static str,
}

/// The client kind of AMI clients over TCP.
pub const AMI: KindLabels = KindLabels { kind: "ami" };

/// Every kind of client session: AMI over TCP or TLS, AJAM (`/rawman`, `/mxml`) and WebSocket.
pub const CLIENT_KINDS: [&str; 3] = ["ami", "ajam", "ws"];

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Labels of `astmanproxy_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    os: &'static str,
    arch: &'static str,
}

/// Every metric of the proxy.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// 1 when the server is logged in and ready.
    pub server_connected: Family<ServerLabels, Gauge>,
    /// Successful connections (a reconnect counts again).
    pub server_connects: Family<ServerLabels, Counter>,
    /// Failed connection attempts (no TCP connection, no banner, login refused).
    pub server_connect_failures: Family<ServerLabels, Counter>,
    /// Actions forwarded.
    pub server_actions: Family<ServerLabels, Counter>,
    /// Events received.
    pub server_events: Family<ServerLabels, Counter>,
    /// Events written to clients (once per client that received one).
    pub server_events_sent: Family<ServerLabels, Counter>,
    /// Actions waiting for their final answer.
    pub server_pending: Family<ServerLabels, Gauge>,
    /// Time from forwarding an action to its final answer.
    pub server_latency: Family<ServerLabels, Histogram, fn() -> Histogram>,
    /// Per session: 1 when logged in.
    pub session_connected: Family<SessionLabels, Gauge>,
    /// Per session: actions the proxy has running on it.
    pub session_busy: Family<SessionLabels, Gauge>,
    /// Actions that waited for a free action session.
    pub action_waits: Family<ServerLabels, Counter>,
    /// Time actions waited for a free action session.
    pub action_wait: Family<ServerLabels, Histogram, fn() -> Histogram>,
    /// Clients cut off, by reason.
    pub client_cutoffs: Family<CutoffLabels, Counter>,
    /// Connected clients.
    pub clients_connected: Family<KindLabels, Gauge>,
    /// Bytes waiting in client queues (summed at scrape).
    pub client_queue_bytes: Family<KindLabels, Gauge>,
    /// Events dropped for slow clients (`lagpolicy = drop`).
    pub events_dropped: Family<KindLabels, Counter>,
    /// Clients disconnected for falling behind.
    pub lag_disconnects: Family<KindLabels, Counter>,
    /// Failed client logins.
    pub auth_failures: Family<KindLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// All metrics, registered.
    pub fn new() -> Self {
        let m = Self {
            registry: Mutex::new(Registry::default()),
            server_connected: Family::default(),
            server_connects: Family::default(),
            server_connect_failures: Family::default(),
            server_actions: Family::default(),
            server_events: Family::default(),
            server_events_sent: Family::default(),
            server_pending: Family::default(),
            server_latency: Family::new_with_constructor(latency_histogram),
            session_connected: Family::default(),
            session_busy: Family::default(),
            action_waits: Family::default(),
            action_wait: Family::new_with_constructor(latency_histogram),
            client_cutoffs: Family::default(),
            clients_connected: Family::default(),
            client_queue_bytes: Family::default(),
            events_dropped: Family::default(),
            lag_disconnects: Family::default(),
            auth_failures: Family::default(),
        };
        {
            let mut root = m.registry.lock().unwrap_or_else(|e| e.into_inner());
            process::register(&mut root);
            let r = root.sub_registry_with_prefix("astmanproxy");
            let build: Family<BuildLabels, Gauge> = Family::default();
            build
                .get_or_create(&BuildLabels {
                    version: env!("CARGO_PKG_VERSION"),
                    os: std::env::consts::OS,
                    arch: std::env::consts::ARCH,
                })
                .set(1);
            r.register("build_info", "Always 1; the labels name the proxy's version and platform", build);
            r.register(
                "server_connected",
                "1 when the Asterisk server is logged in and ready",
                m.server_connected.clone(),
            );
            r.register("server_connects", "Successful connections to the Asterisk server", m.server_connects.clone());
            r.register(
                "server_connect_failures",
                "Failed connection attempts to the Asterisk server",
                m.server_connect_failures.clone(),
            );
            r.register("server_actions", "Actions forwarded to the Asterisk server", m.server_actions.clone());
            r.register("server_events", "Events received from the Asterisk server", m.server_events.clone());
            r.register(
                "server_events_sent",
                "Events of the server written to clients, once per client",
                m.server_events_sent.clone(),
            );
            r.register("server_pending_actions", "Actions waiting for their final answer", m.server_pending.clone());
            r.register(
                "server_action_seconds",
                "Time from forwarding an action to its final answer",
                m.server_latency.clone(),
            );
            r.register(
                "server_session_connected",
                "1 when this AMI session of the server is logged in (session 0 carries the events)",
                m.session_connected.clone(),
            );
            r.register(
                "server_session_busy",
                "Actions running on this AMI session of the server",
                m.session_busy.clone(),
            );
            r.register(
                "server_action_waits",
                "Actions that waited because every action session of the server was busy",
                m.action_waits.clone(),
            );
            r.register(
                "server_action_wait_seconds",
                "Time actions waited for a free action session",
                m.action_wait.clone(),
            );
            r.register("client_cutoffs", "Clients cut off by the proxy, by reason", m.client_cutoffs.clone());
            r.register("clients_connected", "Connected clients", m.clients_connected.clone());
            r.register("client_queue_bytes", "Bytes waiting in client queues", m.client_queue_bytes.clone());
            r.register("client_events_dropped", "Events dropped for slow clients", m.events_dropped.clone());
            r.register("client_lag_disconnects", "Clients disconnected for falling behind", m.lag_disconnects.clone());
            r.register("auth_failures", "Failed client logins", m.auth_failures.clone());
        }
        m
    }

    /// The server label set. The name is stored escaped for the exposition formats (`\\`,
    /// `\"`, `\n`): prometheus-client writes label values as they are.
    pub fn server(name: &str) -> ServerLabels {
        let mut server = String::with_capacity(name.len());
        for c in name.chars() {
            match c {
                '\\' => server.push_str("\\\\"),
                '"' => server.push_str("\\\""),
                '\n' => server.push_str("\\n"),
                c => server.push(c),
            }
        }
        ServerLabels { server }
    }

    /// The label set of session `index` of a server.
    pub fn session(server: &ServerLabels, index: usize) -> SessionLabels {
        SessionLabels { server: server.server.clone(), session: index.to_string() }
    }

    /// Counts a client of `kind` cut off for `reason` (`lag`, `writetimeout`).
    pub fn cutoff(&self, kind: &'static str, reason: &'static str) {
        self.client_cutoffs.get_or_create(&CutoffLabels { kind, reason }).inc();
    }

    /// Records an action's latency.
    pub fn observe_latency(&self, server: &ServerLabels, elapsed: Duration) {
        self.server_latency.get_or_create(server).observe(elapsed.as_secs_f64());
    }

    /// Forgets a server's series (it was dropped).
    pub fn remove_server(&self, server: &ServerLabels) {
        self.server_connected.remove(server);
        self.server_connects.remove(server);
        self.server_connect_failures.remove(server);
        self.server_actions.remove(server);
        self.server_events.remove(server);
        self.server_events_sent.remove(server);
        self.server_pending.remove(server);
        self.server_latency.remove(server);
        self.action_waits.remove(server);
        self.action_wait.remove(server);
        for i in 0..crate::config::MAX_ACTION_SESSIONS {
            let labels = Self::session(server, i);
            self.session_connected.remove(&labels);
            self.session_busy.remove(&labels);
        }
    }

    /// Every metric in the OpenMetrics text format 1.0.0 (ends with `# EOF`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }

    /// Every metric in the `format` asked for.
    pub fn encode_as(&self, format: Format) -> String {
        match format {
            Format::OpenMetrics => self.encode(),
            Format::Text => to_text_format(&self.encode()),
        }
    }
}

/// The two exposition formats `/metrics` serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The classic Prometheus text format 0.0.4 (the default).
    Text,
    /// OpenMetrics text 1.0.0.
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Text => "text/plain; version=0.0.4; charset=utf-8",
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format an `Accept` header asks for: OpenMetrics when `application/openmetrics-text`
    /// is acceptable (q > 0) and weighted at least as high as any range that covers
    /// `text/plain` (`text/plain`, `text/*`, `*/*`); the text format otherwise, also without a
    /// header or when neither is acceptable (as Prometheus' own client libraries do).
    pub fn from_accept(accept: Option<&str>) -> Self {
        let Some(accept) = accept else { return Self::Text };
        let (mut open, mut text) = (0.0_f64, 0.0_f64);
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let mut q = 1.0;
            for param in parts {
                if let Some((k, v)) = param.split_once('=') {
                    if k.trim().eq_ignore_ascii_case("q") {
                        q = v.trim().parse::<f64>().ok().filter(|q| q.is_finite()).unwrap_or(0.0).clamp(0.0, 1.0);
                    }
                }
            }
            match media.as_str() {
                "application/openmetrics-text" => open = open.max(q),
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if open > 0.0 && open >= text {
            Self::OpenMetrics
        } else {
            Self::Text
        }
    }
}

/// Rewrites OpenMetrics text (as prometheus-client writes it) into the Prometheus text format
/// 0.0.4: a counter family's `# HELP`/`# TYPE` lines name it with its `_total` suffix, the
/// `_created` samples, `# UNIT` lines and `# EOF` go, `info` becomes a `gauge` named `..._info`,
/// `stateset` a `gauge`, `unknown` is `untyped`, exemplars are cut off, timestamps turn from
/// seconds into milliseconds and `\"` in help text becomes `"`. Gauge histograms have no 0.0.4
/// form and are left out (the proxy registers none).
pub fn to_text_format(open: &str) -> String {
    let mut out = String::with_capacity(open.len());
    let mut family: Option<TextFamily> = None;
    for line in open.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let (keyword, rest) = rest.split_once(' ').unwrap_or((rest, ""));
            let (name, value) = rest.split_once(' ').unwrap_or((rest, ""));
            if !matches!(keyword, "HELP" | "TYPE") {
                continue; // UNIT, EOF, comments
            }
            if family.as_ref().is_none_or(|f| f.name != name) {
                if let Some(f) = family.take() {
                    f.write(&mut out);
                }
                family = Some(TextFamily::new(name));
            }
            if let Some(f) = family.as_mut() {
                match keyword {
                    "HELP" => f.help = Some(value.to_string()),
                    _ => f.kind = value.to_string(),
                }
            }
        } else if !line.is_empty() {
            match family.as_mut() {
                Some(f) => f.samples.push(line.to_string()),
                None => {
                    if let Some(s) = text_sample(line, &[]) {
                        out.push_str(&s);
                        out.push('\n');
                    }
                }
            }
        }
    }
    if let Some(f) = family {
        f.write(&mut out);
    }
    out
}

/// One metric family on its way from OpenMetrics to 0.0.4.
struct TextFamily {
    name: String,
    help: Option<String>,
    kind: String,
    samples: Vec<String>,
}

impl TextFamily {
    fn new(name: &str) -> Self {
        Self { name: name.to_string(), help: None, kind: "unknown".into(), samples: Vec::new() }
    }

    fn write(self, out: &mut String) {
        let base = self.name.as_str();
        let (name, kind) = match self.kind.as_str() {
            "counter" => (format!("{base}_total"), "counter"),
            "info" => (format!("{base}_info"), "gauge"),
            "stateset" => (base.to_string(), "gauge"),
            "gauge" => (base.to_string(), "gauge"),
            "histogram" => (base.to_string(), "histogram"),
            "summary" => (base.to_string(), "summary"),
            "gaugehistogram" => return,
            _ => (base.to_string(), "untyped"),
        };
        // The sample names this family may have in 0.0.4; `_created` and others are dropped.
        let allowed: Vec<String> = match kind {
            "histogram" => ["_bucket", "_sum", "_count"].iter().map(|s| format!("{base}{s}")).collect(),
            "summary" => ["", "_sum", "_count"].iter().map(|s| format!("{base}{s}")).collect(),
            _ => vec![name.clone()],
        };
        if let Some(help) = &self.help {
            out.push_str(&format!("# HELP {name} {}\n", text_help(help)));
        }
        out.push_str(&format!("# TYPE {name} {kind}\n"));
        for sample in &self.samples {
            if let Some(s) = text_sample(sample, &allowed) {
                out.push_str(&s);
                out.push('\n');
            }
        }
    }
}

/// OpenMetrics help escapes `\\`, `\n` and `\"`; 0.0.4 only `\\` and `\n`.
fn text_help(help: &str) -> String {
    let mut out = String::with_capacity(help.len());
    let mut chars = help.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('"') => out.push('"'),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push_str("\\\\"),
            },
            (c, false) => out.push(c),
        }
    }
    out
}

/// One sample line in 0.0.4 form, or `None` when its name is not in `allowed` (when given).
fn text_sample(line: &str, allowed: &[String]) -> Option<String> {
    let name_end = line.find(['{', ' ']).unwrap_or(line.len());
    let name = &line[..name_end];
    if !allowed.is_empty() && !allowed.iter().any(|a| a == name) {
        return None;
    }
    // The label set ends at the first `}` outside a quoted value.
    let mut labels_end = name_end;
    if line[name_end..].starts_with('{') {
        let (mut quoted, mut escaped) = (false, false);
        for (i, c) in line[name_end..].char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                '}' if !quoted => {
                    labels_end = name_end + i + 1;
                    break;
                }
                _ => {}
            }
        }
    }
    let rest = &line[labels_end..];
    // An exemplar follows ` # `.
    let rest = rest.split_once(" # ").map_or(rest, |(r, _)| r);
    let mut fields = rest.split_whitespace();
    let value = fields.next()?;
    let mut out = format!("{} {value}", &line[..labels_end]);
    if let Some(ts) = fields.next() {
        // OpenMetrics timestamps are seconds, 0.0.4 ones integer milliseconds.
        if let Ok(seconds) = ts.parse::<f64>() {
            out.push_str(&format!(" {}", (seconds * 1000.0).round() as i64));
        }
    }
    Some(out)
}

/// The `process_*` metrics, read from `/proc/self` at scrape time (Linux only).
mod process;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_header_negotiation() {
        use Format::{OpenMetrics, Text};
        for (accept, want) in [
            (None, Text),
            (Some(""), Text),
            (Some("*/*"), Text),
            (Some("text/plain"), Text),
            (Some("text/plain; version=0.0.4"), Text),
            (Some("application/json"), Text),
            (Some("application/openmetrics-text"), OpenMetrics),
            (Some("Application/OpenMetrics-Text; version=1.0.0"), OpenMetrics),
            (Some("application/openmetrics-text;q=0"), Text),
            (Some("text/plain;q=0.9, application/openmetrics-text;q=0.5"), Text),
            (Some("application/openmetrics-text; version=1.0.0, text/plain"), OpenMetrics),
            // What Prometheus 2.x sends.
            (
                Some(
                    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,\
                     text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                ),
                OpenMetrics,
            ),
            (Some("application/openmetrics-text;q=bogus"), Text),
        ] {
            assert_eq!(Format::from_accept(accept), want, "{accept:?}");
        }
    }

    #[test]
    fn counters_histograms_and_gauges_in_text_format() {
        let open = "# HELP x_requests Requests \\\"served\\\" \\\\ here.\n\
                    # TYPE x_requests counter\n\
                    # UNIT x_requests requests\n\
                    x_requests_total{server=\"a b}\\\"c\"} 3 # {trace_id=\"1\"} 1.0 1.5\n\
                    x_requests_created{server=\"a b}\\\"c\"} 1700000000.5\n\
                    # HELP x_up Up.\n\
                    # TYPE x_up gauge\n\
                    x_up 1 1700000000.25\n\
                    # HELP x_seconds Latency.\n\
                    # TYPE x_seconds histogram\n\
                    x_seconds_sum 0.5\n\
                    x_seconds_count 2\n\
                    x_seconds_bucket{le=\"0.1\"} 1\n\
                    x_seconds_bucket{le=\"+Inf\"} 2\n\
                    x_seconds_created 1700000000.0\n\
                    # HELP x_build Build.\n\
                    # TYPE x_build info\n\
                    x_build_info{version=\"1\"} 1\n\
                    # TYPE x_other unknown\n\
                    x_other NaN\n\
                    # EOF\n";
        let want = "# HELP x_requests_total Requests \"served\" \\\\ here.\n\
                    # TYPE x_requests_total counter\n\
                    x_requests_total{server=\"a b}\\\"c\"} 3\n\
                    # HELP x_up Up.\n\
                    # TYPE x_up gauge\n\
                    x_up 1 1700000000250\n\
                    # HELP x_seconds Latency.\n\
                    # TYPE x_seconds histogram\n\
                    x_seconds_sum 0.5\n\
                    x_seconds_count 2\n\
                    x_seconds_bucket{le=\"0.1\"} 1\n\
                    x_seconds_bucket{le=\"+Inf\"} 2\n\
                    # HELP x_build_info Build.\n\
                    # TYPE x_build_info gauge\n\
                    x_build_info{version=\"1\"} 1\n\
                    # TYPE x_other untyped\n\
                    x_other NaN\n";
        assert_eq!(to_text_format(open), want);
    }

    #[test]
    fn the_proxy_metrics_in_both_formats() {
        let m = Metrics::new();
        let pbx = Metrics::server("pbx\"1");
        m.server_connects.get_or_create(&pbx).inc();
        m.observe_latency(&pbx, Duration::from_millis(3));
        m.auth_failures.get_or_create(&AMI).inc();
        let open = m.encode_as(Format::OpenMetrics);
        assert!(open.ends_with("# EOF\n"), "{open}");
        assert!(open.contains("# TYPE astmanproxy_server_connects counter\n"), "{open}");
        let text = m.encode_as(Format::Text);
        for needle in [
            "# TYPE astmanproxy_server_connects_total counter\n",
            "astmanproxy_server_connects_total{server=\"pbx\\\"1\"} 1\n",
            "# TYPE astmanproxy_server_action_seconds histogram\n",
            "astmanproxy_server_action_seconds_count{server=\"pbx\\\"1\"} 1\n",
            "# TYPE astmanproxy_auth_failures_total counter\n",
            "# TYPE astmanproxy_build_info gauge\n",
            &format!("astmanproxy_build_info{{version=\"{}\",", env!("CARGO_PKG_VERSION")),
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
        for absent in ["# EOF", "# UNIT", "_created"] {
            assert!(!text.contains(absent), "{absent} in:\n{text}");
        }
        #[cfg(target_os = "linux")]
        for needle in ["# TYPE process_cpu_seconds_total counter\n", "# TYPE process_resident_memory_bytes gauge\n"] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
        // Every family is named once, TYPE after HELP, each before its samples.
        let types: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).collect();
        let mut names: Vec<&str> = types.iter().map(|t| t.split(' ').next().unwrap()).collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "{text}");
    }
}
