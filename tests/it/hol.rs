//! No head-of-line blocking (issue 17): a synchronous Originate holds no session, a slow action
//! on one action session holds up no other client, a client's own actions keep their order.

use std::time::Duration;

use ami_sim::{AmiSim, SimOptions};
use astmanproxy_handlers::{Kind, Message};

use crate::support::*;

/// The simulator with calls that ring 3 s before they are answered.
async fn ringing_sim() -> AmiSim {
    AmiSim::start(SimOptions { originate_ring: Some(Duration::from_secs(3)), ..Default::default() }).await.unwrap()
}

fn sync_originate(id: &str, channel: &str) -> Message {
    Message::new()
        .with("Action", "Originate")
        .with("Channel", channel)
        .with("Context", "ami-test")
        .with("Exten", "101")
        .with("Priority", "1")
        .with("Timeout", "10000")
        .with("ActionID", id)
}

/// Everything `c` receives up to the answer to `id`, that answer last.
async fn until_response(c: &mut AmiClient, id: &str) -> Vec<Message> {
    let mut seen = Vec::new();
    loop {
        let m = c.recv().await;
        let done = m.kind() == Kind::Response && m.action_id() == Some(id);
        seen.push(m);
        if done {
            return seen;
        }
    }
}

async fn sync_originate_runs_beside_a_ping(sessions: usize) {
    let sim = ringing_sim().await;
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    cfg.action_sessions = sessions;
    let proxy = spawn_proxy(cfg).await;
    wait_ready(proxy.addr, None).await;
    let mut a = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    let mut b = AmiClient::login(proxy.addr, "bob", "bobpw").await;

    a.send(&sync_originate("o1", "Local/101@ami-test")).await;
    eventually("the Originate reached Asterisk", || async {
        sim.received().iter().any(|m| m.action() == Some("Originate"))
    })
    .await;
    // Another client's Ping is answered while the call rings...
    assert_eq!(b.action("Ping", "b1", &[]).await.get("Ping"), Some("Pong"));
    // ... and so is one sent after it by the originating client: on one socket, its answer comes
    // before the Originate's, which waits for the call (3 s). Before, both waited behind it.
    a.send(&Message::new().with("Action", "Ping").with("ActionID", "a1")).await;
    let seen = until_response(&mut a, "o1").await;
    assert!(
        seen.iter().any(|m| m.kind() == Kind::Response && m.action_id() == Some("a1")),
        "the Ping waited for the Originate: {seen:?}"
    );
    let answer = seen.last().unwrap();
    // Asterisk's answer to a synchronous Originate once the call is up (17b).
    assert_eq!(answer.response(), Some("Success"), "{answer:?}");
    assert_eq!(answer.get("Message"), Some("Originate successfully queued"), "{answer:?}");
    assert_eq!(answer.get("Server"), Some("pbx1"));
    // It went upstream as an async one, so that it held no session.
    let sent = sim.received().into_iter().find(|m| m.action() == Some("Originate")).unwrap();
    assert_eq!(sent.get("Async"), Some("true"), "{sent:?}");
    // The client never sees the OriginateResponse it did not ask for.
    a.send(&Message::new().with("Action", "Ping").with("ActionID", "a2")).await;
    let after = until_response(&mut a, "a2").await;
    let events = seen.iter().chain(&after);
    assert!(!events.clone().any(|m| m.event() == Some("OriginateResponse")), "{seen:?} {after:?}");
}

#[tokio::test]
async fn a_sync_originate_holds_up_no_ping_with_the_default_sessions() {
    sync_originate_runs_beside_a_ping(2).await;
}

#[tokio::test]
async fn a_sync_originate_holds_up_no_ping_with_one_session() {
    sync_originate_runs_beside_a_ping(1).await;
}

#[tokio::test]
async fn a_failed_sync_originate_is_answered_as_asterisk_does() {
    let (_sim, proxy) = proxy_with_sim().await;
    let mut a = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    a.send(&sync_originate("bad", "Local/999@ami-test")).await;
    let seen = until_response(&mut a, "bad").await;
    let answer = seen.last().unwrap();
    assert_eq!(answer.response(), Some("Error"), "{answer:?}");
    assert_eq!(answer.get("Message"), Some("Originate failed"), "{answer:?}");
    assert!(!seen.iter().any(|m| m.event() == Some("OriginateResponse")), "{seen:?}");
}

/// A slow action (held at the simulator's gate) keeps one session; another client's Ping goes
/// to the other session; the slow client's next action waits behind its own, in order.
#[tokio::test]
async fn a_slow_action_holds_up_only_its_own_client() {
    let (sim, proxy, mut a, mut b) = two_sessions_two_clients().await;

    sim.set_gate(Some("CoreStatus"));
    a.send(&Message::new().with("Action", "CoreStatus").with("ActionID", "slow")).await;
    a.send(&Message::new().with("Action", "Ping").with("ActionID", "after")).await;
    sim.gated(1).await;
    assert_eq!(b.action("Ping", "b1", &[]).await.get("Ping"), Some("Pong"));
    let admin = proxy.admin.unwrap();
    // Both of Alice's actions are on the action session: her Ping waits behind her CoreStatus.
    eventually("both of Alice's actions on session 1", || async {
        metric(admin, r#"astmanproxy_server_session_busy{server="pbx1",session="1"}"#).await == 2.0
    })
    .await;
    sim.open_gate(1);
    // Alice's Ping ran after her CoreStatus, on the same session, as on Asterisk.
    let first = a.recv_until(|m| m.kind() == Kind::Response).await;
    assert_eq!(first.action_id(), Some("slow"), "{first:?}");
    assert_eq!(a.response("after").await.get("Ping"), Some("Pong"));
}

/// Every session busy: the action waits its turn, counted, and runs once one is free.
#[tokio::test]
async fn with_every_session_busy_an_action_waits_its_turn() {
    let (sim, proxy, mut a, mut b) = two_sessions_two_clients().await;
    let mut c = AmiClient::login(proxy.addr, "carol", "carolpw").await;
    sim.set_gate(Some("CoreStatus"));
    a.send(&Message::new().with("Action", "CoreStatus").with("ActionID", "s1")).await;
    sim.gated(1).await;
    b.send(&Message::new().with("Action", "CoreStatus").with("ActionID", "s2")).await;
    sim.gated(2).await;
    c.send(&Message::new().with("Action", "Ping").with("ActionID", "waits")).await;
    let admin = proxy.admin.unwrap();
    eventually("the Ping counted as waiting", || async {
        metric(admin, r#"astmanproxy_server_action_waits_total{server="pbx1"}"#).await == 1.0
    })
    .await;
    sim.open_gate(1);
    assert_eq!(c.response("waits").await.get("Ping"), Some("Pong"));
    sim.open_gate(1);
    assert_eq!(a.response("s1").await.response(), Some("Success"));
    assert_eq!(b.response("s2").await.response(), Some("Success"));
    assert!(metric(admin, r#"astmanproxy_server_action_wait_seconds_count{server="pbx1"}"#).await >= 1.0);
}

/// Events come from the event session only: with every session logged in, a client gets each
/// event once.
#[tokio::test]
async fn events_come_once_whatever_the_number_of_sessions() {
    let sim = sim().await;
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    cfg.action_sessions = 3;
    let proxy = spawn_proxy(cfg).await;
    wait_ready(proxy.addr, None).await;
    eventually("three sessions logged in", || async { sim.login_count() == 3 }).await;
    let mut a = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    sim.emit(Message::new().with("Event", "Once").with("Privilege", "call,all"));
    sim.emit(Message::new().with("Event", "Sentinel").with("Privilege", "call,all"));
    let mut seen = Vec::new();
    while seen.last().and_then(|m: &Message| m.event()) != Some("Sentinel") {
        seen.push(a.recv().await);
    }
    assert_eq!(seen.iter().filter(|m| m.event() == Some("Once")).count(), 1, "{seen:?}");
}

/// A synchronous Originate whose OriginateResponse never comes is answered after its `Timeout`
/// plus `originatemargin`: nothing waits forever.
#[tokio::test]
async fn a_sync_originate_without_its_response_ends_by_timeout_plus_margin() {
    let sim = sim().await;
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    cfg.originate_margin = Duration::from_millis(100);
    let proxy = spawn_proxy(cfg).await;
    wait_ready(proxy.addr, None).await;
    sim.set_no_followers(true);
    let mut a = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    let mut o = sync_originate("lost", "Local/101@ami-test");
    o.set("Timeout", "100");
    a.send(&o).await;
    let answer = a.response("lost").await;
    assert_eq!(answer.response(), Some("Error"), "{answer:?}");
    assert!(answer.get("Message").unwrap().contains("Timeout waiting for the OriginateResponse"), "{answer:?}");
    assert_eq!(a.action("Ping", "next", &[]).await.get("Ping"), Some("Pong"));
}

/// The simulator, a proxy with the default two sessions (both logged in) and its admin
/// listener, and Alice and Bob logged in.
async fn two_sessions_two_clients() -> (ami_sim::AmiSim, TestProxy, AmiClient, AmiClient) {
    let sim = sim().await;
    let proxy = spawn_proxy_with_admin(config(vec![server("pbx1", sim.addr())])).await;
    wait_ready(proxy.addr, None).await;
    eventually("both sessions logged in", || async { sim.login_count() == 2 }).await;
    let a = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    let b = AmiClient::login(proxy.addr, "bob", "bobpw").await;
    (sim, proxy, a, b)
}
