//! Writes the man page `astmanproxy.8` and the shell completions of `astmanproxy`, generated
//! from its clap definition, into a directory (default `target/assets`), for the Debian
//! package: `cargo run --release --bin gen-man -- target/assets` before `cargo deb`
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
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).section("8").manual("System Administration").render(&mut page)?;
    std::fs::write(out.join("astmanproxy.8"), page)?;
    for (shell, file) in [(Shell::Bash, "astmanproxy"), (Shell::Zsh, "_astmanproxy"), (Shell::Fish, "astmanproxy.fish")]
    {
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), "astmanproxy", &mut text);
        std::fs::write(out.join("completions").join(file), text)?;
    }
    Ok(())
}
