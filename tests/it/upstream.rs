//! Upstream failures: server down, dropped mid-list, restarts, half-open sockets.

use std::time::Duration;

use ami_sim::{AmiSim, SimOptions};
use astmanproxy_handlers::Kind;

use crate::support::*;

#[tokio::test]
async fn server_down_answers_at_once() {
    // A port with nothing listening: bind, take the address, close.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let proxy = spawn_proxy(config(vec![server("dead", closed)])).await;
    let mut a = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    let started = tokio::time::Instant::now();
    let r = a.action("Ping", "x", &[]).await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(r.response(), Some("Error"));
    assert_eq!(r.header(1).unwrap().0, "ActionID");
    assert!(r.get("Message").unwrap().contains("dead"), "{r:?}");
    assert_eq!(r.get("Server"), Some("dead"));
}

#[tokio::test]
async fn dropped_mid_list_gives_an_error_and_the_session_comes_back() {
    // The event session itself (the one that announces ProxyServerStatus) carries the list.
    let sim = sim().await;
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    cfg.action_sessions = 1;
    let proxy = spawn_proxy(cfg).await;
    wait_ready(proxy.addr, None).await;
    let mut a = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    sim.set_drop_mid_list(Some("CoreShowChannels"));
    let start = a.action("CoreShowChannels", "l", &[]).await;
    assert_eq!(start.get("EventList"), Some("start"));
    let err = a.recv_until(|m| m.kind() == Kind::Response && m.action_id() == Some("l")).await;
    assert_eq!(err.response(), Some("Error"));
    assert!(err.get("Message").unwrap().contains("disconnected"), "{err:?}");
    let down = a.recv_until(|m| m.event() == Some("ProxyServerStatus")).await;
    assert_eq!(down.get("Status"), Some("Disconnected"));
    sim.set_drop_mid_list(None);
    let up = a.recv_until(|m| m.event() == Some("ProxyServerStatus")).await;
    assert_eq!(up.get("Status"), Some("Connected"));
    assert_eq!(a.action("Ping", "again", &[]).await.get("Ping"), Some("Pong"));
    assert!(sim.login_count() >= 2);
}

#[tokio::test]
async fn pending_actions_are_answered_when_asterisk_restarts() {
    let (sim, proxy) = proxy_with_sim().await;
    let mut a = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    sim.set_hold(Some("CoreStatus"));
    a.send(&astmanproxy_handlers::Message::new().with("Action", "CoreStatus").with("ActionID", "held")).await;
    // Make sure the action reached the simulator before the restart.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !sim.received().iter().any(|m| m.action().is_some_and(|x| x.eq_ignore_ascii_case("CoreStatus"))) {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sim.set_hold(None);
    sim.kill_connections();
    let r = a.response("held").await;
    assert_eq!(r.response(), Some("Error"));
    assert!(r.get("Message").unwrap().contains("disconnected before answering"), "{r:?}");
    assert_eq!(r.get("Server"), Some("pbx1"));
    wait_ready(proxy.addr, None).await;
    // The client kept its proxy session throughout.
    assert_eq!(a.action("Ping", "p", &[]).await.get("Ping"), Some("Pong"));
}

#[tokio::test]
async fn silent_upstream_is_detected_by_the_ping_deadline() {
    let sim = AmiSim::start(SimOptions { ping_replies: false, ..Default::default() }).await.unwrap();
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    cfg.ping_interval = Duration::from_millis(100);
    cfg.ping_timeout = Duration::from_millis(200);
    let proxy = spawn_proxy(cfg).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while sim.login_count() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the proxy never noticed the silent server");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(proxy);
}

#[tokio::test]
async fn upstream_restart_on_the_same_port() {
    let sim = sim().await;
    let addr = sim.addr();
    let proxy = spawn_proxy(config(vec![server("pbx1", addr)])).await;
    wait_ready(proxy.addr, None).await;
    let mut a = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    sim.shutdown().await;
    let down = a.recv_until(|m| m.event() == Some("ProxyServerStatus")).await;
    assert_eq!(down.get("Status"), Some("Disconnected"));
    let r = a.action("Ping", "while-down", &[]).await;
    assert_eq!(r.response(), Some("Error"));
    let _sim2 = AmiSim::start_on(addr, SimOptions::default()).await.unwrap();
    let up = a.recv_until(|m| m.event() == Some("ProxyServerStatus") && m.get("Status") == Some("Connected")).await;
    assert_eq!(up.get("Server"), Some("pbx1"));
    assert_eq!(a.action("Ping", "back", &[]).await.get("Ping"), Some("Pong"));
}

/// Waits for the next `ProxyServerStatus` with `status`, skipping other messages.
async fn server_status(a: &mut AmiClient, status: &str) {
    let m = a.recv_until(|m| m.event() == Some("ProxyServerStatus") && m.get("Status") == Some(status)).await;
    assert_eq!(m.get("Server"), Some("pbx1"));
}

#[tokio::test]
async fn an_asterisk_that_keeps_restarting_is_retried_after_the_first_interval_each_time() {
    let sim = sim().await;
    let addr = sim.addr();
    let mut cfg = config(vec![server("pbx1", addr)]);
    // Short first step, the 1.x-era cap: a backoff that kept growing across restarts would wait
    // 50 ms * 2^n, past the 10 s a test waits for any message by the ninth restart.
    cfg.retry_interval = Duration::from_millis(50);
    cfg.retry_max = Duration::from_secs(60);
    // The event session's pacing, counted in logins: no extra action session.
    cfg.action_sessions = 1;
    let proxy = spawn_proxy(cfg).await;
    wait_ready(proxy.addr, None).await;
    let mut a = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    let logins = sim.login_count();
    for restart in 1..=12 {
        sim.kill_connections();
        server_status(&mut a, "Disconnected").await;
        server_status(&mut a, "Connected").await;
        // One attempt per restart: the proxy logged in again at its first try.
        assert_eq!(sim.login_count(), logins + restart);
    }
    assert_eq!(a.action("Ping", "after-restarts", &[]).await.get("Ping"), Some("Pong"));

    // Then Asterisk is away for a while: its port answers but closes at once (every attempt
    // fails), then it comes back on the same port.
    sim.shutdown().await;
    server_status(&mut a, "Disconnected").await;
    let standin = astmanproxy::listen::bind(addr, 16).unwrap();
    for _ in 0..5 {
        let (conn, _) = standin.accept().await.unwrap();
        drop(conn);
    }
    drop(standin);
    let back = AmiSim::start_on(addr, SimOptions::default()).await.unwrap();
    server_status(&mut a, "Connected").await;
    assert_eq!(back.login_count(), 1);
    assert_eq!(a.action("Ping", "back", &[]).await.get("Ping"), Some("Pong"));
}
