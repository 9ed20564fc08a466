//! The simulator against raw TCP clients.

use std::time::{Duration, Instant, UNIX_EPOCH};

use astmanproxy_handlers::{standard, AmiDecoder, Kind, Message};
use bytes::BytesMut;
use md5::{Digest, Md5};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

struct Raw {
    s: TcpStream,
    buf: BytesMut,
    dec: AmiDecoder,
}

fn action(name: &str, id: &str) -> Message {
    Message::new().with("Action", name).with("ActionID", id)
}

impl Raw {
    async fn connect(sim: &AmiSim) -> Raw {
        let s = TcpStream::connect(sim.addr()).await.unwrap();
        let mut r = Raw { s, buf: BytesMut::new(), dec: AmiDecoder::default() };
        loop {
            if let Some(line) = r.dec.decode_line(&mut r.buf).unwrap() {
                assert_eq!(line, "Asterisk Call Manager/11.0.0");
                return r;
            }
            assert!(r.s.read_buf(&mut r.buf).await.unwrap() > 0, "closed before the banner");
        }
    }

    async fn login(sim: &AmiSim, events: Option<&str>) -> Raw {
        let mut c = Raw::connect(sim).await;
        let mut login = action("Login", "l").with("Username", "admin").with("Secret", "adminpass");
        if let Some(events) = events {
            login.push("Events", events);
        }
        c.send(&login).await;
        assert_eq!(c.until("l").await.response(), Some("Success"));
        c
    }

    async fn send(&mut self, m: &Message) {
        self.s.write_all(&standard::encode_to_bytes(m)).await.unwrap();
    }

    /// The next message; `None` when the connection closes or nothing comes within 5 s.
    async fn recv_within(&mut self, wait: Duration) -> Option<Message> {
        loop {
            if let Some(m) = self.dec.decode(&mut self.buf).unwrap() {
                return Some(m);
            }
            let n = tokio::time::timeout(wait, self.s.read_buf(&mut self.buf)).await.ok()?.ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    async fn recv(&mut self) -> Option<Message> {
        self.recv_within(Duration::from_secs(5)).await
    }

    /// The next message with ActionID `id`, skipping others.
    async fn until(&mut self, id: &str) -> Message {
        loop {
            let m = self.recv().await.expect("closed or silent");
            if m.action_id() == Some(id) {
                return m;
            }
        }
    }

    /// Every message up to and including the first one `last` accepts.
    async fn collect(&mut self, last: impl Fn(&Message) -> bool) -> Vec<Message> {
        let mut out = Vec::new();
        loop {
            let m = self.recv().await.expect("closed or silent");
            let done = last(&m);
            out.push(m);
            if done {
                return out;
            }
        }
    }

    /// Whether the server closed the connection (after any data still queued).
    async fn closed(&mut self) -> bool {
        loop {
            match self.recv().await {
                None => return true,
                Some(_) => continue,
            }
        }
    }
}

async fn sim() -> AmiSim {
    AmiSim::start(SimOptions { auth_fail_delay: Duration::from_millis(50), ..Default::default() }).await.unwrap()
}

#[tokio::test]
async fn banner_permission_denied_then_plain_login() {
    let sim = sim().await;
    let mut c = Raw::connect(&sim).await;
    c.send(&action("Ping", "pre")).await;
    let denied = c.recv().await.unwrap();
    assert_eq!(denied, Message::response_with("Error", Some("pre"), Some("Permission denied")));
    c.send(&action("Login", "l").with("Username", "ADMIN").with("Secret", "adminpass")).await;
    let accepted = c.recv().await.unwrap();
    assert_eq!(
        &standard::encode_to_bytes(&accepted)[..],
        b"Response: Success\r\nActionID: l\r\nMessage: Authentication accepted\r\n\r\n"
    );
    assert_eq!(c.recv().await.unwrap().event(), Some("FullyBooted"));
    let auth = c.recv().await.unwrap();
    assert_eq!(auth.event(), Some("SuccessfulAuth"));
    assert_eq!(auth.get("Privilege"), Some("security,all"));
    assert_eq!(auth.get("AccountID"), Some("ADMIN"));
    let me = c.s.local_addr().unwrap();
    assert_eq!(auth.get("RemoteAddress"), Some(format!("IPV4/TCP/127.0.0.1/{}", me.port()).as_str()));
    assert_eq!(sim.login_count(), 1);
    assert!(sim.received().is_empty(), "nothing before the login is recorded");

    // Another login is announced to this session too; one without ActionID gets none back.
    let mut other = Raw::connect(&sim).await;
    other.send(&Message::new().with("Action", "Login").with("Username", "admin").with("Secret", "adminpass")).await;
    assert_eq!(other.recv().await.unwrap(), Message::response_with("Success", None, Some("Authentication accepted")));
    assert_eq!(c.recv().await.unwrap().event(), Some("SuccessfulAuth"));
}

#[tokio::test]
async fn md5_challenge_login_and_failures_close_after_the_delay() {
    let sim = sim().await;
    let mut c = Raw::connect(&sim).await;
    c.send(&action("Challenge", "c").with("AuthType", "MD5")).await;
    let nonce = c.until("c").await.get("Challenge").unwrap().to_string();
    assert!(!nonce.is_empty() && nonce.bytes().all(|b| b.is_ascii_digit()), "{nonce}");
    let key = format!("{:x}", Md5::digest(format!("{nonce}adminpass")));
    c.send(&action("Login", "l").with("AuthType", "MD5").with("Username", "admin").with("Key", key.to_uppercase()))
        .await;
    assert_eq!(c.until("l").await.get("Message"), Some("Authentication accepted"));

    let attempts = [
        action("Login", "bad").with("Username", "admin").with("Secret", "wrong"),
        action("Login", "bad").with("Username", "nobody").with("Secret", "adminpass"),
        action("Login", "bad").with("AuthType", "MD5").with("Username", "admin").with("Key", key.as_str()),
    ];
    for attempt in attempts {
        let mut bad = Raw::connect(&sim).await;
        let t0 = Instant::now();
        bad.send(&attempt).await;
        assert_eq!(
            bad.recv().await.unwrap(),
            Message::response_with("Error", Some("bad"), Some("Authentication failed"))
        );
        assert!(t0.elapsed() >= Duration::from_millis(50));
        assert!(bad.closed().await);
    }
    assert_eq!(sim.login_count(), 1);
}

#[tokio::test]
async fn ping_settings_status_and_commands() {
    let sim = sim().await;
    let mut c = Raw::login(&sim, Some("off")).await;
    c.send(&action("Ping", "p")).await;
    let pong = c.recv().await.unwrap();
    assert_eq!(pong.header(1), Some(("ActionID", "p")));
    assert_eq!(pong.get("Ping"), Some("Pong"));
    let stamp: f64 = pong.get("Timestamp").unwrap().parse().unwrap();
    let now = UNIX_EPOCH.elapsed().unwrap().as_secs_f64();
    assert!((now - stamp).abs() < 60.0, "{stamp}");
    c.send(&Message::new().with("Action", "Ping")).await;
    assert!(!c.recv().await.unwrap().contains("ActionID"));

    c.send(&action("CoreSettings", "cs")).await;
    assert_eq!(c.recv().await.unwrap().get("AsteriskVersion"), Some("22.10.1"));
    c.send(&action("corestatus", "st")).await;
    assert!(c.until("st").await.contains("CoreCurrentCalls"));

    c.send(&action("Command", "v").with("Command", "core show version")).await;
    let v = c.until("v").await;
    assert_eq!(v.get("Message"), Some("Command output follows"));
    assert!(v.get("Output").unwrap().starts_with("Asterisk 22.10.1"), "{v:?}");
    c.send(&action("Command", "m").with("Command", "module  show")).await;
    assert_eq!(c.until("m").await.get_all("Output").count(), 260);
    c.send(&action("Command", "x").with("Command", "foo bar")).await;
    let x = c.until("x").await;
    assert_eq!(x.response(), Some("Error"));
    assert_eq!(x.get("Message"), Some("Command output follows"));
    assert!(x.get("Output").unwrap().starts_with("No such command 'foo bar'"), "{x:?}");
    c.send(&action("ModuleCheck", "mc").with("Module", "app_queue.so")).await;
    assert_eq!(c.until("mc").await.response(), Some("Success"));
    c.send(&action("ModuleCheck", "mc2").with("Module", "nope")).await;
    assert_eq!(c.until("mc2").await.get("Message"), Some("Module not loaded"));
}

#[tokio::test]
async fn legacy_command_uses_the_follows_framing() {
    let sim = AmiSim::start(SimOptions { legacy_command: true, ..Default::default() }).await.unwrap();
    let mut c = Raw::login(&sim, Some("off")).await;
    c.send(&action("Command", "v").with("Command", "core show uptime")).await;
    let mut raw = Vec::new();
    while !raw.ends_with(b"--END COMMAND--\r\n\r\n") {
        assert!(c.s.read_buf(&mut raw).await.unwrap() > 0);
    }
    let text = String::from_utf8(raw.clone()).unwrap();
    assert!(text.starts_with("Response: Follows\r\nPrivilege: Command\r\nActionID: v\r\nSystem uptime: "), "{text}");
    let mut dec = AmiDecoder::default();
    dec.expect_command_output();
    let m = dec.decode(&mut BytesMut::from(&raw[..])).unwrap().unwrap();
    assert!(m.body().unwrap()[0].starts_with("System uptime"));
}

#[tokio::test]
async fn event_lists_carry_the_action_id_everywhere() {
    let sim = sim().await;
    let mut c = Raw::login(&sim, Some("off")).await;
    c.send(&action("CoreShowChannels", "x")).await;
    let list = c.collect(|m| m.get("EventList") == Some("Complete")).await;
    assert_eq!(list.len(), 4);
    assert!(list.iter().all(|m| m.action_id() == Some("x")));
    assert_eq!(list[0].get("EventList"), Some("start"));
    assert_eq!(list[1].event(), Some("CoreShowChannel"));
    assert_eq!(list[3].event(), Some("CoreShowChannelsComplete"));
    assert_eq!(list[3].get("ListItems"), Some("2"));

    c.send(&action("Status", "s")).await;
    let status = c.collect(|m| m.event() == Some("StatusComplete")).await;
    assert_eq!(status.len(), 4);
    assert_eq!(status[1].headers().last(), Some(("ActionID", "s")), "Status items end with the ActionID");
    let channel = status[2].get("Channel").unwrap().to_string();
    c.send(&action("Status", "one").with("Channel", &channel)).await;
    let one = c.collect(|m| m.event() == Some("StatusComplete")).await;
    assert_eq!((one.len(), one[1].get("Channel"), one[2].get("ListItems")), (3, Some(channel.as_str()), Some("1")));
    c.send(&action("Status", "none").with("Channel", "nosuchchannel")).await;
    assert_eq!(c.recv().await.unwrap().get("Message"), Some("No such channel"));

    // Narrowing the recorded full list to one queue gives what Asterisk answered for it.
    c.send(&action("QueueStatus", "qs-2").with("Queue", "testq")).await;
    let testq = c.collect(|m| m.event() == Some("QueueStatusComplete")).await;
    assert_eq!(testq, script::answer("15-eventlist-queuestatus", 2, "qs-2", Some("qs-2")));
    c.send(&action("QueueSummary", "qsum")).await;
    let summary = c.collect(|m| m.event() == Some("QueueSummaryComplete")).await;
    assert_eq!(summary.last().unwrap().get("ListItems"), Some("2"));
    c.send(&action("QueueSummary", "q0").with("Queue", "nosuchq")).await;
    let empty = c.collect(|m| m.event() == Some("QueueSummaryComplete")).await;
    assert_eq!((empty.len(), empty[1].get("ListItems")), (2, Some("0")));
}

#[tokio::test]
async fn async_originate_broadcasts_the_call_and_its_originate_response() {
    let sim = sim().await;
    let mut c = Raw::login(&sim, None).await;
    let mut watcher = Raw::login(&sim, Some("call")).await;
    let mut quiet = Raw::login(&sim, Some("off")).await;
    c.send(&action("Originate", "o").with("Channel", "Local/100@ami-test").with("Async", "true")).await;
    let queued = c.until("o").await;
    assert_eq!(queued.get("Message"), Some("Originate successfully queued"));
    let call = c.collect(|m| m.event() == Some("OriginateResponse")).await;
    assert!(call.iter().any(|m| m.event() == Some("Newchannel")));
    let response = call.last().unwrap();
    assert_eq!(
        (response.action_id(), response.response(), response.get("Reason")),
        (Some("o"), Some("Success"), Some("4"))
    );
    // Another session with call events sees the same OriginateResponse; one with events off none.
    assert_eq!(watcher.collect(|m| m.event() == Some("OriginateResponse")).await.last(), Some(response));
    quiet.send(&action("Ping", "q")).await;
    assert_eq!(quiet.recv().await.unwrap().action_id(), Some("q"));

    c.send(&action("Originate", "f").with("Channel", "Local/999@ami-test").with("Async", "yes")).await;
    let failed = c.collect(|m| m.event() == Some("OriginateResponse")).await;
    assert_eq!(failed.last().unwrap().response(), Some("Failure"));
    assert_eq!(failed.last().unwrap().action_id(), Some("f"));

    c.send(&action("Originate", "nochan")).await;
    assert_eq!(c.until("nochan").await.get("Message"), Some("Channel not specified"));
}

#[tokio::test]
async fn sync_originate_answers_after_the_call_is_up() {
    let sim = sim().await;
    let mut c = Raw::login(&sim, Some("off")).await;
    let t0 = Instant::now();
    c.send(&action("Originate", "sync").with("Channel", "Local/101@ami-test").with("Exten", "101")).await;
    c.send(&action("Ping", "after")).await;
    let answer = c.recv().await.unwrap();
    assert!(t0.elapsed() >= SYNC_ORIGINATE_DELAY);
    assert_eq!(answer.action_id(), Some("sync"));
    assert_eq!(answer.get("Message"), Some("Originate successfully queued"));
    assert_eq!(c.recv().await.unwrap().action_id(), Some("after"), "answered in order, no OriginateResponse");
}

#[tokio::test]
async fn event_masks_at_login_and_by_action() {
    let sim = sim().await;
    let mut off = Raw::login(&sim, Some("off")).await;
    // No FullyBooted, no SuccessfulAuth: the next message answers the Ping.
    off.send(&action("Ping", "p")).await;
    assert_eq!(off.recv().await.unwrap().action_id(), Some("p"));

    let mut c = Raw::login(&sim, None).await;
    c.collect(|m| m.event() == Some("SuccessfulAuth")).await;
    c.send(&action("Events", "e").with("EventMask", "off")).await;
    assert_eq!(c.recv().await.unwrap(), Message::response_with("Success", Some("e"), None).with("Events", "Off"));
    sim.emit(Message::new().with("Event", "Hidden").with("Privilege", "call,all"));
    c.send(&action("Ping", "p1")).await;
    assert_eq!(c.recv().await.unwrap().action_id(), Some("p1"));

    c.send(&action("Events", "e2").with("EventMask", "system,call")).await;
    assert_eq!(c.recv().await.unwrap().get("Events"), Some("On"));
    sim.emit(Message::new().with("Event", "UserThing").with("Privilege", "user,all"));
    sim.emit(Message::new().with("Event", "Shown").with("Privilege", "call,all"));
    assert_eq!(c.recv().await.unwrap().event(), Some("Shown"));

    c.send(&action("Events", "e3").with("EventMask", "on")).await;
    assert_eq!(c.recv().await.unwrap().get("Events"), Some("On"));
    sim.emit(Message::new().with("Event", "Unclassed"));
    assert_eq!(c.recv().await.unwrap().event(), Some("Unclassed"));
    assert!(sim.received().iter().any(|m| m.action() == Some("Events")));
}

#[tokio::test]
async fn unknown_and_missing_actions_pipelined_in_order() {
    let sim = sim().await;
    let mut c = Raw::login(&sim, Some("system,call")).await;
    c.collect(|m| m.event() == Some("FullyBooted")).await;
    let mut watcher = Raw::login(&sim, Some("security")).await;
    watcher.collect(|m| m.event() == Some("SuccessfulAuth")).await;
    let mut batch = Vec::new();
    let empty = Message::new().with("Action", " ").with("ActionID", "e");
    for m in [action("FooBarBaz", "u"), Message::new().with("ActionID", "n"), action("Ping", "p"), empty] {
        batch.extend_from_slice(&standard::encode_to_bytes(&m));
    }
    c.s.write_all(&batch).await.unwrap();
    let unknown = c.recv().await.unwrap();
    assert_eq!(
        unknown.get("Message"),
        Some("Invalid/unknown command: FooBarBaz. Use Action: ListCommands to show available commands.")
    );
    assert_eq!(c.recv().await.unwrap().get("Message"), Some("Missing action in request"));
    assert_eq!(c.recv().await.unwrap().get("Ping"), Some("Pong"));
    assert_eq!(c.recv().await.unwrap(), Message::response_with("Error", Some("e"), Some("Missing action in request")));
    let bad = watcher.collect(|m| m.get("RequestType") == Some("Action: NONE")).await;
    assert_eq!(bad.len(), 2);
    assert_eq!(bad[0].get("RequestType"), Some("Action: FooBarBaz"));
    assert_eq!(bad[0].event(), Some("RequestBadFormat"));
    assert_eq!(bad[0].get("Privilege"), Some("security,all"));
}

#[tokio::test]
async fn logoff_says_goodbye_and_closes() {
    let sim = sim().await;
    let mut c = Raw::login(&sim, Some("off")).await;
    c.send(&action("Logoff", "bye")).await;
    assert_eq!(
        c.recv().await.unwrap(),
        Message::response_with("Goodbye", Some("bye"), Some("Thanks for all the fish."))
    );
    assert!(c.closed().await);
    assert_eq!(sim.received().last().and_then(Message::action), Some("Logoff"));
}

#[tokio::test]
async fn emit_many_floods_every_reader_and_slow_readers_are_dropped() {
    let sim = sim().await;
    let mut c = Raw::login(&sim, Some("user")).await;
    let _quiet = Raw::login(&sim, Some("call")).await;
    let flood = Message::new().with("Event", "Flood").with("Privilege", "user,all");
    sim.emit_many(&flood, 1500);
    for _ in 0..1500 {
        assert_eq!(c.recv().await.unwrap(), flood);
    }
    assert_eq!(sim.connection_count(), 2);
    // Far more than the queue and the socket buffers hold, and nobody reads: the flooded
    // connection is closed; the one without user events stays.
    sim.emit_many(&flood, 2 * CONNECTION_QUEUE * FLOOD_CHUNK);
    let t0 = Instant::now();
    while sim.connection_count() > 1 {
        assert!(t0.elapsed() < Duration::from_secs(10), "the stalled reader was not dropped");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(c.closed().await);
}

#[tokio::test]
async fn kill_connections_shutdown_and_restart_on_the_same_port() {
    let sim = sim().await;
    let mut a = Raw::login(&sim, None).await;
    let mut b = Raw::connect(&sim).await;
    assert_eq!(sim.connection_count(), 2);
    sim.kill_connections();
    assert_eq!(sim.connection_count(), 0);
    assert!(a.closed().await && b.closed().await);
    // Still listening.
    let mut again = Raw::login(&sim, None).await;
    assert_eq!(sim.login_count(), 2);
    let addr = sim.addr();
    sim.shutdown().await;
    assert!(again.closed().await);
    assert!(TcpStream::connect(addr).await.is_err());
    let restarted = AmiSim::start_on(addr, SimOptions::default()).await.unwrap();
    assert_eq!(restarted.addr(), addr);
    Raw::login(&restarted, None).await;
    restarted.shutdown().await;
}

#[tokio::test]
async fn drop_mid_list_hold_and_silent_ping() {
    let sim = AmiSim::start(SimOptions { ping_replies: false, ..Default::default() }).await.unwrap();
    let mut c = Raw::login(&sim, Some("off")).await;
    c.send(&action("Ping", "unanswered")).await;
    sim.set_hold(Some("corestatus"));
    c.send(&action("CoreStatus", "held")).await;
    c.send(&action("CoreSettings", "cs")).await;
    assert_eq!(c.recv().await.unwrap().action_id(), Some("cs"), "Ping and CoreStatus stay unanswered");
    sim.set_hold(None);
    c.send(&action("CoreStatus", "now")).await;
    assert_eq!(c.recv().await.unwrap().action_id(), Some("now"));
    assert!(sim.received().iter().any(|m| m.action_id() == Some("held")));

    sim.set_drop_mid_list(Some("CoreShowChannels"));
    c.send(&action("CoreShowChannels", "l")).await;
    assert_eq!(c.recv().await.unwrap().get("EventList"), Some("start"));
    assert_eq!(c.recv().await.unwrap().event(), Some("CoreShowChannel"));
    assert!(c.closed().await);
    sim.set_drop_mid_list(None);
    let mut d = Raw::login(&sim, Some("off")).await;
    d.send(&action("CoreShowChannels", "l")).await;
    assert_eq!(d.collect(|m| m.kind() == Kind::Event && m.get("EventList").is_some()).await.len(), 4);
}

#[test]
fn received_keeps_the_last_ten_thousand() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let sim = rt.block_on(sim());
    for i in 0..RECEIVED_KEPT + 5 {
        sim.record(&action("Ping", &i.to_string()));
    }
    let got = sim.received();
    assert_eq!(got.len(), RECEIVED_KEPT);
    assert_eq!(got[0].action_id(), Some("5"));
}

#[test]
fn event_time_layout() {
    let t = UNIX_EPOCH + Duration::from_millis(1_795_343_978_693);
    assert_eq!(script::event_tv(t), "2026-11-22T10:39:38.693+0000");
    assert_eq!(script::event_tv(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00.000+0000");
}
