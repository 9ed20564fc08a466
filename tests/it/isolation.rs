//! ActionID isolation, list routing, async Originate, Server: routing, pipelining.

use std::time::Duration;

use astmanproxy_handlers::{Kind, Message};

use crate::support::*;

#[tokio::test]
async fn same_action_id_never_crosses_clients() {
    let (_sim, proxy) = proxy_with_sim().await;
    let mut a = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    let mut b = AmiClient::login(proxy.addr, "bob", "bobpw").await;
    for round in 0..20 {
        let ping = Message::new().with("Action", "Ping").with("ActionID", "0");
        a.send(&ping).await;
        b.send(&ping).await;
        for c in [&mut a, &mut b] {
            let r = c.recv_until(|m| m.kind() == Kind::Response).await;
            assert_eq!(r.action_id(), Some("0"), "round {round}");
            assert_eq!(r.get("Ping"), Some("Pong"));
            assert_eq!(r.get("Server"), Some("pbx1"));
        }
    }
    // Exactly one answer each: nothing stray follows.
    for c in [&mut a, &mut b] {
        let rest = c.drain(Duration::from_millis(200)).await;
        assert!(rest.iter().all(|m| m.kind() != Kind::Response), "stray response: {rest:?}");
    }
}

#[tokio::test]
async fn no_action_id_stays_absent() {
    let (_sim, proxy) = proxy_with_sim().await;
    let mut a = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    a.send(&Message::new().with("Action", "Ping")).await;
    let r = a.recv_until(|m| m.kind() == Kind::Response).await;
    assert_eq!(r.action_id(), None);
    assert_eq!(r.first(), Some(("Response", "Success")));
}

#[tokio::test]
async fn list_items_reach_only_the_asker() {
    let (_sim, proxy) = proxy_with_sim().await;
    let mut a = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    let mut b = AmiClient::login(proxy.addr, "bob", "bobpw").await;
    let start = a.action("CoreShowChannels", "csc", &[]).await;
    assert_eq!(start.get("EventList"), Some("start"));
    let mut items = 0;
    loop {
        let m = a.recv().await;
        if m.action_id() != Some("csc") {
            continue;
        }
        if m.get("EventList") == Some("Complete") {
            assert_eq!(m.event(), Some("CoreShowChannelsComplete"));
            assert_eq!(m.get("ListItems").unwrap().parse::<usize>().unwrap(), items);
            break;
        }
        assert_eq!(m.event(), Some("CoreShowChannel"));
        items += 1;
    }
    assert!(items > 0);
    let seen = b.drain(Duration::from_millis(300)).await;
    assert!(
        seen.iter().all(|m| !m.event().is_some_and(|e| e.starts_with("CoreShowChannel"))),
        "list items leaked: {seen:?}"
    );
}

#[tokio::test]
async fn async_originate_response_goes_to_its_owner_only() {
    let (_sim, proxy) = proxy_with_sim().await;
    let mut a = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    let mut b = AmiClient::login(proxy.addr, "bob", "bobpw").await;
    let queued = a
        .action(
            "Originate",
            "orig-1",
            &[("Channel", "Local/100@ami-test"), ("Application", "Wait"), ("Data", "5"), ("Async", "true")],
        )
        .await;
    assert_eq!(queued.response(), Some("Success"));
    let resp = a.recv_until(|m| m.event() == Some("OriginateResponse")).await;
    assert_eq!(resp.action_id(), Some("orig-1"));
    assert_eq!(resp.get("Server"), Some("pbx1"));
    let seen = b.drain(Duration::from_millis(300)).await;
    assert!(seen.iter().all(|m| m.event() != Some("OriginateResponse")), "OriginateResponse leaked");
}

#[tokio::test]
async fn pipelined_actions_are_answered_in_order() {
    let (_sim, proxy) = proxy_with_sim().await;
    let mut a = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    a.send_raw(
        b"Action: Ping\r\nActionID: p1\r\n\r\nAction: CoreStatus\r\nActionID: p2\r\n\r\n\
Action: Command\r\nCommand: core show version\r\nActionID: p3\r\n\r\n",
    )
    .await;
    let mut ids = Vec::new();
    while ids.len() < 3 {
        let m = a.recv().await;
        if m.kind() == Kind::Response {
            ids.push(m.action_id().unwrap().to_string());
        }
    }
    assert_eq!(ids, ["p1", "p2", "p3"]);
}

#[tokio::test]
async fn server_header_routes_and_every_message_names_its_server() {
    let sim1 = sim().await;
    let sim2 = sim().await;
    let proxy = spawn_proxy(config(vec![server("pbx1", sim1.addr()), server("pbx2", sim2.addr())])).await;
    wait_ready(proxy.addr, Some("pbx1")).await;
    wait_ready(proxy.addr, Some("pbx2")).await;
    let mut a = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    let r = a.action("CoreStatus", "to2", &[("Server", "PBX2")]).await;
    assert_eq!(r.get("Server"), Some("pbx2"));
    assert!(sim2.received().iter().any(|m| m.action().is_some_and(|x| x.eq_ignore_ascii_case("CoreStatus"))));
    assert!(!sim1.received().iter().any(|m| m.action().is_some_and(|x| x.eq_ignore_ascii_case("CoreStatus"))));
    // Default route: the first server.
    assert_eq!(a.action("Ping", "d", &[]).await.get("Server"), Some("pbx1"));
    let unknown = a.action("Ping", "u", &[("Server", "nosuch")]).await;
    assert_eq!(unknown.response(), Some("Error"));
    assert!(unknown.get("Message").unwrap().contains("nosuch"));
    sim2.emit(Message::new().with("Event", "Newchannel").with("Privilege", "call,all"));
    let ev = a.recv_until(|m| m.event() == Some("Newchannel")).await;
    assert_eq!(ev.get("Server"), Some("pbx2"));
}

#[tokio::test]
async fn legacy_command_output_is_kept_as_a_body() {
    let sim = ami_sim::AmiSim::start(ami_sim::SimOptions { legacy_command: true, ..Default::default() }).await.unwrap();
    let proxy = spawn_proxy(config(vec![server("old", sim.addr())])).await;
    wait_ready(proxy.addr, None).await;
    let mut a = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    a.send(&Message::new().with("Action", "Command").with("Command", "core show version").with("ActionID", "v")).await;
    // The test client's decoder must be told to expect the Asterisk 11 framing, like a client
    // library talking to Asterisk 11 would.
    a.expect_command_output();
    let r = a.response("v").await;
    assert_eq!(r.response(), Some("Follows"));
    assert!(r.body().unwrap().iter().any(|l| l.contains("Asterisk")), "body lost: {r:?}");
    // Every later message still parses: no event was swallowed into a body.
    assert_eq!(a.action("Ping", "after", &[]).await.get("Ping"), Some("Pong"));
}
