//! Error types: [`UpstreamError`] for what goes wrong with an Asterisk server (never fatal: the
//! session reconnects), [`Error`] for what stops the whole proxy (configuration, listeners, TLS).

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
    /// Asterisk sent a message over the configured limits.
    #[error("bad input from Asterisk: {0}")]
    Decode(#[from] DecodeError),
}

/// The crate's top-level error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// TLS cannot be set up.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// A socket or file error in the proxy itself.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}
