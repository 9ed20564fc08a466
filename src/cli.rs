//! Command line, compatible with astmanproxy 1.x (`-c`, `-u`, `-f`, `-d`, `-g`, `-v`).

use std::path::PathBuf;

use clap::Parser;

/// Default configuration file of astmanproxy 1.x.
pub const DEFAULT_CONFIG: &str = "/etc/asterisk/astmanproxy.conf";
/// Default users file of astmanproxy 1.x.
pub const DEFAULT_USERS: &str = "/etc/asterisk/astmanproxy.users";

/// astmanproxy: a multiplexing proxy for the Asterisk Manager Interface.
#[derive(Debug, Parser)]
#[command(name = "astmanproxy", disable_version_flag = true)]
pub struct Cli {
    /// Configuration file (1.x `astmanproxy.conf` format).
    #[arg(short = 'c', long = "config", value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Users file (1.x `astmanproxy.users` format).
    #[arg(short = 'u', long = "users", value_name = "FILE", default_value = DEFAULT_USERS)]
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
    /// Print the version and exit.
    #[arg(short = 'v', long = "version")]
    pub version: bool,
    /// Check the configuration and users file, print the result, and exit.
    #[arg(long = "check-config")]
    pub check_config: bool,
}
