//! [`UpstreamError`]: why a connection to Asterisk could not be made or was lost (never fatal:
//! the session reconnects).

use astmanproxy_handlers::DecodeError;

/// Why a connection to Asterisk could not be made or was lost.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// A socket error.
    #[error("{0}")]
    Io(#[source] std::io::Error),
    /// A step did not finish in time.
    #[error("timeout waiting for {0}")]
    Timeout(&'static str),
    /// Asterisk closed the connection during a step.
    #[error("connection closed during {0}")]
    Closed(&'static str),
    /// Asterisk refused the proxy's login.
    #[error("login refused: {0}")]
    LoginFailed(String),
    /// Asterisk sent something that is not AMI.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The host is not a name TLS can verify.
    #[error("invalid TLS server name {host:?}: {source}")]
    ServerName {
        /// The host as configured.
        host: String,
        /// Why it is not a server name.
        source: rustls::pki_types::InvalidDnsNameError,
    },
    /// Asterisk sent a message over the configured limits.
    #[error("bad input from Asterisk: {0}")]
    Decode(#[from] DecodeError),
}
