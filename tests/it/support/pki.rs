//! Test certificates made by rcgen: a CA and a certificate for `127.0.0.1` and `localhost` it
//! signed, written as PEM files (`ca.pem`, `cert.pem`, `key.pem`, and `both.pem` with key and
//! certificate in one file, the 1.x style), with the TLS configurations built from them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::WAIT;

/// A CA, a server certificate it signed, and the directory holding their PEM files.
pub struct Pki {
    /// Where the files are.
    pub dir: PathBuf,
    /// The CA certificate.
    pub ca_pem: String,
    /// The server certificate.
    pub cert_pem: String,
    /// The server key.
    pub key_pem: String,
    /// The directory is removed on drop (it was made for this Pki).
    owned: bool,
}

impl Pki {
    /// Certificates in a fresh temporary directory, removed on drop.
    pub fn new(tag: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("astmanproxy-pki-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self::write(dir, true)
    }

    /// Certificates written into `dir` (left in place on drop).
    pub fn in_dir(dir: &Path) -> Pki {
        Self::write(dir.to_path_buf(), false)
    }

    fn write(dir: PathBuf, owned: bool) -> Pki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let pki = Pki { dir, ca_pem: ca.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem(), owned };
        std::fs::write(pki.path("ca.pem"), &pki.ca_pem).unwrap();
        std::fs::write(pki.path("cert.pem"), &pki.cert_pem).unwrap();
        std::fs::write(pki.path("key.pem"), &pki.key_pem).unwrap();
        std::fs::write(pki.path("both.pem"), format!("{}{}", pki.key_pem, pki.cert_pem)).unwrap();
        pki
    }

    /// A file of the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A TLS client trusting the CA.
    pub fn connector(&self) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).unwrap()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    /// A TLS server configuration with the certificate.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let certs = vec![CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        Arc::new(config)
    }

    /// A TLS acceptor with the certificate.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.server_config())
    }

    /// An HTTPS client trusting the CA.
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap())
            .timeout(WAIT)
            .build()
            .unwrap()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        if self.owned {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
