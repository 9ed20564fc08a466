//! A program of the workspace (the proxy, the Beacon collector) started as a user would, with
//! its log read until it says where it listens. Also included by the collector crate's tests.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::WAIT;

/// A running program; its log lines are forwarded to `log`.
pub struct Binary {
    pub child: tokio::process::Child,
    pub addr: std::net::SocketAddr,
    pub log: tokio::sync::mpsc::UnboundedReceiver<String>,
}

/// Starts `exe` with `args` and `RUST_LOG` set to `rust_log` (`None`: unset) and waits for its
/// "listening on ADDR" line (the proxy's, or the Beacon collector's).
pub async fn start(exe: &str, args: &[&str], rust_log: Option<&str>) -> Binary {
    let mut command = Command::new(exe);
    match rust_log {
        Some(filter) => command.env("RUST_LOG", filter),
        None => command.env_remove("RUST_LOG"),
    };
    let mut child = command.args(args).stderr(Stdio::piped()).kill_on_drop(true).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("listening on ").nth(1) {
                return rest.trim().parse::<std::net::SocketAddr>().unwrap();
            }
        }
        panic!("the binary exited without listening");
    })
    .await
    .unwrap();
    // Keep draining its log so it never blocks on a full pipe.
    let (tx, log) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send(line);
        }
    });
    Binary { child, addr, log }
}
