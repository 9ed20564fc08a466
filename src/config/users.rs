//! The users file (1.x `astmanproxy.users`): who may log in to the proxy.
//!
//! One user per line: `user=secret,channel,out_context,in_context,accountcode,server,more_events,filters`.
//! Only `user=secret` is required. Unlike 1.x, fields keep their case, a blank or whitespace-only
//! line never creates an anonymous user, a line without `=` is an error naming the line, and a
//! user may appear only once. Lines starting with `;` or `#` are comments; `[section]` lines are
//! skipped. The filter fields are kept for the permissions work.

use std::collections::HashMap;
use std::path::Path;

use md5::{Digest, Md5};

use super::secret::{ct_eq, Secret};
use super::ConfigError;

/// One user of the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Login name (case-sensitive).
    pub name: String,
    /// Secret (plain text in the 1.x format).
    pub secret: Secret,
    /// Channel prefix filter.
    pub channel: String,
    /// Outbound context filter.
    pub out_context: String,
    /// Inbound context filter.
    pub in_context: String,
    /// Account code rewrite.
    pub account_code: String,
    /// Server the user is pinned to.
    pub server: String,
    /// Pass events without a UniqueID as well.
    pub more_events: bool,
    /// Filter tokens (`cdronly`, `brionly`, `xfronly`, `novar`).
    pub filters: Vec<String>,
    /// `read=` event classes (manager.conf style); `None`: all.
    pub read: Option<String>,
    /// `write=` action classes (manager.conf style); `None`: all.
    pub write: Option<String>,
    /// `eventfilter` lines: `(key, value)` as written (`eventfilter` or `eventfilter(...)`).
    pub eventfilters: Vec<(String, String)>,
    /// `permit=` networks; when any is given, only they may log in as this user.
    pub permit: Vec<ipnet::IpNet>,
    /// `deny=` networks, checked before `permit`.
    pub deny: Vec<ipnet::IpNet>,
    /// `servers=`: the only servers this user may reach (empty: all).
    pub servers: Vec<String>,
    /// `actions=`: the only actions this user may send (`None`: any its classes allow).
    pub actions: Option<Vec<String>>,
    /// `readonly=yes`: never changes state (write classes limited to `reporting`).
    pub readonly: bool,
}

impl User {
    /// A user with only a name and secret.
    pub fn new(name: &str, secret: &str) -> Self {
        Self {
            name: name.to_string(),
            secret: Secret::new(secret),
            channel: String::new(),
            out_context: String::new(),
            in_context: String::new(),
            account_code: String::new(),
            server: String::new(),
            more_events: false,
            filters: Vec::new(),
            read: None,
            write: None,
            eventfilters: Vec::new(),
            permit: Vec::new(),
            deny: Vec::new(),
            servers: Vec::new(),
            actions: None,
            readonly: false,
        }
    }

    /// Whether `ip` may log in as this user (`deny` first, then `permit` when any is given).
    pub fn address_allowed(&self, ip: std::net::IpAddr) -> bool {
        if self.deny.iter().any(|n| n.contains(&ip)) && !self.permit.iter().any(|n| n.contains(&ip)) {
            return false;
        }
        self.permit.is_empty() || self.permit.iter().any(|n| n.contains(&ip))
    }

    /// Whether `plain` is this user's secret: a constant-time comparison for a plain secret, or
    /// a bcrypt (`$2a$`/`$2b$`/`$2y$`) or sha512-crypt (`$6$`) verification for a hashed one.
    /// Hashing is slow on purpose: call it off the async runtime (`spawn_blocking`) when
    /// [`User::is_hashed`].
    pub fn check_secret(&self, plain: &str) -> bool {
        let stored = self.secret.expose();
        if stored.starts_with("$2a$") || stored.starts_with("$2b$") || stored.starts_with("$2y$") {
            bcrypt::verify(plain, stored).unwrap_or(false)
        } else if stored.starts_with("$6$") {
            sha_crypt::sha512_check(plain, stored).is_ok()
        } else if self.is_hashed() {
            // An unknown hash scheme never matches.
            false
        } else {
            self.secret.ct_eq(plain)
        }
    }

    /// Whether `key_hex` is `md5hex(challenge + secret)` (case-insensitive, constant time). Needs
    /// the plain secret: users with a hashed secret must log in with `Secret:` (over TLS).
    pub fn check_md5(&self, challenge: &str, key_hex: &str) -> bool {
        if self.is_hashed() {
            return false;
        }
        let expected = format!("{:x}", Md5::digest(format!("{challenge}{}", self.secret.expose())));
        ct_eq(expected.as_bytes(), key_hex.trim().to_ascii_lowercase().as_bytes())
    }

    /// HTTP Digest's `HA1` (`md5(name:realm:secret)`, hex) for this user logging in as `name`;
    /// `None` when the secret is stored hashed (Digest needs the plain secret).
    pub fn digest_ha1(&self, name: &str, realm: &str) -> Option<String> {
        if self.is_hashed() {
            return None;
        }
        Some(format!("{:x}", Md5::digest(format!("{name}:{realm}:{}", self.secret.expose()))))
    }

    /// Whether the stored secret is a hash (`$...`).
    pub fn is_hashed(&self) -> bool {
        self.secret.expose().starts_with('$')
    }
}

/// Applies one `key = value` of a `[user]` section.
fn section_key(user: &mut User, key: &str, value: &str) -> Result<(), String> {
    let list = |v: &str| v.split(',').map(str::trim).filter(|x| !x.is_empty()).map(str::to_string).collect::<Vec<_>>();
    let net = |v: &str| -> Result<ipnet::IpNet, String> {
        // `permit=10.0.0.0/255.0.0.0` (Asterisk) or `10.0.0.0/8` or a single address.
        let v = v.trim();
        if let Ok(n) = v.parse::<ipnet::IpNet>() {
            return Ok(n);
        }
        if let Ok(ip) = v.parse::<std::net::IpAddr>() {
            return Ok(ipnet::IpNet::from(ip));
        }
        if let Some((addr, mask)) = v.split_once('/') {
            if let (Ok(addr), Ok(mask)) = (addr.parse::<std::net::Ipv4Addr>(), mask.parse::<std::net::Ipv4Addr>()) {
                let prefix = u32::from(mask).leading_ones() as u8;
                if let Ok(n) = ipnet::Ipv4Net::new(addr, prefix) {
                    return Ok(ipnet::IpNet::V4(n.trunc()));
                }
            }
        }
        Err(format!("{v:?} is not a network"))
    };
    let lower = key.to_ascii_lowercase();
    match lower.as_str() {
        "secret" => user.secret = Secret::new(value),
        "read" => user.read = Some(value.to_string()),
        "write" => user.write = Some(value.to_string()),
        "permit" => user.permit.push(net(value)?),
        "deny" => user.deny.push(net(value)?),
        "servers" | "server" => user.servers = list(value),
        "actions" => user.actions = Some(list(value).into_iter().map(|a| a.to_ascii_lowercase()).collect()),
        "readonly" => user.readonly = super::parse_bool(value).ok_or("readonly is not yes or no")?,
        "channel" => user.channel = value.to_string(),
        "outcontext" | "out_context" => user.out_context = value.to_string(),
        "incontext" | "in_context" => user.in_context = value.to_string(),
        "accountcode" => user.account_code = value.to_string(),
        "moreevents" | "more_events" => user.more_events = super::parse_bool(value).unwrap_or(!value.is_empty()),
        "filters" => user.filters = list(value),
        k if k == "eventfilter" || k.starts_with("eventfilter(") => {
            crate::policy::EventFilter::parse(key, value)?;
            user.eventfilters.push((key.to_string(), value.to_string()));
        }
        // manager.conf keys that do not apply to the proxy.
        "displayconnects" | "writetimeout" | "allowmultiplelogin" | "acl" => {}
        other => return Err(format!("unknown key {other:?} in a user section")),
    }
    Ok(())
}

fn finish_section(
    users: &mut HashMap<String, User>,
    section: Option<(usize, User)>,
    path: &Path,
) -> Result<(), ConfigError> {
    let Some((line, user)) = section else { return Ok(()) };
    let err = |message: String| ConfigError::Syntax { path: path.to_path_buf(), line, message };
    if user.secret.expose().is_empty() {
        return Err(err(format!("user {:?} has no secret", user.name)));
    }
    let name = user.name.clone();
    if users.insert(name.clone(), user).is_some() {
        return Err(err(format!("user {name:?} is defined twice")));
    }
    Ok(())
}

/// Every user, by name.
#[derive(Debug, Clone, Default)]
pub struct Users {
    users: HashMap<String, User>,
}

impl Users {
    /// Parses a users file; `path` names it in errors.
    ///
    /// # Errors
    /// A line without `=`, an empty name or secret, or a duplicate user, naming file and line.
    pub fn parse(text: &str, path: &Path) -> Result<Users, ConfigError> {
        let mut users = HashMap::new();
        // manager.conf style: `[name]` then `key = value` lines, until the next section.
        let mut section: Option<(usize, User)> = None;
        let mut in_general = false;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let content = raw.trim();
            if content.is_empty() || content.starts_with([';', '#']) {
                continue;
            }
            let err = |message: String| ConfigError::Syntax { path: path.to_path_buf(), line, message };
            if let Some(name) = content.strip_prefix('[').and_then(|c| c.split(']').next()) {
                finish_section(&mut users, section.take(), path)?;
                let name = name.trim();
                in_general = name.eq_ignore_ascii_case("general");
                if name.is_empty() {
                    return Err(err("empty section name".to_string()));
                }
                if !in_general {
                    section = Some((line, User::new(name, "")));
                }
                continue;
            }
            if in_general {
                continue;
            }
            if let Some((_, user)) = section.as_mut() {
                let Some((key, value)) = content.split_once("=>").or_else(|| content.split_once('=')) else {
                    return Err(err("expected `key = value`".to_string()));
                };
                section_key(user, key.trim(), value.trim()).map_err(err)?;
                continue;
            }
            let Some((name, rest)) = content.split_once('=') else {
                return Err(err("expected `user=secret[,channel,...]`".to_string()));
            };
            let name = name.trim();
            let mut fields = rest.split(',').map(str::trim);
            let secret = fields.next().unwrap_or_default();
            if name.is_empty() {
                return Err(err("empty user name".to_string()));
            }
            if secret.is_empty() {
                return Err(err(format!("user {name:?} has an empty secret")));
            }
            let mut user = User::new(name, secret);
            let mut next = || fields.next().unwrap_or_default().to_string();
            user.channel = next();
            user.out_context = next();
            user.in_context = next();
            user.account_code = next();
            user.server = next();
            user.more_events = !next().is_empty();
            let filters = next();
            user.filters = filters.split([' ', '|', ';']).filter(|f| !f.is_empty()).map(str::to_string).collect();
            if !user.server.is_empty() {
                user.servers = vec![user.server.clone()];
            }
            if users.insert(name.to_string(), user).is_some() {
                return Err(err(format!("user {name:?} is defined twice")));
            }
        }
        finish_section(&mut users, section.take(), path)?;
        Ok(Users { users })
    }

    /// Reads and parses a users file.
    ///
    /// # Errors
    /// The file cannot be read, or [`Users::parse`] fails.
    pub fn load(path: &Path) -> Result<Users, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.to_path_buf(), source })?;
        Self::parse(&text, path)
    }

    /// Users from `(name, secret)` pairs (tests and tools).
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Users {
        Users { users: pairs.iter().map(|(n, s)| (n.to_string(), User::new(n, s))).collect() }
    }

    /// The user named `name` (case-sensitive).
    pub fn get(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there is no user.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Users, ConfigError> {
        Users::parse(text, Path::new("test.users"))
    }

    #[test]
    fn full_lines_keep_case() {
        let users =
            parse("; comment\n\n   \nAlice = Secret1 , SIP/, Out, In, acct, PBX1, yes, cdronly novar\nbob=pw\n")
                .unwrap();
        assert_eq!(users.len(), 2);
        let a = users.get("Alice").unwrap();
        assert!(a.check_secret("Secret1"));
        assert!(!a.check_secret("secret1"));
        assert_eq!(a.out_context, "Out");
        assert_eq!(a.server, "PBX1");
        assert!(a.more_events);
        assert_eq!(a.filters, ["cdronly", "novar"]);
        assert!(users.get("alice").is_none());
    }

    #[test]
    fn traps_of_1x_are_errors() {
        for (text, line) in [("ok=1\nnoequals\n", 2), ("=pw\n", 1), ("u=\n", 1), ("u=1\nu=2\n", 2)] {
            match parse(text).unwrap_err() {
                ConfigError::Syntax { line: l, .. } => assert_eq!(l, line, "{text:?}"),
                e => panic!("{e}"),
            }
        }
        // A whitespace-only line is not an anonymous user.
        let users = parse("  \t \n").unwrap();
        assert!(users.is_empty());
        assert!(users.get("").is_none());
    }

    #[test]
    fn hashed_secrets() {
        let bcrypt_hash = bcrypt::hash("s3cret", 4).unwrap();
        let params = sha_crypt::Sha512Params::new(5000).unwrap();
        let sha_hash = sha_crypt::sha512_simple("s3cret", &params).unwrap();
        let users = parse(&format!("b={bcrypt_hash}\ns={sha_hash}\nx=$9$unknown\n")).unwrap();
        for name in ["b", "s"] {
            let u = users.get(name).unwrap();
            assert!(u.is_hashed());
            assert!(u.check_secret("s3cret"), "{name}");
            assert!(!u.check_secret("wrong"), "{name}");
            assert!(!u.check_md5("1", "abc"));
        }
        assert!(!users.get("x").unwrap().check_secret("$9$unknown"));
    }

    #[test]
    fn md5_matches_the_real_capture() {
        // 03-challenge-md5-login.cap: challenge 146862597, admin/adminpass.
        let u = User::new("admin", "adminpass");
        let key = format!("{:x}", Md5::digest("146862597adminpass"));
        assert!(u.check_md5("146862597", &key));
        assert!(u.check_md5("146862597", &key.to_uppercase()));
        assert!(!u.check_md5("146862598", &key));
    }
}
