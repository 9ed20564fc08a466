//! Listening sockets with a deep backlog (`listenbacklog`).
//!
//! When many clients connect at once (a proxy restart makes every panel reconnect), the kernel
//! completes their handshakes before the accept loop takes them; past the backlog, a handshake
//! can complete on the client's side only and that client waits for a banner forever. Every
//! listener of the proxy, the HTTP front, the admin endpoints and the Beacon collector is made
//! here, with the configured backlog instead of the library default of 128.

use std::io;
use std::net::SocketAddr;
use std::sync::Once;

use tokio::net::{TcpListener, TcpSocket};

/// Default `listenbacklog`: connections the kernel may hold for a listener before it accepts them.
pub const DEFAULT_BACKLOG: u32 = 4096;

/// Largest accepted backlog (`listen(2)` takes an `int`).
pub const MAX_BACKLOG: u32 = i32::MAX as u32;

/// Where Linux keeps its cap of every listen backlog.
const SOMAXCONN: &str = "/proc/sys/net/core/somaxconn";

/// Binds `addr` with `SO_REUSEADDR` (a restarted proxy can bind again at once) and listens with
/// `backlog`. The first call in a process whose backlog is above the kernel's cap logs a warning.
///
/// # Errors
/// The socket cannot be created or bound (address in use, no permission).
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    warn_once_if_capped(backlog);
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog.clamp(1, MAX_BACKLOG))
}

/// The backlog the kernel will really grant when `somaxconn` (the text of
/// `/proc/sys/net/core/somaxconn`) is lower than `backlog`; `None` when `backlog` is granted or
/// the text is not a number.
pub fn kernel_cap(somaxconn: &str, backlog: u32) -> Option<u32> {
    let cap: u32 = somaxconn.trim().parse().ok()?;
    (cap < backlog).then_some(cap)
}

fn warn_once_if_capped(backlog: u32) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let Ok(text) = std::fs::read_to_string(SOMAXCONN) else { return };
        if let Some(cap) = kernel_cap(&text, backlog) {
            tracing::warn!(
                "listenbacklog is {backlog} but the kernel caps every listen backlog at net.core.somaxconn = {cap}; \
                 connections past {cap} arriving at once may wait or fail. Raise it with \
                 `sysctl -w net.core.somaxconn={backlog}` (and in /etc/sysctl.d/ to keep it)"
            );
        }
    });
}

/// Raises this process's soft limit of open files to its hard limit (every client holds one, and
/// a shell's soft limit is often 1 024); returns the limit now in force.
pub fn raise_open_files_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(_) => soft,
        },
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_cap_is_reported_only_when_lower() {
        assert_eq!(kernel_cap("128\n", 4096), Some(128));
        assert_eq!(kernel_cap("4096\n", 4096), None);
        assert_eq!(kernel_cap("65535", 4096), None);
        assert_eq!(kernel_cap("garbage", 4096), None);
    }

    #[tokio::test]
    async fn binds_with_the_backlog_and_accepts() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), 4096).unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (_, peer) = listener.accept().await.unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
    }

    #[tokio::test]
    async fn rebinding_a_closed_port_works_at_once() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (server_side, _) = listener.accept().await.unwrap();
        // The server side closes first, so its end stays in TIME_WAIT.
        drop(server_side);
        drop(listener);
        drop(client);
        bind(addr, 16).unwrap();
    }
}
