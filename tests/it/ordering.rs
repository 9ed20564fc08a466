//! Answers in order, to the end: every action sent before a Logoff, or before the client
//! half-closes its socket, is answered in order before the Goodbye and the close. The simulator
//! holds the first answer back until the test lets it through, so the order does not depend on
//! how fast anything runs.

use std::time::Duration;

use ami_sim::AmiSim;
use astmanproxy_handlers::Message;

use crate::support::*;

/// A proxy in front of a simulator whose `Ping` answers wait at a gate. The proxy's own
/// keepalive Pings are kept out of the way.
async fn gated_proxy() -> (AmiSim, TestProxy) {
    let sim = sim().await;
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    cfg.ping_interval = Duration::from_secs(3600);
    let proxy = spawn_proxy(cfg).await;
    wait_ready(proxy.addr, None).await;
    sim.set_gate(Some("Ping"));
    (sim, proxy)
}

/// The responses (events skipped) until the connection closes.
async fn responses_to_close(c: &mut AmiClient) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while let Some(m) = c.try_recv(WAIT).await {
        if let Some(r) = m.response() {
            out.push((r.to_string(), m.action_id().unwrap_or_default().to_string()));
        }
    }
    out
}

fn pair(response: &str, id: &str) -> (String, String) {
    (response.to_string(), id.to_string())
}

async fn ping_then_logoff(logoff: &str) -> Vec<(String, String)> {
    let (sim, proxy) = gated_proxy().await;
    let mut c = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    c.send_raw(format!("Action: Ping\r\nActionID: p1\r\n\r\n{logoff}ActionID: bye\r\n\r\n").as_bytes()).await;
    // The Ping reached Asterisk and waits there; only then is its answer let through.
    sim.gated(1).await;
    sim.open_gate(1);
    let got = responses_to_close(&mut c).await;
    assert!(c.is_closed(WAIT).await);
    got
}

#[tokio::test]
async fn ping_and_logoff_in_one_write_get_pong_then_goodbye() {
    let got = ping_then_logoff("Action: Logoff\r\n").await;
    assert_eq!(got, [pair("Success", "p1"), pair("Goodbye", "bye")]);
}

#[tokio::test]
async fn ping_and_proxy_logoff_in_one_write_get_pong_then_goodbye() {
    let got = ping_then_logoff("ProxyAction: Logoff\r\n").await;
    assert_eq!(got, [pair("Success", "p1"), pair("Goodbye", "bye")]);
}

#[tokio::test]
async fn pipelined_actions_then_half_close_are_all_answered_in_order() {
    let (sim, proxy) = gated_proxy().await;
    let mut c = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    let mut burst = Vec::new();
    for (action, id) in [("Ping", "a1"), ("CoreSettings", "a2"), ("Ping", "a3"), ("CoreStatus", "a4")] {
        burst.extend_from_slice(&astmanproxy_handlers::standard::encode_to_bytes(
            &Message::new().with("Action", action).with("ActionID", id),
        ));
    }
    c.send_raw(&burst).await;
    c.shutdown_write().await;
    sim.gated(1).await;
    sim.open_gate(1);
    sim.gated(2).await;
    sim.open_gate(1);
    let got = responses_to_close(&mut c).await;
    assert_eq!(got, [pair("Success", "a1"), pair("Success", "a2"), pair("Success", "a3"), pair("Success", "a4")]);
}

/// A Logoff whose earlier action never gets an answer still ends: the wait is bounded by
/// `actiontimeout` (plus a grace), and the action itself is answered with a timeout error.
#[tokio::test]
async fn logoff_after_an_unanswered_action_ends_within_actiontimeout() {
    let sim = sim().await;
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    cfg.ping_interval = Duration::from_secs(3600);
    cfg.action_timeout = Duration::from_secs(1);
    let proxy = spawn_proxy(cfg).await;
    wait_ready(proxy.addr, None).await;
    sim.set_hold(Some("CoreSettings"));
    let mut c = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    c.send_raw(b"Action: CoreSettings\r\nActionID: never\r\n\r\nAction: Logoff\r\nActionID: bye\r\n\r\n").await;
    let got = responses_to_close(&mut c).await;
    // The timeout error normally comes first (the proxy waits a grace beyond actiontimeout);
    // what is asserted is that the Goodbye and the close come at all.
    assert_eq!(got.last(), Some(&pair("Goodbye", "bye")), "{got:?}");
    assert!(got.len() == 1 || got[0] == pair("Error", "never"), "{got:?}");
}

/// The click-to-call script: Login, an async Originate, Logoff. Asterisk answers the Logoff as
/// soon as the Originate is queued; the proxy must not wait for the call's OriginateResponse
/// (here it never comes) before its Goodbye.
#[tokio::test]
async fn logoff_after_an_async_originate_does_not_wait_for_the_call() {
    let sim = sim().await;
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    cfg.action_timeout = Duration::from_secs(3600);
    let proxy = spawn_proxy(cfg).await;
    wait_ready(proxy.addr, None).await;
    sim.set_no_followers(true);
    let mut c = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    c.send_raw(
        b"Action: Originate\r\nActionID: o1\r\nChannel: Local/101@ami-test\r\nApplication: Wait\r\nData: 1\r\n\
          Async: true\r\n\r\nAction: Logoff\r\nActionID: bye\r\n\r\n",
    )
    .await;
    let got = responses_to_close(&mut c).await;
    assert_eq!(got, [pair("Success", "o1"), pair("Goodbye", "bye")]);
}

/// An answer the proxy makes itself (`Events`, a ProxyAction, an unknown server) comes after the
/// answers of the actions sent before it, as Asterisk answers a connection's actions in order.
#[tokio::test]
async fn the_proxys_own_answers_keep_their_place_in_line() {
    let (sim, proxy) = gated_proxy().await;
    let mut c = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    c.send_raw(
        b"Action: Ping\r\nActionID: p1\r\n\r\n\
          Action: Events\r\nEventMask: off\r\nActionID: e1\r\n\r\n\
          ProxyAction: ListIOHandlers\r\nActionID: l1\r\n\r\n\
          Action: Ping\r\nServer: nowhere\r\nActionID: u1\r\n\r\n\
          Action: Ping\r\nActionID: p2\r\n\r\n",
    )
    .await;
    sim.gated(1).await;
    sim.open_gate(2);
    let mut ids = Vec::new();
    while ids.len() < 5 {
        let m = c.recv().await;
        if m.response().is_some() || m.get("ProxyResponse").is_some() {
            ids.push(m.action_id().unwrap_or_default().to_string());
        }
    }
    assert_eq!(ids, ["p1", "e1", "l1", "u1", "p2"]);
}
