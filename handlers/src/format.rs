//! The output formats a client can choose.
//!
//! A closed set, statically dispatched: adding a format is one file plus one arm here. Each event
//! is encoded once per format in use and the bytes are shared between the clients of that format.

use std::fmt;
use std::str::FromStr;

use bytes::BytesMut;

use crate::message::Message;

/// The wire format of the messages a client receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OutputFormat {
    /// The AMI wire format (`Key: Value` lines), as Asterisk writes it.
    #[default]
    Standard,
}

impl OutputFormat {
    /// Every output format, in the order `ListIOHandlers` reports them.
    pub const ALL: &'static [OutputFormat] = &[OutputFormat::Standard];

    /// Number of formats (size of per-format caches).
    pub const COUNT: usize = 1;

    /// The configuration name of the format.
    pub fn name(self) -> &'static str {
        match self {
            Self::Standard => "standard",
        }
    }

    /// A dense index for per-format caches.
    pub fn index(self) -> usize {
        match self {
            Self::Standard => 0,
        }
    }

    /// Encodes one message in this format.
    pub fn encode(self, message: &Message, out: &mut BytesMut) {
        match self {
            Self::Standard => crate::standard::encode(message, out),
        }
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown format name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown format {0:?} (known: standard)")]
pub struct UnknownFormat(pub String);

impl FromStr for OutputFormat {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OutputFormat::ALL
            .iter()
            .copied()
            .find(|f| f.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownFormat(s.to_string()))
    }
}
