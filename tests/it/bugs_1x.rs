//! Every bug class of astmanproxy 1.x (`astmanproxy-1x.md` section 7), tried against this proxy.
//! Tests elsewhere that already try one are named in its comment.

use std::time::Duration;

use astmanproxy_handlers::{Kind, Message};

use crate::support::*;

// B1 (autofilter only at debug 6, responses broadcast): isolation::same_action_id_never_crosses_clients,
// isolation::list_items_reach_only_the_asker, isolation::async_originate_response_goes_to_its_owner_only.
// B2 (ProxyActions before login): proxy_actions::proxy_actions_need_a_login_and_never_show_secrets.
// B3 (AddServer overflow): proxy_actions::add_and_drop_servers_at_run_time.
// B4 (DropServer use-after-free): proxy_actions::add_and_drop_servers_at_run_time (the session ends and logs off).
// B11 slow client / stalled TLS hello: limits::client_that_never_reads_does_not_slow_others,
// tls::a_stalled_hello_never_blocks_other_clients; serial accept: ops::thousands_of_connects_and_disconnects.
// B12 shared event mask: login::events_action_is_per_client_and_never_forwarded.
// B14 rate limiting and anonymous users: login::failed_logins_are_rate_limited_per_address,
// config::users::tests::traps_of_1x_are_errors.

/// B5: malformed HTTP request lines on the AMI port (1.x segfaulted or overflowed its stack).
#[tokio::test]
async fn b5_malformed_http_on_the_ami_port() {
    let (_sim, proxy) = proxy_with_sim().await;
    for raw in [
        &b"GET /?Action=Ping\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\nAction=Ping",
    ] {
        let mut c = AmiClient::connect(proxy.addr).await;
        c.send_raw(raw).await;
        let answer = c.recv().await;
        assert_eq!(answer.response(), Some("Error"), "{answer:?}");
    }
    let mut c = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    assert_eq!(c.action("Ping", "alive", &[]).await.get("Ping"), Some("Pong"));
}

/// B6: XML input without spaces or quotes (1.x crashed on `<Action/>`).
#[tokio::test]
async fn b6_xml_tags_do_not_crash() {
    let (_sim, proxy) = proxy_with_sim().await;
    let mut c = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    c.send_raw(b"<AsteriskManagerInput><Action/></AsteriskManagerInput>\r\n\r\n<Action\r\n\r\n").await;
    let answer = c.recv_until(|m| m.response().is_some()).await;
    assert!(answer.get("Message").unwrap().starts_with("invalid XML action"), "{answer:?}");
    assert_eq!(c.action("Ping", "alive", &[]).await.get("Ping"), Some("Pong"));
}

/// B7 and B8: a line far longer than 1 KB (1.x wrote past its buffers), and long values from
/// Asterisk (1.x's writers overflowed): a long value is delivered whole.
#[tokio::test]
async fn b7_b8_long_lines_and_long_values() {
    let (sim, proxy) = proxy_with_sim().await;
    let mut c = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    let long = "x".repeat(20_000);
    sim.emit(Message::new().with("Event", "VarSet").with("Privilege", "dialplan,all").with("Value", &long));
    let ev = c.recv_until(|m| m.event() == Some("VarSet")).await;
    assert_eq!(ev.get("Value").map(str::len), Some(20_000));
    // A line over maxlinelength is answered with an error and skipped; the session goes on.
    let mut too_long = AmiClient::connect(proxy.addr).await;
    too_long.send_raw(&vec![b'A'; 200_000]).await;
    too_long.send_raw(b"\r\n\r\nAction: Ping\r\nActionID: after\r\n\r\n").await;
    assert_eq!(too_long.recv().await.response(), Some("Error"));
    let next = too_long.recv().await;
    assert_eq!((next.action_id(), next.get("Message")), (Some("after"), Some("Permission denied")), "{next:?}");
}

/// B9: ActionIDs of any length are restored byte for byte (1.x's prefixing memmove overran).
#[tokio::test]
async fn b9_long_and_odd_action_ids() {
    let (_sim, proxy) = proxy_with_sim().await;
    let mut c = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    for id in ["x".repeat(3000), "amp8-A-2".to_string(), "id with spaces: and colons".to_string()] {
        let r = c.action("Ping", &id, &[]).await;
        assert_eq!(r.action_id(), Some(id.as_str()));
    }
}

/// B10: a header value reading `Response: Follows` (a caller ID chosen by an outsider) while a
/// Command is pending never swallows the next events.
#[tokio::test]
async fn b10_response_follows_in_a_value() {
    let (sim, proxy) = proxy_with_sim().await;
    let mut c = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    sim.set_hold(Some("Command"));
    c.send(&Message::new().with("Action", "Command").with("Command", "core show version").with("ActionID", "cmd"))
        .await;
    // The Command must be pending upstream before the event comes, or nothing is tested.
    eventually("the Command reached Asterisk", || async {
        sim.received().iter().any(|m| m.action() == Some("Command") && m.get("Command") == Some("core show version"))
    })
    .await;
    sim.emit(
        Message::new()
            .with("Event", "Newchannel")
            .with("Privilege", "call,all")
            .with("CallerIDName", "Response: Follows"),
    );
    for i in 0..20 {
        sim.emit(Message::new().with("Event", "Newexten").with("Privilege", "dialplan,all").with("N", i.to_string()));
    }
    let first = c.recv_until(|m| m.event() == Some("Newchannel")).await;
    assert_eq!(first.get("CallerIDName"), Some("Response: Follows"));
    for i in 0..20 {
        let ev = c.recv_until(|m| m.kind() == Kind::Event).await;
        assert_eq!((ev.event(), ev.get("N")), (Some("Newexten"), Some(i.to_string().as_str())));
    }
}

/// B11: no fixed cap on TLS clients is tried in tls.rs; here: no cap on plain clients either, and
/// a client connecting while every server is down is served (1.x dropped it after 5 s).
#[tokio::test]
async fn b11_clients_are_served_while_servers_are_down() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let proxy = spawn_proxy(config(vec![server("down", closed)])).await;
    let mut c = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = c.action("Ping", "p", &[]).await;
    assert_eq!(r.response(), Some("Error"));
    assert!(!c.is_closed(Duration::from_millis(300)).await);
}

/// B12: messages with a single header are delivered (1.x dropped messages under 2 headers), and
/// the proxy-made FullyBooted carries Uptime and LastReload.
#[tokio::test]
async fn b12_small_messages_and_full_fullybooted() {
    let (sim, proxy) = proxy_with_sim().await;
    let mut c = AmiClient::connect(proxy.addr).await;
    c.login_as("alice", "alicepw", None).await;
    let booted = c.recv().await;
    assert!(booted.contains("Uptime") && booted.contains("LastReload"), "{booted:?}");
    sim.emit(Message::new().with("Event", "Tiny"));
    let tiny = c.recv_until(|m| m.event() == Some("Tiny")).await;
    assert_eq!(tiny.get("Server"), Some("pbx1"));
}

/// B13: the port can be bound again at once after a restart with clients connected (1.x's
/// SO_REUSEADDR regression), and debug logging never prints secrets.
#[tokio::test]
async fn b13_rebind_after_restart_and_no_secrets_in_debug_logs() {
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::process::Command;

    let sim = sim().await;
    let dir = std::env::temp_dir().join(format!("astmanproxy-it-b13-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let conf = dir.join("p.conf");
    let users = dir.join("p.users");
    std::fs::write(
        &conf,
        format!("host = 127.0.0.1, {}, admin, adminpass, on, off\nlistenport = {port}\n", sim.addr().port()),
    )
    .unwrap();
    std::fs::write(&users, "alice=TopSecretValue\n").unwrap();
    for round in 0..2 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_astmanproxy"))
            .args(["-c", conf.to_str().unwrap(), "-u", users.to_str().unwrap(), "-dd"])
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = tokio::spawn(async move {
            let mut all = String::new();
            while let Ok(Some(line)) = lines.next_line().await {
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut c = loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break AmiClient::login(addr, "alice", "TopSecretValue").await;
            }
            assert!(tokio::time::Instant::now() < deadline, "round {round}: the port was not bound again");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let _ = c.action("Ping", "p", &[]).await;
        // Killed with the client still connected.
        child.start_kill().unwrap();
        let _ = child.wait().await;
        let log = log.await.unwrap();
        assert!(!log.contains("TopSecretValue") && !log.contains("adminpass"), "a secret reached the log");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// B14: challenges are fresh and unpredictable; a whitespace-only users line is no user.
#[tokio::test]
async fn b14_challenges_are_fresh_and_there_is_no_anonymous_user() {
    let (_sim, proxy) = proxy_with_sim().await;
    let mut seen = std::collections::HashSet::new();
    for i in 0..20 {
        let mut c = AmiClient::connect(proxy.addr).await;
        let id = format!("c{i}");
        let ch = c.action("Challenge", &id, &[("AuthType", "MD5")]).await;
        assert!(seen.insert(ch.get("Challenge").unwrap().to_string()), "a challenge repeated");
    }
    let mut anon = AmiClient::connect(proxy.addr).await;
    assert_eq!(anon.login_as("", "", None).await.response(), Some("Error"));
}
