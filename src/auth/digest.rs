//! HTTP Digest authentication (RFC 7616 with MD5, `qop=auth`, and the RFC 2069 form without
//! `qop`), as Asterisk's `/arawman` and `/amxml` ask for it (realm `asterisk`).
//!
//! Nonces are stateless: the issue time and a keyed SHA-256 of it under a random per-process key,
//! valid for [`NONCE_LIFETIME`]; an older one gets a fresh challenge with `stale=true`, so clients
//! retry without asking the user again. Digest needs the user's plain secret, so users whose
//! secret is stored as a bcrypt or sha512-crypt hash can only use Basic.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use md5::{Digest as _, Md5};
use sha2::Sha256;

use crate::config::secret::ct_eq;
use crate::config::User;

/// The realm Asterisk's HTTP manager uses.
pub const REALM: &str = "asterisk";

/// How long a nonce is accepted.
pub const NONCE_LIFETIME: Duration = Duration::from_secs(300);

/// The parameters of an `Authorization: Digest ...` header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigestCredentials {
    /// `username`.
    pub username: String,
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `uri`.
    pub uri: String,
    /// `response`.
    pub response: String,
    /// `qop` (absent in the RFC 2069 form).
    pub qop: Option<String>,
    /// `nc`.
    pub nc: Option<String>,
    /// `cnonce`.
    pub cnonce: Option<String>,
}

/// Why Digest credentials were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// The nonce is not one of ours, or the header is malformed.
    #[error("invalid Digest credentials")]
    Invalid,
    /// The nonce is ours but too old: the client should retry with a new one.
    #[error("stale nonce")]
    Stale,
    /// Wrong user, secret or URI.
    #[error("wrong Digest credentials")]
    Wrong,
}

fn key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(rand::random)
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn mac(issued: u64) -> String {
    let mut h = Sha256::new();
    h.update(key());
    h.update(issued.to_be_bytes());
    h.update(key());
    hex(&h.finalize()[..16])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn md5_hex(text: &str) -> String {
    hex(&Md5::digest(text.as_bytes()))
}

/// A fresh nonce.
pub fn new_nonce() -> String {
    nonce_issued_at(now_secs())
}

/// A nonce of ours issued at `issued` (seconds since the epoch).
pub(crate) fn nonce_issued_at(issued: u64) -> String {
    format!("{issued:x}.{}", mac(issued))
}

/// The `WWW-Authenticate` value asking for Digest.
pub fn challenge(stale: bool) -> String {
    let stale = if stale { ", stale=true" } else { "" };
    format!("Digest realm=\"{REALM}\", nonce=\"{}\", qop=\"auth\", algorithm=MD5{stale}", new_nonce())
}

/// Parses the value of an `Authorization` header that starts with `Digest `.
pub fn parse(header: &str) -> Option<DigestCredentials> {
    let rest = header.trim().strip_prefix("Digest ").or_else(|| header.trim().strip_prefix("digest "))?;
    let mut creds = DigestCredentials::default();
    for (key, value) in params(rest) {
        match key.to_ascii_lowercase().as_str() {
            "username" => creds.username = value,
            "realm" => creds.realm = value,
            "nonce" => creds.nonce = value,
            "uri" => creds.uri = value,
            "response" => creds.response = value,
            "qop" => creds.qop = Some(value),
            "nc" => creds.nc = Some(value),
            "cnonce" => creds.cnonce = Some(value),
            _ => {}
        }
    }
    (!creds.username.is_empty() && !creds.nonce.is_empty() && !creds.response.is_empty()).then_some(creds)
}

/// `key=value` and `key="quoted, value"` pairs separated by commas.
fn params(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_string();
        rest = rest[eq + 1..].trim_start();
        let value = if let Some(quoted) = rest.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            rest = &quoted[end.min(quoted.len())..];
            value
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            let value = rest[..end].trim().to_string();
            rest = &rest[end..];
            value
        };
        out.push((key, value));
        rest = rest.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

/// Checks the nonce of `creds` (ours, and recent).
///
/// # Errors
/// [`DigestError::Invalid`] for a nonce that is not ours, [`DigestError::Stale`] for an old one.
pub fn check_nonce(creds: &DigestCredentials) -> Result<(), DigestError> {
    let (issued, tag) = creds.nonce.split_once('.').ok_or(DigestError::Invalid)?;
    let issued = u64::from_str_radix(issued, 16).map_err(|_| DigestError::Invalid)?;
    if !ct_eq(mac(issued).as_bytes(), tag.as_bytes()) {
        return Err(DigestError::Invalid);
    }
    let now = now_secs();
    if issued > now + 5 || now - issued > NONCE_LIFETIME.as_secs() {
        return Err(DigestError::Stale);
    }
    Ok(())
}

/// Checks `creds` for `user` on a request with `method` and `uri` (path and query as sent).
///
/// # Errors
/// [`DigestError::Wrong`] when the response does not match (a hashed secret never does), or the
/// URI or realm is not this request's; the nonce errors of [`check_nonce`].
pub fn verify(creds: &DigestCredentials, user: &User, method: &str, uri: &str) -> Result<(), DigestError> {
    check_nonce(creds)?;
    if creds.realm != REALM || creds.uri != uri {
        return Err(DigestError::Wrong);
    }
    let Some(ha1) = super::credentials::digest_ha1(user, &creds.username, REALM) else {
        return Err(DigestError::Wrong);
    };
    let ha2 = md5_hex(&format!("{method}:{}", creds.uri));
    let expected = match (creds.qop.as_deref(), &creds.nc, &creds.cnonce) {
        (Some(qop), Some(nc), Some(cnonce)) if qop.eq_ignore_ascii_case("auth") => {
            md5_hex(&format!("{ha1}:{}:{nc}:{cnonce}:{qop}:{ha2}", creds.nonce))
        }
        (None, _, _) => md5_hex(&format!("{ha1}:{}:{ha2}", creds.nonce)),
        _ => return Err(DigestError::Wrong),
    };
    if ct_eq(expected.as_bytes(), creds.response.to_ascii_lowercase().as_bytes()) {
        Ok(())
    } else {
        Err(DigestError::Wrong)
    }
}

/// The `response` a client computes (for tests and tools).
pub fn client_response(
    user: &str,
    secret: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    nc: &str,
    cnonce: &str,
) -> String {
    let ha1 = md5_hex(&format!("{user}:{REALM}:{secret}"));
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Users;

    fn creds(secret: &str, uri: &str) -> DigestCredentials {
        let nonce = new_nonce();
        let response = client_response("alice", secret, "GET", uri, &nonce, "00000001", "abc");
        let header = format!(
            "Digest username=\"alice\", realm=\"asterisk\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{response}\", qop=auth, nc=00000001, cnonce=\"abc\", algorithm=MD5"
        );
        parse(&header).unwrap()
    }

    #[test]
    fn right_secret_passes_and_wrong_ones_fail() {
        let users = Users::from_pairs(&[("alice", "alicepw")]);
        let alice = users.get("alice").unwrap();
        let uri = "/amxml?action=ping";
        assert_eq!(verify(&creds("alicepw", uri), alice, "GET", uri), Ok(()));
        assert_eq!(verify(&creds("nope", uri), alice, "GET", uri), Err(DigestError::Wrong));
        assert_eq!(verify(&creds("alicepw", uri), alice, "GET", "/amxml?action=other"), Err(DigestError::Wrong));
        assert_eq!(verify(&creds("alicepw", uri), alice, "POST", uri), Err(DigestError::Wrong));
    }

    #[test]
    fn nonces_are_ours_and_expire() {
        let mut c = creds("alicepw", "/x");
        assert_eq!(check_nonce(&c), Ok(()));
        c.nonce = "1.deadbeef".to_string();
        assert_eq!(check_nonce(&c), Err(DigestError::Invalid));
        let old = now_secs() - NONCE_LIFETIME.as_secs() - 10;
        c.nonce = format!("{old:x}.{}", mac(old));
        assert_eq!(check_nonce(&c), Err(DigestError::Stale));
        c.nonce = "garbage".to_string();
        assert_eq!(check_nonce(&c), Err(DigestError::Invalid));
    }

    #[test]
    fn header_parameters_quoted_or_not() {
        let p = parse(r#"Digest username="a\"b", nonce=n1, uri="/p?x=1,2", response="r", qop=auth"#).unwrap();
        assert_eq!((p.username.as_str(), p.nonce.as_str(), p.uri.as_str()), ("a\"b", "n1", "/p?x=1,2"));
        assert_eq!(p.qop.as_deref(), Some("auth"));
        assert!(parse("Basic abc").is_none());
        assert!(parse("Digest nonsense").is_none());
    }
}
