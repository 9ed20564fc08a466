//! Banner, login (plain and MD5), unauthenticated clients, Logoff, Events.

use std::time::Duration;

use astmanproxy_handlers::{Kind, Message};
use md5::{Digest, Md5};

use crate::support::*;

#[tokio::test]
async fn banner_is_asterisks_and_login_is_answered_like_asterisk() {
    let (_sim, proxy) = proxy_with_sim().await;
    let mut c = AmiClient::connect(proxy.addr).await;
    assert_eq!(c.banner, "Asterisk Call Manager/11.0.0");
    let answer = c.login_as("alice", "alicepw", None).await;
    assert_eq!(answer.headers().take(3).map(|(k, _)| k).collect::<Vec<_>>(), ["Response", "ActionID", "Message"]);
    assert_eq!(answer.get("Message"), Some("Authentication accepted"));
    let booted = c.recv().await;
    assert_eq!(booted.event(), Some("FullyBooted"));
    assert_eq!(booted.get("Status"), Some("Fully Booted"));
}

#[tokio::test]
async fn forcebanner_overrides() {
    let sim = sim().await;
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    cfg.force_banner = Some("Asterisk Call Manager/5.0.1".into());
    let proxy = spawn_proxy(cfg).await;
    let c = AmiClient::connect(proxy.addr).await;
    assert_eq!(c.banner, "Asterisk Call Manager/5.0.1");
}

#[tokio::test]
async fn wrong_password_is_delayed_then_closed() {
    let (_sim, proxy) = proxy_with_sim().await;
    let mut c = AmiClient::connect(proxy.addr).await;
    let started = tokio::time::Instant::now();
    let answer = c.login_as("alice", "nope", None).await;
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert_eq!(answer.response(), Some("Error"));
    assert_eq!(answer.get("Message"), Some("Authentication failed"));
    assert!(c.is_closed(WAIT).await);
    let mut c = AmiClient::connect(proxy.addr).await;
    assert_eq!(c.login_as("mallory", "x", None).await.response(), Some("Error"));
}

#[tokio::test]
async fn md5_challenge_login() {
    let (_sim, proxy) = proxy_with_sim().await;
    let mut c = AmiClient::connect(proxy.addr).await;
    let chal = c.action("Challenge", "ch", &[("AuthType", "MD5")]).await;
    let nonce = chal.get("Challenge").unwrap().to_string();
    let key = format!("{:x}", Md5::digest(format!("{nonce}bobpw")));
    let ok = c.action("Login", "l1", &[("AuthType", "MD5"), ("Username", "bob"), ("Key", &key)]).await;
    assert_eq!(ok.response(), Some("Success"));
    // A second challenge is a fresh nonce.
    let chal2 = c.action("Challenge", "ch2", &[("AuthType", "md5")]).await;
    assert_ne!(chal2.get("Challenge"), Some(nonce.as_str()));
}

#[tokio::test]
async fn nothing_but_login_answers_before_login() {
    let (sim, proxy) = proxy_with_sim().await;
    let mut c = AmiClient::connect(proxy.addr).await;
    let denied = c.action("Ping", "pre", &[]).await;
    assert_eq!(denied.response(), Some("Error"));
    assert_eq!(denied.get("Message"), Some("Permission denied"));
    sim.emit(Message::new().with("Event", "Newchannel").with("Privilege", "call,all").with("Channel", "X"));
    assert!(c.try_recv(Duration::from_millis(300)).await.is_none(), "an unauthenticated client got something");
    assert!(!sim.received().iter().any(|m| m.action_id() == Some("pre")));
}

#[tokio::test]
async fn headers_in_any_order_and_case_and_input_before_banner() {
    let (_sim, proxy) = proxy_with_sim().await;
    let mut c = AmiClient::connect_raw(proxy.addr).await;
    // Sent before reading the banner, sorted alphabetically, lower-case action name.
    c.send_raw(b"ActionID: 1\r\naction: login\r\nsecret: alicepw\r\nusername: alice\r\n\r\n").await;
    assert_eq!(c.read_banner().await, "Asterisk Call Manager/11.0.0");
    let answer = c.response("1").await;
    assert_eq!(answer.response(), Some("Success"));
}

#[tokio::test]
async fn logoff_says_goodbye_and_closes() {
    let (_sim, proxy) = proxy_with_sim().await;
    let mut c = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    let bye = c.action("Logoff", "bye", &[]).await;
    assert_eq!(bye.response(), Some("Goodbye"));
    assert_eq!(bye.get("Message"), Some("Thanks for all the fish."));
    assert!(c.is_closed(WAIT).await);
}

#[tokio::test]
async fn events_action_is_per_client_and_never_forwarded() {
    let (sim, proxy) = proxy_with_sim().await;
    let mut quiet = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    let mut loud = AmiClient::login(proxy.addr, "bob", "bobpw").await;
    let off = quiet.action("Events", "ev", &[("EventMask", "off")]).await;
    assert_eq!(off.get("Events"), Some("Off"));
    assert_eq!(off.header(1).unwrap().0, "ActionID");
    sim.emit(Message::new().with("Event", "Newchannel").with("Privilege", "call,all").with("Channel", "A"));
    let got = loud.recv_until(|m| m.event() == Some("Newchannel")).await;
    assert_eq!(got.get("Server"), Some("pbx1"));
    // Class lists: system only lets a call event through? No.
    let mask = loud.action("Events", "ev2", &[("EventMask", "system")]).await;
    assert_eq!(mask.get("Events"), Some("On"));
    sim.emit(Message::new().with("Event", "Hangup").with("Privilege", "call,all"));
    sim.emit(Message::new().with("Event", "Reload").with("Privilege", "system,all"));
    let next = loud.recv_until(|m| m.kind() == Kind::Event).await;
    assert_eq!(next.event(), Some("Reload"), "the call event passed a system-only mask");
    assert!(quiet.try_recv(Duration::from_millis(300)).await.is_none(), "events reached a client with events off");
    assert!(!sim.received().iter().any(|m| m.action().is_some_and(|a| a.eq_ignore_ascii_case("Events"))));
}

#[tokio::test]
async fn events_off_at_login() {
    let (sim, proxy) = proxy_with_sim().await;
    let mut c = AmiClient::connect(proxy.addr).await;
    assert_eq!(c.login_as("alice", "alicepw", Some("off")).await.response(), Some("Success"));
    sim.emit(Message::new().with("Event", "Newchannel").with("Privilege", "call,all"));
    assert!(c.try_recv(Duration::from_millis(300)).await.is_none());
    // Responses still come.
    assert_eq!(c.action("Ping", "p", &[]).await.get("Ping"), Some("Pong"));
}

#[tokio::test]
async fn open_proxy_serves_without_login_but_still_checks_known_users() {
    let sim = sim().await;
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    cfg.auth_required = false;
    let proxy = spawn_proxy(cfg).await;
    wait_ready(proxy.addr, None).await;
    let mut c = AmiClient::connect(proxy.addr).await;
    assert_eq!(c.action("Ping", "open", &[]).await.get("Ping"), Some("Pong"));
    sim.emit(Message::new().with("Event", "Newchannel").with("Privilege", "call,all"));
    assert_eq!(c.recv_until(|m| m.kind() == Kind::Event).await.event(), Some("Newchannel"));
    // A known user with a wrong secret is still refused.
    assert_eq!(c.login_as("alice", "wrong", None).await.response(), Some("Error"));
}

#[tokio::test]
async fn failed_logins_are_rate_limited_per_address() {
    let sim = sim().await;
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    cfg.auth_limit = 3;
    let proxy = spawn_proxy(cfg).await;
    for _ in 0..3 {
        let mut c = AmiClient::connect(proxy.addr).await;
        assert_eq!(c.login_as("alice", "guess", None).await.get("Message"), Some("Authentication failed"));
    }
    // Even the right secret is refused now, at once, without being checked.
    let mut c = AmiClient::connect(proxy.addr).await;
    let started = tokio::time::Instant::now();
    let refused = c.login_as("alice", "alicepw", None).await;
    assert!(refused.get("Message").unwrap().contains("too many failed logins"), "{refused:?}");
    assert!(started.elapsed() < Duration::from_millis(40));
    assert!(c.is_closed(WAIT).await);
}

#[tokio::test]
async fn clients_that_never_log_in_are_closed() {
    let sim = sim().await;
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    cfg.auth_timeout = Duration::from_millis(300);
    let proxy = spawn_proxy(cfg).await;
    let mut idle = AmiClient::connect(proxy.addr).await;
    let mut busy = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    let m = idle.recv().await;
    assert_eq!(m.get("Message"), Some("Authentication timeout"));
    assert!(idle.is_closed(WAIT).await);
    tokio::time::sleep(Duration::from_millis(400)).await;
    // A logged-in client is not affected.
    assert_eq!(busy.action("Ping", "p", &[]).await.get("Ping"), Some("Pong"));
}

#[tokio::test]
async fn hashed_secrets_log_in() {
    let sim = sim().await;
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    let hash = bcrypt::hash("hashedpw", 4).unwrap();
    cfg.users = astmanproxy::config::Users::parse(&format!("hashy={hash}\n"), std::path::Path::new("t")).unwrap();
    let proxy = spawn_proxy(cfg).await;
    let mut ok = AmiClient::connect(proxy.addr).await;
    assert_eq!(ok.login_as("hashy", "hashedpw", None).await.response(), Some("Success"));
    let mut bad = AmiClient::connect(proxy.addr).await;
    assert_eq!(bad.login_as("hashy", &hash, None).await.response(), Some("Error"));
}
