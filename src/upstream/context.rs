//! What a server's sessions need of the rest of the proxy, and nothing more: the configuration,
//! the metrics and the event bus they publish to (not the hub: the registry of servers and
//! clients is above them).

use std::sync::Arc;
use std::time::Instant;

use crate::config::Config;
use crate::event::SharedEvent;
use crate::metrics::Metrics;
use crate::route::EventBus;

/// Shared by every upstream session, and held by the hub. Cheap to clone.
#[derive(Clone)]
pub struct Context {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<Config>,
    metrics: Metrics,
    bus: Arc<dyn EventBus>,
    started: Instant,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("bus", &self.inner.bus).finish_non_exhaustive()
    }
}

impl Context {
    /// The context of a proxy started now.
    pub fn new(config: Arc<Config>, metrics: Metrics, bus: Arc<dyn EventBus>) -> Self {
        Self { inner: Arc::new(Inner { config, metrics, bus, started: Instant::now() }) }
    }

    /// The configuration the proxy runs with (plain data, shared).
    pub fn config(&self) -> &Arc<Config> {
        &self.inner.config
    }

    /// The proxy's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The event bus.
    pub fn bus(&self) -> &Arc<dyn EventBus> {
        &self.inner.bus
    }

    /// Publishes a broadcast event.
    pub fn publish(&self, event: Arc<SharedEvent>) {
        self.inner.bus.publish(event);
    }

    /// Seconds since the proxy started (the `Uptime` of proxy-made `FullyBooted`).
    pub fn uptime_secs(&self) -> u64 {
        self.inner.started.elapsed().as_secs()
    }
}
