//! TLS on both sides, with rustls: the client-facing acceptor (same-port detection or a TLS-only
//! port) and the connector toward `use_ssl` Asterisk servers.
//!
//! PEM files are read by `astmanproxy_net::tls`. The acceptor takes `certfile` (1.x:
//! one PEM holding the key and the chain) or `tlscert` + `tlskey`. Toward Asterisk, certificates
//! are verified against the system roots plus `tlscafile`, with SNI; `tlsinsecure` names the
//! servers for which verification is skipped, loudly.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::TlsConfig;

pub use astmanproxy_net::tls::{load_certs, load_key, pem_error, provider, TlsError};

/// Any byte stream a session can run over (plain TCP or TLS).
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// A boxed stream.
pub type BoxStream = Box<dyn Stream>;

/// Whether clients may use TLS at all (same port or TLS-only port).
pub fn clients_want_tls(cfg: &TlsConfig) -> bool {
    cfg.accept_encrypted || cfg.listen_port.is_some()
}

/// The acceptor for TLS clients.
///
/// # Errors
/// No certificate configured, unreadable PEM files, or a key that does not fit.
pub fn acceptor(cfg: &TlsConfig) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let (certs, key) = match (&cfg.cert, &cfg.key, &cfg.cert_file) {
        (Some(cert), Some(key), _) => (load_certs(cert)?, load_key(key)?),
        (_, _, Some(both)) => (load_certs(both)?, load_key(both)?),
        _ => return Err(TlsError::NoCertificate),
    };
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The acceptor for TLS clients when the configuration wants one (`None` otherwise). The binary
/// calls this before dropping privileges, so a key readable only by root works.
///
/// # Errors
/// As [`acceptor`].
pub fn client_acceptor(cfg: &TlsConfig) -> Result<Option<tokio_rustls::TlsAcceptor>, TlsError> {
    if clients_want_tls(cfg) {
        acceptor(cfg).map(Some)
    } else {
        Ok(None)
    }
}

/// Every TLS file of the configuration, read and checked as start-up and the first `use_ssl`
/// connection would (`--check-config`): the client certificate and key (parse and match)
/// when TLS for clients is on or a certificate is configured, and `tlscafile`.
///
/// # Errors
/// Each problem, naming the file.
pub fn check(cfg: &TlsConfig) -> Vec<TlsError> {
    let mut errors = Vec::new();
    let configured = cfg.cert.is_some() || cfg.key.is_some() || cfg.cert_file.is_some();
    if clients_want_tls(cfg) || configured {
        if let Err(e) = acceptor(cfg) {
            errors.push(e);
        }
    }
    if let Some(ca) = &cfg.ca_file {
        if let Err(e) = load_certs(ca) {
            errors.push(e);
        }
    }
    errors
}

/// `tlscafile` as read at start-up, before privileges were dropped (see [`preload_ca_file`]).
type CaCache = Mutex<Option<(PathBuf, Vec<CertificateDer<'static>>)>>;
static PRELOADED_CA: CaCache = Mutex::new(None);

/// Reads `tlscafile` now, while the process still has its start-up privileges, so that a CA file
/// readable only by root works after the drop to `proc_user` (for the first connections and for
/// the servers a reload adds, as long as the path stays the same).
///
/// # Errors
/// An unreadable or empty `tlscafile`.
pub fn preload_ca_file(cfg: &TlsConfig) -> Result<(), TlsError> {
    let Some(path) = &cfg.ca_file else { return Ok(()) };
    let certs = load_certs(path)?;
    *PRELOADED_CA.lock().unwrap_or_else(|e| e.into_inner()) = Some((path.clone(), certs));
    Ok(())
}

/// The certificates of `tlscafile`: those read at start-up if the path is the same, else read now.
fn ca_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    if let Some((preloaded, certs)) = PRELOADED_CA.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        if preloaded == path {
            return Ok(certs.clone());
        }
    }
    load_certs(path)
}

/// The connector toward `use_ssl` servers: system roots plus `tlscafile`, or no verification at
/// all when `insecure`.
///
/// # Errors
/// An unreadable `tlscafile`.
pub fn connector(cfg: &TlsConfig, insecure: bool) -> Result<tokio_rustls::TlsConnector, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let config = if insecure {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerification)).with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            // A system certificate rustls cannot parse is skipped, as browsers do.
            let _ = roots.add(cert);
        }
        if let Some(ca) = &cfg.ca_file {
            for cert in ca_certs(ca)? {
                roots.add(cert).map_err(|e| pem_error(ca, e.to_string()))?;
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// The SNI / verification name for a host (DNS name or IP address).
///
/// # Errors
/// A host that is neither.
pub fn server_name(host: &str) -> Result<ServerName<'static>, rustls::pki_types::InvalidDnsNameError> {
    ServerName::try_from(host.to_string())
}

/// Accepts any certificate (only for servers listed in `tlsinsecure`).
#[derive(Debug)]
struct NoVerification;

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider().signature_verification_algorithms.supported_schemes()
    }
}
