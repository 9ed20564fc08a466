//! The token rules of the Beacon collector, as pure functions over time and hashes.
//!
//! A server's token is required while its last token is younger than [`TOKEN_REQUIRED_FOR`]
//! (48 h): a missing or wrong token then gets 401. From 48 h on no token is required: a request
//! without one, with the expired one, or with a wrong one is accepted (a token that is not
//! required cannot be wrong). Every accepted update issues a fresh token. The collector keeps
//! only the SHA-256 hash of the current token and compares hashes in constant time.

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// How long a token stays required after it was issued.
pub const TOKEN_REQUIRED_FOR: Duration = Duration::hours(48);

/// The SHA-256 hash of a token, the only form in which a token is stored.
pub type TokenHash = [u8; 32];

/// What the collector stores of a server's current token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredToken {
    /// SHA-256 of the token.
    pub hash: TokenHash,
    /// When it was issued.
    pub issued: DateTime<Utc>,
}

/// The verdict on the token an update presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The token is required and the right one was presented.
    Valid,
    /// The last token is 48 h old or older: no token is required (whatever was presented).
    NotRequired,
    /// The token is required and none was presented (401).
    Missing,
    /// The token is required and another one was presented (401).
    Wrong,
}

impl Decision {
    /// Whether the update is accepted (and so gets a fresh token).
    pub fn accepted(self) -> bool {
        matches!(self, Decision::Valid | Decision::NotRequired)
    }
}

/// Decides an update made at `now` for a server whose current token is `stored`, presenting
/// `presented` (`None` or empty: no token). A token issued in the future (the clock went back)
/// counts as young, so it stays required.
pub fn decide(now: DateTime<Utc>, stored: &StoredToken, presented: Option<&str>) -> Decision {
    let required = now.signed_duration_since(stored.issued) < TOKEN_REQUIRED_FOR;
    if !required {
        return Decision::NotRequired;
    }
    match presented.filter(|t| !t.is_empty()) {
        None => Decision::Missing,
        Some(token) if hashes_equal(&hash_token(token), &stored.hash) => Decision::Valid,
        Some(_) => Decision::Wrong,
    }
}

/// The SHA-256 hash of `token`.
pub fn hash_token(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// Compares two hashes in time that does not depend on where they differ.
pub fn hashes_equal(a: &TokenHash, b: &TokenHash) -> bool {
    let diff = a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// A new random token: 32 bytes from the operating system's CSPRNG, base64url without padding
/// (43 characters).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A new random server id, in the UUID version 4 text form.
pub fn new_server_id() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// Whether `id` has the form [`new_server_id`] makes (anything else is answered 404 unread).
pub fn is_server_id(id: &str) -> bool {
    id.len() == 36
        && id.bytes().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit() && !c.is_ascii_uppercase(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(hours: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + Duration::hours(hours)
    }

    fn stored(token: &str) -> StoredToken {
        StoredToken { hash: hash_token(token), issued: at(0) }
    }

    #[test]
    fn within_48_hours_the_right_token_is_required() {
        let s = stored("tok");
        assert_eq!(decide(at(1), &s, Some("tok")), Decision::Valid);
        assert_eq!(decide(at(1), &s, None), Decision::Missing);
        assert_eq!(decide(at(1), &s, Some("")), Decision::Missing);
        assert_eq!(decide(at(47), &s, Some("other")), Decision::Wrong);
        let just_before = at(48) - Duration::seconds(1);
        assert_eq!(decide(just_before, &s, None), Decision::Missing);
        assert!(!Decision::Missing.accepted() && !Decision::Wrong.accepted());
    }

    #[test]
    fn from_48_hours_on_no_token_is_required() {
        let s = stored("tok");
        for presented in [None, Some("tok"), Some("wrong"), Some("")] {
            assert_eq!(decide(at(48), &s, presented), Decision::NotRequired, "{presented:?}");
            assert_eq!(decide(at(49), &s, presented), Decision::NotRequired, "{presented:?}");
        }
        assert!(Decision::NotRequired.accepted() && Decision::Valid.accepted());
    }

    #[test]
    fn a_token_from_the_future_stays_required() {
        let s = StoredToken { hash: hash_token("tok"), issued: at(100) };
        assert_eq!(decide(at(0), &s, None), Decision::Missing);
        assert_eq!(decide(at(0), &s, Some("tok")), Decision::Valid);
    }

    #[test]
    fn hashes_compare_by_value() {
        assert!(hashes_equal(&hash_token("a"), &hash_token("a")));
        assert!(!hashes_equal(&hash_token("a"), &hash_token("b")));
        let mut h = hash_token("a");
        h[31] ^= 1;
        assert!(!hashes_equal(&hash_token("a"), &h));
    }

    #[test]
    fn tokens_and_ids_are_random_and_well_formed() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        let id = new_server_id();
        assert!(is_server_id(&id), "{id}");
        assert_ne!(id, new_server_id());
        assert_eq!(&id[14..15], "4");
        for bad in ["", "x", "../etc/passwd", &id.to_uppercase(), &format!("{id}0")] {
            assert!(!is_server_id(bad), "{bad}");
        }
    }
}
