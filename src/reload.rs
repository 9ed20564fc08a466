//! Reloading the configuration and users file (SIGHUP), without a restart.
//!
//! The users are swapped whole; clients logged in as a user that is gone are told and closed.
//! `host =` lines are diffed against the ones applied before: removed servers are dropped
//! (logged off, their pending actions answered), added ones started, changed ones restarted;
//! the others are not touched, and neither are servers added with `ProxyAction: AddServer`.
//! Other settings (listeners, limits, timeouts) take effect at the next start; a reload that
//! changes them says so. A file with an error is rejected and the running configuration kept.

use std::path::Path;

use astmanproxy_handlers::Message;

use crate::config::{Config, ConfigError, Users};
use crate::hub::{Hub, Origin};
use crate::route::ToClient;

/// What a reload changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Servers started.
    pub added: Vec<String>,
    /// Servers dropped.
    pub removed: Vec<String>,
    /// Servers restarted with new settings.
    pub changed: Vec<String>,
    /// Clients closed because their user is gone.
    pub closed_clients: usize,
    /// Users before and after the reload.
    pub users: (usize, usize),
    /// Listener, TLS or limit settings changed (they take effect at the next restart).
    pub needs_restart: bool,
}

/// One line: `users 3 -> 4; servers added pbx2, removed pbx3, restarted none`.
impl std::fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |names: &[String]| if names.is_empty() { "none".to_string() } else { names.join(", ") };
        write!(
            f,
            "users {} -> {}; servers added {}, removed {}, restarted {}",
            self.users.0,
            self.users.1,
            list(&self.added),
            list(&self.removed),
            list(&self.changed)
        )?;
        if self.closed_clients > 0 {
            write!(f, "; {} clients closed (user removed)", self.closed_clients)?;
        }
        if self.needs_restart {
            write!(f, "; listener, TLS or limit changes wait for a restart")?;
        }
        Ok(())
    }
}

/// Re-reads both files and applies them.
///
/// # Errors
/// Either file is unreadable or invalid; nothing is changed then.
pub fn reload_files(hub: &Hub, config_path: &Path, users_path: &Path) -> Result<ReloadReport, ConfigError> {
    let (config, warnings) = Config::load(config_path)?;
    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    let users = Users::load(users_path)?;
    Ok(apply(hub, &config, users))
}

/// Applies a validated configuration and users to the running proxy.
pub fn apply(hub: &Hub, config: &Config, users: Users) -> ReloadReport {
    let mut report = ReloadReport { users: (hub.users().len(), users.len()), ..ReloadReport::default() };
    for (_, client) in hub.clients() {
        if let Some(user) = &client.user {
            if users.get(user).is_none() {
                let notice = Message::new()
                    .with("Event", "ProxySessionClosed")
                    .with("Privilege", "system,all")
                    .with("Message", "User removed by a configuration reload");
                client.sink.send_message(notice);
                client.sink.send(ToClient::Close);
                report.closed_clients += 1;
            }
        }
    }
    hub.set_users(users);

    let before = hub.file_servers();
    for old in &before {
        match config.servers.iter().find(|s| s.name.eq_ignore_ascii_case(&old.name)) {
            None => {
                hub.drop_server(&old.name);
                report.removed.push(old.name.clone());
            }
            Some(new) if new != old => {
                hub.drop_server(&old.name);
                if let Err(e) = hub.spawn_server(new.clone(), Origin::File) {
                    tracing::error!(server = %new.name, "cannot restart server: {e}");
                }
                report.changed.push(new.name.clone());
            }
            Some(_) => {}
        }
    }
    for new in &config.servers {
        if !before.iter().any(|o| o.name.eq_ignore_ascii_case(&new.name)) {
            match hub.spawn_server(new.clone(), Origin::File) {
                Ok(_) => report.added.push(new.name.clone()),
                Err(e) => tracing::error!(server = %new.name, "cannot add server: {e}"),
            }
        }
    }
    let running = hub.config();
    if running.listen_address != config.listen_address
        || running.listen_port != config.listen_port
        || running.limits != config.limits
        || running.admin_listen != config.admin_listen
        || running.tls != config.tls
    {
        tracing::warn!("listener, TLS and limit settings changed; they take effect at the next restart");
        report.needs_restart = true;
    }
    tracing::info!("reload: {report}");
    report
}

/// Reloads on every SIGHUP until the process ends.
#[cfg(unix)]
pub async fn on_sighup(hub: Hub, config_path: std::path::PathBuf, users_path: std::path::PathBuf) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::error!("cannot listen for SIGHUP; reload disabled");
        return;
    };
    while hup.recv().await.is_some() {
        // logrotate moved the file away: write to a new one at the same path from now on.
        match crate::logfile::reopen() {
            Ok(Some(path)) => tracing::info!("SIGHUP: reopened log file {}", path.display()),
            Ok(None) => {}
            Err(e) => tracing::error!("SIGHUP: cannot reopen the log file, still writing to the old one: {e}"),
        }
        tracing::info!("SIGHUP: reloading {} and {}", config_path.display(), users_path.display());
        if let Err(e) = reload_files(&hub, &config_path, &users_path) {
            tracing::error!("reload rejected, keeping the running configuration: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{apply, ReloadReport};
    use crate::config::{Config, Secret, ServerConfig, Users};
    use crate::hub::{Hub, Origin};

    fn server(name: &str, port: u16) -> ServerConfig {
        ServerConfig {
            name: name.to_string(),
            host: "127.0.0.1".to_string(),
            port,
            username: "admin".to_string(),
            secret: Secret::new("pw"),
            events: "on".to_string(),
            use_ssl: false,
        }
    }

    /// The live registry is the one list of servers: a reload diffs the file against the live
    /// file servers; one dropped at run time comes back (the file still names it), one added at
    /// run time is left alone.
    #[tokio::test]
    async fn a_reload_diffs_the_file_against_the_live_file_servers() {
        // A port nothing listens on: the sessions only retry, on loopback.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = Config { servers: vec![server("a", port), server("b", port)], ..Config::default() };
        let hub = Hub::new(config.clone(), Users::default());
        for s in &config.servers {
            hub.spawn_server(s.clone(), Origin::File).unwrap();
        }
        hub.spawn_server(server("extra", port), Origin::AddServer).unwrap();
        assert!(hub.drop_server("b"));
        let report = apply(&hub, &config, Users::default());
        assert_eq!(report.added, vec!["b".to_string()]);
        assert!(report.removed.is_empty() && report.changed.is_empty(), "{report:?}");
        let names: Vec<String> = hub.servers().iter().map(|s| s.name().to_string()).collect();
        assert_eq!(names, ["a", "extra", "b"]);
        // A changed file server restarts; the run-time one is still not touched.
        let mut changed = config.clone();
        changed.servers[0].events = "off".to_string();
        let report = apply(&hub, &changed, Users::default());
        assert_eq!(report.changed, vec!["a".to_string()]);
        assert!(hub.server(Some("extra")).is_some());
        hub.stop_servers(tokio::time::Instant::now() + std::time::Duration::from_secs(5)).await;
    }

    #[test]
    fn the_summary_is_one_readable_line() {
        let report = ReloadReport {
            added: vec!["pbx2".into()],
            removed: vec!["pbx3".into()],
            users: (3, 4),
            ..ReloadReport::default()
        };
        assert_eq!(report.to_string(), "users 3 -> 4; servers added pbx2, removed pbx3, restarted none");
        let report = ReloadReport { changed: vec!["a".into(), "b".into()], closed_clients: 1, ..report };
        assert_eq!(
            report.to_string(),
            "users 3 -> 4; servers added pbx2, removed pbx3, restarted a, b; 1 clients closed (user removed)"
        );
    }
}
