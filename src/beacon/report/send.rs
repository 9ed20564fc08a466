//! The HTTPS client of one target: `POST /servers` and `PUT /servers/{id}?tokenId=`, over
//! reqwest with rustls (system roots plus `ca_path`, or no verification with `verify_cert = no`),
//! an optional CONNECT proxy, request timeouts, no redirects, and a bounded answer size.

use rustls_pki_types::CertificateDer;
use serde::de::DeserializeOwned;

use super::config::Target;
use super::PUBLIC_HOST;
use astmanproxy_beacon_wire::wire::{ServerReport, ServerToken, Token};

/// The largest answer read from a collector.
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// Why a target's client cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// `ca_path` cannot be read or holds no certificate.
    #[error("ca_path {path}: {message}")]
    CaPath {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// reqwest refused the settings.
    #[error("HTTPS client: {0}")]
    Client(#[from] reqwest::Error),
    /// Dev mode and the public server.
    #[error("dev mode never contacts the public Beacon server ({PUBLIC_HOST})")]
    DevMode,
}

/// What one request ended with.
#[derive(Debug)]
pub enum Answer<T> {
    /// 2xx with a body of the expected shape.
    Ok(T),
    /// Any other status (or a 2xx with a body that does not parse: status `None`).
    Status {
        /// The HTTP status, `None` for a 2xx whose body is not what the API says.
        code: Option<u16>,
        /// Its `Retry-After` header.
        retry_after: Option<String>,
        /// The start of its body, for the log.
        detail: String,
    },
}

/// A request that got no HTTP answer at all (connect, TLS, timeout, a URL that cannot take the
/// server id), with its causes; the URL it names has no query (`tokenId` is a secret).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NoAnswer(String);

/// The client of one target.
#[derive(Debug, Clone)]
pub struct Sender {
    client: reqwest::Client,
    base: String,
}

impl Sender {
    /// Builds the client for `target`.
    ///
    /// # Errors
    /// An unreadable `ca_path`, settings reqwest refuses, or the public server in dev mode.
    pub fn new(target: &Target, dev_mode: bool) -> Result<Sender, SendError> {
        let url = reqwest::Url::parse(&target.url)
            .map_err(|e| SendError::CaPath { path: target.url.clone(), message: format!("not a URL: {e}") })?;
        if dev_mode && super::is_public_host(&url) {
            return Err(SendError::DevMode);
        }
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(target.timeout)
            .connect_timeout(target.timeout)
            .user_agent(concat!("astmanproxy/", env!("CARGO_PKG_VERSION"), " beacon"))
            .no_proxy();
        if !target.verify_cert {
            builder = builder.danger_accept_invalid_certs(true);
        }
        if let Some(path) = &target.ca_path {
            for cert in load_roots(path)? {
                builder = builder.add_root_certificate(reqwest::Certificate::from_der(&cert)?);
            }
        }
        if let Some(proxy) = &target.proxy {
            // An IPv6 address goes in brackets (`[::1]:3128`).
            let host = if proxy.host.contains(':') { format!("[{}]", proxy.host) } else { proxy.host.clone() };
            let mut p = reqwest::Proxy::https(format!("http://{host}:{}", proxy.port))?;
            if let Some((user, pass)) = &proxy.auth {
                p = p.basic_auth(user, pass.expose());
            }
            builder = builder.proxy(p);
        }
        Ok(Sender { client: builder.build()?, base: target.url.trim_end_matches('/').to_string() })
    }

    /// `POST /servers`: registers a new server id.
    ///
    /// # Errors
    /// No answer at all (connect, TLS, timeout), as text.
    pub async fn register(&self, report: &ServerReport) -> Result<Answer<ServerToken>, NoAnswer> {
        let request = self.client.post(format!("{}/servers", self.base)).json(report);
        answer(request).await
    }

    /// `PUT /servers/{id}?tokenId=`: a report with the current token.
    ///
    /// # Errors
    /// No answer at all (connect, TLS, timeout), as text.
    pub async fn update(&self, id: &str, token: &str, report: &ServerReport) -> Result<Answer<Token>, NoAnswer> {
        let mut url = reqwest::Url::parse(&format!("{}/servers/", self.base)).map_err(|e| NoAnswer(e.to_string()))?;
        url.path_segments_mut()
            .map_err(|()| NoAnswer("the url cannot take a path".to_string()))?
            .pop_if_empty()
            .push(id);
        url.query_pairs_mut().append_pair("tokenId", token);
        answer(self.client.put(url).json(report)).await
    }
}

/// The certificates of a `ca_path` PEM file.
///
/// # Errors
/// The file cannot be read, is not PEM, or holds no certificate.
pub fn load_roots(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, SendError> {
    crate::tls::load_certs(path).map_err(|e| match e {
        crate::tls::TlsError::Pem { path, message } => SendError::CaPath { path, message },
        other => SendError::CaPath { path: path.display().to_string(), message: other.to_string() },
    })
}

async fn answer<T: DeserializeOwned>(request: reqwest::RequestBuilder) -> Result<Answer<T>, NoAnswer> {
    let mut response = request.send().await.map_err(describe)?;
    let status = response.status();
    let retry_after =
        response.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(describe)? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Ok(Answer::Status {
                code: None,
                retry_after,
                detail: format!("answer over {MAX_ANSWER_BYTES} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    let detail = || String::from_utf8_lossy(&body[..body.len().min(200)]).to_string();
    if !status.is_success() {
        return Ok(Answer::Status { code: Some(status.as_u16()), retry_after, detail: detail() });
    }
    match serde_json::from_slice::<T>(&body) {
        Ok(value) => Ok(Answer::Ok(value)),
        Err(e) => {
            Ok(Answer::Status { code: None, retry_after, detail: format!("unexpected answer ({e}): {}", detail()) })
        }
    }
}

/// The error with its causes (reqwest's own text is only the outermost), for the log. The url
/// it names loses its query: `tokenId` is a secret.
fn describe(mut e: reqwest::Error) -> NoAnswer {
    if let Some(url) = e.url_mut() {
        url.set_query(None);
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    NoAnswer(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_update_does_not_put_the_token_in_its_error() {
        // A port nothing listens on: the request fails before any answer.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut target = Target::new("t", format!("https://127.0.0.1:{port}/api/v1"));
        target.timeout = std::time::Duration::from_secs(5);
        let sender = Sender::new(&target, true).unwrap();
        let err = sender.update("srv-1", "SecretToken42", &ServerReport::default()).await.unwrap_err().to_string();
        assert!(err.contains("127.0.0.1"), "{err}");
        assert!(!err.contains("SecretToken42"), "the token reached the error text: {err}");
    }

    #[test]
    fn a_proxy_on_an_ipv6_address_is_usable() {
        let mut target = Target::new("t", "https://127.0.0.1:1/api/v1");
        target.proxy = Some(super::super::ProxySetting::parse("user:pw@[::1]:3128").unwrap());
        assert_eq!(target.proxy.as_ref().unwrap().host, "::1");
        Sender::new(&target, true).unwrap();
    }
}
