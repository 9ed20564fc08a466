//! Event classes as Asterisk's manager.c knows them, kept apart from the proxy's own
//! `event::ClassMask` so the simulator stays an independent model of Asterisk.

use astmanproxy_handlers::Message;

/// Class names in bit order (`manager.c`'s `perms[]`, without `all`).
const CLASSES: &[&str] = astmanproxy_handlers::EVENT_CLASSES;

/// The event classes a session receives (`Events:` at Login, `Action: Events EventMask:`), or
/// the classes of one event (its `Privilege:` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventMask(pub u32);

impl EventMask {
    /// Every event, including ones whose `Privilege:` names no known class.
    pub const ALL: EventMask = EventMask(u32::MAX);
    /// No broadcast event.
    pub const NONE: EventMask = EventMask(0);

    /// Parses an `Events:` / `EventMask:` value as Asterisk does: a true word (`on`, `yes`,
    /// `true`, `y`, `t`, `1`) is everything, a false word (`off`, `no`, ...) or an empty value is
    /// nothing, otherwise a comma list of class names (`all` among them is everything; unknown
    /// names are ignored).
    pub fn parse(value: &str) -> EventMask {
        let v = value.trim().to_ascii_lowercase();
        match v.as_str() {
            "on" | "yes" | "true" | "y" | "t" | "1" => return EventMask::ALL,
            "off" | "no" | "false" | "n" | "f" | "0" | "" => return EventMask::NONE,
            _ => {}
        }
        class_bits(&v, true).map_or(EventMask::ALL, EventMask)
    }

    /// The classes of an event from its `Privilege:` header (`call,all`). Without a known class
    /// (events made up by tests) it only reaches sessions with every class on.
    pub fn of_event(event: &Message) -> EventMask {
        // `all` in a Privilege list marks a broadcast event; it is not every class there.
        match event.get("Privilege").map(|p| class_bits(&p.to_ascii_lowercase(), false)) {
            Some(Some(bits)) if bits != 0 => EventMask(bits),
            _ => EventMask(1 << 31),
        }
    }

    /// Whether a session with this mask receives an event of `classes`.
    pub fn allows(self, classes: EventMask) -> bool {
        self.0 & classes.0 != 0
    }

    /// Whether any event gets through (`Events: On` in the answer).
    pub fn is_on(self) -> bool {
        self.0 != 0
    }
}

/// The bits of a lower-case comma list of class names; `None` when it names `all` and
/// `all_is_everything` (a session mask; in an event's Privilege `all` is skipped).
fn class_bits(list: &str, all_is_everything: bool) -> Option<u32> {
    let mut bits = 0;
    for name in list.split(',').map(str::trim) {
        match CLASSES.iter().position(|c| *c == name) {
            Some(i) => bits |= 1 << i,
            None if name == "all" && all_is_everything => return None,
            None => {}
        }
    }
    Some(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(privilege: &str) -> EventMask {
        EventMask::of_event(&Message::new().with("Event", "X").with("Privilege", privilege))
    }

    #[test]
    fn masks_and_privileges() {
        assert_eq!(EventMask::parse("on"), EventMask::ALL);
        assert_eq!(EventMask::parse("Off"), EventMask::NONE);
        assert_eq!(EventMask::parse("call,all"), EventMask::ALL);
        let calls = EventMask::parse("system, call");
        assert!(calls.allows(event("call,all")));
        assert!(calls.allows(event("system,all")));
        assert!(!calls.allows(event("security,all")));
        assert!(!calls.allows(EventMask::of_event(&Message::new().with("Event", "Made-up"))));
        assert!(EventMask::ALL.allows(EventMask::of_event(&Message::new().with("Event", "Made-up"))));
        assert!(!EventMask::NONE.allows(event("call,all")));
        assert!(!EventMask::parse("bogus").is_on());
    }
}
