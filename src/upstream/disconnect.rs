//! Why a logged-in session ended.

use std::time::Duration;

use astmanproxy_handlers::DecodeError;

/// Why a logged-in session ended: told to clients (`ProxyServerStatus` `Reason:`, the errors
/// answering its pending actions) and kept as the server's last error.
#[derive(Debug, thiserror::Error)]
pub enum Disconnect {
    /// The server was stopped (shutdown, `ProxyAction: DropServer`, a reload).
    #[error("proxy stopped this server session")]
    Stopped,
    /// Asterisk closed the connection.
    #[error("connection closed by Asterisk")]
    Closed,
    /// Reading from Asterisk failed.
    #[error("read error: {0}")]
    Read(std::io::Error),
    /// Writing to Asterisk failed.
    #[error("write error: {0}")]
    Write(std::io::Error),
    /// Asterisk sent what the decoder cannot go on after.
    #[error("bad input from Asterisk: {0}")]
    BadInput(DecodeError),
    /// The keepalive `Ping` had no answer within `pingtimeout`.
    #[error("no answer to keepalive Ping within {0:?}")]
    PingTimeout(Duration),
    /// Writes to Asterisk made no progress for `asteriskwritetimeout`.
    #[error("write to Asterisk stalled for {0:?}")]
    WriteStalled(Duration),
}
