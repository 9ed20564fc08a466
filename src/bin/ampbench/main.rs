//! `ampbench`: the benchmark tool of astmanproxy.
//!
//! It starts the AMI simulator in this process and the real `astmanproxy` binary (release build,
//! next to this one) as a child process on loopback, then measures:
//! - **fan-out**: events flooded by the simulator through the proxy to N logged-in clients:
//!   deliveries per second, and the proxy's CPU time per delivery (from `/proc/<pid>/stat`);
//!   the same flood read directly from the simulator by N clients, for comparison;
//! - **ping**: round-trip time of sequential `Ping` actions through the proxy and directly;
//! - **idle**: resident memory of the proxy per idle logged-in client (from `/proc/<pid>/status`).
//!
//! Run: `cargo run --release --bin ampbench -- all` (see `docs/benchmarks.md`). Every address is
//! 127.0.0.1; every run is bounded in count and time.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use astmanproxy::sim::{AmiSim, SimOptions};
use astmanproxy_handlers::{standard, AmiDecoder, Message};
use bytes::BytesMut;
use clap::{Parser, Subcommand};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

mod web;
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
    /// Time for the proxy to serve again after its Asterisk restarts.
    Reconnect {
        /// Restarts to measure.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
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
async fn main() {
    let args = Args::parse();
    if let What::Relay { to } = args.what {
        let addr = relay(to).await;
        println!("relay listening on {addr}");
        std::future::pending::<()>().await;
    }
    if let What::Sim { listen, events } = args.what {
        let sim = AmiSim::start_on(listen, SimOptions::default()).await.expect("start the simulator");
        println!("AMI simulator listening on {} (user admin, secret adminpass); Ctrl-C stops it", sim.addr());
        let mut n = 0u64;
        loop {
            if events == 0 {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(Duration::from_millis(events)).await;
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
    let bin = args.proxy_bin.clone().unwrap_or_else(default_proxy_bin);
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
            ping(&sim, &proxy, 20_000).await;
            for c in [1, 10] {
                http(&proxy, 20_000, c).await;
            }
            for n in [1, 10] {
                ws_fanout(&sim, &proxy, n, 200_000).await;
            }
            reconnect(&sim, &proxy, 5).await;
        }
        What::Reconnect { rounds } => reconnect(&sim, &proxy, rounds).await,
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
        What::Relay { .. } | What::Sim { .. } => {}
    }
    drop(proxy);
}

fn default_proxy_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.with_file_name("astmanproxy")
}

/// The proxy as a child process.
struct Proxy {
    addr: SocketAddr,
    pid: u32,
    _child: Child,
    _dir: PathBuf,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

impl Proxy {
    async fn start(bin: &PathBuf, sim: SocketAddr) -> Proxy {
        let dir = std::env::temp_dir().join(format!("ampbench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let conf = dir.join("astmanproxy.conf");
        let users = dir.join("astmanproxy.users");
        std::fs::write(
            &conf,
            format!(
                "host = {}, {}, admin, adminpass, on, off, sim\nlistenaddress = 127.0.0.1\nlistenport = 0\n\
                 maxclients = 20000\nclienteventqueue = 262144\n",
                sim.ip(),
                sim.port()
            ),
        )
        .expect("write config");
        std::fs::write(&users, format!("{USER}={SECRET}\n")).expect("write users");
        let mut child = Command::new(bin)
            .args(["-c", conf.to_str().unwrap_or_default(), "-u", users.to_str().unwrap_or_default()])
            .env("RUST_LOG", "warn,astmanproxy=info")
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e} (build it with cargo build --release)", bin.display()));
        let pid = child.id().expect("pid");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let addr = tokio::time::timeout(Duration::from_secs(10), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    return rest.trim().parse::<SocketAddr>().ok();
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .expect("the proxy did not start");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let proxy = Proxy { addr, pid, _child: child, _dir: dir };
        proxy.wait_ready().await;
        proxy
    }

    async fn wait_ready(&self) {
        let mut c = Client::connect(self.addr).await;
        c.login().await;
        for _ in 0..500 {
            if c.ping().await.response() == Some("Success") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the proxy never connected to the simulator");
    }

    fn cpu_time(&self) -> Duration {
        proc_cpu_time(self.pid)
    }

    fn rss_bytes(&self) -> u64 {
        proc_rss(self.pid)
    }
}

/// A minimal AMI client.
struct Client {
    stream: TcpStream,
    buf: BytesMut,
    decoder: AmiDecoder,
    seq: u64,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let _ = stream.set_nodelay(true);
        let mut c = Client { stream, buf: BytesMut::with_capacity(64 * 1024), decoder: AmiDecoder::default(), seq: 0 };
        loop {
            if c.decoder.decode_line(&mut c.buf).expect("banner").is_some() {
                break;
            }
            c.fill().await;
        }
        c
    }

    async fn fill(&mut self) {
        let n = self.stream.read_buf(&mut self.buf).await.expect("read");
        assert!(n > 0, "connection closed");
    }

    async fn send(&mut self, m: &Message) {
        let mut out = BytesMut::new();
        standard::encode(m, &mut out);
        self.stream.write_all(&out).await.expect("write");
    }

    async fn response(&mut self, id: &str) -> Message {
        loop {
            while let Some(m) = self.decoder.decode(&mut self.buf).expect("decode") {
                if m.response().is_some() && m.action_id() == Some(id) {
                    return m;
                }
            }
            self.fill().await;
        }
    }

    async fn action(&mut self, m: Message) -> Message {
        self.seq += 1;
        let id = format!("b{}", self.seq);
        self.send(&m.with("ActionID", id.clone())).await;
        self.response(&id).await
    }

    async fn login(&mut self) {
        let m = Message::new().with("Action", "Login").with("Username", USER).with("Secret", SECRET);
        assert_eq!(self.action(m).await.response(), Some("Success"));
    }

    async fn login_sim(&mut self) {
        let m = Message::new().with("Action", "Login").with("Username", "admin").with("Secret", "adminpass");
        assert_eq!(self.action(m).await.response(), Some("Success"));
    }

    async fn ping(&mut self) -> Message {
        self.action(Message::new().with("Action", "Ping")).await
    }

    /// Switches this client's output format.
    async fn set_format(&mut self, format: &str) {
        self.seq += 1;
        let id = format!("b{}", self.seq);
        let m =
            Message::new().with("ProxyAction", "SetOutputFormat").with("OutputFormat", format).with("ActionID", &id);
        self.send(&m).await;
        // The answer comes in the new format: wait for the ActionID in any of them.
        let finder = memchr::memmem::Finder::new(id.as_bytes());
        let mut seen = Vec::new();
        while finder.find(&seen).is_none() {
            let mut chunk = vec![0u8; 4096];
            let n = self.stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed");
            seen.extend_from_slice(&chunk[..n]);
        }
        self.buf.clear();
    }

    /// Reads until `n` BenchEvents arrived in `format` (byte scan, so the client costs little CPU
    /// next to the proxy).
    async fn count_events(mut self, n: usize, format: String) -> Self {
        let needle: &[u8] = match format.as_str() {
            "xml" => b"<Event Value=\"BenchEvent\"/>",
            "csv" => b"\"Event: BenchEvent\"",
            "json" => b"\"Event\":\"BenchEvent\"",
            _ => b"Event: BenchEvent\r\n",
        };
        const NEEDLE_MAX: usize = 32;
        let finder = memchr::memmem::Finder::new(needle);
        let mut seen = 0;
        let mut buf = std::mem::take(&mut self.buf).to_vec();
        let mut chunk = vec![0u8; 256 * 1024];
        loop {
            seen += finder.find_iter(&buf).count();
            if seen >= n {
                break;
            }
            // Keep a tail that could hold the start of a split needle.
            let keep = buf.len().min(NEEDLE_MAX.min(needle.len() - 1));
            let tail = buf[buf.len() - keep..].to_vec();
            let r = self.stream.read(&mut chunk).await.expect("read");
            assert!(r > 0, "closed after {seen} events");
            buf = tail;
            buf.extend_from_slice(&chunk[..r]);
        }
        self
    }
}

fn bench_event() -> Message {
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

async fn idle(proxy: &Proxy, n: usize) {
    let before = proxy.rss_bytes();
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = Client::connect(proxy.addr).await;
        c.login().await;
        // Free the client's own buffer: only the proxy is measured, but keep the bench small.
        c.buf = BytesMut::new();
        clients.push(c);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = proxy.rss_bytes();
    let per = after.saturating_sub(before) as f64 / n as f64;
    println!(
        "idle clients={n:>5}: proxy RSS {:.1} MiB -> {:.1} MiB, {:.1} KiB per idle client",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        per / 1024.0
    );
    drop(clients);
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// Asterisk restarts (its connections drop, it accepts again at once); measures the time until a
/// Ping through the proxy succeeds again. The proxy's session had been up for over 10 s, so it
/// reconnects without backoff.
async fn reconnect(sim: &AmiSim, proxy: &Proxy, rounds: usize) {
    let mut client = Client::connect(proxy.addr).await;
    client.login().await;
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        // A healthy session first (see upstream::HEALTHY_AFTER).
        tokio::time::sleep(Duration::from_secs(11)).await;
        let t = Instant::now();
        sim.kill_connections();
        // Wait for the proxy to notice (answers become errors), then for it to come back.
        loop {
            if client.ping().await.response() != Some("Success") {
                break;
            }
            if t.elapsed() > Duration::from_secs(5) {
                break;
            }
        }
        while client.ping().await.response() != Some("Success") {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        times.push(t.elapsed());
    }
    let (p50, _) = percentiles(&mut times);
    let max = times.iter().max().copied().unwrap_or_default();
    println!(
        "reconnect rounds={rounds}: Asterisk restart to first Ping answered through the proxy: median {:.1} ms, max {:.1} ms",
        p50.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
}

fn percentiles(v: &mut [Duration]) -> (Duration, Duration) {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    (at(0.50), at(0.99))
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// utime + stime of a process, from `/proc/<pid>/stat` (clock ticks, 100 Hz on Linux).
fn proc_cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12].iter().filter_map(|&i| fields.get(i)?.parse::<u64>().ok()).sum();
    Duration::from_millis(ticks * 10)
}

fn proc_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()))
        .unwrap_or_else(|| "unknown CPU".to_string())
}
