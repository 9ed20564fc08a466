//! What a logged-in user may do and see: write classes and the `actions=` allow-list on actions,
//! server pinning, `readonly`; read classes, event filters and the 1.x per-user filters on
//! events. Built once per login from the users file ([`Policy::for_user`]) by [`super::login`].
//!
//! Denied actions get `Response: Error` / `Message: Permission denied`, as Asterisk answers.

use std::sync::Arc;

use astmanproxy_handlers::Message;

use super::filter::EventFilter;
use crate::config::{User, Users};
use crate::event::{ClassMask, SharedEvent};

/// The write classes Asterisk requires per action (from Asterisk 22's `manager.c` and modules).
/// Actions not listed need no class, except that users with a restricted `write=` may only send
/// listed actions (an unknown action could do anything).
const ACTION_CLASSES: &[(&str, &str)] = &[
    ("absolutetimeout", "system,call"),
    ("atxfer", "call"),
    ("blindtransfer", "call"),
    ("bridge", "call"),
    ("command", "command"),
    ("coresettings", "system,reporting"),
    ("coreshowchannels", "system,reporting"),
    ("corestatus", "system,reporting"),
    ("dbdel", "system"),
    ("dbget", "system,reporting"),
    ("dbput", "system"),
    ("extensionstate", "call,reporting"),
    ("getconfig", "system,config"),
    ("getvar", "call,reporting"),
    ("hangup", "system,call"),
    ("mailboxcount", "call,reporting"),
    ("mailboxstatus", "call,reporting"),
    ("mixmonitor", "system,call"),
    ("modulecheck", "system"),
    ("moduleload", "system"),
    ("monitor", "call"),
    ("originate", "originate"),
    ("park", "call"),
    ("playdtmf", "call"),
    ("pjsipshowendpoints", "system,reporting"),
    ("queueadd", "agent"),
    ("queuepause", "agent"),
    ("queueremove", "agent"),
    ("queuestatus", "reporting"),
    ("queuesummary", "reporting"),
    ("redirect", "call"),
    ("reload", "system,config"),
    ("sendtext", "call"),
    ("setvar", "call"),
    ("status", "system,call,reporting"),
    ("stopmixmonitor", "system,call"),
    ("updateconfig", "config"),
    ("userevent", "user"),
];

/// Actions that need no class at all.
const FREE_ACTIONS: &[&str] =
    &["ping", "listcommands", "waitevent", "events", "login", "logoff", "challenge", "beaconshowserver"];

/// Why a user may not send an action (logged; the client gets `Permission denied`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// `servers=` (or the 1.x server field) does not name the action's server.
    #[error("server not allowed for this user")]
    Server,
    /// `actions=` does not list the action.
    #[error("action not in the user's actions list")]
    NotInActions,
    /// The action needs a write class the user does not have (`write=`, `readonly`).
    #[error("write class")]
    WriteClass,
    /// A user with restricted `write=` classes sends an action the proxy does not know.
    #[error("unknown action for a restricted user")]
    UnknownAction,
    /// The 1.x `novar` filter: no `SetVar`.
    #[error("novar")]
    NoVar,
    /// The action's `Channel:` is outside the user's channel prefix.
    #[error("channel filter")]
    Channel,
    /// The action's `Context:` is not the user's outbound context.
    #[error("context filter")]
    Context,
}

/// Headers that name a channel (1.x channel filter).
const CHANNEL_HEADERS: &[&str] =
    &["Channel", "Channel1", "Channel2", "Source", "Destination", "DestinationChannel", "ChannelCalling"];

/// One user's rights, ready to check actions and events.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    read: Option<ClassMask>,
    write: Option<ClassMask>,
    actions: Option<Vec<String>>,
    servers: Vec<String>,
    filters: Vec<EventFilter>,
    channel: String,
    in_context: String,
    out_context: String,
    account_code: String,
    more_events: bool,
    only: Option<&'static [&'static str]>,
    novar: bool,
}

impl Policy {
    /// No restriction (open proxy, or a user without any).
    pub fn open() -> Arc<Policy> {
        Arc::new(Policy::default())
    }

    /// The policy of `user`.
    pub fn for_user(user: &User) -> Arc<Policy> {
        let mut write = user.write.as_deref().map(ClassMask::parse);
        if user.readonly {
            let reporting = ClassMask::parse("reporting");
            write = Some(ClassMask(write.unwrap_or(ClassMask::ALL).0 & reporting.0));
        }
        let has = |token: &str| user.filters.iter().any(|f| f.eq_ignore_ascii_case(token));
        let only: Option<&'static [&'static str]> = if has("cdronly") {
            Some(&["Cdr"])
        } else if has("brionly") {
            Some(&["BridgeCreate", "BridgeEnter", "BridgeLeave", "BridgeDestroy", "BridgeMerge"])
        } else if has("xfronly") {
            Some(&["BlindTransfer", "AttendedTransfer"])
        } else {
            None
        };
        Arc::new(Policy {
            read: user.read.as_deref().map(ClassMask::parse),
            write,
            actions: user.actions.clone(),
            servers: user.servers.clone(),
            // Checked when the users file was loaded.
            filters: user.eventfilters.iter().filter_map(|rule| EventFilter::compile(rule).ok()).collect(),
            channel: user.channel.clone(),
            in_context: user.in_context.clone(),
            out_context: user.out_context.clone(),
            account_code: user.account_code.clone(),
            more_events: user.more_events,
            only,
            novar: has("novar"),
        })
    }

    /// The policy of the user named `name`; open for a name the users file does not have (an
    /// open proxy, `authrequired = no`).
    pub fn of(users: &Users, name: &str) -> Arc<Policy> {
        users.get(name).map_or_else(Policy::open, Policy::for_user)
    }

    /// The server an action goes to when it names none: the first pinned one.
    pub fn default_server(&self) -> Option<&str> {
        self.servers.first().map(String::as_str)
    }

    /// Checks (and, for `accountcode`, rewrites) an action.
    ///
    /// # Errors
    /// Which rule denies it (the client is answered `Permission denied`).
    pub fn check_action(&self, action: &mut Message, server: &str) -> Result<(), Denied> {
        let name = action.action().unwrap_or_default().trim().to_ascii_lowercase();
        if !self.servers.is_empty() && !self.servers.iter().any(|s| s.eq_ignore_ascii_case(server)) {
            return Err(Denied::Server);
        }
        if let Some(allowed) = &self.actions {
            if !allowed.contains(&name) {
                return Err(Denied::NotInActions);
            }
        }
        if let Some(write) = self.write {
            match ACTION_CLASSES.iter().find(|(a, _)| *a == name) {
                Some((_, classes)) if !write.allows(ClassMask::parse(classes)) => return Err(Denied::WriteClass),
                Some(_) => {}
                None if FREE_ACTIONS.contains(&name.as_str()) => {}
                None if self.actions.is_some() => {}
                None if write != ClassMask::ALL => return Err(Denied::UnknownAction),
                None => {}
            }
        }
        if self.novar && (name == "setvar" || name == "set") {
            return Err(Denied::NoVar);
        }
        if !self.channel.is_empty() {
            if let Some(channel) = action.get("Channel") {
                if !starts_with_ignore_case(channel, &self.channel) {
                    return Err(Denied::Channel);
                }
            }
        }
        if !self.out_context.is_empty() {
            if let Some(context) = action.get("Context") {
                if context != self.out_context {
                    return Err(Denied::Context);
                }
            }
        }
        if !self.account_code.is_empty() && name == "originate" {
            action.set("Account", self.account_code.clone());
        }
        Ok(())
    }

    /// Whether a broadcast event may reach this user.
    pub fn allows_event(&self, event: &SharedEvent) -> bool {
        if let Some(read) = self.read {
            if !read.allows(event.classes()) {
                return false;
            }
        }
        if self.needs_no_headers() {
            return true;
        }
        // Decoded once for every rule below (events are kept as bytes only).
        let message = event.message();
        if !self.servers.is_empty() {
            let from = message.get_all("Server").last().unwrap_or_default();
            if !self.servers.iter().any(|s| s.eq_ignore_ascii_case(from)) {
                return false;
            }
        }
        let name = message.event().unwrap_or_default();
        if let Some(only) = self.only {
            if !only.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                return false;
            }
        }
        if self.novar && name.eq_ignore_ascii_case("VarSet") {
            return false;
        }
        if !self.channel.is_empty() {
            let channels: Vec<&str> = CHANNEL_HEADERS.iter().filter_map(|h| message.get(h)).collect();
            if channels.is_empty() {
                if !self.more_events {
                    return false;
                }
            } else if !channels.iter().all(|c| starts_with_ignore_case(c, &self.channel)) {
                return false;
            }
        }
        if !self.in_context.is_empty() {
            if let Some(context) = message.get("Context") {
                if context != self.in_context {
                    return false;
                }
            }
        }
        if !self.filters.is_empty() {
            let includes: Vec<&EventFilter> = self.filters.iter().filter(|f| !f.exclude).collect();
            if !includes.is_empty() && !includes.iter().any(|f| f.matches(&message, event)) {
                return false;
            }
            if self.filters.iter().any(|f| f.exclude && f.matches(&message, event)) {
                return false;
            }
        }
        true
    }

    /// Whether the user's read classes include `classes` (all, without a `read=`).
    pub fn reads(&self, classes: ClassMask) -> bool {
        self.read.is_none_or(|r| r.allows(classes))
    }

    /// Whether nothing but the read classes restricts events (no header needs reading).
    fn needs_no_headers(&self) -> bool {
        self.servers.is_empty()
            && self.only.is_none()
            && !self.novar
            && self.channel.is_empty()
            && self.in_context.is_empty()
            && self.filters.is_empty()
    }

    /// Whether the policy restricts nothing (the writer skips the checks).
    pub fn is_open(&self) -> bool {
        self.read.is_none() && self.needs_no_headers()
    }
}

fn starts_with_ignore_case(value: &str, prefix: &str) -> bool {
    value.len() >= prefix.len() && value.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

#[cfg(test)]
mod tests;
