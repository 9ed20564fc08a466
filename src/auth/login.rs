//! The one login function: every transport (AMI `Login` and `Challenge`/MD5, HTTP Basic and
//! Digest, the WebSocket upgrade and its `Login`, AJAM) checks credentials here, under the same
//! rules: the failed-login limits (`authlimit`, `authlimitaddress`), `permit=`/`deny=`, the
//! secret, the failure delay (`authfaildelay`), the `astmanproxy_auth_failures_total{kind}`
//! counter and the log lines. The transport only turns the result into its answer.

use std::net::IpAddr;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;

use super::credentials::{address_allowed, check_md5, check_secret, is_hashed};
use super::digest::{self, DigestCredentials, DigestError};
use super::limit::{AuthLimiter, Lockout};
use super::policy::Policy;
use crate::config::{Config, User, Users};

/// What a login is checked against. Built per attempt by the transport (`Hub::auth_gate`).
pub struct Gate<'a> {
    /// The running configuration (`authrequired`, `authfaildelay`, the address limits).
    pub config: &'a Config,
    /// The users (a snapshot: a reload swaps it whole).
    pub users: Arc<Users>,
    /// The failed-login counters.
    pub limiter: &'a AuthLimiter,
    /// The transport's failed-login counter (`astmanproxy_auth_failures_total{kind}`).
    pub failures: Counter,
}

/// The proof a client offers, as its transport carries it.
#[derive(Debug, Clone, Copy)]
pub enum Credentials<'a> {
    /// AMI `Action: Login` with `Secret:`.
    AmiSecret(&'a str),
    /// AMI `Action: Login` with `AuthType: md5` and `Key:`, against the connection's last
    /// `Challenge` (`None`: there was none, or it was used).
    AmiMd5 {
        /// The challenge the proxy sent.
        challenge: Option<&'a str>,
        /// The client's key, `md5hex(challenge + secret)`.
        key: Option<&'a str>,
    },
    /// HTTP Basic (on any HTTP endpoint and the WebSocket upgrade).
    Basic(&'a str),
    /// HTTP Digest, for a request with `method` and `uri` (path and query as sent).
    Digest {
        /// The `Authorization: Digest` parameters.
        header: &'a DigestCredentials,
        /// The request method.
        method: &'a str,
        /// The request path and query.
        uri: &'a str,
    },
}

impl Credentials<'_> {
    /// A name the users file does not know logs in on an open proxy (`authrequired = no`): AMI
    /// `Login`, so that 1.x setups keep working. HTTP credentials are always checked.
    fn unknown_user_allowed_when_open(&self) -> bool {
        matches!(self, Credentials::AmiSecret(_) | Credentials::AmiMd5 { .. })
    }

    fn label(&self) -> &'static str {
        match self {
            Credentials::AmiSecret(_) => "secret",
            Credentials::AmiMd5 { .. } => "md5",
            Credentials::Basic(_) => "basic",
            Credentials::Digest { .. } => "digest",
        }
    }
}

/// A successful login: who, and what they may do.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The user name as sent.
    pub user: String,
    /// The user's rights (open for an unknown user on an open proxy).
    pub policy: Arc<Policy>,
}

/// Why a login was refused. Every variant but [`LoginError::LockedOut`] and
/// [`LoginError::StaleNonce`] is a failed login: counted by the limiter, answered after
/// `authfaildelay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// Refused at once, without checking the credentials, by a failed-login limit.
    #[error("locked out ({})", .0.key())]
    LockedOut(Lockout),
    /// No such user.
    #[error("unknown user")]
    UnknownUser,
    /// `permit=`/`deny=` refuse the client's address for this user.
    #[error("address not permitted for this user")]
    AddressDenied,
    /// The secret (or the MD5 key, or the Digest response) does not match.
    #[error("wrong secret")]
    WrongSecret,
    /// `AuthType: md5` without a `Key:` or without a `Challenge` before it.
    #[error("md5 login without a challenge or key")]
    NoChallenge,
    /// A Digest nonce that is not the proxy's.
    #[error("invalid Digest nonce")]
    InvalidNonce,
    /// A Digest nonce that is the proxy's but too old: not a failure, the client retries.
    #[error("stale Digest nonce")]
    StaleNonce,
}

impl LoginError {
    /// A short name for logs.
    pub fn reason(self) -> &'static str {
        match self {
            LoginError::LockedOut(_) => "locked_out",
            LoginError::UnknownUser => "unknown_user",
            LoginError::AddressDenied => "address_denied",
            LoginError::WrongSecret => "wrong_secret",
            LoginError::NoChallenge => "no_challenge",
            LoginError::InvalidNonce => "invalid_nonce",
            LoginError::StaleNonce => "stale_nonce",
        }
    }

    /// Whether this counts as a failed login (limiter, delay); a lock-out is counted only in
    /// the metric, a stale nonce not at all.
    pub fn is_failure(self) -> bool {
        !matches!(self, LoginError::LockedOut(_) | LoginError::StaleNonce)
    }
}

/// Checks one login by `user` from `peer`.
///
/// # Errors
/// Why it was refused; a failed login returns only after `authfaildelay`.
pub async fn login(
    gate: &Gate<'_>,
    user: &str,
    peer: IpAddr,
    credentials: Credentials<'_>,
) -> Result<Grant, LoginError> {
    if let Some(lockout) = gate.limiter.check(gate.config, peer, user) {
        // Logged once when the lock-out started; each refusal only counts.
        tracing::debug!(%user, ?lockout, "login refused: locked out");
        gate.failures.inc();
        return Err(LoginError::LockedOut(lockout));
    }
    let outcome = match gate.users.get(user) {
        Some(known) if !address_allowed(known, peer) => Err(LoginError::AddressDenied),
        Some(known) => verify(known, credentials).await,
        None if !gate.config.auth_required && credentials.unknown_user_allowed_when_open() => Ok(()),
        None => Err(LoginError::UnknownUser),
    };
    match outcome {
        Ok(()) => {
            gate.limiter.record_success(peer, user);
            Ok(Grant { user: user.to_string(), policy: Policy::of(&gate.users, user) })
        }
        Err(LoginError::StaleNonce) => Err(LoginError::StaleNonce),
        Err(error) => {
            tracing::info!(%user, reason = error.reason(), method = credentials.label(), "client login failed");
            gate.failures.inc();
            gate.limiter.record_failure(gate.config, peer, user);
            tokio::time::sleep(gate.config.auth_fail_delay).await;
            Err(error)
        }
    }
}

/// Checks `credentials` against a known user's secret.
async fn verify(user: &User, credentials: Credentials<'_>) -> Result<(), LoginError> {
    let matched = match credentials {
        Credentials::AmiMd5 { challenge: Some(challenge), key: Some(key) } => check_md5(user, challenge, key),
        Credentials::AmiMd5 { .. } => return Err(LoginError::NoChallenge),
        Credentials::AmiSecret(secret) | Credentials::Basic(secret) if is_hashed(user) => {
            // bcrypt and sha512-crypt are slow on purpose: keep them off the runtime.
            let (user, secret) = (user.clone(), secret.to_string());
            tokio::task::spawn_blocking(move || check_secret(&user, &secret)).await.unwrap_or(false)
        }
        Credentials::AmiSecret(secret) | Credentials::Basic(secret) => check_secret(user, secret),
        Credentials::Digest { header, method, uri } => match digest::verify(header, user, method, uri) {
            Ok(()) => true,
            Err(DigestError::Wrong) => false,
            Err(DigestError::Invalid) => return Err(LoginError::InvalidNonce),
            Err(DigestError::Stale) => return Err(LoginError::StaleNonce),
        },
    };
    if matched {
        Ok(())
    } else {
        Err(LoginError::WrongSecret)
    }
}

#[cfg(test)]
mod tests;
