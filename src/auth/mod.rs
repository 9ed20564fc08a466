//! Who may log in, and what they may do then.
//!
//! - [`login()`]: the one login function of every transport (AMI `Login` and `Challenge`/MD5,
//!   HTTP Basic and Digest, the WebSocket upgrade, AJAM): limits, address check, secret, failure
//!   delay, metric and log, written once.
//! - [`credentials`]: the checks of a stored secret (plain, bcrypt, sha512-crypt, MD5, Digest `HA1`)
//!   and of `permit=`/`deny=`.
//! - [`digest`]: HTTP Digest (nonces, the `Authorization` header, the response).
//! - [`limit`]: the failed-login limiter (`authlimit`, `authlimitaddress`).
//! - [`Policy`] and [`EventFilter`]: a logged-in user's rights on actions and events.
//!
//! The users themselves are plain data parsed by `config` ([`crate::config::Users`]); this
//! module builds everything else from them. It imports `config` and `event`, never a transport.

pub mod credentials;
pub mod digest;
mod filter;
pub mod limit;
mod login;
pub mod policy;

pub use filter::EventFilter;
pub use limit::{AuthLimiter, Lockout};
pub use login::{login, Credentials, Gate, Grant, LoginError};
pub use policy::{Denied, Policy};
