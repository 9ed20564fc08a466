//! `/ws`: WebSocket clients through tokio-tungstenite against the real proxy and the simulator.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ami_sim::AmiSim;
use astmanproxy::config::{Config, LagPolicy, Users};
use astmanproxy_handlers::Message;
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};
use tokio_tungstenite::WebSocketStream;

use crate::support::*;

type Ws = WebSocketStream<TcpStream>;

/// A simulator and a proxy with its HTTP front; returns once the proxy is ready.
async fn ws_proxy(cfg: impl FnOnce(&mut Config)) -> (AmiSim, TestProxy, SocketAddr) {
    let sim = sim().await;
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = http.local_addr().unwrap();
    let mut config = config(vec![server("pbx1", sim.addr())]);
    cfg(&mut config);
    let proxy = spawn_proxy_with_http(config, http).await;
    wait_ready(proxy.addr, None).await;
    (sim, proxy, http_addr)
}

/// Opens `/ws` over `stream`, with HTTP Basic when `basic` is given.
async fn open_on(stream: TcpStream, addr: SocketAddr, basic: Option<(&str, &str)>) -> Result<Ws, WsError> {
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    if let Some((user, secret)) = basic {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
        request.headers_mut().insert("Authorization", format!("Basic {token}").parse().unwrap());
    }
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(request, stream)).await.unwrap()?;
    Ok(ws)
}

async fn open(addr: SocketAddr, basic: Option<(&str, &str)>) -> Result<Ws, WsError> {
    open_on(TcpStream::connect(addr).await.unwrap(), addr, basic).await
}

async fn send(ws: &mut Ws, value: Value) {
    ws.send(WsMessage::text(value.to_string())).await.unwrap();
}

/// The next frame (text, or close), skipping pings and pongs; `None` after `wait`.
async fn try_frame(ws: &mut Ws, wait: Duration) -> Option<WsMessage> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return None,
            Ok(None) => return Some(WsMessage::Close(None)),
            Ok(Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_)))) => {}
            Ok(Some(Ok(m))) => return Some(m),
            Ok(Some(Err(e))) => panic!("WebSocket error: {e}"),
        }
    }
}

/// The next JSON message; panics on close or timeout.
async fn next_json(ws: &mut Ws) -> Value {
    match try_frame(ws, WAIT).await {
        Some(WsMessage::Text(t)) => serde_json::from_str(t.as_str()).unwrap(),
        other => panic!("expected a JSON text frame, got {other:?}"),
    }
}

/// Skips messages until one has `ActionID: id`.
async fn answer(ws: &mut Ws, id: &str) -> Value {
    loop {
        let m = next_json(ws).await;
        if m["ActionID"] == id {
            return m;
        }
    }
}

/// The close frame that ends the socket (messages before it are skipped).
async fn close_code(ws: &mut Ws) -> Option<CloseCode> {
    loop {
        match try_frame(ws, Duration::from_secs(30)).await.expect("socket still open") {
            WsMessage::Close(frame) => return frame.map(|f| f.code),
            _ => continue,
        }
    }
}

async fn login(ws: &mut Ws, user: &str, secret: &str) -> Value {
    send(ws, json!({"Action": "Login", "Username": user, "Secret": secret, "ActionID": "login"})).await;
    answer(ws, "login").await
}

fn event(name: &str, privilege: &str) -> Message {
    Message::new().with("Event", name).with("Privilege", privilege).with("Channel", "PJSIP/1001-00000001")
}

/// The names of the events in `wanted` that arrive before `Sentinel`.
async fn events_until_sentinel(ws: &mut Ws, wanted: &[&str]) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let m = next_json(ws).await;
        let name = m["Event"].as_str().unwrap_or_default().to_string();
        if name == "Sentinel" {
            return seen;
        }
        if wanted.contains(&name.as_str()) {
            seen.push(name);
        }
    }
}

#[tokio::test]
async fn basic_auth_on_upgrade_then_ping_and_events() {
    let (sim, _proxy, addr) = ws_proxy(|_| {}).await;
    let mut ws = open(addr, Some(("alice", "alicepw"))).await.unwrap();
    send(&mut ws, json!({"Action": "Ping", "ActionID": "p1"})).await;
    let pong = answer(&mut ws, "p1").await;
    assert_eq!((pong["Response"].as_str(), pong["Ping"].as_str()), (Some("Success"), Some("Pong")), "{pong}");
    assert_eq!(pong["Server"], "pbx1");
    sim.emit(event("Newchannel", "call,all"));
    sim.emit(event("Sentinel", "call,all"));
    assert_eq!(events_until_sentinel(&mut ws, &["Newchannel"]).await, ["Newchannel"]);
}

#[tokio::test]
async fn wrong_basic_password_gets_401_and_no_upgrade() {
    let (_sim, _proxy, addr) = ws_proxy(|_| {}).await;
    match open(addr, Some(("alice", "wrong"))).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 401),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("upgraded with a wrong password"),
    }
    // Not an upgrade at all: 426.
    let (status, _) = http(addr, "GET", "/ws").await;
    assert_eq!(status, 426);
}

#[tokio::test]
async fn login_as_first_message_and_nothing_flows_before_it() {
    let (sim, proxy, addr) = ws_proxy(|_| {}).await;
    let mut ws = open(addr, None).await.unwrap();
    // An event the proxy broadcasts (a TCP client sees it) while the socket is not logged in.
    let mut tcp = AmiClient::login(proxy.addr, "bob", "bobpw").await;
    sim.emit(event("Newchannel", "call,all"));
    tcp.recv_until(|m| m.event() == Some("Newchannel")).await;
    send(&mut ws, json!({"Action": "Ping", "ActionID": "early"})).await;
    let denied = next_json(&mut ws).await;
    assert_eq!((denied["ActionID"].as_str(), denied["Message"].as_str()), (Some("early"), Some("Permission denied")));
    let ok = login(&mut ws, "alice", "alicepw").await;
    assert_eq!(ok["Response"], "Success", "{ok}");
    sim.emit(event("Hangup", "call,all"));
    sim.emit(event("Sentinel", "call,all"));
    // Only the event sent after the login arrives.
    assert_eq!(events_until_sentinel(&mut ws, &["Newchannel", "Hangup"]).await, ["Hangup"]);
}

#[tokio::test]
async fn wrong_password_in_login_message_is_an_error_then_a_close() {
    let (_sim, _proxy, addr) = ws_proxy(|_| {}).await;
    let mut ws = open(addr, None).await.unwrap();
    let refused = login(&mut ws, "alice", "nope").await;
    assert_eq!(
        (refused["Response"].as_str(), refused["Message"].as_str()),
        (Some("Error"), Some("Authentication failed"))
    );
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Normal));
}

#[tokio::test]
async fn two_sockets_with_the_same_action_id_are_isolated() {
    let (_sim, _proxy, addr) = ws_proxy(|_| {}).await;
    let mut a = open(addr, Some(("alice", "alicepw"))).await.unwrap();
    let mut b = open(addr, Some(("bob", "bobpw"))).await.unwrap();
    send(&mut a, json!({"Action": "CoreSettings", "ActionID": "same"})).await;
    send(&mut b, json!({"Action": "Ping", "ActionID": "same"})).await;
    let (ra, rb) = (answer(&mut a, "same").await, answer(&mut b, "same").await);
    assert!(ra.get("Ping").is_none() && ra["Response"] == "Success", "{ra}");
    assert_eq!(rb["Ping"], "Pong", "{rb}");
    // Neither got the other's answer: the next answer on each is its own.
    for ws in [&mut a, &mut b] {
        send(ws, json!({"Action": "Ping", "ActionID": "after"})).await;
        loop {
            let m = next_json(ws).await;
            assert_ne!(m["ActionID"], "same", "a second answer for 'same': {m}");
            if m["ActionID"] == "after" {
                break;
            }
        }
    }
}

const USERS: &str = "\
alice=alicepw
[calls]
secret = callspw
read = call
";

#[tokio::test]
async fn events_are_filtered_per_socket() {
    let (sim, _proxy, addr) = ws_proxy(|c| c.users = Users::parse(USERS, Path::new("ws.users")).unwrap()).await;
    let mut all = open(addr, Some(("alice", "alicepw"))).await.unwrap();
    let mut calls = open(addr, Some(("calls", "callspw"))).await.unwrap();
    let mut named = open(addr, Some(("alice", "alicepw"))).await.unwrap();
    let mut off = open(addr, Some(("alice", "alicepw"))).await.unwrap();
    send(&mut named, json!({"Action": "Filter", "Event": "Hangup, Sentinel", "ActionID": "f"})).await;
    assert_eq!(answer(&mut named, "f").await["Event"], "hangup,sentinel");
    send(&mut off, json!({"Action": "Events", "EventMask": "off", "ActionID": "e"})).await;
    assert_eq!(answer(&mut off, "e").await["Events"], "Off");
    sim.emit(event("UserEvent", "user,all"));
    sim.emit(event("Newchannel", "call,all"));
    sim.emit(event("Hangup", "call,all"));
    sim.emit(event("Sentinel", "call,all"));
    let names = ["UserEvent", "Newchannel", "Hangup"];
    assert_eq!(events_until_sentinel(&mut all, &names).await, names);
    assert_eq!(events_until_sentinel(&mut calls, &names).await, ["Newchannel", "Hangup"]);
    assert_eq!(events_until_sentinel(&mut named, &names).await, ["Hangup"]);
    // Answers pass the name filter.
    send(&mut named, json!({"Action": "Ping", "ActionID": "n"})).await;
    assert_eq!(answer(&mut named, "n").await["Ping"], "Pong");
    // Events off: the next thing on the socket is the answer to this Ping.
    send(&mut off, json!({"Action": "Ping", "ActionID": "o"})).await;
    let first = next_json(&mut off).await;
    assert_eq!(first["ActionID"], "o", "an event reached a socket with events off: {first}");
}

/// A socket that stops reading during a flood falls behind the event ring: it gets the lag
/// policy (a `ProxyClientLagged`, then close 1008) while another socket gets every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_socket_gets_the_lag_policy_and_others_are_unaffected() {
    let (sim, _proxy, addr) = ws_proxy(|c| {
        // About 8 000 of the flood's events: a socket that stops reading falls out of it.
        c.client_event_buffer = 4 * 1024 * 1024;
        c.lag_policy = LagPolicy::Disconnect;
        c.client_write_timeout = Duration::from_secs(120);
    })
    .await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = open_on(socket.connect(addr).await.unwrap(), addr, Some(("alice", "alicepw"))).await.unwrap();
    let mut fast = open(addr, Some(("bob", "bobpw"))).await.unwrap();
    for ws in [&mut slow, &mut fast] {
        send(ws, json!({"Action": "Ping", "ActionID": "subscribed"})).await;
        answer(ws, "subscribed").await;
    }
    // In rounds the fast socket keeps up with (it reads each round to its sentinel), so only
    // the socket that does not read falls behind the event ring.
    let (rounds, per_round) = (20, 2000);
    let n = rounds * per_round;
    let flood =
        Message::new().with("Event", "UserEvent").with("Privilege", "user,all").with("Padding", "x".repeat(400));
    let mut got = 0;
    for _ in 0..rounds {
        sim.emit_many(&flood, per_round);
        sim.emit(event("RoundEnd", "user,all"));
        loop {
            match try_frame(&mut fast, Duration::from_secs(60)).await.expect("fast socket: nothing for 60 s") {
                WsMessage::Text(t) if t.as_str().starts_with("{\"Event\":\"UserEvent\"") => got += 1,
                WsMessage::Text(t) if t.as_str().starts_with("{\"Event\":\"RoundEnd\"") => break,
                WsMessage::Text(_) => {}
                other => panic!("fast socket closed: {other:?}"),
            }
        }
    }
    assert_eq!(got, n, "the fast socket missed events");
    sim.emit(event("Sentinel", "user,all"));
    // Now the slow one reads: part of the flood, the lag notice, the close.
    let (mut lag_notice, mut sentinel, mut read) = (false, false, 0);
    let code = loop {
        match try_frame(&mut slow, Duration::from_secs(60)).await.expect("slow socket: nothing for 60 s") {
            WsMessage::Text(t) => {
                read += 1;
                lag_notice |= t.as_str().starts_with("{\"Event\":\"ProxyClientLagged\"");
                sentinel |= t.as_str().starts_with("{\"Event\":\"Sentinel\"");
            }
            WsMessage::Close(frame) => break frame.map(|f| f.code),
            _ => {}
        }
    };
    assert!(lag_notice, "no ProxyClientLagged after {read} messages");
    assert!(!sentinel && read < n, "the slow socket did not lag ({read} messages)");
    assert_eq!(code, Some(CloseCode::Policy));
    send(&mut fast, json!({"Action": "Ping", "ActionID": "still"})).await;
    assert_eq!(answer(&mut fast, "still").await["Ping"], "Pong");
}

#[tokio::test]
async fn malformed_json_and_binary_frames_get_errors_and_the_socket_goes_on() {
    let (_sim, _proxy, addr) = ws_proxy(|_| {}).await;
    let mut ws = open(addr, Some(("alice", "alicepw"))).await.unwrap();
    ws.send(WsMessage::text("{\"Action\": \"Ping\"")).await.unwrap();
    let bad = next_json(&mut ws).await;
    assert_eq!(bad["Response"], "Error");
    assert!(bad["Message"].as_str().unwrap().starts_with("invalid JSON action"), "{bad}");
    ws.send(WsMessage::text("[\"Ping\"]")).await.unwrap();
    assert!(next_json(&mut ws).await["Message"].as_str().unwrap().contains("one object"));
    ws.send(WsMessage::binary(vec![1u8, 2, 3])).await.unwrap();
    assert!(next_json(&mut ws).await["Message"].as_str().unwrap().contains("binary frames"));
    // A pretty-printed action over several lines is one action.
    ws.send(WsMessage::text("{\n  \"Action\": \"Ping\",\n  \"ActionID\": \"multi\"\n}")).await.unwrap();
    assert_eq!(answer(&mut ws, "multi").await["Ping"], "Pong");
}

#[tokio::test]
async fn oversize_frame_closes_with_1009() {
    let (_sim, _proxy, addr) = ws_proxy(|c| c.limits.max_message = 4096).await;
    let mut ws = open(addr, Some(("alice", "alicepw"))).await.unwrap();
    let big = json!({"Action": "Ping", "Padding": "x".repeat(10_000)});
    send(&mut ws, big).await;
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Size));
}

#[tokio::test]
async fn client_close_ends_the_session() {
    let (_sim, proxy, addr) = ws_proxy(|c| c.admin_users = vec!["bob".into()]).await;
    let mut ws = open(addr, Some(("carol", "carolpw"))).await.unwrap();
    send(&mut ws, json!({"Action": "Ping", "ActionID": "c"})).await;
    answer(&mut ws, "c").await;
    ws.close(None).await.unwrap();
    assert!(matches!(try_frame(&mut ws, WAIT).await, Some(WsMessage::Close(_))));
    // The session is gone from ListSessions.
    let mut tcp = AmiClient::login(proxy.addr, "bob", "bobpw").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        tcp.send(&Message::new().with("ProxyAction", "ListSessions").with("ActionID", "ls")).await;
        let list = tcp.recv_until(|m| m.action_id() == Some("ls")).await;
        if !list.get_all("ProxyClientUser").any(|u| u == "carol") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "carol's session outlived its socket");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn shutdown_closes_sockets_with_1001() {
    let (_sim, proxy, addr) = ws_proxy(|_| {}).await;
    let mut ws = open(addr, Some(("alice", "alicepw"))).await.unwrap();
    send(&mut ws, json!({"Action": "Ping", "ActionID": "s"})).await;
    answer(&mut ws, "s").await;
    let stopping = tokio::spawn(proxy.stop());
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Away));
    // Our reply to the close goes out as we read on; then the proxy finishes stopping.
    while let Some(Ok(_)) = ws.next().await {}
    tokio::time::timeout(WAIT, stopping).await.unwrap().unwrap();
}

#[tokio::test]
async fn ping_frames_are_answered() {
    let (_sim, _proxy, addr) = ws_proxy(|_| {}).await;
    let mut ws = open(addr, Some(("alice", "alicepw"))).await.unwrap();
    ws.send(WsMessage::Ping(b"are you there".to_vec().into())).await.unwrap();
    let pong = tokio::time::timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(pong, WsMessage::Pong(b"are you there".to_vec().into()));
}

#[tokio::test]
async fn upgrades_from_another_origin_are_refused() {
    let (_sim, _proxy, addr) = ws_proxy(|_| {}).await;
    let stream = TcpStream::connect(addr).await.unwrap();
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    request.headers_mut().insert("Origin", "http://evil.example".parse().unwrap());
    match tokio_tungstenite::client_async(request, stream).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("cross-origin upgrade not refused: {:?}", other.map(|_| ())),
    }
    // The page's own origin is fine.
    let stream = TcpStream::connect(addr).await.unwrap();
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    request.headers_mut().insert("Origin", format!("http://{addr}").parse().unwrap());
    assert!(tokio_tungstenite::client_async(request, stream).await.is_ok());
}

/// WebSocket sessions count as `kind="ws"` in the metrics.
#[tokio::test]
async fn sessions_count_as_ws_in_the_metrics() {
    let sim = sim().await;
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    cfg.listen_address = "127.0.0.1".parse().unwrap();
    let (ami, front, admin) = (
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
    );
    let (http_addr, admin_addr) = (front.local_addr().unwrap(), admin.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listeners = astmanproxy::Listeners { ami, tls: None, admin: Some(admin), http: Some(front) };
    let task = tokio::spawn(astmanproxy::serve(cfg, listeners, async {
        let _ = stopped.await;
    }));
    let mut ws = open(http_addr, Some(("alice", "alicepw"))).await.unwrap();
    send(&mut ws, json!({"Action": "Ping", "ActionID": "m"})).await;
    answer(&mut ws, "m").await;
    let (_, metrics) = http(admin_addr, "GET", "/metrics").await;
    assert!(metrics.contains("clients_connected{kind=\"ws\"} 1"), "{metrics}");
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}
    let deadline = tokio::time::Instant::now() + WAIT;
    while !http(admin_addr, "GET", "/metrics").await.1.contains("clients_connected{kind=\"ws\"} 0") {
        assert!(tokio::time::Instant::now() < deadline, "the ws session is still counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(());
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap().unwrap();
}

/// Opens `/ws` with Basic, retrying while the proxy answers 503 (a connection of an earlier
/// step may still be ending).
async fn open_when_room(addr: SocketAddr, user: &str, secret: &str) -> Ws {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match open(addr, Some((user, secret))).await {
            Ok(ws) => return ws,
            Err(WsError::Http(r)) if r.status() == 503 => {}
            Err(e) => panic!("unexpected error {e}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "never any room for a socket");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sockets_count_against_maxclients() {
    let (_sim, proxy, addr) = ws_proxy(|cfg| cfg.max_clients = 2).await;
    let mut first = open_when_room(addr, "alice", "alicepw").await;
    let mut second = open_when_room(addr, "bob", "bobpw").await;
    for (ws, id) in [(&mut first, "1"), (&mut second, "2")] {
        send(ws, json!({"Action": "Ping", "ActionID": id})).await;
        assert_eq!(answer(ws, id).await["Ping"], "Pong");
    }
    // A third socket, and an AMI client, are over the limit.
    match open(addr, Some(("carol", "carolpw"))).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 503),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a socket over maxclients was upgraded"),
    }
    let mut ami = AmiClient::connect_raw(proxy.addr).await;
    let refused = ami.recv().await;
    assert!(refused.get("Message").is_some_and(|m| m.contains("maxclients")), "{refused:?}");
    // A socket that closes gives its room back.
    first.close(None).await.unwrap();
    let mut third = open_when_room(addr, "carol", "carolpw").await;
    send(&mut third, json!({"Action": "Ping", "ActionID": "3"})).await;
    assert_eq!(answer(&mut third, "3").await["Ping"], "Pong");
}

/// A socket that stops reading is cut off by `clientwritetimeout` and told, as a TCP client is:
/// after the frames it was being sent, a final `ProxyClientLagged` (best effort: it gets it here
/// because it reads again once the cut-off happened), counted as a `ws` cut-off. The bridge of
/// before dropped the socket's queue and the notice without a word.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_cut_off_by_the_write_timeout_gets_a_final_notice() {
    let sim = sim().await;
    let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = front.local_addr().unwrap();
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    cfg.client_write_timeout = Duration::from_secs(1);
    let proxy = spawn_proxy_with_http_and_admin(cfg, front).await;
    let admin = proxy.admin.unwrap();
    wait_ready(proxy.addr, None).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled =
        open_on(socket.connect(http_addr).await.unwrap(), http_addr, Some(("alice", "alicepw"))).await.unwrap();
    send(&mut stalled, json!({"Action": "Ping", "ActionID": "subscribed"})).await;
    answer(&mut stalled, "subscribed").await;
    let flood =
        Message::new().with("Event", "UserEvent").with("Privilege", "user,all").with("Padding", "x".repeat(400));
    sim.emit_many(&flood, 50_000);
    sim.emit(event("Sentinel", "user,all"));
    let cutoffs = "astmanproxy_client_cutoffs_total{kind=\"ws\",reason=\"writetimeout\"}";
    eventually("the stalled socket cut off", || async move { metric(admin, cutoffs).await == 1.0 }).await;
    let (mut last, mut sentinel) = (String::new(), false);
    let ended = loop {
        match tokio::time::timeout(WAIT, stalled.next()).await {
            Err(_) => break false,
            Ok(Some(Ok(WsMessage::Text(t)))) => {
                sentinel |= t.as_str().starts_with("{\"Event\":\"Sentinel\"");
                last = t.as_str().to_string();
            }
            Ok(Some(Ok(WsMessage::Close(_))) | None | Some(Err(_))) => break true,
            Ok(Some(Ok(_))) => {}
        }
    };
    assert!(ended, "the stalled socket is still open");
    assert!(!sentinel, "the stalled socket was not cut off");
    assert!(last.starts_with("{\"Event\":\"ProxyClientLagged\""), "no final notice: {last}");
    assert!(last.contains("clientwritetimeout"), "{last}");
}
