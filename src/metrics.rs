//! Prometheus metrics (served by the admin listener, see [`crate::admin`]).
//!
//! Per server: `astmanproxy_server_connected`, `_server_connects_total`, `_server_actions_total`,
//! `_server_events_total`, `_server_pending_actions`, `_server_action_seconds` (histogram).
//! Per client kind: `astmanproxy_clients_connected`, `_client_queue_bytes`,
//! `_client_events_dropped_total`, `_client_lag_disconnects_total`, `_auth_failures_total`.
//! Metrics are plain atomics updated on the hot path; queue depths are summed at scrape time.

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
    /// Server name.
    pub server: String,
}

/// Labels of per-client-kind metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// Client kind (`ami` for AMI over TCP).
    pub kind: &'static str,
}

/// The client kind of AMI clients over TCP.
pub const AMI: KindLabels = KindLabels { kind: "ami" };

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Every metric of the proxy.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// 1 when the server is logged in and ready.
    pub server_connected: Family<ServerLabels, Gauge>,
    /// Successful connections (a reconnect counts again).
    pub server_connects: Family<ServerLabels, Counter>,
    /// Actions forwarded.
    pub server_actions: Family<ServerLabels, Counter>,
    /// Events received.
    pub server_events: Family<ServerLabels, Counter>,
    /// Actions waiting for their final answer.
    pub server_pending: Family<ServerLabels, Gauge>,
    /// Time from forwarding an action to its final answer.
    pub server_latency: Family<ServerLabels, Histogram, fn() -> Histogram>,
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
            registry: Mutex::new(Registry::with_prefix("astmanproxy")),
            server_connected: Family::default(),
            server_connects: Family::default(),
            server_actions: Family::default(),
            server_events: Family::default(),
            server_pending: Family::default(),
            server_latency: Family::new_with_constructor(latency_histogram),
            clients_connected: Family::default(),
            client_queue_bytes: Family::default(),
            events_dropped: Family::default(),
            lag_disconnects: Family::default(),
            auth_failures: Family::default(),
        };
        {
            let mut r = m.registry.lock().unwrap_or_else(|e| e.into_inner());
            r.register(
                "server_connected",
                "1 when the Asterisk server is logged in and ready",
                m.server_connected.clone(),
            );
            r.register("server_connects", "Successful connections to the Asterisk server", m.server_connects.clone());
            r.register("server_actions", "Actions forwarded to the Asterisk server", m.server_actions.clone());
            r.register("server_events", "Events received from the Asterisk server", m.server_events.clone());
            r.register("server_pending_actions", "Actions waiting for their final answer", m.server_pending.clone());
            r.register(
                "server_action_seconds",
                "Time from forwarding an action to its final answer",
                m.server_latency.clone(),
            );
            r.register("clients_connected", "Connected clients", m.clients_connected.clone());
            r.register("client_queue_bytes", "Bytes waiting in client queues", m.client_queue_bytes.clone());
            r.register("client_events_dropped", "Events dropped for slow clients", m.events_dropped.clone());
            r.register("client_lag_disconnects", "Clients disconnected for falling behind", m.lag_disconnects.clone());
            r.register("auth_failures", "Failed client logins", m.auth_failures.clone());
        }
        m
    }

    /// The server label set.
    pub fn server(name: &str) -> ServerLabels {
        ServerLabels { server: name.to_string() }
    }

    /// Records an action's latency.
    pub fn observe_latency(&self, server: &ServerLabels, elapsed: Duration) {
        self.server_latency.get_or_create(server).observe(elapsed.as_secs_f64());
    }

    /// Forgets a server's series (it was dropped).
    pub fn remove_server(&self, server: &ServerLabels) {
        self.server_connected.remove(server);
        self.server_connects.remove(server);
        self.server_actions.remove(server);
        self.server_events.remove(server);
        self.server_pending.remove(server);
        self.server_latency.remove(server);
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}
