//! Operations: metrics and health endpoints, graceful shutdown, and fault tests.

use std::time::Duration;

use astmanproxy_handlers::{Kind, Message};

use crate::support::*;

#[tokio::test]
async fn metrics_health_and_readiness() {
    let sim = sim().await;
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let mut cfg = config(vec![server("pbx1", sim.addr()), server("dead", closed)]);
    cfg.ready_share = 1.0;
    let proxy = spawn_proxy_with_admin(cfg).await;
    let admin = proxy.admin.unwrap();
    wait_ready(proxy.addr, Some("pbx1")).await;
    let mut c = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    assert_eq!(c.action("Ping", "m1", &[]).await.get("Ping"), Some("Pong"));
    let mut bad = AmiClient::connect(proxy.addr).await;
    assert_eq!(bad.login_as("alice", "wrong", None).await.response(), Some("Error"));

    let (status, body) = http(admin, "GET", "/metrics").await;
    assert_eq!(status, 200);
    for needle in [
        "astmanproxy_server_connected{server=\"pbx1\"} 1",
        "astmanproxy_server_connected{server=\"dead\"} 0",
        "astmanproxy_clients_connected{kind=\"ami\"}",
        "astmanproxy_auth_failures_total{kind=\"ami\"} 1",
        "astmanproxy_server_action_seconds_count{server=\"pbx1\"}",
        "astmanproxy_server_actions_total{server=\"pbx1\"}",
        "astmanproxy_server_events_total{server=\"pbx1\"}",
        "astmanproxy_server_pending_actions{server=\"pbx1\"} 0",
        "astmanproxy_client_queue_bytes{kind=\"ami\"}",
    ] {
        assert!(body.contains(needle), "{needle} missing from:\n{body}");
    }
    assert_eq!(http(admin, "GET", "/healthz").await, (200, "ok\n".to_string()));
    let (status, body) = http(admin, "GET", "/readyz").await;
    assert_eq!((status, body.as_str()), (503, "not ready: 1/2 servers logged in\n"));
    assert_eq!(http(admin, "POST", "/metrics").await.0, 405);
    assert_eq!(http(admin, "GET", "/nope").await.0, 404);
    proxy.stop().await;
}

#[tokio::test]
async fn readiness_with_a_share() {
    let sim = sim().await;
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let mut cfg = config(vec![server("pbx1", sim.addr()), server("dead", closed)]);
    cfg.ready_share = 0.5;
    let proxy = spawn_proxy_with_admin(cfg).await;
    wait_ready(proxy.addr, Some("pbx1")).await;
    assert_eq!(http(proxy.admin.unwrap(), "GET", "/readyz").await.0, 200);
}

#[tokio::test]
async fn graceful_shutdown_answers_pending_tells_clients_and_logs_off() {
    let (sim, proxy) = proxy_with_sim().await;
    let mut a = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    sim.set_hold(Some("CoreStatus"));
    a.send(&Message::new().with("Action", "CoreStatus").with("ActionID", "held")).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !sim.received().iter().any(|m| m.action() == Some("CoreStatus")) {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut pre = AmiClient::connect(proxy.addr).await;
    // The held action does not keep the proxy from stopping.
    assert!(proxy.stop_finished().await, "the proxy never finished stopping");
    let answer = a.response("held").await;
    assert_eq!(answer.response(), Some("Error"));
    let notice = a.recv_until(|m| m.kind() == Kind::Event && m.event() == Some("ProxyShutdown")).await;
    assert_eq!(notice.get("Message"), Some("Proxy shutting down"));
    assert!(a.is_closed(WAIT).await);
    // A client that never logged in gets nothing, just the close.
    assert!(pre.try_recv(Duration::from_secs(2)).await.is_none());
    let deadline = tokio::time::Instant::now() + WAIT;
    while sim.connection_count() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the proxy never logged off Asterisk");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_killed_repeatedly_under_event_load() {
    let (sim, proxy) = proxy_with_sim().await;
    // Events off: this client checks its answers; the flood is load on the proxy's reader only.
    let mut a = AmiClient::connect(proxy.addr).await;
    assert_eq!(a.login_as("alice", "alicepw", Some("off")).await.response(), Some("Success"));
    let mut watcher = AmiClient::connect(proxy.addr).await;
    assert_eq!(watcher.login_as("bob", "bobpw", Some("system")).await.response(), Some("Success"));
    let flood = Message::new().with("Event", "UserEvent").with("Privilege", "user,all").with("Data", "x");
    for round in 0..5 {
        wait_ready(proxy.addr, None).await;
        sim.emit_many(&flood, 5_000);
        let id = format!("r{round}");
        a.send(&Message::new().with("Action", "CoreSettings").with("ActionID", id.as_str())).await;
        sim.kill_connections();
        // Every action is answered: by Asterisk before the kill, or with an error after it.
        let answer = a.response(&id).await;
        assert!(matches!(answer.response(), Some("Success" | "Error")), "{answer:?}");
    }
    wait_ready(proxy.addr, None).await;
    // The client never lost its proxy session.
    assert_eq!(a.action("Ping", "end", &[]).await.get("Ping"), Some("Pong"));
    assert!(sim.login_count() >= 6);
    // A client with events on saw the server go and come back.
    let status = watcher.recv_until(|m| m.event() == Some("ProxyServerStatus")).await;
    assert_eq!(status.get("Server"), Some("pbx1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_connects_and_disconnects() {
    let sim = sim().await;
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    cfg.admin_users = vec!["alice".into()]; // to count the sessions with ListSessions
    let proxy = spawn_proxy(cfg).await;
    wait_ready(proxy.addr, None).await;
    let mut tasks = Vec::new();
    for i in 0..2_000 {
        let addr = proxy.addr;
        tasks.push(tokio::spawn(async move {
            let mut c = AmiClient::connect_raw(addr).await;
            if i % 2 == 0 {
                c.send_raw(b"Action: Login\r\nUsername: alice\r\nSecret: alicepw\r\n\r\n").await;
            }
            // Dropped at once: half of them mid-login.
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut a = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    assert_eq!(a.action("Ping", "after", &[]).await.get("Ping"), Some("Pong"));
    // Every one of them is gone from the session list (only `a` remains), eventually: 2000
    // teardowns can take a while when the machine runs the whole suite at once.
    let deadline = tokio::time::Instant::now() + 3 * WAIT;
    loop {
        a.send(&Message::new().with("ProxyAction", "ListSessions").with("ActionID", "ls")).await;
        let list = a.recv_until(|m| m.get("ProxyResponse").is_some() && m.action_id() == Some("ls")).await;
        if list.get_all("ProxyClientSession").count() == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sessions leaked: {}",
            list.get_all("ProxyClientSession").count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn megabytes_of_garbage_from_a_client_harm_nobody() {
    let (_sim, proxy) = proxy_with_sim().await;
    let mut other = AmiClient::login(proxy.addr, "bob", "bobpw").await;
    let mut garbage = AmiClient::connect(proxy.addr).await;
    let mut junk = Vec::new();
    let mut x: u32 = 12345;
    while junk.len() < 4 * 1024 * 1024 {
        // A cheap deterministic byte soup with some line breaks and colons.
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        junk.push(match x >> 24 {
            0..=9 => b'\n',
            10..=14 => b':',
            b => b as u8,
        });
    }
    // Written from another task: the proxy answers junk blocks and this client never reads.
    let writer = tokio::spawn(async move {
        garbage.send_raw(&junk).await;
        garbage
    });
    assert_eq!(other.action("Ping", "fine", &[]).await.get("Ping"), Some("Pong"));
    let _ = tokio::time::timeout(WAIT, writer).await;
    assert_eq!(other.action("Ping", "still", &[]).await.get("Ping"), Some("Pong"));
}
