//! `ampbench hol`: head-of-line blocking. Nine clients send `Ping`s one after the other while a
//! tenth runs slow actions back to back (a `QueueStatus` that the simulator answers after
//! `--slow-ms`, as a large one takes; then a synchronous `Originate` whose call rings that
//! long), through the proxy with `actionsessions = 1` and with the default: Ping p50/p99.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ami_sim::{AmiSim, SimOptions};
use astmanproxy_handlers::Message;

use super::harness::{percentiles, Client, Proxy};

/// Clients that Ping while the slow one runs.
const PINGERS: usize = 9;

/// The slow actions measured, by name.
fn slow_action(kind: &str) -> Message {
    match kind {
        "QueueStatus" => Message::new().with("Action", "QueueStatus"),
        _ => Message::new()
            .with("Action", "Originate")
            .with("Channel", "Local/101@ami-test")
            .with("Context", "ami-test")
            .with("Exten", "101")
            .with("Priority", "1")
            .with("Timeout", "30000"),
    }
}

pub(crate) async fn hol(bin: &PathBuf, pings: usize, slow: Duration) {
    let options = SimOptions {
        slow_action: Some(("QueueStatus".into(), slow)),
        originate_ring: Some(slow),
        ..Default::default()
    };
    let sim = AmiSim::start(options).await.expect("start the simulator");
    println!(
        "hol: {PINGERS} clients x {pings} sequential Pings while a 10th runs slow actions back to back ({} ms each)",
        slow.as_millis()
    );
    for (label, extra, sessions) in [("actionsessions = 1", "actionsessions = 1\n", 1), ("default (2)", "", 2)] {
        let before = sim.login_count();
        let proxy = Proxy::start_with(bin, sim.addr(), extra).await;
        // Every session logged in before measuring (the pool uses the event session until then).
        let deadline = Instant::now() + Duration::from_secs(10);
        while sim.login_count() < before + sessions && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for kind in ["QueueStatus", "Originate (sync)"] {
            let mut all = run(&proxy, kind, pings).await;
            let (p50, p99) = percentiles(&mut all);
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            println!(
                "hol {label:<20} slow {kind:<17}: Ping p50 {:.2} ms p99 {:.2} ms ({} Pings)",
                ms(p50),
                ms(p99),
                all.len()
            );
        }
    }
}

/// One run: the slow client starts, then the pingers; the slow one stops when they are done.
async fn run(proxy: &Proxy, kind: &str, pings: usize) -> Vec<Duration> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut slow = Client::connect(proxy.addr).await;
    slow.login().await;
    let mut pingers = Vec::with_capacity(PINGERS);
    for _ in 0..PINGERS {
        let mut c = Client::connect(proxy.addr).await;
        c.login().await;
        pingers.push(c);
    }
    let action = slow_action(kind);
    let slow_stop = stop.clone();
    let slow_task = tokio::spawn(async move {
        let mut done = 0usize;
        while !slow_stop.load(Ordering::Relaxed) {
            slow.action(action.clone()).await;
            done += 1;
        }
        done
    });
    // The first slow action is on its way before the first Ping.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let tasks: Vec<_> = pingers
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let mut times = Vec::with_capacity(pings);
                for _ in 0..pings {
                    let t = Instant::now();
                    c.ping().await;
                    times.push(t.elapsed());
                }
                times
            })
        })
        .collect();
    let mut all = Vec::with_capacity(PINGERS * pings);
    for t in tasks {
        all.extend(t.await.expect("pinger"));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(60), slow_task).await;
    all
}
