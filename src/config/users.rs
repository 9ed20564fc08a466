//! The users file (1.x `astmanproxy.users`): who may log in to the proxy.
//!
//! One user per line: `user=secret,channel,out_context,in_context,accountcode,server,more_events,filters`.
//! Only `user=secret` is required. Unlike 1.x, fields keep their case, a blank or whitespace-only
//! line never creates an anonymous user, a line without `=` is an error naming the line, and a
//! user may appear only once. Lines starting with `;` or `#` are comments; `[section]` lines are
//! skipped. manager.conf-style `[user]` sections take `key = value` lines.
//!
//! This is plain data: what the file says, checked. What a user may do with it (the secret
//! checks, the policy, the event filters) is `auth`'s.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::secret::Secret;

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
    /// `eventfilter` lines, checked (`auth` compiles them into the user's policy).
    pub eventfilters: Vec<FilterRule>,
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
}

/// How an `eventfilter(...)` compares (`method(...)`); the classic form is a regex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterMethod {
    /// `method(regex)`, and the classic `eventfilter = regex` form.
    Regex,
    /// `method(exact)`.
    Exact,
    /// `method(starts_with)`.
    StartsWith,
    /// `method(ends_with)`.
    EndsWith,
    /// `method(contains)`.
    Contains,
    /// `method(none)` or no method: every event the name and header select.
    Any,
}

/// One `eventfilter` line: the classic regex form (`!` to exclude) or Asterisk 21's
/// `eventfilter(action(exclude),name(Newchannel),header(Channel),method(starts_with)) = value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterRule {
    /// `action(exclude)`, or a classic pattern starting with `!`.
    pub exclude: bool,
    /// `name(...)`: only events of this name.
    pub name: Option<String>,
    /// `header(...)`: the header compared (without one, the whole event text).
    pub header: Option<String>,
    /// How `pattern` is compared.
    pub method: FilterMethod,
    /// The value compared against (a valid regex for [`FilterMethod::Regex`]).
    pub pattern: String,
}

impl FilterRule {
    /// Parses one filter line (`key` is `eventfilter` or `eventfilter(...)`).
    ///
    /// # Errors
    /// A bad regex, a malformed or unknown parameter, an unknown method.
    pub fn parse(key: &str, value: &str) -> Result<FilterRule, UserLineError> {
        let regex = |v: &str| match regex::Regex::new(v) {
            Ok(_) => Ok(v.to_string()),
            Err(e) => Err(UserLineError::FilterRegex { pattern: v.to_string(), message: e.to_string() }),
        };
        let Some(params) = key.trim().strip_prefix("eventfilter(").and_then(|p| p.strip_suffix(')')) else {
            let (exclude, pattern) = match value.strip_prefix('!') {
                Some(p) => (true, p),
                None => (false, value),
            };
            let pattern = regex(pattern)?;
            return Ok(FilterRule { exclude, name: None, header: None, method: FilterMethod::Regex, pattern });
        };
        let mut rule =
            FilterRule { exclude: false, name: None, header: None, method: FilterMethod::Any, pattern: String::new() };
        let mut method = "none".to_string();
        for part in params.split("),") {
            let part = part.trim().trim_end_matches(')');
            let (k, v) = part.split_once('(').ok_or_else(|| UserLineError::FilterParameter(part.to_string()))?;
            match k.trim().to_ascii_lowercase().as_str() {
                "action" => rule.exclude = v.trim().eq_ignore_ascii_case("exclude"),
                "name" => rule.name = Some(v.trim().to_string()),
                "header" => rule.header = Some(v.trim().trim_end_matches(':').to_string()),
                "method" => method = v.trim().to_ascii_lowercase(),
                other => return Err(UserLineError::UnknownFilterParameter(other.to_string())),
            }
        }
        rule.method = match method.as_str() {
            "regex" => FilterMethod::Regex,
            "exact" => FilterMethod::Exact,
            "starts_with" => FilterMethod::StartsWith,
            "ends_with" => FilterMethod::EndsWith,
            "contains" => FilterMethod::Contains,
            "none" | "" => FilterMethod::Any,
            other => return Err(UserLineError::UnknownFilterMethod(other.to_string())),
        };
        rule.pattern = if rule.method == FilterMethod::Regex { regex(value)? } else { value.to_string() };
        Ok(rule)
    }
}

/// What is wrong with one line of a users file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserLineError {
    /// A line of a `[user]` section without `=`.
    #[error("expected `key = value`")]
    ExpectedKeyValue,
    /// A 1.x line without `=`.
    #[error("expected `user=secret[,channel,...]`")]
    ExpectedUserLine,
    /// `[]`.
    #[error("empty section name")]
    EmptySectionName,
    /// `=secret`.
    #[error("empty user name")]
    EmptyName,
    /// `user=` (1.x line).
    #[error("user {0:?} has an empty secret")]
    EmptySecret(String),
    /// A `[user]` section without `secret =`.
    #[error("user {0:?} has no secret")]
    NoSecret(String),
    /// The same user twice.
    #[error("user {0:?} is defined twice")]
    Duplicate(String),
    /// A `permit=`/`deny=` value that is no address or network.
    #[error("{0:?} is not a network")]
    NotANetwork(String),
    /// `readonly=` that is not yes or no.
    #[error("readonly is not yes or no")]
    NotABool,
    /// A key a user section does not know.
    #[error("unknown key {0:?} in a user section")]
    UnknownKey(String),
    /// An `eventfilter` regex that does not compile.
    #[error("bad eventfilter regex {pattern:?}: {message}")]
    FilterRegex {
        /// The pattern.
        pattern: String,
        /// The regex compiler's complaint.
        message: String,
    },
    /// An `eventfilter(...)` parameter without `(`.
    #[error("bad eventfilter parameter {0:?}")]
    FilterParameter(String),
    /// An `eventfilter(...)` parameter other than action, name, header, method.
    #[error("unknown eventfilter parameter {0:?}")]
    UnknownFilterParameter(String),
    /// A `method(...)` other than regex, exact, starts_with, ends_with, contains, none.
    #[error("unknown eventfilter method {0:?}")]
    UnknownFilterMethod(String),
}

/// Why a users file was rejected; every variant names the file, line errors the line.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// The file cannot be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A line is wrong.
    #[error("{}:{line}: {problem}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        problem: UserLineError,
    },
}

/// `permit=10.0.0.0/255.0.0.0` (Asterisk) or `10.0.0.0/8` or a single address.
fn network(v: &str) -> Result<ipnet::IpNet, UserLineError> {
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
    Err(UserLineError::NotANetwork(v.to_string()))
}

/// Applies one `key = value` of a `[user]` section.
fn section_key(user: &mut User, key: &str, value: &str) -> Result<(), UserLineError> {
    let list = |v: &str| v.split(',').map(str::trim).filter(|x| !x.is_empty()).map(str::to_string).collect::<Vec<_>>();
    let lower = key.to_ascii_lowercase();
    match lower.as_str() {
        "secret" => user.secret = Secret::new(value),
        "read" => user.read = Some(value.to_string()),
        "write" => user.write = Some(value.to_string()),
        "permit" => user.permit.push(network(value)?),
        "deny" => user.deny.push(network(value)?),
        "servers" | "server" => user.servers = list(value),
        "actions" => user.actions = Some(list(value).into_iter().map(|a| a.to_ascii_lowercase()).collect()),
        "readonly" => user.readonly = super::parse_bool(value).ok_or(UserLineError::NotABool)?,
        "channel" => user.channel = value.to_string(),
        "outcontext" | "out_context" => user.out_context = value.to_string(),
        "incontext" | "in_context" => user.in_context = value.to_string(),
        "accountcode" => user.account_code = value.to_string(),
        "moreevents" | "more_events" => user.more_events = super::parse_bool(value).unwrap_or(!value.is_empty()),
        "filters" => user.filters = list(value),
        k if k == "eventfilter" || k.starts_with("eventfilter(") => {
            user.eventfilters.push(FilterRule::parse(key, value)?);
        }
        // manager.conf keys that do not apply to the proxy.
        "displayconnects" | "writetimeout" | "allowmultiplelogin" | "acl" => {}
        other => return Err(UserLineError::UnknownKey(other.to_string())),
    }
    Ok(())
}

fn finish_section(
    users: &mut HashMap<String, User>,
    section: Option<(usize, User)>,
    path: &Path,
) -> Result<(), UsersError> {
    let Some((line, user)) = section else { return Ok(()) };
    let err = |problem| UsersError::Line { path: path.to_path_buf(), line, problem };
    if user.secret.expose().is_empty() {
        return Err(err(UserLineError::NoSecret(user.name)));
    }
    let name = user.name.clone();
    if users.insert(name.clone(), user).is_some() {
        return Err(err(UserLineError::Duplicate(name)));
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
    pub fn parse(text: &str, path: &Path) -> Result<Users, UsersError> {
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
            let err = |problem| UsersError::Line { path: path.to_path_buf(), line, problem };
            if let Some(name) = content.strip_prefix('[').and_then(|c| c.split(']').next()) {
                finish_section(&mut users, section.take(), path)?;
                let name = name.trim();
                in_general = name.eq_ignore_ascii_case("general");
                if name.is_empty() {
                    return Err(err(UserLineError::EmptySectionName));
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
                    return Err(err(UserLineError::ExpectedKeyValue));
                };
                section_key(user, key.trim(), value.trim()).map_err(err)?;
                continue;
            }
            let Some((name, rest)) = content.split_once('=') else {
                return Err(err(UserLineError::ExpectedUserLine));
            };
            let name = name.trim();
            let mut fields = rest.split(',').map(str::trim);
            let secret = fields.next().unwrap_or_default();
            if name.is_empty() {
                return Err(err(UserLineError::EmptyName));
            }
            if secret.is_empty() {
                return Err(err(UserLineError::EmptySecret(name.to_string())));
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
                return Err(err(UserLineError::Duplicate(name.to_string())));
            }
        }
        finish_section(&mut users, section.take(), path)?;
        Ok(Users { users })
    }

    /// Reads and parses a users file.
    ///
    /// # Errors
    /// The file cannot be read, or [`Users::parse`] fails.
    pub fn load(path: &Path) -> Result<Users, UsersError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| UsersError::Io { path: path.to_path_buf(), source })?;
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

    fn parse(text: &str) -> Result<Users, UsersError> {
        Users::parse(text, Path::new("test.users"))
    }

    #[test]
    fn full_lines_keep_case() {
        let users =
            parse("; comment\n\n   \nAlice = Secret1 , SIP/, Out, In, acct, PBX1, yes, cdronly novar\nbob=pw\n")
                .unwrap();
        assert_eq!(users.len(), 2);
        let a = users.get("Alice").unwrap();
        assert_eq!(a.secret.expose(), "Secret1");
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
                UsersError::Line { line: l, .. } => assert_eq!(l, line, "{text:?}"),
                e => panic!("{e}"),
            }
        }
        // A whitespace-only line is not an anonymous user.
        let users = parse("  \t \n").unwrap();
        assert!(users.is_empty());
        assert!(users.get("").is_none());
    }

    #[test]
    fn errors_name_file_line_and_problem() {
        let e = parse("u=1\nu=2\n").unwrap_err();
        assert_eq!(e.to_string(), "test.users:2: user \"u\" is defined twice");
        let e = parse("[u]\nsecret = x\npermit = nowhere\n").unwrap_err();
        assert!(
            matches!(&e, UsersError::Line { line: 3, problem: UserLineError::NotANetwork(n), .. } if n == "nowhere")
        );
        let e = parse("[u]\nsecret=x\neventfilter(method(fuzzy)) = a\n").unwrap_err();
        assert!(matches!(e, UsersError::Line { problem: UserLineError::UnknownFilterMethod(_), .. }), "{e}");
    }

    #[test]
    fn filter_rules_are_parsed_once_here() {
        let rule = FilterRule::parse("eventfilter", "!Channel: Local/").unwrap();
        assert!(rule.exclude && rule.method == FilterMethod::Regex && rule.pattern == "Channel: Local/");
        let rule = FilterRule::parse(
            "eventfilter(action(exclude),name(Newchannel),header(CallerIDNum:),method(starts_with))",
            "9",
        )
        .unwrap();
        assert_eq!(
            rule,
            FilterRule {
                exclude: true,
                name: Some("Newchannel".into()),
                header: Some("CallerIDNum".into()),
                method: FilterMethod::StartsWith,
                pattern: "9".into(),
            }
        );
        assert!(matches!(FilterRule::parse("eventfilter", "("), Err(UserLineError::FilterRegex { .. })));
        assert!(matches!(
            FilterRule::parse("eventfilter(bogus(1))", "x"),
            Err(UserLineError::UnknownFilterParameter(_))
        ));
        assert!(matches!(FilterRule::parse("eventfilter(name)", "x"), Err(UserLineError::FilterParameter(_))));
    }
}
