//! The simulator as a program of its own (the `ami-sim` binary, and `ampbench sim`): it serves
//! on one address until killed, optionally sending a `UserEvent` at a steady pace, to try the
//! proxy without an Asterisk.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use astmanproxy_handlers::Message;

use crate::{AmiSim, SimOptions};

/// Serves on `listen` until the process is killed; every `events_ms` milliseconds (0: never) it
/// broadcasts a `UserEvent: SimTick` with a `Count`. `program` names the caller in the error
/// printed when `listen` cannot be bound (then it returns a failure at once).
pub async fn run(program: &str, listen: SocketAddr, events_ms: u64) -> ExitCode {
    let sim = match AmiSim::start_on(listen, SimOptions::default()).await {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("{program}: cannot listen on {listen}: {e} (choose another address with --listen)");
            return ExitCode::FAILURE;
        }
    };
    println!("AMI simulator listening on {} (user admin, secret adminpass); Ctrl-C stops it", sim.addr());
    let mut n = 0u64;
    loop {
        if events_ms == 0 {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(Duration::from_millis(events_ms)).await;
        n += 1;
        sim.emit(
            Message::new()
                .with("Event", "UserEvent")
                .with("Privilege", "user,all")
                .with("UserEvent", "SimTick")
                .with("Count", n.to_string()),
        );
    }
}
