//! Writes the man pages `astmanproxy.8` (and one per subcommand), `astmanproxy-collector.8`, and the
//! shell completions of `astmanproxy`, generated from their clap definitions, into a directory (default `target/assets`), for the Debian
//! package: `cargo run --release -p astmanproxy-gen-man -- target/assets` before `cargo deb`
//! (`conf/build-deb` does both). cargo-deb gzips the man page.

use std::path::PathBuf;
use std::process::ExitCode;

use astmanproxy::cli::Cli;
use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> ExitCode {
    let out = std::env::args_os().nth(1).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target/assets"));
    match generate(&out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen-man: {}: {e}", out.display());
            ExitCode::FAILURE
        }
    }
}

fn generate(out: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(out.join("completions"))?;
    let cmd = Cli::command()
        .version(env!("CARGO_PKG_VERSION"))
        .about("Multiplexing proxy for the Asterisk Manager Interface (AMI)")
        .after_help(
            "Files: /etc/asterisk/astmanproxy.conf, /etc/asterisk/astmanproxy.users, \
             /etc/asterisk/beacon.conf. Documentation: /usr/share/doc/astmanproxy/. \
             SIGHUP reloads the configuration and reopens the log file; SIGTERM stops the proxy \
             gracefully.",
        );
    std::fs::create_dir_all(out.join("man"))?;
    man_pages(&cmd, &out.join("man"))?;
    let collector = astmanproxy_collector::args::Cli::command()
        .after_help("Serves until SIGTERM or SIGINT. Documentation: /usr/share/doc/astmanproxy/beacon-collector.md.");
    man_pages(&collector, &out.join("man"))?;
    for (shell, file) in [(Shell::Bash, "astmanproxy"), (Shell::Zsh, "_astmanproxy"), (Shell::Fish, "astmanproxy.fish")]
    {
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), "astmanproxy", &mut text);
        std::fs::write(out.join("completions").join(file), text)?;
    }
    Ok(())
}

/// `astmanproxy.8`, and `astmanproxy-beacon.8` and so on for the subcommands it refers to.
fn man_pages(cmd: &clap::Command, dir: &std::path::Path) -> std::io::Result<()> {
    let name = cmd.get_name().to_string();
    // `help` subcommands would refer to pages that do not exist (`--help` is listed).
    let cmd = cmd.clone().disable_help_subcommand(true);
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).section("8").manual("System Administration").render(&mut page)?;
    std::fs::write(dir.join(format!("{name}.8")), page)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        // clap names are &'static without its `string` feature; this runs once and exits.
        let full: &'static str = format!("{name}-{}", sub.get_name()).leak();
        let sub = sub.clone().name(full).version(env!("CARGO_PKG_VERSION"));
        man_pages(&sub, dir)?;
    }
    Ok(())
}
