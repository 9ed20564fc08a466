//! What the `ampbench` benchmarks stand on: the proxy started as a child process, a minimal AMI
//! client, and readings of a process's CPU time and memory from `/proc`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use astmanproxy_handlers::{standard, AmiDecoder, Message};
use bytes::BytesMut;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use super::{SECRET, USER};

pub(crate) fn default_proxy_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.with_file_name("astmanproxy")
}

/// The proxy as a child process.
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    pub(crate) pid: u32,
    _child: Child,
    _dir: PathBuf,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

impl Proxy {
    pub(crate) async fn start(bin: &PathBuf, sim: SocketAddr) -> Proxy {
        Self::start_with(bin, sim, "").await
    }

    /// The proxy with `extra` configuration lines (each ending with a newline).
    pub(crate) async fn start_with(bin: &PathBuf, sim: SocketAddr, extra: &str) -> Proxy {
        use std::sync::atomic::{AtomicU32, Ordering};
        static RUN: AtomicU32 = AtomicU32::new(0);
        let run = RUN.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ampbench-{}-{run}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let conf = dir.join("astmanproxy.conf");
        let users = dir.join("astmanproxy.users");
        std::fs::write(
            &conf,
            format!(
                "host = {}, {}, admin, adminpass, on, off, sim\nlistenaddress = 127.0.0.1\nlistenport = 0\n\
                 maxclients = 20000\n{extra}",
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

    pub(crate) async fn wait_ready(&self) {
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

    pub(crate) fn cpu_time(&self) -> Duration {
        proc_cpu_time(self.pid)
    }

    pub(crate) fn rss_bytes(&self) -> u64 {
        proc_rss(self.pid)
    }
}

/// A minimal AMI client.
pub(crate) struct Client {
    stream: TcpStream,
    buf: BytesMut,
    decoder: AmiDecoder,
    seq: u64,
}

impl Client {
    /// Frees the client's own read buffer (only the proxy is measured, but the bench stays small).
    pub(crate) fn shrink(&mut self) {
        self.buf = BytesMut::new();
    }

    pub(crate) async fn connect(addr: SocketAddr) -> Client {
        Self::from_stream(TcpStream::connect(addr).await.expect("connect")).await
    }

    /// A client on a connected socket: reads the banner.
    pub(crate) async fn from_stream(stream: TcpStream) -> Client {
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

    pub(crate) async fn fill(&mut self) {
        let n = self.stream.read_buf(&mut self.buf).await.expect("read");
        assert!(n > 0, "connection closed");
    }

    pub(crate) async fn send(&mut self, m: &Message) {
        let mut out = BytesMut::new();
        standard::encode(m, &mut out);
        self.stream.write_all(&out).await.expect("write");
    }

    pub(crate) async fn response(&mut self, id: &str) -> Message {
        loop {
            while let Some(m) = self.decoder.decode(&mut self.buf).expect("decode") {
                if m.response().is_some() && m.action_id() == Some(id) {
                    return m;
                }
            }
            self.fill().await;
        }
    }

    pub(crate) async fn action(&mut self, m: Message) -> Message {
        self.seq += 1;
        let id = format!("b{}", self.seq);
        self.send(&m.with("ActionID", id.clone())).await;
        self.response(&id).await
    }

    pub(crate) async fn login(&mut self) {
        let m = Message::new().with("Action", "Login").with("Username", USER).with("Secret", SECRET);
        assert_eq!(self.action(m).await.response(), Some("Success"));
    }

    pub(crate) async fn login_sim(&mut self) {
        let m = Message::new().with("Action", "Login").with("Username", "admin").with("Secret", "adminpass");
        assert_eq!(self.action(m).await.response(), Some("Success"));
    }

    pub(crate) async fn ping(&mut self) -> Message {
        self.action(Message::new().with("Action", "Ping")).await
    }

    /// Switches this client's output format.
    pub(crate) async fn set_format(&mut self, format: &str) {
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

    /// The socket and what was read from it but not decoded yet.
    pub(crate) fn into_parts(self) -> (TcpStream, BytesMut) {
        (self.stream, self.buf)
    }

    /// Reads until `n` BenchEvents arrived in `format` (byte scan, so the client costs little CPU
    /// next to the proxy).
    pub(crate) async fn count_events(mut self, n: usize, format: String) -> Self {
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

/// Raises this process's soft limit of open files to its hard limit (children inherit it).
pub(crate) fn raise_fd_limit() {
    astmanproxy::listen::raise_open_files_limit();
}

/// The soft limit of open files of this process.
pub(crate) fn fd_room() -> usize {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| usize::try_from(soft).unwrap_or(usize::MAX))
}

pub(crate) fn percentiles(v: &mut [Duration]) -> (Duration, Duration) {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    (at(0.50), at(0.99))
}

pub(crate) fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// utime + stime of a process, from `/proc/<pid>/stat` (clock ticks, 100 Hz on Linux).
pub(crate) fn proc_cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12].iter().filter_map(|&i| fields.get(i)?.parse::<u64>().ok()).sum();
    Duration::from_millis(ticks * 10)
}

pub(crate) fn proc_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub(crate) fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()))
        .unwrap_or_else(|| "unknown CPU".to_string())
}
