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

/// `astmanproxy_auth_failures_total{kind}` on the admin listener.
async fn auth_failures(admin: std::net::SocketAddr, kind: &str) -> u64 {
    let (_, body) = http(admin, "GET", "/metrics").await;
    let prefix = format!("astmanproxy_auth_failures_total{{kind=\"{kind}\"}} ");
    body.lines().find_map(|l| l.strip_prefix(&prefix)).map_or(0, |v| v.trim().parse().unwrap())
}

/// Waits until the metric reaches `n`.
async fn wait_auth_failures(admin: std::net::SocketAddr, kind: &str, n: u64) {
    eventually(&format!("auth_failures reaching {n}"), || async { auth_failures(admin, kind).await >= n }).await;
}

const USER_LOCKOUT: &str =
    "Authentication failed: too many failed logins for this user from this address, try again later";
const ADDRESS_LOCKOUT: &str = "Authentication failed: too many failed logins from this address, try again later";

/// One login on a fresh connection: the answer's `Message`.
async fn login_message(proxy: &TestProxy, user: &str, secret: &str) -> String {
    let mut c = AmiClient::connect(proxy.addr).await;
    c.login_as(user, secret, None).await.get("Message").unwrap_or_default().to_string()
}

#[tokio::test]
async fn a_locked_out_user_is_refused_at_once_without_the_secret_checked() {
    let sim = sim().await;
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    cfg.auth_limit = 1;
    // Far longer than the test: the failing login below is still waiting when the rest is done.
    cfg.auth_fail_delay = Duration::from_secs(600);
    let proxy = spawn_proxy_with_admin(cfg).await;
    let admin = proxy.admin.unwrap();
    let mut failing = AmiClient::connect(proxy.addr).await;
    failing.send(&Message::new().with("Action", "Login").with("Username", "alice").with("Secret", "guess")).await;
    wait_auth_failures(admin, "ami", 1).await;
    // Even the right secret is refused now, without being checked, and at once: its answer
    // comes while the failed login it follows is still in its failure delay.
    let mut c = AmiClient::connect(proxy.addr).await;
    let refused = c.login_as("alice", "alicepw", None).await;
    assert_eq!((refused.response(), refused.get("Message")), (Some("Error"), Some(USER_LOCKOUT)));
    assert!(c.is_closed(WAIT).await);
    // Another user from the same address logs in, also before the failure delay is over.
    let mut bob = AmiClient::connect(proxy.addr).await;
    assert_eq!(bob.login_as("bob", "bobpw", None).await.response(), Some("Success"));
    assert!(failing.try_recv(Duration::ZERO).await.is_none(), "the failure delay did not apply");
    // Refused attempts are counted as failed logins.
    assert_eq!(auth_failures(admin, "ami").await, 2);
}

#[tokio::test]
async fn thirty_failures_for_one_name_leave_other_users_of_the_address_alone() {
    let sim = sim().await;
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    cfg.auth_fail_delay = Duration::from_millis(1);
    let proxy = spawn_proxy(cfg).await;
    for i in 0..30 {
        let message = login_message(&proxy, "nosuchuser", "guess").await;
        // authlimit = 10 by default: the lock-out names the user.
        let expected = if i < 10 { "Authentication failed" } else { USER_LOCKOUT };
        assert_eq!(message, expected, "attempt {i}");
    }
    // Another user from 127.0.0.1, at once.
    let mut alice = AmiClient::connect(proxy.addr).await;
    assert_eq!(alice.login_as("alice", "alicepw", None).await.response(), Some("Success"));
    assert_eq!(alice.action("Ping", "p", &[]).await.get("Ping"), Some("Pong"));
    assert_eq!(login_message(&proxy, "nosuchuser", "guess").await, USER_LOCKOUT);
}

#[tokio::test]
async fn spraying_names_hits_the_address_ceiling_unless_exempt() {
    let sim = sim().await;
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    cfg.auth_fail_delay = Duration::from_millis(1);
    cfg.auth_limit = 2;
    cfg.auth_limit_address = 5;
    let mut exempt = cfg.clone();
    let proxy = spawn_proxy(cfg).await;
    for _ in 0..2 {
        assert_eq!(login_message(&proxy, "mallory", "x").await, "Authentication failed");
    }
    // Refused attempts are not checked and count nothing toward the address's ceiling.
    for _ in 0..10 {
        assert_eq!(login_message(&proxy, "mallory", "x").await, USER_LOCKOUT);
    }
    assert_eq!(login_message(&proxy, "alice", "alicepw").await, "Authentication accepted");
    for name in ["u1", "u2", "u3"] {
        assert_eq!(login_message(&proxy, name, "x").await, "Authentication failed");
    }
    // Five checked failures from 127.0.0.1: every name is refused now, the right secret too.
    assert_eq!(login_message(&proxy, "alice", "alicepw").await, ADDRESS_LOCKOUT);
    assert_eq!(login_message(&proxy, "bob", "bobpw").await, ADDRESS_LOCKOUT);

    // Exempt: the ceiling does not apply, the per-user lock-out does.
    exempt.auth_limit_exempt = vec!["10.0.0.0/8".parse().unwrap(), "127.0.0.0/8".parse().unwrap()];
    let proxy = spawn_proxy(exempt).await;
    for i in 0..8 {
        assert_eq!(login_message(&proxy, &format!("u{i}"), "x").await, "Authentication failed");
    }
    assert_eq!(login_message(&proxy, "alice", "alicepw").await, "Authentication accepted");
    assert_eq!(login_message(&proxy, "u0", "x").await, "Authentication failed");
    assert_eq!(login_message(&proxy, "u0", "x").await, USER_LOCKOUT);
}

#[tokio::test]
async fn http_logins_are_locked_out_per_user_too() {
    use base64::Engine;
    let sim = sim().await;
    let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = http_listener.local_addr().unwrap();
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    cfg.auth_fail_delay = Duration::from_millis(1);
    cfg.auth_limit = 2;
    let proxy = spawn_proxy_with_http(cfg, http_listener).await;
    wait_ready(proxy.addr, None).await;
    let get = |user: &str, secret: &str| {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
        async move { http_basic(addr, "/rawman?Action=Ping", &basic).await }
    };
    for _ in 0..2 {
        assert!(get("alice", "guess").await.starts_with("HTTP/1.1 401"));
    }
    let refused = get("alice", "alicepw").await;
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    assert!(refused.contains("too many failed logins for this user from this address"), "{refused}");
    let bob = get("bob", "bobpw").await;
    assert!(bob.starts_with("HTTP/1.1 200") && bob.contains("Ping: Pong"), "{bob}");
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
