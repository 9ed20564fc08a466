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
    /// astmanproxy 1.x XML (`<AsteriskManagerOutput>`).
    Xml,
    /// astmanproxy 1.x CSV (one line of `"Key: value"` fields per message).
    Csv,
    /// One JSON object per line.
    Json,
}

impl OutputFormat {
    /// Every output format, in the order `ListIOHandlers` reports them.
    pub const ALL: &'static [OutputFormat] =
        &[OutputFormat::Standard, OutputFormat::Xml, OutputFormat::Csv, OutputFormat::Json];

    /// Number of formats (size of per-format caches).
    pub const COUNT: usize = 4;

    /// The configuration name of the format.
    pub fn name(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Xml => "xml",
            Self::Csv => "csv",
            Self::Json => "json",
        }
    }

    /// A dense index for per-format caches.
    pub fn index(self) -> usize {
        match self {
            Self::Standard => 0,
            Self::Xml => 1,
            Self::Csv => 2,
            Self::Json => 3,
        }
    }

    /// Encodes one message in this format.
    pub fn encode(self, message: &Message, out: &mut BytesMut) {
        match self {
            Self::Standard => crate::standard::encode(message, out),
            Self::Xml => crate::xml::encode(message, out),
            Self::Csv => crate::csv::encode(message, out),
            Self::Json => crate::json::encode(message, out),
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
#[error("unknown format {0:?} (known: standard, xml, csv, json)")]
pub struct UnknownFormat(pub String);

impl OutputFormat {
    /// The format with this dense index.
    pub fn from_index(i: usize) -> OutputFormat {
        OutputFormat::ALL.get(i).copied().unwrap_or_default()
    }
}

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
