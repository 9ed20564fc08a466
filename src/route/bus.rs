//! The event bus: where upstream sessions publish broadcast events and from which every client's
//! writer reads them at its own pace, from the position it subscribed at.
//!
//! Behind a small trait so that a bus-backed implementation (NATS, for a cluster) can stand beside
//! today's in-process one, the byte-bounded [`EventRing`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::event::{EventRing, Lagged, SharedEvent};

/// What waiting for an event returns: a future that ends when one is published.
pub type Wait<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Publish events; subscribe (a position); read from a position.
pub trait EventBus: Send + Sync + std::fmt::Debug {
    /// Publishes a broadcast event to every subscriber.
    fn publish(&self, event: Arc<SharedEvent>);

    /// The position from which a subscriber that subscribes now receives events: every event
    /// published after this call.
    fn subscribe(&self) -> u64;

    /// Moves the events from `*cursor` on (at most `max`) into `out` and advances the cursor.
    ///
    /// # Errors
    /// The events at the cursor were dropped before this reader took them (it lagged); the
    /// cursor is moved past them.
    fn read(&self, cursor: &mut u64, out: &mut Vec<Arc<SharedEvent>>, max: usize) -> Result<(), Lagged>;

    /// Ends when an event at or after `cursor` is published (at once if one is). Cancel safe.
    fn wait(&self, cursor: u64) -> Wait<'_>;
}

/// The in-process bus.
impl EventBus for EventRing {
    fn publish(&self, event: Arc<SharedEvent>) {
        EventRing::publish(self, event);
    }

    fn subscribe(&self) -> u64 {
        self.position()
    }

    fn read(&self, cursor: &mut u64, out: &mut Vec<Arc<SharedEvent>>, max: usize) -> Result<(), Lagged> {
        EventRing::read(self, cursor, out, max)
    }

    fn wait(&self, cursor: u64) -> Wait<'_> {
        Box::pin(EventRing::wait(self, cursor))
    }
}
