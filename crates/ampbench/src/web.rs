//! The HTTP and WebSocket benchmarks of `ampbench`: keep-alive requests per second on the AMI
//! port (an AJAM session, and one action per request with Basic), and event fan-out to WebSocket
//! clients.

use std::time::{Duration, Instant};

use ami_sim::AmiSim;
use tokio::net::TcpStream;

use super::{bench_event, percentiles, us, Proxy, SECRET, USER};

/// Ping over HTTP/1.1 keep-alive: `connections` clients share `requests`, on an AJAM session
/// (`/rawman` with its cookie) and one action per request (`/json` with Basic).
pub async fn http(proxy: &Proxy, requests: usize, connections: usize) {
    let base = format!("http://{}", proxy.addr);
    let login = reqwest::Client::new()
        .get(format!("{base}/rawman?action=login&username={USER}&secret={SECRET}"))
        .send()
        .await
        .expect("HTTP login");
    let cookie = login.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let cookie = cookie.split(';').next().unwrap_or_default().to_string();
    for (label, path, basic) in
        [("rawman session", "/rawman?action=Ping", false), ("json + Basic", "/json?Action=Ping", true)]
    {
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..connections {
            let (url, cookie) = (format!("{base}{path}"), cookie.clone());
            let per = requests / connections;
            tasks.push(tokio::spawn(async move {
                // One client per task: its pool keeps one connection alive.
                let client = reqwest::Client::builder().pool_max_idle_per_host(1).build().expect("client");
                let mut times = Vec::with_capacity(per);
                for _ in 0..per {
                    let t = Instant::now();
                    let mut req = client.get(&url);
                    req = if basic { req.basic_auth(USER, Some(SECRET)) } else { req.header("Cookie", &cookie) };
                    let body = req.send().await.expect("request").text().await.expect("body");
                    assert!(body.contains("Pong"), "unexpected answer: {body}");
                    times.push(t.elapsed());
                }
                times
            }));
        }
        let mut times = Vec::new();
        for t in tasks {
            times.extend(t.await.expect("client task"));
        }
        let elapsed = start.elapsed();
        let (p50, p99) = percentiles(&mut times);
        println!(
            "http {label}: {connections} connections, {} requests in {:.2} s = {:.0} req/s, p50 {:.0} us, p99 {:.0} us",
            times.len(),
            elapsed.as_secs_f64(),
            times.len() as f64 / elapsed.as_secs_f64(),
            us(p50),
            us(p99)
        );
    }
}

/// Event fan-out to `n` WebSocket clients logged in with Basic on the upgrade.
pub async fn ws_fanout(sim: &AmiSim, proxy: &Proxy, n: usize, events: usize) {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message as Frame;
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        let mut request = format!("ws://{}/ws", proxy.addr).into_client_request().expect("request");
        let basic = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{USER}:{SECRET}"));
        request.headers_mut().insert("Authorization", format!("Basic {basic}").parse().expect("header"));
        let tcp = TcpStream::connect(proxy.addr).await.expect("connect");
        let (ws, _) = tokio_tungstenite::client_async(request, tcp).await.expect("WebSocket upgrade");
        sockets.push(ws);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cpu0 = proxy.cpu_time();
    let t0 = Instant::now();
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let mut seen = 0;
                while seen < events {
                    match ws.next().await {
                        Some(Ok(Frame::Text(t))) if t.as_str().contains("BenchEvent") => seen += 1,
                        Some(Ok(_)) => {}
                        other => panic!("WebSocket ended after {seen} events: {other:?}"),
                    }
                }
            })
        })
        .collect();
    sim.emit_many(&bench_event(), events);
    for r in readers {
        r.await.expect("reader");
    }
    let elapsed = t0.elapsed();
    let cpu = proxy.cpu_time().saturating_sub(cpu0);
    let deliveries = (n * events) as f64;
    println!(
        "ws fanout clients={n:>3} events={events}: {:>10.0} deliveries/s, {:.3} us proxy CPU per delivery ({elapsed:.2?})",
        deliveries / elapsed.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / deliveries
    );
}
