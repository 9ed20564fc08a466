//! The `ami-sim` binary: the AMI simulator on one address until killed (a dev tool: it answers
//! like Asterisk 22 from the recorded captures, as `admin`/`adminpass`).

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;

/// ami-sim: an AMI server that answers like Asterisk 22.10.1 (login admin, secret adminpass),
/// to try astmanproxy without an Asterisk.
#[derive(Debug, Parser)]
#[command(name = "ami-sim", version)]
struct Args {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:5038")]
    listen: SocketAddr,
    /// Milliseconds between generated `UserEvent`s (0: none).
    #[arg(long, default_value_t = 0)]
    events: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    ami_sim::standalone::run("ami-sim", args.listen, args.events).await
}
