//! Dropping root privileges after the listeners are bound (`proc_user`, `proc_group`).
//!
//! Started as root with `proc_user` set, the proxy switches to that user (and `proc_group`, or
//! the user's primary group) once its ports are bound, so it can listen on a low port without
//! keeping root. Started as another user, the keys are ignored with a warning (1.x refused to
//! start instead).

use nix::unistd::{setgid, setgroups, setuid, Group, User};

/// Why privileges could not be dropped.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// No such user or group.
    #[error("proc_user/proc_group: no such {kind} {name:?}")]
    Unknown {
        /// `user` or `group`.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// The system refused.
    #[error("cannot switch to {what}: {source}")]
    Switch {
        /// What was being set.
        what: String,
        /// The system error.
        #[source]
        source: nix::Error,
    },
}

/// Switches to `user` (and `group`) when running as root; a no-op otherwise.
///
/// # Errors
/// An unknown user or group, or a refused switch: the proxy must not go on as root by mistake.
pub fn drop_to(user: Option<&str>, group: Option<&str>) -> Result<(), PrivilegeError> {
    if user.is_none() && group.is_none() {
        return Ok(());
    }
    if !nix::unistd::geteuid().is_root() {
        tracing::warn!("proc_user/proc_group set but not running as root; keeping the current user");
        return Ok(());
    }
    let unknown = |kind, name: &str| PrivilegeError::Unknown { kind, name: name.to_string() };
    let switch = |what: String| move |source| PrivilegeError::Switch { what, source };
    let user = match user {
        Some(name) => Some(User::from_name(name).ok().flatten().ok_or_else(|| unknown("user", name))?),
        None => None,
    };
    let gid = match group {
        Some(name) => Some(Group::from_name(name).ok().flatten().ok_or_else(|| unknown("group", name))?.gid),
        None => user.as_ref().map(|u| u.gid),
    };
    if let Some(gid) = gid {
        setgroups(&[gid]).map_err(switch(format!("group {gid}")))?;
        setgid(gid).map_err(switch(format!("group {gid}")))?;
    }
    if let Some(user) = user {
        setuid(user.uid).map_err(switch(format!("user {}", user.name)))?;
        tracing::info!(user = %user.name, "dropped root privileges");
    }
    Ok(())
}
