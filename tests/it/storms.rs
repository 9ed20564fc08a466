//! Connection storms: every client of a proxy restart reconnecting at once gets its banner.

use std::net::SocketAddr;

use astmanproxy_handlers::AmiDecoder;
use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::support::*;

/// Clients of the storm (each costs two descriptors in this process: client and proxy side).
const STORM: usize = 3000;

/// Raises the soft limit of open files to the hard limit; returns the soft limit now in force.
pub fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return 1024 };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return hard;
    }
    soft
}

/// Starts the proxy the way the binary does: its listeners bound by [`astmanproxy::Listeners::bind`]
/// from the configuration (so with `listenbacklog`), not by the test.
async fn spawn_bound(mut cfg: astmanproxy::config::Config) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    cfg.listen_address = "127.0.0.1".parse().unwrap();
    cfg.listen_port = 0;
    let listeners = astmanproxy::Listeners::bind(&cfg).await.unwrap();
    let addr = listeners.ami.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        astmanproxy::serve(cfg, listeners, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (addr, stop)
}

async fn banner(mut stream: TcpStream) -> String {
    let (mut buf, mut decoder) = (BytesMut::new(), AmiDecoder::default());
    loop {
        if let Some(line) = decoder.decode_line(&mut buf).unwrap() {
            return line;
        }
        let n = stream.read_buf(&mut buf).await.unwrap_or(0);
        assert!(n > 0, "connection closed before the banner");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_of_a_connection_storm_gets_its_banner() {
    let limit = raise_fd_limit();
    // Two descriptors per client, and room for the other tests of this binary.
    let n = STORM.min((limit.saturating_sub(1000) / 2) as usize);
    if n < 500 {
        eprintln!("SKIPPED: the open-files limit ({limit}) is too low for a connection storm; raise `ulimit -n`");
        return;
    }
    let sim = sim().await;
    let (addr, _stop) = spawn_bound(config(vec![server("pbx1", sim.addr())])).await;
    wait_ready(addr, None).await;
    // Every handshake at once, before any banner is read (a restart's reconnect storm).
    let connects: Vec<_> = (0..n).map(|_| tokio::spawn(TcpStream::connect(addr))).collect();
    let mut streams = Vec::with_capacity(n);
    for c in connects {
        streams.push(c.await.unwrap().expect("connect"));
    }
    let readers: Vec<_> = streams.into_iter().map(|s| tokio::spawn(banner(s))).collect();
    let got = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let all = {
        let got = got.clone();
        async move {
            for r in readers {
                let line = r.await.unwrap();
                assert!(line.starts_with("Asterisk Call Manager/"), "{line:?}");
                got.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    };
    // Not a speed bound: only so that clients that would wait forever fail the test instead of
    // hanging it (a banner normally comes in well under a second).
    if tokio::time::timeout(std::time::Duration::from_secs(90), all).await.is_err() {
        panic!(
            "only {} of {n} clients got a banner; the others wait forever (listen backlog too small?)",
            got.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
}
