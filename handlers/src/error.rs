//! Errors of the sans-IO codecs.

use std::fmt;

/// Which decoding limit a skipped message broke, with its value. Displayed with the name of the
/// configuration key that sets it, since that is what the peer's operator can change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// A line longer than `maxlinelength` bytes.
    LineLength(usize),
    /// A message larger than `maxmessagesize` bytes.
    MessageSize(usize),
    /// A message with more than `maxheaders` headers (raw body lines included).
    Headers(usize),
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LineLength(n) => write!(f, "line longer than maxlinelength ({n} bytes)"),
            Self::MessageSize(n) => write!(f, "message larger than maxmessagesize ({n} bytes)"),
            Self::Headers(n) => write!(f, "more than maxheaders ({n}) headers in one message"),
        }
    }
}

/// Why a byte stream could not be decoded into messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A message broke a limit and was skipped up to its closing empty line; decoding goes on
    /// with the next message. Reported once the skipped message has ended, so that an ActionID
    /// that came after the oversize part is known too.
    #[error("{limit}; message skipped")]
    Skipped {
        /// The limit broken first.
        limit: Limit,
        /// The message's first `ActionID` value, raw, when one was read (an ActionID on the
        /// oversize line itself is lost with it).
        action_id: Option<Vec<u8>>,
    },
    /// No line end within `limit` bytes: the stream cannot be resynchronised, close it.
    #[error("no line end within {limit} bytes")]
    NoLineEnd {
        /// The number of bytes read without a line end.
        limit: usize,
    },
    /// The stream ended in the middle of a message.
    #[error("stream ended inside a message")]
    Truncated,
}

impl DecodeError {
    /// Whether decoding can go on with the next message after this error: a skipped message
    /// can; a stream without line ends cannot be resynchronised.
    pub fn can_continue(&self) -> bool {
        matches!(self, Self::Skipped { .. })
    }

    /// The ActionID of the skipped message, when one was read.
    pub fn action_id(&self) -> Option<&[u8]> {
        match self {
            Self::Skipped { action_id, .. } => action_id.as_deref(),
            _ => None,
        }
    }
}
