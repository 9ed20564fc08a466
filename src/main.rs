//! The `astmanproxy` binary: parse the command line, load the configuration, bind, run.

use std::process::ExitCode;

use astmanproxy::beacon::report::BeaconConfig;
use astmanproxy::cli::{BeaconCommand, BeaconShow, Cli, Command};
use astmanproxy::config::{Config, Users};
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// mimalloc: events are allocated on the upstream task's thread and freed on client threads;
/// glibc malloc serialises those cross-thread frees on an arena lock (measured: over 40% of CPU
/// in malloc/free under fan-out load), mimalloc does not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.version {
        println!("astmanproxy {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let beacon_dev = astmanproxy::beacon::report::dev_mode(cli.beacon_dev);
    if let Some(Command::Beacon { what: BeaconCommand::Serve { .. } }) = &cli.command {
        return beacon_serve_moved();
    }
    if let Some(Command::Beacon { what: BeaconCommand::Show { what } }) = &cli.command {
        return beacon_show(what, &cli.config, beacon_dev).await;
    }
    if cli.check_config {
        return check_config(&cli, beacon_dev);
    }
    let loaded = Config::load(&cli.config)
        .and_then(|(config, warnings)| BeaconConfig::for_proxy(&config, beacon_dev).map(|b| (config, warnings, b)));
    let (mut config, mut warnings, (beacon, beacon_warnings)) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("astmanproxy: {e}");
            return ExitCode::from(2);
        }
    };
    warnings.extend(beacon_warnings);
    let beacon = astmanproxy::beacon::Setup { config: beacon, ..Default::default() };
    if let Err(e) = init_tracing(&cli, config.log_file.as_deref()) {
        eprintln!("astmanproxy: cannot open log file {e}");
        return ExitCode::from(2);
    }
    // With `logfile` set, a start-up error goes to the terminal (or the journal) too.
    let log_to_file = config.log_file.is_some();
    let fail = |message: &dyn std::fmt::Display, code: u8| {
        tracing::error!("{message}");
        if log_to_file {
            eprintln!("astmanproxy: {message}");
        }
        ExitCode::from(code)
    };
    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    let open_files = astmanproxy::listen::raise_open_files_limit();
    if open_files < config.max_clients as u64 + 256 {
        tracing::warn!(
            open_files,
            maxclients = config.max_clients,
            "the open-files limit (ulimit -n, LimitNOFILE) is below maxclients: clients past it are refused"
        );
    }
    config.sources = Some((cli.config.clone(), cli.users.clone()));
    match Users::load(&cli.users) {
        Ok(users) => config.users = users,
        Err(e) if config.auth_required => return fail(&e, 2),
        Err(e) => tracing::warn!("{e}; continuing because authrequired = no"),
    }
    let listeners = match astmanproxy::Listeners::bind(&config).await {
        Ok(l) => l,
        Err(e) => return fail(&e, 1),
    };
    if let Ok(bound) = listeners.ami.local_addr() {
        tracing::info!("astmanproxy {} listening on {bound}", env!("CARGO_PKG_VERSION"));
    }
    // The certificate, key and CA file are read while still root: files readable only by root work.
    let acceptor = match astmanproxy::tls::client_acceptor(&config.tls) {
        Ok(acceptor) => acceptor,
        Err(e) => return fail(&e, 1),
    };
    if let Err(e) = astmanproxy::tls::preload_ca_file(&config.tls) {
        return fail(&e, 1);
    }
    if let Err(e) = astmanproxy::privileges::drop_to(config.proc_user.as_deref(), config.proc_group.as_deref()) {
        return fail(&e, 1);
    }
    match astmanproxy::server::serve_with_acceptor(config, beacon, listeners, acceptor, astmanproxy::shutdown::signal())
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e, 1),
    }
}

/// `--check-config`: every check start-up makes, printed; creates no file.
fn check_config(cli: &Cli, beacon_dev: bool) -> ExitCode {
    let mut report = astmanproxy::check::check(&cli.config, &cli.users);
    // beacon.conf, as start-up reads it.
    let beacon = match report.config.as_ref().map(|c| BeaconConfig::for_proxy(c, beacon_dev)) {
        Some(Ok((beacon, warnings))) => {
            for warning in warnings {
                if warning.is_unknown_key() {
                    report.errors.push(warning.to_string());
                } else {
                    report.warnings.push(warning.to_string());
                }
            }
            Some(beacon)
        }
        Some(Err(e)) => {
            report.errors.push(e.to_string());
            None
        }
        None => None,
    };
    for warning in &report.warnings {
        eprintln!("astmanproxy: warning: {warning}");
    }
    for error in &report.errors {
        eprintln!("astmanproxy: {error}");
    }
    let Some(config) = report.config.as_ref().filter(|_| report.ok()) else {
        eprintln!("astmanproxy: {}: configuration NOT OK", cli.config.display());
        return ExitCode::from(2);
    };
    println!("{}: OK ({} servers, {} users)", cli.config.display(), config.servers.len(), config.users.len());
    let beacon = beacon.unwrap_or_default();
    match (&beacon.source, beacon.sending()) {
        (Some(file), true) => {
            println!("{}: OK (Beacon reporting ON, {} targets)", file.display(), beacon.targets.len())
        }
        (Some(file), false) => println!("{}: OK (Beacon reporting off)", file.display()),
        (None, _) => println!("no Beacon file: Beacon reporting off"),
    }
    ExitCode::SUCCESS
}

/// Logging to stderr, or to `log_file` (reopened on SIGHUP).
fn init_tracing(cli: &Cli, log_file: Option<&std::path::Path>) -> std::io::Result<()> {
    let default = match cli.debug {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let file = match log_file {
        Some(path) => Some(astmanproxy::logfile::LogFile::open(path)?),
        None => None,
    };
    if let Some(file) = &file {
        file.install();
    }
    use std::io::IsTerminal;
    let ansi = file.is_none() && std::io::stderr().is_terminal();
    match (file, cli.log_json) {
        (Some(f), true) => builder.json().with_writer(move || f.clone()).init(),
        (Some(f), false) => builder.with_ansi(false).with_writer(move || f.clone()).init(),
        (None, true) => builder.json().with_writer(std::io::stderr).init(),
        (None, false) => builder.with_ansi(ansi).with_writer(std::io::stderr).init(),
    }
    Ok(())
}

/// `astmanproxy beacon serve ...`: the collector is `astmanproxy-collector` now (it brings SQLite
/// and its rate limiter, which the proxy does not need); this says so and fails.
fn beacon_serve_moved() -> ExitCode {
    eprintln!(
        "astmanproxy: the Beacon collector is its own program now: run `astmanproxy-collector` \
         with the same flags (`astmanproxy-collector --help`, docs/beacon-collector.md)"
    );
    ExitCode::from(2)
}

/// `astmanproxy beacon show ...`: the configuration from the files, or the server data from the
/// running proxy.
async fn beacon_show(what: &BeaconShow, config_path: &std::path::Path, beacon_dev: bool) -> ExitCode {
    match what {
        BeaconShow::Configuration => {
            match Config::load(config_path).and_then(|(c, _)| BeaconConfig::for_proxy(&c, beacon_dev)) {
                Ok((beacon, _)) => {
                    print!("{}", beacon.render());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("astmanproxy: {e}");
                    ExitCode::from(2)
                }
            }
        }
        BeaconShow::Server { server, proxy, user, secret } => {
            // The configuration only supplies defaults (the proxy's address) here.
            let config = Config::load(config_path).map(|(c, _)| c).unwrap_or_default();
            let host = if config.listen_address.is_unspecified() {
                std::net::IpAddr::from([127, 0, 0, 1])
            } else {
                config.listen_address
            };
            let addr = proxy.unwrap_or(std::net::SocketAddr::new(host, config.listen_port));
            let user = user.clone().or_else(|| std::env::var("ASTMANPROXY_USER").ok()).unwrap_or_default();
            let secret = secret.clone().or_else(|| std::env::var("ASTMANPROXY_SECRET").ok()).unwrap_or_default();
            match astmanproxy::beacon::show::show_server(addr, &user, &secret, server.as_deref()).await {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("astmanproxy: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
