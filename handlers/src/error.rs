//! Errors of the sans-IO codecs.

/// Why a byte stream could not be decoded into messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// No line ending within the configured maximum line length.
    #[error("line too long (limit {limit} bytes)")]
    LineTooLong {
        /// The limit in force.
        limit: usize,
    },
    /// The message grew past the configured maximum size; the rest of it is skipped.
    #[error("message too large (limit {limit} bytes)")]
    MessageTooLarge {
        /// The limit in force.
        limit: usize,
    },
    /// The message has more headers than the configured maximum; the rest of it is skipped.
    #[error("too many headers in one message (limit {limit})")]
    TooManyHeaders {
        /// The limit in force.
        limit: usize,
    },
    /// The stream ended in the middle of a message.
    #[error("stream ended inside a message")]
    Truncated,
}

impl DecodeError {
    /// Whether decoding can go on with the next message after this error. A line without end
    /// cannot be resynchronised; an oversize message is skipped up to its closing empty line.
    pub fn can_continue(&self) -> bool {
        matches!(self, Self::MessageTooLarge { .. } | Self::TooManyHeaders { .. })
    }
}
