//! `ampbench burst`: one burst of events to clients that read as fast as they can, with and
//! without one more client that never reads, through the proxy (shipped defaults) and directly
//! from the simulator: deliveries lost, clients cut off, rate per client, the largest gap a
//! reading client saw, and the proxy's memory growth.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ami_sim::AmiSim;
use astmanproxy_handlers::Message;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::bench_event;
use super::harness::{Client, Proxy};

/// What one reading client saw.
struct Seen {
    events: usize,
    lagged: bool,
    elapsed: Duration,
    largest_gap: Duration,
}

const LAGGED: &[u8] = b"Event: ProxyClientLagged\r\n";

/// The events of run `run` have names of their own: the proxy may still be passing on an earlier
/// run's burst (the simulator sends every burst to the proxy too) when a run starts.
fn event_of(run: u64) -> Message {
    let mut m = bench_event();
    m.set("Event", format!("Burst{run}"));
    m
}

fn sentinel_of(run: u64) -> Message {
    Message::new().with("Event", format!("BurstEnd{run}")).with("Privilege", "call,all")
}

/// Reads until the sentinel or the close, counting events and the largest pause between reads.
async fn read_burst(mut stream: TcpStream, mut data: Vec<u8>, start: Instant, run: u64) -> Seen {
    let event = format!("Event: Burst{run}\r\n");
    let sentinel = format!("Event: BurstEnd{run}\r\n");
    let (event, sentinel) = (event.as_bytes(), sentinel.as_bytes());
    let finder = memchr::memmem::Finder::new(event);
    let mut scanned = 0;
    let mut events = 0;
    let mut lagged = false;
    let mut chunk = vec![0u8; 256 * 1024];
    let mut last = None::<Instant>;
    let mut largest_gap = Duration::ZERO;
    loop {
        // Needles found from `scanned` on; the tail kept between reads may hold the start of one.
        events += finder.find_iter(&data[scanned..]).count();
        if memchr::memmem::find(&data, LAGGED).is_some() {
            lagged = true;
        }
        if memchr::memmem::find(&data, sentinel).is_some() {
            break;
        }
        let keep = data.len().min(sentinel.len().max(LAGGED.len()));
        data = data[data.len() - keep..].to_vec();
        // A whole event needle is longer than nothing kept could hold twice: count from where
        // an unfinished one may start.
        scanned = keep.saturating_sub(event.len() - 1);
        let read = tokio::time::timeout(Duration::from_secs(60), stream.read(&mut chunk)).await;
        let now = Instant::now();
        match read {
            Ok(Ok(n)) if n > 0 => {
                // Gaps count once data flows (the first read waits for the burst to start).
                if let Some(before) = last {
                    largest_gap = largest_gap.max(now - before);
                }
                last = Some(now);
                data.extend_from_slice(&chunk[..n]);
            }
            _ => break,
        }
    }
    Seen { events, lagged, elapsed: last.map_or(Duration::ZERO, |l| l - start), largest_gap }
}

/// Samples the proxy's resident memory until `stop`; returns the peak.
fn sample_rss(pid: u32, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    let peak = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            peak.fetch_max(super::harness::proc_rss(pid), Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        peak.fetch_max(super::harness::proc_rss(pid), Ordering::Relaxed);
        peak.load(Ordering::Relaxed)
    })
}

/// One burst of `events` to `n` reading clients (and one that never reads, with `stalled`).
async fn run(sim: &AmiSim, addr: SocketAddr, through_proxy: bool, n: usize, events: usize, stalled: bool) -> Vec<Seen> {
    static RUN: AtomicU64 = AtomicU64::new(0);
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = Client::connect(addr).await;
        if through_proxy {
            c.login().await
        } else {
            c.login_sim().await
        }
        clients.push(c);
    }
    // Connected and logged in, never read again: its socket fills, its writes stop.
    let _stalled = if stalled {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        let _ = socket.set_recv_buffer_size(4096);
        let stream = socket.connect(addr).await.expect("connect");
        let mut c = Client::from_stream(stream).await;
        if through_proxy {
            c.login().await
        } else {
            c.login_sim().await
        }
        Some(c)
    } else {
        None
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    let readers: Vec<_> = clients
        .into_iter()
        .map(|c| {
            let (stream, buf) = c.into_parts();
            tokio::spawn(read_burst(stream, buf.to_vec(), start, run))
        })
        .collect();
    sim.emit_many(&event_of(run), events);
    sim.emit(sentinel_of(run));
    let mut seen = Vec::with_capacity(n);
    for r in readers {
        seen.push(r.await.expect("reader"));
    }
    seen
}

fn summary(seen: &[Seen], events: usize) -> (usize, usize, f64, Duration) {
    let lost = seen.iter().map(|s| events.saturating_sub(s.events)).sum();
    let cut = seen.iter().filter(|s| s.lagged).count();
    let rates: Vec<f64> = seen.iter().map(|s| s.events as f64 / s.elapsed.as_secs_f64().max(1e-9)).collect();
    let min_rate = rates.iter().copied().fold(f64::INFINITY, f64::min);
    let gap = seen.iter().map(|s| s.largest_gap).max().unwrap_or_default();
    (lost, cut, min_rate, gap)
}

/// Prints the burst figures: direct, through the proxy, through the proxy with a client that
/// never reads.
pub(crate) async fn burst(sim: &AmiSim, proxy: &Proxy, n: usize, events: usize) {
    println!("burst: {n} reading clients, {events} events of {} bytes in one burst", bench_event_len());
    let direct = run(sim, sim.addr(), false, n, events, false).await;
    let (lost, _, direct_rate, gap) = summary(&direct, events);
    println!(
        "  direct                      lost {lost:>8} of {:>8}   slowest client {:>9.0} ev/s   largest gap {:>6.1} ms",
        n * events,
        direct_rate,
        gap.as_secs_f64() * 1e3
    );
    for stalled in [false, true] {
        let rss0 = proxy.rss_bytes();
        let stop = Arc::new(AtomicBool::new(false));
        let peak = sample_rss(proxy.pid, stop.clone());
        let seen = run(sim, proxy.addr, true, n, events, stalled).await;
        stop.store(true, Ordering::Relaxed);
        let peak = peak.await.unwrap_or(0);
        let (lost, cut, rate, gap) = summary(&seen, events);
        println!(
            "  proxy{}  lost {lost:>8} of {:>8}   slowest client {rate:>9.0} ev/s ({:.2}x direct)   largest gap {:>6.1} ms   cut off {cut}   RSS growth {:.1} MB",
            if stalled { " + 1 never reading  " } else { "                     " },
            n * events,
            rate / direct_rate,
            gap.as_secs_f64() * 1e3,
            peak.saturating_sub(rss0) as f64 / 1e6
        );
    }
}

/// The proxy's memory per buffered event: a fresh proxy, one burst with one reader (so the
/// burst is known to be through) and one client that never reads; the growth of its resident
/// memory divided by the events its buffer then holds, next to their size on the wire.
pub(crate) async fn memory_per_event(sim: &AmiSim, bin: &std::path::PathBuf, events: usize) {
    let proxy = Proxy::start(bin, sim.addr()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss0 = proxy.rss_bytes();
    let seen = run(sim, proxy.addr, true, 1, events, true).await;
    let grown = proxy.rss_bytes().saturating_sub(rss0);
    // What the proxy adds to each event: its `Server: sim` header.
    let wire = bench_event_len() + "Server: sim\r\n".len();
    let budget = 64 * 1024 * 1024;
    let held = events.min(budget / (wire + astmanproxy::event::EVENT_OVERHEAD));
    println!(
        "memory: {} events of {wire} bytes through a fresh proxy (default clienteventbuffer, 64 MiB), one client never reading: RSS grew {:.1} MB for {held} events held = {:.0} bytes per event ({:.2}x its wire size); the reader got {}",
        events,
        grown as f64 / 1e6,
        grown as f64 / held as f64,
        grown as f64 / held as f64 / wire as f64,
        seen.first().map_or(0, |s| s.events)
    );
}

fn bench_event_len() -> usize {
    astmanproxy_handlers::standard::encode_to_bytes(&bench_event()).len()
}
