use std::time::Duration;

use astmanproxy_handlers::{standard, AmiDecoder, Message};
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

impl Raw {
    async fn connect(sim: &AmiSim) -> Raw {
        let s = TcpStream::connect(sim.addr()).await.unwrap();
        let mut r = Raw { s, buf: BytesMut::new(), dec: AmiDecoder::default() };
        loop {
            if let Some(line) = r.dec.decode_line(&mut r.buf).unwrap() {
                assert_eq!(line, "Asterisk Call Manager/11.0.0");
                return r;
            }
            r.s.read_buf(&mut r.buf).await.unwrap();
        }
    }
    async fn send(&mut self, m: Message) {
        let mut out = BytesMut::new();
        standard::encode(&m, &mut out);
        self.s.write_all(&out).await.unwrap();
    }
    async fn recv(&mut self) -> Option<Message> {
        loop {
            if let Some(m) = self.dec.decode(&mut self.buf).unwrap() {
                return Some(m);
            }
            let n = tokio::time::timeout(Duration::from_secs(5), self.s.read_buf(&mut self.buf)).await.ok()?.ok()?;
            if n == 0 {
                return None;
            }
        }
    }
    async fn until(&mut self, id: &str) -> Message {
        loop {
            let m = self.recv().await.expect("closed");
            if m.action_id() == Some(id) {
                return m;
            }
        }
    }
    async fn login(&mut self) {
        self.send(
            Message::new()
                .with("Action", "Login")
                .with("Username", "admin")
                .with("Secret", "adminpass")
                .with("ActionID", "l"),
        )
        .await;
        assert_eq!(self.until("l").await.response(), Some("Success"));
    }
}

#[tokio::test]
async fn login_ping_list_and_events() {
    let sim = AmiSim::start(SimOptions::default()).await.unwrap();
    let mut c = Raw::connect(&sim).await;
    c.send(Message::new().with("Action", "Ping").with("ActionID", "pre")).await;
    assert_eq!(c.until("pre").await.get("Message"), Some("Permission denied"));
    c.login().await;
    assert_eq!(c.recv().await.unwrap().event(), Some("FullyBooted"));
    c.send(Message::new().with("Action", "Ping").with("ActionID", "p")).await;
    assert_eq!(c.until("p").await.get("Ping"), Some("Pong"));
    c.send(Message::new().with("Action", "CoreShowChannels").with("ActionID", "x")).await;
    assert_eq!(c.until("x").await.get("EventList"), Some("start"));
    let mut n = 0;
    loop {
        let m = c.until("x").await;
        if m.get("EventList") == Some("Complete") {
            assert_eq!(m.get("ListItems"), Some(n.to_string().as_str()));
            break;
        }
        n += 1;
    }
    sim.emit(Message::new().with("Event", "Test").with("Privilege", "user,all"));
    assert_eq!(c.recv().await.unwrap().event(), Some("Test"));
    assert_eq!(sim.login_count(), 1);
    assert!(sim.received().iter().any(|m| m.action() == Some("CoreShowChannels")));
}

#[tokio::test]
async fn md5_login_and_failures() {
    let sim =
        AmiSim::start(SimOptions { auth_fail_delay: Duration::from_millis(10), ..Default::default() }).await.unwrap();
    let mut c = Raw::connect(&sim).await;
    c.send(Message::new().with("Action", "Challenge").with("AuthType", "MD5").with("ActionID", "c")).await;
    let nonce = c.until("c").await.get("Challenge").unwrap().to_string();
    let key = format!("{:x}", Md5::digest(format!("{nonce}adminpass")));
    c.send(
        Message::new()
            .with("Action", "Login")
            .with("AuthType", "MD5")
            .with("Username", "admin")
            .with("Key", key)
            .with("ActionID", "l"),
    )
    .await;
    assert_eq!(c.until("l").await.response(), Some("Success"));
    let mut bad = Raw::connect(&sim).await;
    bad.send(
        Message::new().with("Action", "Login").with("Username", "admin").with("Secret", "no").with("ActionID", "l"),
    )
    .await;
    assert_eq!(bad.until("l").await.get("Message"), Some("Authentication failed"));
    assert!(bad.recv().await.is_none());
}

#[tokio::test]
async fn originate_events_off_legacy_command_kill() {
    let sim = AmiSim::start(SimOptions { legacy_command: true, ..Default::default() }).await.unwrap();
    let mut c = Raw::connect(&sim).await;
    c.login().await;
    c.send(
        Message::new()
            .with("Action", "Originate")
            .with("Async", "true")
            .with("Channel", "Local/100")
            .with("ActionID", "o"),
    )
    .await;
    assert_eq!(c.until("o").await.response(), Some("Success"));
    assert_eq!(c.until("o").await.event(), Some("OriginateResponse"));
    c.send(Message::new().with("Action", "Events").with("EventMask", "off").with("ActionID", "e")).await;
    assert_eq!(c.until("e").await.get("Events"), Some("Off"));
    c.dec.expect_command_output();
    c.send(Message::new().with("Action", "Command").with("Command", "core show version").with("ActionID", "v")).await;
    let v = c.until("v").await;
    assert_eq!(v.response(), Some("Follows"));
    assert!(v.body().unwrap()[0].starts_with("Asterisk 22"));
    sim.kill_connections();
    assert!(c.recv().await.is_none());
}

#[tokio::test]
async fn drop_mid_list_and_flood() {
    let sim = AmiSim::start(SimOptions::default()).await.unwrap();
    let mut c = Raw::connect(&sim).await;
    c.login().await;
    sim.emit_many(&Message::new().with("Event", "Flood").with("Privilege", "user,all"), 1500);
    let mut n = 0;
    while n < 1500 {
        if c.recv().await.unwrap().event() == Some("Flood") {
            n += 1;
        }
    }
    sim.set_drop_mid_list(Some("Status"));
    c.send(Message::new().with("Action", "Status").with("ActionID", "s")).await;
    assert_eq!(c.until("s").await.get("EventList"), Some("start"));
    assert_eq!(c.until("s").await.event(), Some("Status"));
    assert!(c.recv().await.is_none());
}
