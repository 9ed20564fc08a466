//! Checks of one user's stored secret and address: plain, bcrypt and sha512-crypt secrets, the
//! AMI `Challenge`/MD5 key, HTTP Digest's `HA1`, and `permit=`/`deny=` networks.

use std::net::IpAddr;

use md5::{Digest, Md5};

use crate::config::secret::ct_eq;
use crate::config::User;

/// Whether `ip` may log in as `user` (`deny` first, then `permit` when any is given).
pub fn address_allowed(user: &User, ip: IpAddr) -> bool {
    if user.deny.iter().any(|n| n.contains(&ip)) && !user.permit.iter().any(|n| n.contains(&ip)) {
        return false;
    }
    user.permit.is_empty() || user.permit.iter().any(|n| n.contains(&ip))
}

/// Whether `plain` is the user's secret: a constant-time comparison for a plain secret, or a
/// bcrypt (`$2a$`/`$2b$`/`$2y$`) or sha512-crypt (`$6$`) verification for a hashed one.
/// Hashing is slow on purpose: call it off the async runtime (`spawn_blocking`) when
/// [`is_hashed`].
pub fn check_secret(user: &User, plain: &str) -> bool {
    let stored = user.secret.expose();
    if stored.starts_with("$2a$") || stored.starts_with("$2b$") || stored.starts_with("$2y$") {
        bcrypt::verify(plain, stored).unwrap_or(false)
    } else if stored.starts_with("$6$") {
        sha_crypt::sha512_check(plain, stored).is_ok()
    } else if is_hashed(user) {
        // An unknown hash scheme never matches.
        false
    } else {
        user.secret.ct_eq(plain)
    }
}

/// Whether `key_hex` is `md5hex(challenge + secret)` (case-insensitive, constant time). Needs
/// the plain secret: users with a hashed secret must log in with `Secret:` (over TLS).
pub fn check_md5(user: &User, challenge: &str, key_hex: &str) -> bool {
    if is_hashed(user) {
        return false;
    }
    let expected = format!("{:x}", Md5::digest(format!("{challenge}{}", user.secret.expose())));
    ct_eq(expected.as_bytes(), key_hex.trim().to_ascii_lowercase().as_bytes())
}

/// HTTP Digest's `HA1` (`md5(name:realm:secret)`, hex) for `user` logging in as `name`; `None`
/// when the secret is stored hashed (Digest needs the plain secret).
pub fn digest_ha1(user: &User, name: &str, realm: &str) -> Option<String> {
    if is_hashed(user) {
        return None;
    }
    Some(format!("{:x}", Md5::digest(format!("{name}:{realm}:{}", user.secret.expose()))))
}

/// Whether the stored secret is a hash (`$...`).
pub fn is_hashed(user: &User) -> bool {
    user.secret.expose().starts_with('$')
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Users;

    #[test]
    fn plain_secrets_keep_case() {
        let users = Users::parse("Alice = Secret1\n", Path::new("t")).unwrap();
        let a = users.get("Alice").unwrap();
        assert!(check_secret(a, "Secret1"));
        assert!(!check_secret(a, "secret1"));
    }

    #[test]
    fn hashed_secrets() {
        let bcrypt_hash = bcrypt::hash("s3cret", 4).unwrap();
        let params = sha_crypt::Sha512Params::new(5000).unwrap();
        let sha_hash = sha_crypt::sha512_simple("s3cret", &params).unwrap();
        let text = format!("b={bcrypt_hash}\ns={sha_hash}\nx=$9$unknown\n");
        let users = Users::parse(&text, Path::new("test.users")).unwrap();
        for name in ["b", "s"] {
            let u = users.get(name).unwrap();
            assert!(is_hashed(u));
            assert!(check_secret(u, "s3cret"), "{name}");
            assert!(!check_secret(u, "wrong"), "{name}");
            assert!(!check_md5(u, "1", "abc"));
        }
        assert!(!check_secret(users.get("x").unwrap(), "$9$unknown"));
    }

    #[test]
    fn md5_matches_the_real_capture() {
        // 03-challenge-md5-login.cap: challenge 146862597, admin/adminpass.
        let u = User::new("admin", "adminpass");
        let key = format!("{:x}", Md5::digest("146862597adminpass"));
        assert!(check_md5(&u, "146862597", &key));
        assert!(check_md5(&u, "146862597", &key.to_uppercase()));
        assert!(!check_md5(&u, "146862598", &key));
    }
}
