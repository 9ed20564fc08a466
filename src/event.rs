//! Broadcast events and AMI event classes.
//!
//! An upstream session wraps each broadcast event once in a [`SharedEvent`]: the message, the
//! server it came from, its class bits (from `Privilege:`), and a lazily filled cache of its
//! encoding per output format. Every client of a format gets the same bytes; nothing is encoded
//! twice.

use std::sync::{Arc, OnceLock};

mod ring;

pub use ring::{EventRing, Lagged};

use astmanproxy_handlers::{AmiDecoder, Charset, Limits, Message, OutputFormat};
use bytes::{Bytes, BytesMut};
use prometheus_client::metrics::counter::Counter;

/// Bit set of AMI event classes (`system`, `call`, ...), as used by `Privilege:` on events and
/// by `Events:` / `EventMask:` from clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClassMask(pub u32);

/// The class names Asterisk knows, in bit order.
const CLASSES: &[&str] = astmanproxy_handlers::EVENT_CLASSES;

/// Bit for events whose `Privilege:` names no known class (or that have none).
const UNCLASSED: u32 = 1 << 31;

impl ClassMask {
    /// Every class, and events without one: `Events: on`.
    pub const ALL: ClassMask = ClassMask(u32::MAX);
    /// No event at all: `Events: off`.
    pub const NONE: ClassMask = ClassMask(0);

    /// The classes of an event, from its `Privilege:` header (`call,all`). An event without a
    /// known class is "unclassed" and passes only masks that are fully on.
    pub fn of_event(message: &Message) -> ClassMask {
        let mut bits = 0;
        if let Some(privilege) = message.get("Privilege") {
            for name in privilege.split(',') {
                if let Some(i) = class_index(name) {
                    bits |= 1 << i;
                }
            }
        }
        if bits == 0 {
            bits = UNCLASSED;
        }
        ClassMask(bits)
    }

    /// Parses a client's `Events:` / `EventMask:` value: `on`, `off`, `yes`, `no`, `all`, `none`,
    /// `true`, `false` or a comma-separated class list. Unknown class names are ignored, as
    /// Asterisk ignores them; a list without any known class means off.
    pub fn parse(value: &str) -> ClassMask {
        let v = value.trim();
        match v.to_ascii_lowercase().as_str() {
            "on" | "yes" | "true" | "all" | "1" => return ClassMask::ALL,
            "off" | "no" | "false" | "none" | "0" | "" => return ClassMask::NONE,
            _ => {}
        }
        let mut bits = 0;
        for name in v.split(',') {
            let name = name.trim();
            if name.eq_ignore_ascii_case("all") {
                return ClassMask::ALL;
            }
            if let Some(i) = class_index(name) {
                bits |= 1 << i;
            }
        }
        ClassMask(bits)
    }

    /// Whether an event of classes `event` passes this mask.
    pub fn allows(self, event: ClassMask) -> bool {
        self.0 & event.0 != 0
    }

    /// Whether any event passes (`Events: On` in Asterisk's answer).
    pub fn is_on(self) -> bool {
        self.0 != 0
    }
}

fn class_index(name: &str) -> Option<usize> {
    let name = name.trim();
    CLASSES.iter().position(|c| c.eq_ignore_ascii_case(name))
}

/// One broadcast event, shared by every client that receives it.
///
/// It keeps one encoding: the standard AMI bytes, exactly as standard-format clients get them,
/// in an allocation of exactly their size. Other formats are encoded from them the first time a
/// client of that format asks, and kept (DESIGN section 8: a buffered event costs about its wire
/// size, not a decoded copy plus encodings).
#[derive(Debug)]
pub struct SharedEvent {
    wire: Bytes,
    classes: ClassMask,
    /// The rule the message's texts of bytes that are not UTF-8 were made with, so that other
    /// formats read them the same (`charset`).
    charset: Charset,
    /// Encodings in the other formats, made on demand (empty until one is asked for).
    others: OnceLock<Box<[OnceLock<Bytes>; OutputFormat::COUNT]>>,
    /// Its server's `astmanproxy_server_events_sent_total`, which writers add to (none for the
    /// proxy's own events).
    sent: Option<Arc<Counter>>,
}

/// A server's count of delivered events, shared by all its events.
pub type SentCounter = Arc<Counter>;

/// What one buffered event costs besides its bytes: the struct and its `Arc` counts, its slot in
/// the buffer, and the allocator's headers of its two allocations (measured: about 1.4 times the
/// wire size of a 360-byte event in all, `ampbench burst`).
pub const EVENT_OVERHEAD: usize = std::mem::size_of::<SharedEvent>() + 2 * std::mem::size_of::<usize>() + 8 + 32;

impl SharedEvent {
    /// Wraps an event message (which already carries its `Server:` header).
    pub fn new(message: Message) -> Arc<Self> {
        Self::build(message, None)
    }

    /// Wraps an event of a server whose deliveries `sent` counts.
    pub fn counted(message: Message, sent: SentCounter) -> Arc<Self> {
        Self::build(message, Some(sent))
    }

    fn build(message: Message, sent: Option<SentCounter>) -> Arc<Self> {
        let classes = ClassMask::of_event(&message);
        let mut out = BytesMut::with_capacity(message.encoded_len_hint() + 16);
        OutputFormat::Standard.encode(&message, &mut out);
        // An allocation of exactly the event's size: the buffer is bounded in bytes.
        let wire = Bytes::copy_from_slice(&out);
        let charset = message.charset().unwrap_or_default();
        Arc::new(Self { wire, classes, charset, others: OnceLock::new(), sent })
    }

    /// The event message, decoded from its bytes (a fresh copy: for filters and tests; the
    /// fan-out path uses [`SharedEvent::bytes`]).
    pub fn message(&self) -> Message {
        let limits =
            Limits { max_line: usize::MAX, max_message: usize::MAX, max_headers: usize::MAX, charset: self.charset };
        let mut buf = BytesMut::from(&self.wire[..]);
        AmiDecoder::new(limits).decode(&mut buf).ok().flatten().unwrap_or_default()
    }

    /// The counter of its server's delivered events, if it came from a server.
    pub fn sent_counter(&self) -> Option<&SentCounter> {
        self.sent.as_ref()
    }

    /// Its classes.
    pub fn classes(&self) -> ClassMask {
        self.classes
    }

    /// What it costs in the event buffer: its bytes and its bookkeeping.
    pub fn cost(&self) -> usize {
        self.wire.len() + EVENT_OVERHEAD
    }

    /// Its encoding in `format`, computed once and shared.
    pub fn bytes(&self, format: OutputFormat) -> &Bytes {
        if format == OutputFormat::Standard {
            return &self.wire;
        }
        let others = self.others.get_or_init(|| Box::new(std::array::from_fn(|_| OnceLock::new())));
        others[format.index()].get_or_init(|| {
            let message = self.message();
            let mut out = BytesMut::with_capacity(message.encoded_len_hint() * 2 + 16);
            format.encode(&message, &mut out);
            Bytes::copy_from_slice(&out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        let ev = Message::new().with("Event", "Newchannel").with("Privilege", "call,all");
        let c = ClassMask::of_event(&ev);
        assert!(ClassMask::ALL.allows(c));
        assert!(!ClassMask::NONE.allows(c));
        assert!(ClassMask::parse("system,call").allows(c));
        assert!(!ClassMask::parse("system").allows(c));
        let bare = ClassMask::of_event(&Message::new().with("Event", "X"));
        assert!(ClassMask::ALL.allows(bare));
        assert!(!ClassMask::parse("call").allows(bare));
        assert!(!ClassMask::parse("bogus").is_on());
    }
}
