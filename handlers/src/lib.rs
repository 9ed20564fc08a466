//! Sans-IO building blocks of astmanproxy: the format-neutral AMI [`Message`] and the wire
//! formats that turn bytes into messages and back.
//!
//! # Layout
//! - [`message`]: [`Message`], ordered headers with case-insensitive lookup, repeated keys and an
//!   optional raw body.
//! - [`standard`]: the AMI wire format ([`AmiDecoder`], [`encode`](standard::encode)) with
//!   configurable [`Limits`].
//! - [`error`]: [`DecodeError`] and its `can_continue()` classification.
//! - [`ajam`]: the `/mxml` body of Asterisk's AJAM.
//! - [`input`]: a client's input, standard AMI or XML/JSON actions, each recognised by its
//!   first byte, with oversize input skipped to its end.
//! - [`mod@format`]: the closed set of output formats a client may choose; [`xml`], [`csv`] and
//!   [`json`] are those formats (and the XML and JSON action inputs).
//!
//! Nothing here touches sockets, spawns tasks or reads the clock, so every piece can be unit
//! tested, benchmarked and fuzzed on its own. The `fuzzing` feature (enabled by `handlers/fuzz/`
//! and this crate's tests, never by the proxy) adds [`fuzzing`]: the properties the fuzz targets
//! check.

pub mod ajam;
pub mod capture;
pub mod csv;
pub mod error;
pub mod format;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod input;
pub mod json;
pub mod message;
pub mod standard;
pub mod xml;

/// The event classes Asterisk's manager knows (`manager.c`'s `perms[]` without `all`), in bit
/// order: the names of `Privilege:` on events, of `Events:` at Login and of `read`/`write` in
/// `manager.conf`.
pub const EVENT_CLASSES: &[&str] = &[
    "system",
    "call",
    "log",
    "verbose",
    "command",
    "agent",
    "user",
    "config",
    "dtmf",
    "reporting",
    "cdr",
    "dialplan",
    "originate",
    "agi",
    "cc",
    "aoc",
    "test",
    "security",
    "message",
];

pub use error::{DecodeError, Limit};
pub use format::OutputFormat;
pub use message::{Charset, Kind, Message, RawValue};
pub use standard::{AmiDecoder, Limits};
