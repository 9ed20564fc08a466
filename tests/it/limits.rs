//! Bad input and slow clients.

use std::time::Duration;

use astmanproxy::config::LagPolicy;
use astmanproxy_handlers::Message;

use crate::support::*;

#[tokio::test]
async fn oversize_line_gets_a_clear_error_and_a_close() {
    let sim = sim().await;
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    cfg.limits.max_line = 4096;
    let proxy = spawn_proxy(cfg).await;
    let mut c = AmiClient::connect(proxy.addr).await;
    c.send_raw(&vec![b'A'; 10_000]).await;
    let err = c.recv().await;
    assert_eq!(err.response(), Some("Error"));
    assert!(err.get("Message").unwrap().contains("line too long"), "{err:?}");
    assert!(c.is_closed(WAIT).await);
}

#[tokio::test]
async fn garbage_and_empty_blocks_are_harmless() {
    let (_sim, proxy) = proxy_with_sim().await;
    let mut c = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    c.send_raw(b"\r\n\r\n\r\nthis is not ami\r\n\x00\x01\x02\r\n\r\n").await;
    let r = c.recv_until(|m| m.response().is_some()).await;
    assert_eq!(r.get("Message"), Some("Missing action in request"));
    assert_eq!(c.action("Ping", "still", &[]).await.get("Ping"), Some("Pong"));
}

#[tokio::test]
async fn half_closed_client_still_gets_its_answers() {
    let (_sim, proxy) = proxy_with_sim().await;
    let mut c = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    c.send(&Message::new().with("Action", "CoreSettings").with("ActionID", "hc")).await;
    c.shutdown_write().await;
    let r = c.response("hc").await;
    assert_eq!(r.response(), Some("Success"));
    assert!(c.is_closed(WAIT).await);
}

/// A client that never reads is cut off; the others get every event, and the proxy's memory for
/// it stays bounded by the queue limits.
async fn slow_reader_does_not_slow_others(policy: LagPolicy) {
    let sim = sim().await;
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    cfg.client_write_timeout = Duration::from_millis(300);
    cfg.client_event_queue = 256;
    cfg.lag_policy = policy;
    let proxy = spawn_proxy(cfg).await;
    wait_ready(proxy.addr, None).await;
    let mut slow = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    let mut fast = AmiClient::login(proxy.addr, "bob", "bobpw").await;
    let n = 100_000;
    let mut event = Message::new().with("Event", "UserEvent").with("Privilege", "user,all");
    event.push("Padding", "x".repeat(200));
    sim.emit_many(&event, n);
    let mut got = 0;
    while got < n {
        let m = fast.recv().await;
        if m.event() == Some("UserEvent") {
            got += 1;
        }
    }
    // The slow client: its connection is closed, and what it was sent is far less than the flood.
    let read = slow.read_to_close(WAIT).await;
    assert!(read < n * 250, "the slow client got {read} bytes: unbounded buffering?");
    // The fast one is unaffected.
    assert_eq!(fast.action("Ping", "after", &[]).await.get("Ping"), Some("Pong"));
}

#[tokio::test]
async fn slow_reader_disconnect_policy() {
    slow_reader_does_not_slow_others(LagPolicy::Disconnect).await;
}

#[tokio::test]
async fn slow_reader_drop_policy() {
    slow_reader_does_not_slow_others(LagPolicy::Drop).await;
}

#[tokio::test]
async fn too_many_clients_are_refused_with_a_message() {
    let sim = sim().await;
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    cfg.max_clients = 1;
    let proxy = spawn_proxy(cfg).await;
    let _first = AmiClient::connect(proxy.addr).await;
    let mut second = AmiClient::connect_raw(proxy.addr).await;
    let m = second.recv().await;
    assert_eq!(m.response(), Some("Error"));
    assert!(m.get("Message").unwrap().contains("Too many"));
}
