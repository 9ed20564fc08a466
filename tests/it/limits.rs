//! Bad input and slow clients.

use std::time::Duration;

use astmanproxy::config::LagPolicy;
use astmanproxy_handlers::Message;

use crate::support::*;

/// Input that never ends a line is given up after 16 x `maxlinelength` bytes (never buffered),
/// with a final error naming the limit.
#[tokio::test]
async fn input_without_line_end_is_closed_after_the_multiple_with_a_final_error() {
    let sim = sim().await;
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    cfg.limits.max_line = 4096;
    let proxy = spawn_proxy(cfg).await;
    let mut c = AmiClient::connect(proxy.addr).await;
    // Exactly one byte past the multiple: the proxy reads all of it (no reset on close).
    c.send_raw(&vec![b'A'; 16 * 4096 + 1]).await;
    let err = c.recv().await;
    assert_eq!(err.response(), Some("Error"));
    let text = err.get("Message").unwrap();
    assert!(text.contains("no line end within 65536 bytes (16 x maxlinelength)"), "{err:?}");
    assert!(text.contains("closing connection"), "{err:?}");
    assert!(c.is_closed(WAIT).await);
}

/// A 100 KB header value (over the default `maxlinelength` of 64 KiB) skips its message with an
/// error naming the limit and the message's ActionID, read before or after the long line; the
/// session goes on.
#[tokio::test]
async fn oversize_line_is_answered_with_its_actionid_and_the_session_goes_on() {
    let (_sim, proxy) = proxy_with_sim().await;
    let mut c = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    let big = "v".repeat(100 * 1024);
    c.send_raw(format!("Action: Ping\r\nActionID: before\r\nX-Big: {big}\r\nX-After: 1\r\n\r\n").as_bytes()).await;
    let err = c.recv_until(|m| m.response().is_some()).await;
    assert_eq!(err.response(), Some("Error"), "{err:?}");
    assert_eq!(err.action_id(), Some("before"), "{err:?}");
    assert_eq!(
        err.get("Message"),
        Some("Bad input: line longer than maxlinelength (65536 bytes); message skipped"),
        "{err:?}"
    );
    c.send_raw(format!("Action: Ping\r\nX-Big: {big}\r\nActionID: after\r\n\r\n").as_bytes()).await;
    let err = c.recv_until(|m| m.response().is_some()).await;
    assert_eq!((err.response(), err.action_id()), (Some("Error"), Some("after")), "{err:?}");
    assert_eq!(c.action("Ping", "next", &[]).await.get("Ping"), Some("Pong"));
}

/// A message over `maxmessagesize` (every line short) is skipped the same way.
#[tokio::test]
async fn oversize_message_is_answered_with_its_actionid_and_the_session_goes_on() {
    let sim = sim().await;
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    cfg.limits.max_message = 10_000;
    let proxy = spawn_proxy(cfg).await;
    wait_ready(proxy.addr, None).await;
    let mut c = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    let mut action = Message::new().with("Action", "Ping");
    for i in 0..50 {
        action.push(format!("Variable{i}"), "w".repeat(500));
    }
    action.push("ActionID", "large");
    c.send(&action).await;
    let err = c.recv_until(|m| m.response().is_some()).await;
    assert_eq!((err.response(), err.action_id()), (Some("Error"), Some("large")), "{err:?}");
    assert_eq!(
        err.get("Message"),
        Some("Bad input: message larger than maxmessagesize (10000 bytes); message skipped"),
        "{err:?}"
    );
    assert_eq!(c.action("Ping", "next", &[]).await.get("Ping"), Some("Pong"));
}

/// A JSON action over `maxmessagesize` is dropped up to its line end and answered; the JSON
/// action after it is served (it used to be lost with the buffer).
#[tokio::test]
async fn oversize_json_action_is_skipped_to_its_line_end() {
    let sim = sim().await;
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    cfg.limits.max_message = 1000;
    let proxy = spawn_proxy(cfg).await;
    wait_ready(proxy.addr, None).await;
    let mut c = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    let pad = "j".repeat(20_000);
    let input = format!(
        "{{\"Action\":\"Ping\",\"ActionID\":\"j1\",\"Pad\":\"{pad}\"}}\n{{\"Action\":\"Ping\",\"ActionID\":\"j2\"}}\n"
    );
    c.send_raw(input.as_bytes()).await;
    let err = c.recv_until(|m| m.response().is_some()).await;
    assert_eq!(err.response(), Some("Error"), "{err:?}");
    assert_eq!(err.get("Message"), Some("Bad input: message larger than maxmessagesize (1000 bytes); message skipped"));
    assert_eq!(c.response("j2").await.get("Ping"), Some("Pong"));
}

/// From Asterisk, an oversize event is skipped and logged, the session kept (no reconnect);
/// an oversize answer to a client's action gets that client an error at once, not after
/// `actiontimeout`.
#[tokio::test]
async fn oversize_messages_from_asterisk_are_skipped_and_the_session_kept() {
    let sim = sim().await;
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    cfg.limits.max_message = 8192;
    let proxy = spawn_proxy(cfg).await;
    wait_ready(proxy.addr, None).await;
    // The event session and the action session (actionsessions = 2, the default).
    eventually("both sessions logged in", || async { sim.login_count() == 2 }).await;
    let mut c = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    sim.emit(
        Message::new().with("Event", "UserEvent").with("Privilege", "user,all").with("Big", "b".repeat(100 * 1024)),
    );
    sim.emit(sentinel());
    let next = c.recv_until(|m| m.event().is_some_and(|e| e != "FullyBooted")).await;
    assert_eq!(next.event(), Some("Sentinel"), "{next:?}");
    // `module show` answers ~31 KB, over maxmessagesize here.
    let answer = c.action("Command", "mods", &[("Command", "module show")]).await;
    assert_eq!(answer.response(), Some("Error"), "{answer:?}");
    assert!(answer.get("Message").unwrap().contains("maxmessagesize (8192 bytes)"), "{answer:?}");
    assert_eq!(c.action("Ping", "next", &[]).await.get("Ping"), Some("Pong"));
    assert_eq!(sim.login_count(), 2, "an Asterisk session was dropped and logged in again");
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

fn flood_event() -> Message {
    Message::new().with("Event", "UserEvent").with("Privilege", "user,all").with("Padding", "x".repeat(200))
}

fn sentinel() -> Message {
    Message::new().with("Event", "Sentinel").with("Privilege", "user,all")
}

/// A client that never reads is cut off by `clientwritetimeout` (its writes make no progress),
/// with the default event buffer; another client gets every event. The test waits for the cut-off
/// itself (the lag counter) before it reads the stalled socket, so reading cannot rescue it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_never_reads_does_not_slow_others() {
    let (sim, proxy, admin) = proxy_with_short_write_timeout().await;
    let mut stalled = AmiClient::login_small_buffer(proxy.addr, "alice", "alicepw").await;
    let mut fast = AmiClient::login(proxy.addr, "bob", "bobpw").await;
    let n = 50_000;
    sim.emit_many(&flood_event(), n);
    sim.emit(sentinel());
    let (got, done, _) = fast.count_until(b"Event: UserEvent\r\n", b"Event: Sentinel\r\n", None).await;
    assert!(done, "the fast client was cut off");
    assert_eq!(got, n);
    eventually("the stalled client cut off", || async move { metric(admin, LAG_DISCONNECTS).await >= 1.0 }).await;
    let read = stalled.read_to_close(WAIT).await;
    assert!(read < n * 250, "the stalled client got {read} bytes: it was not cut off");
    assert_eq!(fast.action("Ping", "after", &[]).await.get("Ping"), Some("Pong"));
}

/// The simulator and a ready proxy (with its admin listener) whose `clientwritetimeout` is 300 ms.
async fn proxy_with_short_write_timeout() -> (ami_sim::AmiSim, TestProxy, std::net::SocketAddr) {
    let sim = sim().await;
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    cfg.client_write_timeout = Duration::from_millis(300);
    let proxy = spawn_proxy_with_admin(cfg).await;
    let admin = proxy.admin.unwrap();
    wait_ready(proxy.addr, None).await;
    (sim, proxy, admin)
}

const LAG_DISCONNECTS: &str = "astmanproxy_client_lag_disconnects_total{kind=\"ami\"}";

/// A client cut off by `clientwritetimeout` is told, as the lag cut-off tells: after the whole
/// messages it was being sent, a final `ProxyClientLagged` (best effort: it gets it here because
/// it reads again once the cut-off happened), counted with its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cut_off_by_the_write_timeout_gets_a_final_notice() {
    let (sim, proxy, admin) = proxy_with_short_write_timeout().await;
    let mut stalled = AmiClient::login_small_buffer(proxy.addr, "alice", "alicepw").await;
    sim.emit_many(&flood_event(), 50_000);
    sim.emit(sentinel());
    let cutoffs = "astmanproxy_client_cutoffs_total{kind=\"ami\",reason=\"writetimeout\"}";
    eventually("the stalled client cut off", || async move { metric(admin, cutoffs).await == 1.0 }).await;
    let (_, sentinel_seen, tail) = stalled.count_until(b"Event: UserEvent\r\n", b"Event: Sentinel\r\n", None).await;
    assert!(!sentinel_seen, "the stalled client was not cut off");
    let tail = String::from_utf8_lossy(&tail);
    let last = tail.trim_end().rsplit("\r\n\r\n").next().unwrap_or_default();
    assert!(last.starts_with("Event: ProxyClientLagged\r\n"), "no final notice: ...{last}");
    assert!(last.contains("clientwritetimeout"), "{last}");
    assert_eq!(metric(admin, LAG_DISCONNECTS).await, 1.0);
}

/// Ten clients that read as fast as they can are never cut off by a burst of 100 000 events with
/// the default event buffer (the old 4 096-event ring cut every one of them off): the burst, sent
/// by Asterisk in one go, is what the proxy reads at once, not the clients' lag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_does_not_cut_off_clients_that_keep_reading() {
    let sim = sim().await;
    let proxy = spawn_proxy_with_admin(config(vec![server("pbx1", sim.addr())])).await;
    wait_ready(proxy.addr, None).await;
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(AmiClient::login(proxy.addr, "alice", "alicepw").await);
    }
    let n = 100_000;
    sim.emit_many(&flood_event(), n);
    sim.emit(sentinel());
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move { c.count_until(b"Event: UserEvent\r\n", b"Event: Sentinel\r\n", None).await })
        })
        .collect();
    for r in readers {
        let (got, done, _) = r.await.unwrap();
        assert!(done, "a client that kept reading was cut off after {got} events");
        assert_eq!(got, n);
    }
    assert_eq!(metric(proxy.admin.unwrap(), LAG_DISCONNECTS).await, 0.0);
}

/// A client that reads slowly but steadily (a pause after every read) through a burst is served
/// to the end: lag is judged by the bytes waiting (`clienteventbuffer`), not by a count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_steady_reader_gets_the_whole_burst() {
    let sim = sim().await;
    let proxy = spawn_proxy(config(vec![server("pbx1", sim.addr())])).await;
    wait_ready(proxy.addr, None).await;
    let mut slow = AmiClient::login_small_buffer(proxy.addr, "alice", "alicepw").await;
    let n = 20_000;
    sim.emit_many(&flood_event(), n);
    sim.emit(sentinel());
    let (got, done, _) =
        slow.count_until(b"Event: UserEvent\r\n", b"Event: Sentinel\r\n", Some(Duration::from_millis(1))).await;
    assert!(done, "the slow reader was cut off after {got} events");
    assert_eq!(got, n);
}

/// A client slower than the event stream: with `lagpolicy = disconnect` it gets a final
/// `ProxyClientLagged` and is closed; with `drop` it misses events but stays connected.
async fn lagging_reader(policy: LagPolicy) -> (usize, bool, Vec<u8>) {
    let sim = sim().await;
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    // About 200 events' worth: far less than the flood.
    cfg.client_event_buffer = 64 * 1024;
    cfg.lag_policy = policy;
    let proxy = spawn_proxy(cfg).await;
    wait_ready(proxy.addr, None).await;
    let mut slow = AmiClient::login_small_buffer(proxy.addr, "alice", "alicepw").await;
    sim.emit_many(&flood_event(), 100_000);
    sim.emit(sentinel());
    let result =
        slow.count_until(b"Event: UserEvent\r\n", b"Event: Sentinel\r\n", Some(Duration::from_millis(5))).await;
    proxy.stop().await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_client_is_told_and_disconnected() {
    let (got, sentinel_seen, tail) = lagging_reader(LagPolicy::Disconnect).await;
    assert!(!sentinel_seen, "a lagging client stayed connected");
    assert!(got < 100_000);
    let tail = String::from_utf8_lossy(&tail);
    assert!(tail.contains("Event: ProxyClientLagged"), "no lag notice: ...{}", &tail[tail.len().saturating_sub(300)..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_client_under_drop_policy_misses_events_but_stays() {
    let (got, sentinel_seen, _) = lagging_reader(LagPolicy::Drop).await;
    assert!(sentinel_seen, "the client was disconnected under the drop policy");
    assert!(got < 100_000, "nothing was dropped: the test did not lag");
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
