//! `ampbench`: the benchmark tool of astmanproxy.
//!
//! It starts the AMI simulator in this process and the real `astmanproxy` binary (release build,
//! next to this one) as a child process on loopback, then measures:
//! - **fan-out**: events flooded by the simulator through the proxy to N logged-in clients:
//!   deliveries per second, and the proxy's CPU time per delivery (from `/proc/<pid>/stat`);
//!   the same flood read directly from the simulator by N clients, for comparison;
//! - **ping**: round-trip time of sequential `Ping` actions through the proxy and directly;
//! - **idle**: all clients connect at once (a reconnect storm): time until every one has its
//!   banner, then resident memory of the proxy per idle logged-in client (`/proc/<pid>/status`);
//! - **reconnect**: Asterisk restarts in a row, and an outage, until clients are served again;
//! - **hol**: Ping latency of 9 clients while a 10th runs slow actions (head-of-line blocking).
//!
//! Run: `cargo run --release --bin ampbench -- all` (see `docs/benchmarks.md`). Every address is
//! 127.0.0.1; every run is bounded in count and time.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use ami_sim::{AmiSim, SimOptions};
use astmanproxy_handlers::Message;
use clap::{Parser, Subcommand};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

mod burst;
mod harness;
mod hol;
mod web;
use harness::{cores, cpu_model, default_proxy_bin, percentiles, us, Client, Proxy};
use web::{http, ws_fanout};

/// Benchmarks astmanproxy on loopback.
#[derive(Debug, Parser)]
#[command(name = "ampbench")]
struct Args {
    /// What to measure.
    #[command(subcommand)]
    what: What,
    /// The proxy binary (default: `astmanproxy` next to this executable).
    #[arg(long, global = true)]
    proxy_bin: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum What {
    /// Event fan-out through the proxy and directly.
    Fanout {
        /// Client counts to measure.
        #[arg(long, value_delimiter = ',', default_value = "10")]
        clients: Vec<usize>,
        /// Events flooded per run.
        #[arg(long, default_value_t = 200_000)]
        events: usize,
        /// Output format of the clients (standard, xml, csv, json).
        #[arg(long, default_value = "standard")]
        format: String,
    },
    /// One burst of events to clients that keep reading, with and without one that never
    /// reads: loss, rate, largest gap, proxy memory growth (proxy and direct).
    Burst {
        /// Reading clients.
        #[arg(long, default_value_t = 10)]
        clients: usize,
        /// Events in the burst.
        #[arg(long, default_value_t = 200_000)]
        events: usize,
    },
    /// Ping round-trip time through the proxy and directly.
    Ping {
        /// Pings per run.
        #[arg(long, default_value_t = 20_000)]
        count: usize,
    },
    /// Memory per idle client.
    Idle {
        /// Client counts to measure.
        #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
        clients: Vec<usize>,
    },
    /// Time for the proxy to serve again after its Asterisk restarts, and after an outage.
    Reconnect {
        /// Restarts in a row to measure.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Seconds the simulator is away for the outage run (0: none).
        #[arg(long, default_value_t = 30)]
        outage: u64,
    },
    /// HTTP requests per second with keep-alive, on the AMI port: an AJAM session on
    /// `/rawman`, and one action per request with Basic on `/json`.
    Http {
        /// Requests per run.
        #[arg(long, default_value_t = 20_000)]
        requests: usize,
        /// Concurrent keep-alive connections.
        #[arg(long, value_delimiter = ',', default_value = "1,10")]
        connections: Vec<usize>,
    },
    /// Event fan-out to WebSocket clients (`/ws` on the AMI port, JSON frames).
    Ws {
        /// Client counts to measure.
        #[arg(long, value_delimiter = ',', default_value = "1,10")]
        clients: Vec<usize>,
        /// Events flooded per run.
        #[arg(long, default_value_t = 200_000)]
        events: usize,
    },
    /// Head-of-line blocking: Ping p50/p99 of 9 clients while a 10th runs slow actions, with
    /// `actionsessions = 1` and with the default.
    Hol {
        /// Pings per client per run.
        #[arg(long, default_value_t = 100)]
        pings: usize,
        /// How long each slow action takes in the simulator, ms.
        #[arg(long, default_value_t = 100)]
        slow_ms: u64,
    },
    /// Everything, with the default figures.
    All,
    /// Run only the AMI simulator (it answers like Asterisk 22 from the recorded captures, as
    /// `admin`/`adminpass`) until Ctrl-C, to try the proxy without an Asterisk. With `--events`,
    /// it also sends a `UserEvent` every that many milliseconds.
    Sim {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:5038")]
        listen: SocketAddr,
        /// Milliseconds between generated `UserEvent`s (0: none).
        #[arg(long, default_value_t = 0)]
        events: u64,
    },
    /// (internal) Run a plain TCP relay to ADDR in this process and print its address.
    #[command(hide = true)]
    Relay {
        /// Where to relay to.
        to: SocketAddr,
    },
}

const USER: &str = "bench";
const SECRET: &str = "benchpw";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if let What::Relay { to } = args.what {
        let addr = relay(to).await;
        println!("relay listening on {addr}");
        std::future::pending::<()>().await;
    }
    if let What::Sim { listen, events } = args.what {
        return ami_sim::standalone::run("ampbench sim", listen, events).await;
    }
    // Thousands of idle clients: this process and the proxy it starts (which inherits the limit)
    // each hold one descriptor per client.
    harness::raise_fd_limit();
    let bin = args.proxy_bin.clone().unwrap_or_else(default_proxy_bin);
    if let What::Hol { pings, slow_ms } = args.what {
        println!("machine: {} cores, {}", cores(), cpu_model());
        hol::hol(&bin, pings, Duration::from_millis(slow_ms)).await;
        return std::process::ExitCode::SUCCESS;
    }
    let sim = AmiSim::start(SimOptions::default()).await.expect("start the simulator");
    let proxy = Proxy::start(&bin, sim.addr()).await;
    println!("machine: {} cores, {}", cores(), cpu_model());
    println!("proxy: {} (pid {})", bin.display(), proxy.pid);
    match args.what {
        What::Fanout { clients, events, format } => {
            for n in clients {
                fanout(&sim, &proxy, n, events, &format).await;
            }
        }
        What::Ping { count } => ping(&sim, &proxy, count).await,
        What::Burst { clients, events } => {
            burst::burst(&sim, &proxy, clients, events).await;
            burst::memory_per_event(&sim, &bin, events).await;
        }
        What::Idle { clients } => {
            for n in clients {
                idle(&proxy, n).await;
            }
        }
        What::All => {
            // Idle memory first, before fan-out runs grow the allocator's pools.
            for n in [1000, 10_000] {
                idle(&proxy, n).await;
            }
            for n in [1, 10, 100] {
                fanout(&sim, &proxy, n, 200_000, "standard").await;
            }
            fanout(&sim, &proxy, 1000, 20_000, "standard").await;
            for format in ["xml", "json"] {
                fanout(&sim, &proxy, 10, 200_000, format).await;
            }
            burst::burst(&sim, &proxy, 10, 200_000).await;
            burst::memory_per_event(&sim, &bin, 200_000).await;
            ping(&sim, &proxy, 20_000).await;
            for c in [1, 10] {
                http(&proxy, 20_000, c).await;
            }
            for n in [1, 10] {
                ws_fanout(&sim, &proxy, n, 200_000).await;
            }
            let _back = reconnect(&sim, &proxy, 5, Duration::from_secs(30)).await;
        }
        What::Reconnect { rounds, outage } => {
            let _back = reconnect(&sim, &proxy, rounds, Duration::from_secs(outage)).await;
        }
        What::Ws { clients, events } => {
            for n in clients {
                ws_fanout(&sim, &proxy, n, events).await;
            }
        }
        What::Http { requests, connections } => {
            for c in connections {
                http(&proxy, requests, c).await;
            }
        }
        What::Relay { .. } | What::Sim { .. } | What::Hol { .. } => {}
    }
    drop(proxy);
    std::process::ExitCode::SUCCESS
}

pub(crate) fn bench_event() -> Message {
    // About the size of a real Newchannel event (~300 bytes).
    Message::new()
        .with("Event", "BenchEvent")
        .with("Privilege", "call,all")
        .with("Channel", "PJSIP/1001-00000001")
        .with("ChannelState", "4")
        .with("ChannelStateDesc", "Ring")
        .with("CallerIDNum", "1001")
        .with("CallerIDName", "Bench Caller")
        .with("ConnectedLineNum", "<unknown>")
        .with("ConnectedLineName", "<unknown>")
        .with("Language", "en")
        .with("AccountCode", "")
        .with("Context", "from-internal")
        .with("Exten", "2000")
        .with("Priority", "1")
        .with("Uniqueid", "1795343987.3")
        .with("Linkedid", "1795343987.3")
}

async fn fanout(sim: &AmiSim, proxy: &Proxy, n: usize, events: usize, format: &str) {
    // Through the proxy.
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = Client::connect(proxy.addr).await;
        c.login().await;
        if format != "standard" {
            c.set_format(format).await;
        }
        clients.push(c);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cpu0 = proxy.cpu_time();
    let t0 = Instant::now();
    let readers: Vec<_> =
        clients.into_iter().map(|c| tokio::spawn(c.count_events(events, format.to_string()))).collect();
    sim.emit_many(&bench_event(), events);
    for r in readers {
        drop(r.await.expect("reader"));
    }
    let elapsed = t0.elapsed();
    let cpu = proxy.cpu_time().saturating_sub(cpu0);
    let deliveries = (n * events) as f64;
    let rate = deliveries / elapsed.as_secs_f64();
    let cpu_per = cpu.as_secs_f64() * 1e6 / deliveries;

    // Directly from the simulator.
    let mut direct = Vec::with_capacity(n);
    for _ in 0..n.min(100) {
        let mut c = Client::connect(sim.addr()).await;
        c.login_sim().await;
        direct.push(c);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let dn = direct.len();
    let t1 = Instant::now();
    let readers: Vec<_> =
        direct.into_iter().map(|c| tokio::spawn(c.count_events(events, "standard".to_string()))).collect();
    sim.emit_many(&bench_event(), events);
    for r in readers {
        drop(r.await.expect("reader"));
    }
    let direct_rate = (dn * events) as f64 / t1.elapsed().as_secs_f64();
    // Let the proxy drain the second flood before the next run.
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "fanout clients={n:>5} events={events} format={format}: {rate:>12.0} deliveries/s through the proxy, \
         {cpu_per:.3} us proxy CPU per delivery ({elapsed:.2?}); direct from the simulator to {dn} clients: {direct_rate:.0}/s"
    );
}

/// A plain TCP relay (no parsing): the floor of what any proxy adds, one more TCP hop each way.
async fn relay(to: SocketAddr) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
    let addr = listener.local_addr().expect("relay addr");
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(to).await else { return };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    addr
}

async fn relay_process(to: SocketAddr) -> (SocketAddr, Child) {
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new(exe)
        .args(["relay", &to.to_string()])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the relay");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = lines.next_line().await.ok().flatten().expect("relay address");
    let addr = line.rsplit(' ').next().and_then(|a| a.parse().ok()).expect("relay address");
    (addr, child)
}

async fn ping(sim: &AmiSim, proxy: &Proxy, count: usize) {
    let mut via = Client::connect(proxy.addr).await;
    via.login().await;
    let mut direct = Client::connect(sim.addr()).await;
    direct.login_sim().await;
    // The relay runs as its own process, like the proxy, so both pay the same wake-ups.
    let (relay_addr, _relay) = relay_process(sim.addr()).await;
    let mut relayed = Client::connect(relay_addr).await;
    relayed.login_sim().await;
    let mut through = Vec::with_capacity(count);
    let mut straight = Vec::with_capacity(count);
    let mut hop = Vec::with_capacity(count);
    for _ in 0..count {
        let t = Instant::now();
        via.ping().await;
        through.push(t.elapsed());
        let t = Instant::now();
        direct.ping().await;
        straight.push(t.elapsed());
        let t = Instant::now();
        relayed.ping().await;
        hop.push(t.elapsed());
    }
    let (p50, p99) = percentiles(&mut through);
    let (d50, d99) = percentiles(&mut straight);
    let (r50, r99) = percentiles(&mut hop);
    println!(
        "ping count={count}: through the proxy p50 {:.1} us p99 {:.1} us; direct p50 {:.1} us p99 {:.1} us \
         (added p50 {:.1} us); through a plain TCP relay process p50 {:.1} us p99 {:.1} us (proxy vs relay p50 {:+.1} us)",
        us(p50),
        us(p99),
        us(d50),
        us(d99),
        us(p50) - us(d50),
        us(r50),
        us(r99),
        us(p50) - us(r50)
    );
}

/// Memory per idle client, after a connection storm: all `n` clients connect at once (what a
/// proxy restart looks like), every one waits for its banner, then all log in at once.
async fn idle(proxy: &Proxy, n: usize) {
    let room = harness::fd_room();
    if n + 200 > room {
        println!("idle clients={n:>5}: SKIPPED, the open-files limit ({room}) is too low; raise `ulimit -Hn`");
        return;
    }
    let before = proxy.rss_bytes();
    let addr = proxy.addr;
    let t0 = Instant::now();
    let connects: Vec<_> = (0..n)
        .map(|_| {
            tokio::spawn(async move {
                let c = Client::connect(addr).await;
                (c, t0.elapsed())
            })
        })
        .collect();
    let mut clients = Vec::with_capacity(n);
    let mut banners = Vec::with_capacity(n);
    for c in connects {
        let (c, at) = c.await.expect("connect");
        clients.push(c);
        banners.push(at);
    }
    let (b50, b99) = percentiles(&mut banners);
    let all_banners = banners.iter().max().copied().unwrap_or_default();
    let t1 = Instant::now();
    let logins: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                c.login().await;
                c.shrink();
                c
            })
        })
        .collect();
    let mut clients = Vec::with_capacity(n);
    for l in logins {
        clients.push(l.await.expect("login"));
    }
    let all_logins = t1.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = proxy.rss_bytes();
    let per = after.saturating_sub(before) as f64 / n as f64;
    println!(
        "idle clients={n:>5}: {n} connects at once, every banner within {:.0} ms (p50 {:.0} ms, p99 {:.0} ms; \
         includes httpdetecttimeout = 100 ms), all logged in {:.0} ms later; proxy RSS {:.1} MiB -> {:.1} MiB, \
         {:.1} KiB per idle client",
        all_banners.as_secs_f64() * 1e3,
        b50.as_secs_f64() * 1e3,
        b99.as_secs_f64() * 1e3,
        all_logins.as_secs_f64() * 1e3,
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        per / 1024.0
    );
    drop(clients);
    // Let the proxy see every close before the next run.
    tokio::time::sleep(Duration::from_millis(1000)).await;
}

/// Pings through the proxy until one succeeds; returns when, and the first instant `seen` was
/// true (checked between pings).
async fn until_served(client: &mut Client, mut seen: impl FnMut() -> bool) -> (Instant, Option<Instant>) {
    let mut first_seen = None;
    loop {
        if first_seen.is_none() && seen() {
            first_seen = Some(Instant::now());
        }
        if client.ping().await.response() == Some("Success") {
            let now = Instant::now();
            return (now, Some(first_seen.unwrap_or(now)));
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// Asterisk restarts: `rounds` restarts in a row (its connections drop and it accepts again at
/// once), each timed from the drop to the first Ping answered through the proxy; then an outage
/// of `outage` (nothing listens on its port), timed from its return (listening again, and its
/// `FullyBooted` to the proxy's login) to the first Ping answered through the proxy.
async fn reconnect(sim: &AmiSim, proxy: &Proxy, rounds: usize, outage: Duration) -> Option<AmiSim> {
    let mut client = Client::connect(proxy.addr).await;
    client.login().await;
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let logins = sim.login_count();
        let t = Instant::now();
        sim.kill_connections();
        // Served again only after the proxy logged in again (answers before that come from
        // the old session or are errors).
        let (served, _) = until_served_after(&mut client, || sim.login_count() > logins).await;
        times.push(served - t);
    }
    let list: Vec<String> = times.iter().map(|d| format!("{:.0}", d.as_secs_f64() * 1e3)).collect();
    let (p50, _) = percentiles(&mut times);
    let max = times.iter().max().copied().unwrap_or_default();
    println!(
        "reconnect rounds={rounds}: Asterisk restart to first Ping answered through the proxy, in order: [{}] ms; \
         median {:.1} ms, max {:.1} ms",
        list.join(", "),
        p50.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
    if outage.is_zero() {
        return None;
    }
    let addr = sim.addr();
    sim.shutdown().await;
    tokio::time::sleep(outage).await;
    let back_at = Instant::now();
    let back = AmiSim::start_on(addr, SimOptions::default()).await.expect("restart the simulator");
    let (served, booted) = until_served_after(&mut client, || back.login_count() > 0).await;
    println!(
        "reconnect outage={:.0}s: Asterisk back (listening) to first Ping answered through the proxy {:.0} ms; \
         its FullyBooted (the proxy's login) to first Ping answered {:.1} ms",
        outage.as_secs_f64(),
        (served - back_at).as_secs_f64() * 1e3,
        (served - booted).as_secs_f64() * 1e3
    );
    Some(back)
}

/// [`until_served`], but only a success after `ready` counts (returns when, and when `ready`
/// was first seen).
async fn until_served_after(client: &mut Client, mut ready: impl FnMut() -> bool) -> (Instant, Instant) {
    loop {
        let (at, seen) = until_served(client, &mut ready).await;
        if let Some(seen) = seen.filter(|_| ready()) {
            return (at, seen);
        }
    }
}
