//! The HTTP front: one action per request, Basic auth, keep-alive, formats, limits.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

const ALICE: &str = "Authorization: Basic YWxpY2U6YWxpY2Vwdw==\r\n"; // alice:alicepw

async fn http_proxy() -> (ami_sim::AmiSim, TestProxy, SocketAddr) {
    let sim = sim().await;
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = http.local_addr().unwrap();
    let proxy = spawn_proxy_with_http(config(vec![server("pbx1", sim.addr())]), http).await;
    wait_ready(proxy.addr, None).await;
    (sim, proxy, http_addr)
}

/// Reads one HTTP response (headers + Content-Length body) from a kept-alive connection.
async fn read_response(s: &mut TcpStream) -> (u16, String, String) {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                .unwrap_or(0);
            if raw.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&raw[end + 4..end + 4 + len]).to_string();
                let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
                return (status, head, body);
            }
        }
        let n = tokio::time::timeout(WAIT, s.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&raw));
        raw.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn get_and_post_with_keep_alive_in_every_format() {
    let (_sim, _proxy, addr) = http_proxy().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET /?Action=Ping&ActionID=h1 HTTP/1.1\r\nHost: t\r\n{ALICE}\r\n").as_bytes()).await.unwrap();
    let (status, head, body) = read_response(&mut s).await;
    assert_eq!(status, 200);
    assert!(head.to_ascii_lowercase().contains("content-type: text/plain"));
    assert!(body.starts_with("Response: Success\r\nActionID: h1\r\nPing: Pong\r\n"), "{body}");
    // Same connection: a POST whose body comes in a second write, asking for JSON.
    let form = "Action=CoreShowChannels&ActionID=h2";
    s.write_all(
        format!(
            "POST /json HTTP/1.1\r\nHost: t\r\n{ALICE}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
            form.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    s.write_all(form.as_bytes()).await.unwrap();
    let (status, _, body) = read_response(&mut s).await;
    assert_eq!(status, 200);
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list[0]["EventList"], "start");
    assert_eq!(list.last().unwrap()["Event"], "CoreShowChannelsComplete");
    assert!(list.iter().all(|m| m["ActionID"] == "h2"));
    // XML by Accept header, headers and body in one write.
    s.write_all(format!("GET /?Action=CoreSettings HTTP/1.1\r\nHost: t\r\nAccept: text/xml\r\n{ALICE}\r\n").as_bytes())
        .await
        .unwrap();
    let (_, head, body) = read_response(&mut s).await;
    assert!(head.to_ascii_lowercase().contains("text/xml"));
    assert!(body.contains("<AsteriskVersion Value=\"22.10.1\"/>"), "{body}");
}

#[tokio::test]
async fn http_errors_have_status_codes() {
    let (_sim, _proxy, addr) = http_proxy().await;
    assert_eq!(http(addr, "GET", "/?Action=Ping").await.0, 401);
    let mut bad = TcpStream::connect(addr).await.unwrap();
    bad.write_all(b"GET /?Action=Ping HTTP/1.1\r\nHost: t\r\nAuthorization: Basic YWxpY2U6bm8=\r\n\r\n").await.unwrap();
    assert_eq!(read_response(&mut bad).await.0, 401);
    let request = |m: &str, path: &str, extra: &str| format!("{m} {path} HTTP/1.1\r\nHost: t\r\n{ALICE}{extra}\r\n");
    for (raw, code) in [
        (request("GET", "/nope?Action=Ping", ""), 404),
        (request("DELETE", "/?Action=Ping", ""), 405),
        (request("GET", "/?ActionID=x", ""), 400),
        (request("POST", "/", &format!("Content-Length: {}\r\n", 100_000)), 413),
    ] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(raw.as_bytes()).await.unwrap();
        if code == 413 {
            let _ = s.write_all(&vec![b'a'; 100_000]).await;
        }
        assert_eq!(read_response(&mut s).await.0, code, "{raw}");
    }
}

#[tokio::test]
async fn head_answers_the_headers_and_runs_no_action() {
    let (sim, _proxy, addr) = http_proxy().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    for (path, content_type) in [
        ("/?Action=Originate&Channel=Local/1@x&Application=Wait", "text/plain"),
        ("/rawman?Action=UserEvent&UserEvent=Probe", "text/plain"),
        ("/mxml?Action=UserEvent&UserEvent=Probe", "text/xml"),
        ("/json?Action=UserEvent&UserEvent=Probe", "application/json"),
    ] {
        s.write_all(format!("HEAD {path} HTTP/1.1\r\nHost: t\r\n{ALICE}\r\n").as_bytes()).await.unwrap();
        let (status, head, body) = read_response(&mut s).await;
        assert_eq!(status, 200, "{path}: {head}");
        let head = head.to_ascii_lowercase();
        assert!(head.contains(&format!("content-type: {content_type}")), "{path}: {head}");
        assert!(head.contains("allow: get, post, head"), "{head}");
        assert!(body.is_empty());
    }
    // Requests on one connection are served in order: had a HEAD run its action, the simulator
    // would have received it before this Ping.
    s.write_all(format!("GET /?Action=Ping HTTP/1.1\r\nHost: t\r\n{ALICE}\r\n").as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut s).await.0, 200);
    let actions: Vec<String> = sim.received().iter().filter_map(|m| m.get("Action").map(str::to_string)).collect();
    assert!(actions.iter().all(|a| a != "Originate" && a != "UserEvent"), "{actions:?}");
    assert!(actions.iter().any(|a| a == "Ping"), "{actions:?}");
    // Other methods get 405 with the Allow header.
    let mut d = TcpStream::connect(addr).await.unwrap();
    d.write_all(format!("DELETE /rawman HTTP/1.1\r\nHost: t\r\n{ALICE}\r\n").as_bytes()).await.unwrap();
    let (status, head, _) = read_response(&mut d).await;
    assert_eq!(status, 405);
    assert!(head.to_ascii_lowercase().contains("allow: get, post, head"), "{head}");
}

/// HTTP 1.x actions are routed as TCP ones: `maxpendingactions` holds per client address. A
/// second action while the first is held at the simulator is refused at once; once the first is
/// answered, the slot is free again.
#[tokio::test]
async fn http_actions_honour_maxpendingactions_per_address() {
    let sim = sim().await;
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = http.local_addr().unwrap();
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    cfg.max_pending_actions = 1;
    let proxy = spawn_proxy_with_http(cfg, http).await;
    wait_ready(proxy.addr, None).await;
    sim.set_gate(Some("CoreStatus"));
    let slow = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET /?Action=CoreStatus&ActionID=slow HTTP/1.1\r\nHost: t\r\n{ALICE}\r\n").as_bytes())
            .await
            .unwrap();
        read_response(&mut s).await
    });
    sim.gated(1).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET /?Action=Ping&ActionID=p1 HTTP/1.1\r\nHost: t\r\n{ALICE}\r\n").as_bytes()).await.unwrap();
    let (status, _, body) = read_response(&mut s).await;
    assert_eq!(status, 200);
    assert!(body.contains("Response: Error\r\nActionID: p1\r\nMessage: Too many pending actions (limit 1)"), "{body}");
    assert!(body.contains("Server: pbx1"), "{body}");
    sim.open_gate(1);
    let (status, _, body) = slow.await.unwrap();
    assert_eq!(status, 200);
    assert!(body.starts_with("Response: Success\r\nActionID: slow\r\n"), "{body}");
    s.write_all(format!("GET /?Action=Ping&ActionID=p2 HTTP/1.1\r\nHost: t\r\n{ALICE}\r\n").as_bytes()).await.unwrap();
    let (_, _, body) = read_response(&mut s).await;
    assert!(body.contains("Ping: Pong"), "{body}");
}

/// An HTTP 1.x action's answer is complete when the upstream session ends its route: for an
/// async Originate that is its `OriginateResponse`, which comes in the same body, after the
/// `Success` (the session decides, not the HTTP front).
#[tokio::test]
async fn an_async_originate_over_http_answers_up_to_its_originate_response() {
    let (_sim, _proxy, addr) = http_proxy().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let path =
        "/?Action=Originate&Channel=Local/100@default&Exten=100&Context=default&Priority=1&Async=true&ActionID=o1";
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n{ALICE}\r\n").as_bytes()).await.unwrap();
    let (status, _, body) = read_response(&mut s).await;
    assert_eq!(status, 200);
    assert!(body.starts_with("Response: Success\r\nActionID: o1\r\n"), "{body}");
    let event = body.find("Event: OriginateResponse").unwrap_or_else(|| panic!("no OriginateResponse: {body}"));
    assert!(body[event..].contains("ActionID: o1"), "{body}");
}
