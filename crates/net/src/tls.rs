//! PEM files (`rustls-pki-types`' `PemObject`) and the rustls crypto provider, shared by the
//! proxy's TLS setup and the Beacon collector.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A TLS setup problem, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// TLS is asked for but no certificate is configured.
    #[error("TLS for clients needs certfile (key and certificate in one PEM) or tlscert and tlskey")]
    NoCertificate,
    /// rustls refused the key or certificates.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The rustls crypto provider of every TLS setup here (ring).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A [`TlsError::Pem`] naming `path`.
pub fn pem_error(path: &Path, message: impl Into<String>) -> TlsError {
    TlsError::Pem { path: path.display().to_string(), message: message.into() }
}

/// The certificates of a PEM file (at least one).
///
/// # Errors
/// The file cannot be read or holds no certificate.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_error(path, "no certificate in this file"));
    }
    Ok(certs)
}

/// The private key of a PEM file.
///
/// # Errors
/// The file cannot be read or holds no usable key.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error(path, format!("no usable private key ({e})")))
}
