//! The command line of the collector (`astmanproxy-collector`) and the function that runs it.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{serve, tls_config, Collector, CollectorConfig, CollectorError, Limits};
use astmanproxy_beacon_wire::clock::SystemClock;

/// astmanproxy-collector: the Beacon collector, the HTTPS REST API that Beacon reporters post to
/// (docs/beacon-collector.md).
#[derive(Debug, clap::Parser)]
#[command(name = "astmanproxy-collector", version)]
pub struct Cli {
    /// More logging (repeatable: -d debug, -dd trace). `RUST_LOG` overrides.
    #[arg(short = 'd', long = "debug", action = clap::ArgAction::Count)]
    pub debug: u8,
    /// Log in JSON lines (for log collectors) instead of text.
    #[arg(long = "log-json")]
    pub log_json: bool,
    /// What to serve, and within which limits.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// The serving flags of `astmanproxy-collector` (defaults in `docs/beacon-collector.md`).
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port; the bound address is logged).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// SQLite database file (created if missing).
    #[arg(long, value_name = "FILE")]
    pub db: PathBuf,
    /// Certificate chain (PEM).
    #[arg(long = "tls-cert", value_name = "PEM")]
    pub tls_cert: PathBuf,
    /// Private key (PEM).
    #[arg(long = "tls-key", value_name = "PEM")]
    pub tls_key: PathBuf,
    /// Registrations (POST /servers) per hour and client address (0: unlimited).
    #[arg(long, value_name = "N", default_value_t = CollectorConfig::default().register_per_hour)]
    pub register_per_hour: u32,
    /// Updates (PUT /servers/{id}) per hour and client address (0: unlimited).
    #[arg(long, value_name = "N", default_value_t = CollectorConfig::default().update_per_hour)]
    pub update_per_hour: u32,
    /// GET /stats requests per hour and client address (0: unlimited).
    #[arg(long, value_name = "N", default_value_t = CollectorConfig::default().stats_per_hour)]
    pub stats_per_hour: u32,
    /// Largest request body in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = CollectorConfig::default().max_body)]
    pub max_body: usize,
    /// Most modules in one report.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_modules)]
    pub max_modules: usize,
    /// Longest string field of a report, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_string)]
    pub max_string: usize,
    /// /stats groups with fewer servers are folded into "other".
    #[arg(long, value_name = "N", default_value_t = CollectorConfig::default().min_group)]
    pub min_group: u64,
    /// Seconds a /stats answer is reused for the same window (0: never).
    #[arg(long, value_name = "SECS", default_value_t = CollectorConfig::default().stats_cache.as_secs())]
    pub stats_cache_secs: u64,
    /// Largest /stats window in days.
    #[arg(long, value_name = "DAYS", default_value_t = CollectorConfig::default().max_stats_days)]
    pub max_stats_days: u32,
    /// Connections served at once.
    #[arg(long, value_name = "N", default_value_t = CollectorConfig::default().max_connections)]
    pub max_connections: usize,
    /// Connections served at once per client address (0: no limit).
    #[arg(long, value_name = "N", default_value_t = CollectorConfig::default().max_connections_per_address)]
    pub max_connections_per_address: usize,
    /// Seconds for a TLS handshake, for a request's headers and again its body, and for a stalled
    /// answer.
    #[arg(long, value_name = "SECS", default_value_t = CollectorConfig::default().request_timeout.as_secs())]
    pub request_timeout: u64,
    /// Connections the kernel may hold before the collector accepts them (capped by
    /// `net.core.somaxconn`).
    #[arg(long, value_name = "N", default_value_t = astmanproxy_net::listen::DEFAULT_BACKLOG,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(astmanproxy_net::listen::MAX_BACKLOG)))]
    pub listen_backlog: u32,
}

impl ServeArgs {
    /// The collector configuration these flags describe.
    pub fn config(&self) -> CollectorConfig {
        let timeout = Duration::from_secs(self.request_timeout.max(1));
        CollectorConfig {
            db: self.db.clone(),
            max_body: self.max_body,
            limits: Limits { max_modules: self.max_modules, max_string: self.max_string },
            register_per_hour: self.register_per_hour,
            update_per_hour: self.update_per_hour,
            stats_per_hour: self.stats_per_hour,
            min_group: self.min_group,
            stats_cache: Duration::from_secs(self.stats_cache_secs),
            max_stats_days: self.max_stats_days.max(1),
            max_connections: self.max_connections.max(1),
            max_connections_per_address: self.max_connections_per_address,
            handshake_timeout: timeout,
            request_timeout: timeout,
            ..CollectorConfig::default()
        }
    }
}

/// Loads the certificate, opens the database, binds, logs `beacon collector listening on ADDR`
/// and serves until `shutdown`.
///
/// # Errors
/// Unusable certificate or key, database, or listen address.
pub async fn run(args: &ServeArgs, shutdown: impl Future<Output = ()>) -> Result<(), CollectorError> {
    let tls = tls_config(&args.tls_cert, &args.tls_key)?;
    let collector = Collector::open(args.config(), Arc::new(SystemClock))?;
    let listener = astmanproxy_net::listen::bind(args.listen, args.listen_backlog)
        .map_err(|source| CollectorError::Bind { addr: args.listen, source })?;
    let bound = listener.local_addr().map_err(|source| CollectorError::Bind { addr: args.listen, source })?;
    // The address ends the line, so that scripts (and tests) can read it after "listening on ".
    tracing::info!("beacon collector (database {}) listening on {bound}", args.db.display());
    serve(collector, listener, tls, shutdown).await
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn parse(extra: &[&str]) -> Result<ServeArgs, clap::Error> {
        let base = ["x", "--db", "b.db", "--tls-cert", "c.pem", "--tls-key", "k.pem"];
        Wrapper::try_parse_from(base.iter().chain(extra)).map(|w| w.args)
    }

    #[test]
    fn flag_defaults_are_the_config_defaults() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.listen, "0.0.0.0:8443".parse().unwrap());
        assert_eq!(args.listen_backlog, 4096);
        let expected = CollectorConfig {
            db: "b.db".into(),
            handshake_timeout: CollectorConfig::default().request_timeout,
            ..CollectorConfig::default()
        };
        assert_eq!(args.config(), expected);
    }

    #[test]
    fn flags_set_every_limit() {
        let args = parse(&[
            "--listen",
            "127.0.0.1:0",
            "--register-per-hour",
            "1",
            "--update-per-hour",
            "2",
            "--stats-per-hour",
            "0",
            "--max-body",
            "100",
            "--max-modules",
            "3",
            "--max-string",
            "4",
            "--min-group",
            "5",
            "--stats-cache-secs",
            "0",
            "--max-stats-days",
            "7",
            "--max-connections",
            "8",
            "--max-connections-per-address",
            "6",
            "--request-timeout",
            "9",
        ])
        .unwrap();
        let c = args.config();
        assert_eq!((c.register_per_hour, c.update_per_hour, c.stats_per_hour), (1, 2, 0));
        assert_eq!((c.max_body, c.limits, c.min_group), (100, Limits { max_modules: 3, max_string: 4 }, 5));
        assert_eq!((c.stats_cache, c.max_stats_days, c.max_connections), (Duration::ZERO, 7, 8));
        assert_eq!(c.max_connections_per_address, 6);
        assert_eq!((c.request_timeout, c.handshake_timeout), (Duration::from_secs(9), Duration::from_secs(9)));
        assert!(parse(&["--register-per-hour", "-1"]).is_err());
        assert_eq!(parse(&["--listen-backlog", "16"]).unwrap().listen_backlog, 16);
        assert!(parse(&["--listen-backlog", "0"]).is_err(), "a backlog of 0 is refused");
        assert!(Wrapper::try_parse_from(["x", "--db", "b.db"]).is_err(), "certificate and key are required");
    }
}
