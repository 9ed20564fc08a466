//! The shared event buffer: every broadcast event once, bounded in bytes.
//!
//! Upstream sessions append events; every client's writer holds only a position (a sequence
//! number) and takes the events after it at its own pace. The buffer keeps the most recent events
//! up to `clienteventbuffer` bytes, whether or not every client has taken them (a later reader
//! can resume from it), and drops the oldest beyond that. A client whose position was dropped
//! had more than the budget waiting: that, and only that, is lag (DESIGN section 8). Memory is
//! the budget whatever the number of clients.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::SharedEvent;

/// A reader's position fell out of the buffer: `missed` events it never took were dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lagged {
    /// Events dropped before this reader took them.
    pub missed: u64,
}

/// The buffer of recent broadcast events, bounded by a byte budget.
#[derive(Debug)]
pub struct EventRing {
    state: Mutex<State>,
    /// Sequence number the next published event gets.
    head: AtomicU64,
    /// Bytes held (a copy of `State::bytes` readable without the lock, for metrics).
    held: AtomicUsize,
    budget: usize,
    notify: Notify,
}

#[derive(Debug, Default)]
struct State {
    events: VecDeque<Arc<SharedEvent>>,
    /// Sequence number of `events[0]`.
    first: u64,
    bytes: usize,
}

impl EventRing {
    /// An empty buffer holding at most `budget` bytes of events (at least the newest one).
    pub fn new(budget: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            head: AtomicU64::new(0),
            held: AtomicUsize::new(0),
            budget,
            notify: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The byte budget.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Bytes of events held now.
    pub fn held_bytes(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// The position of the next event to be published: a reader starting here gets every
    /// event published from now on.
    pub fn position(&self) -> u64 {
        self.head.load(Ordering::Acquire)
    }

    /// Appends an event, dropping the oldest ones beyond the budget, and wakes waiting readers.
    pub fn publish(&self, event: Arc<SharedEvent>) {
        let evicted;
        {
            let mut state = self.lock();
            state.bytes += event.cost();
            state.events.push_back(event);
            evicted = evict(&mut state, self.budget);
            self.held.store(state.bytes, Ordering::Relaxed);
            self.head.store(state.first + state.events.len() as u64, Ordering::Release);
        }
        // Freed outside the lock.
        drop(evicted);
        self.notify.notify_waiters();
    }

    /// Moves the events from `*cursor` on (at most `max`) into `out` and advances the cursor.
    ///
    /// # Errors
    /// The events at the cursor were dropped before this reader took them; the cursor is moved
    /// to the oldest event held, so a reader that goes on (`lagpolicy = drop`) misses only those.
    pub fn read(&self, cursor: &mut u64, out: &mut Vec<Arc<SharedEvent>>, max: usize) -> Result<(), Lagged> {
        let state = self.lock();
        if *cursor < state.first {
            let missed = state.first - *cursor;
            *cursor = state.first;
            return Err(Lagged { missed });
        }
        let start = usize::try_from(*cursor - state.first).unwrap_or(usize::MAX);
        let end = state.events.len().min(start.saturating_add(max));
        if start < end {
            out.extend(state.events.range(start..end).cloned());
            *cursor += (end - start) as u64;
        }
        Ok(())
    }

    /// Waits until an event at or after `cursor` is published (returns at once if one is).
    /// Cancel safe.
    pub async fn wait(&self, cursor: u64) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.position() > cursor {
                return;
            }
            notified.await;
        }
    }
}

/// Drops the oldest events while more than `budget` bytes are held, keeping the newest one.
fn evict(state: &mut State, budget: usize) -> Vec<Arc<SharedEvent>> {
    let mut evicted = Vec::new();
    while state.bytes > budget && state.events.len() > 1 {
        if let Some(old) = state.events.pop_front() {
            state.bytes -= old.cost();
            state.first += 1;
            evicted.push(old);
        }
    }
    evicted
}

#[cfg(test)]
mod tests {
    use super::*;
    use astmanproxy_handlers::Message;

    fn event(n: usize) -> Arc<SharedEvent> {
        SharedEvent::new(Message::new().with("Event", "UserEvent").with("N", n.to_string()))
    }

    #[test]
    fn readers_take_events_at_their_own_pace() {
        let ring = EventRing::new(1 << 20);
        let mut a = ring.position();
        for n in 0..10 {
            ring.publish(event(n));
        }
        let mut b = ring.position();
        ring.publish(event(10));
        let mut out = Vec::new();
        ring.read(&mut a, &mut out, 4).unwrap();
        assert_eq!(out.len(), 4);
        ring.read(&mut a, &mut out, 100).unwrap();
        assert_eq!(out.len(), 11);
        assert_eq!(out[10].message().get("N"), Some("10"));
        out.clear();
        ring.read(&mut b, &mut out, 100).unwrap();
        assert_eq!(out.len(), 1);
        ring.read(&mut b, &mut out, 100).unwrap();
        assert_eq!(out.len(), 1, "nothing new");
    }

    #[test]
    fn the_budget_bounds_bytes_and_a_reader_past_it_has_lagged() {
        let one = event(0).cost();
        let ring = EventRing::new(one * 10);
        let mut slow = ring.position();
        for n in 0..100 {
            ring.publish(event(n));
        }
        assert!(ring.held_bytes() <= one * 10 + 8, "{}", ring.held_bytes());
        let mut out = Vec::new();
        let lag = ring.read(&mut slow, &mut out, 1000).unwrap_err();
        assert!(lag.missed >= 89, "{lag:?}");
        // The reader goes on from the oldest event held.
        ring.read(&mut slow, &mut out, 1000).unwrap();
        assert_eq!(out.last().unwrap().message().get("N"), Some("99"));
        assert_eq!(slow, ring.position());
    }

    #[test]
    fn an_event_larger_than_the_budget_is_still_delivered() {
        let ring = EventRing::new(1);
        let mut r = ring.position();
        ring.publish(event(1));
        let mut out = Vec::new();
        ring.read(&mut r, &mut out, 10).unwrap();
        assert_eq!(out.len(), 1);
    }

    #[tokio::test]
    async fn wait_returns_when_an_event_comes() {
        let ring = Arc::new(EventRing::new(1 << 20));
        let at = ring.position();
        let waiter = tokio::spawn({
            let ring = ring.clone();
            async move { ring.wait(at).await }
        });
        tokio::task::yield_now().await;
        ring.publish(event(1));
        waiter.await.unwrap();
        // Already there: returns at once.
        ring.wait(at).await;
    }
}
