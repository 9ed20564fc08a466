//! `--check-config`: everything start-up would check, without starting and without creating a
//! file: both files, unknown keys (with a "did you mean"), the TLS files (certificate and key
//! parse and match), `tlscafile`, `proc_user`/`proc_group`, `logfile`, the listeners' ports.

use std::path::Path;

use crate::config::raw::parse_lines;
use crate::config::{Config, Users};

/// What `--check-config` found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// The configuration, when it loaded.
    pub config: Option<Config>,
    /// Problems that would stop the proxy (or, for unknown keys, that are almost certainly a
    /// mistake), each naming the file and line.
    pub errors: Vec<String>,
    /// Things worth a look that do not stop the proxy.
    pub warnings: Vec<String>,
}

impl CheckReport {
    /// No errors.
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Checks the configuration at `config_path` and the users at `users_path`.
pub fn check(config_path: &Path, users_path: &Path) -> CheckReport {
    let mut report = CheckReport::default();
    let (mut config, warnings) = match Config::load(config_path) {
        Ok(loaded) => loaded,
        Err(e) => {
            report.errors.push(e.to_string());
            return report;
        }
    };
    for warning in warnings {
        if warning.is_unknown_key() {
            report.errors.push(warning.to_string());
        } else {
            report.warnings.push(warning.to_string());
        }
    }
    match Users::load(users_path) {
        Ok(users) => config.users = users,
        Err(e) if config.auth_required => report.errors.push(e.to_string()),
        Err(e) => report.warnings.push(format!("{e}; the proxy would go on because authrequired = no")),
    }
    let text = std::fs::read_to_string(config_path).unwrap_or_default();
    // The line of the last `key =` (the one that counts), for messages about the key's value.
    let at = |key: &str| -> String {
        let line = parse_lines(&text).ok().and_then(|l| l.iter().rev().find(|r| r.key == key).map(|r| r.line));
        match line {
            Some(line) => format!("{}:{line}: {key}", config_path.display()),
            None => format!("{}: {key}", config_path.display()),
        }
    };
    for error in crate::tls::check(&config.tls) {
        let key = match &error {
            crate::tls::TlsError::Pem { path, .. } => {
                let tls = &config.tls;
                let is = |p: &Option<std::path::PathBuf>| p.as_ref().is_some_and(|p| p.display().to_string() == *path);
                if is(&tls.ca_file) {
                    "tlscafile"
                } else if is(&tls.key) {
                    "tlskey"
                } else if is(&tls.cert) {
                    "tlscert"
                } else {
                    "certfile"
                }
            }
            _ if config.tls.cert.is_some() => "tlscert",
            _ => "certfile",
        };
        report.errors.push(format!("{}: {error}", at(key)));
    }
    for (key, name, kind) in [("proc_user", &config.proc_user, "user"), ("proc_group", &config.proc_group, "group")] {
        let Some(name) = name else { continue };
        let exists = match kind {
            "user" => nix::unistd::User::from_name(name).map(|u| u.is_some()),
            _ => nix::unistd::Group::from_name(name).map(|g| g.is_some()),
        };
        match exists {
            Ok(true) => {}
            Ok(false) => report.errors.push(format!("{}: no such {kind} {name:?}", at(key))),
            Err(e) => report.errors.push(format!("{}: cannot look up {kind} {name:?}: {e}", at(key))),
        }
    }
    if let Some(log) = &config.log_file {
        if let Err(e) = check_log_file(log) {
            report.errors.push(format!("{}: {}: {e}", at("logfile"), log.display()));
        }
    }
    let mut ports: Vec<(&str, std::net::SocketAddr)> =
        vec![("listenport", std::net::SocketAddr::new(config.listen_address, config.listen_port))];
    for (key, port) in [("tlslistenport", config.tls.listen_port), ("httplistenport", config.http_listen_port)] {
        if let Some(port) = port {
            ports.push((key, std::net::SocketAddr::new(config.listen_address, port)));
        }
    }
    if let Some(addr) = config.admin_listen {
        ports.push(("adminlisten", addr));
    }
    for (i, (key, addr)) in ports.iter().enumerate() {
        let clash = ports[..i].iter().find(|(_, other)| {
            addr.port() != 0
                && other.port() == addr.port()
                && (other.ip() == addr.ip() || other.ip().is_unspecified() || addr.ip().is_unspecified())
        });
        if let Some((other, _)) = clash {
            report.errors.push(format!("{}: {addr} is already used by {other}", at(key)));
        }
    }
    report.config = Some(config);
    report
}

/// The log file can be appended to (it is not created: `--check-config` creates no file).
fn check_log_file(path: &Path) -> std::io::Result<()> {
    if path.exists() {
        return std::fs::OpenOptions::new().append(true).open(path).map(drop);
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("no directory {}", dir.display())));
    }
    if std::fs::metadata(dir)?.permissions().readonly() {
        return Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, "directory is read-only"));
    }
    Ok(())
}
