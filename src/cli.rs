//! Command line, compatible with astmanproxy 1.x (`-c`, `-u`, `-f`, `-d`, `-g`, `-v`).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Default configuration file of astmanproxy 1.x.
pub const DEFAULT_CONFIG: &str = "/etc/asterisk/astmanproxy.conf";
/// Default users file of astmanproxy 1.x.
pub const DEFAULT_USERS: &str = "/etc/asterisk/astmanproxy.users";

/// astmanproxy: a multiplexing proxy for the Asterisk Manager Interface.
#[derive(Debug, Parser)]
#[command(name = "astmanproxy", disable_version_flag = true)]
pub struct Cli {
    /// Configuration file (1.x `astmanproxy.conf` format).
    #[arg(short = 'c', long = "config", value_name = "FILE", default_value = DEFAULT_CONFIG, global = true)]
    pub config: PathBuf,
    /// Users file (1.x `astmanproxy.users` format).
    #[arg(short = 'u', long = "users", value_name = "FILE", default_value = DEFAULT_USERS, global = true)]
    pub users: PathBuf,
    /// Stay in the foreground (accepted for 1.x compatibility: the proxy never daemonizes;
    /// run it under systemd or another supervisor).
    #[arg(short = 'f', long = "foreground")]
    pub foreground: bool,
    /// More logging (repeatable: -d debug, -dd trace). `RUST_LOG` overrides.
    #[arg(short = 'd', long = "debug", action = clap::ArgAction::Count)]
    pub debug: u8,
    /// Log in JSON lines (for log collectors) instead of text.
    #[arg(long = "log-json")]
    pub log_json: bool,
    /// Accepted for 1.x compatibility (core dumps are the system's business).
    #[arg(short = 'g', hide = true)]
    pub core_dumps: bool,
    /// Print the version and exit (`-v` as in 1.x, or `-V`).
    #[arg(short = 'v', short_alias = 'V', long = "version")]
    pub version: bool,
    /// Check everything start-up would (files, TLS certificate and key, proc_user/proc_group,
    /// listener addresses, unknown keys), print the result, and exit: 0 when all is well, 2 with
    /// `file:line` messages otherwise. Creates no file.
    #[arg(short = 't', long = "check-config")]
    pub check_config: bool,
    /// Beacon dev mode: the public Beacon server is refused (a configuration error) and never
    /// contacted. Also `ASTMANPROXY_BEACON_DEV=1`; always on in debug builds.
    #[arg(long = "beacon-dev")]
    pub beacon_dev: bool,
    /// Tools that talk to a running proxy (without one: run the proxy).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Beacon usage data.
    Beacon {
        /// What to do.
        #[command(subcommand)]
        what: BeaconCommand,
    },
}

/// `beacon ...`
#[derive(Debug, Subcommand)]
pub enum BeaconCommand {
    /// Show Beacon data.
    Show {
        /// What to show.
        #[command(subcommand)]
        what: BeaconShow,
    },
    /// Moved: the Beacon collector is its own program, `astmanproxy-collector` (same flags).
    /// Kept, hidden, to say so to whoever still runs `astmanproxy beacon serve`.
    #[command(hide = true, disable_help_flag = true)]
    Serve {
        /// The flags meant for the collector (ignored).
        #[arg(num_args = 0.., trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

/// `beacon show ...`
#[derive(Debug, Subcommand)]
pub enum BeaconShow {
    /// The data of every server (or one) of a running proxy, in the res_beacon layout.
    Server {
        /// Only this server.
        #[arg(long)]
        server: Option<String>,
        /// The proxy's address (default: listenaddress and listenport of the configuration).
        #[arg(long)]
        proxy: Option<std::net::SocketAddr>,
        /// A user of the users file (default: $ASTMANPROXY_USER).
        #[arg(long)]
        user: Option<String>,
        /// Its secret (default: $ASTMANPROXY_SECRET; avoid passing secrets on the command line).
        #[arg(long)]
        secret: Option<String>,
    },
    /// The Beacon reporting configuration, read from the configuration files (`-c` and its
    /// `beaconconfig`), as the proxy reads them at start.
    Configuration,
}
