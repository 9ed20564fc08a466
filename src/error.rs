//! [`Error`]: what stops the whole proxy (configuration, listeners, TLS). What goes wrong with
//! one Asterisk server is never fatal and lives with the sessions
//! ([`crate::upstream::UpstreamError`]).

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
