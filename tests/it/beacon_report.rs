//! The Beacon reporter end to end: the real proxy against the AMI simulator replaying real
//! captures, reporting over real HTTPS (rcgen certificates, `ca_path`) to a small recording
//! collector that answers as the API says (or as a test scripts it: 401, 429, 5xx).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use astmanproxy::beacon::report::{BeaconConfig, Board, ProxySetting, Target};
use astmanproxy::config::{Config, Secret};
use astmanproxy_handlers::{Kind, Message};

use crate::support::*;

mod fake;
mod real;
use fake::{connect_proxy, saved, FakeCollector, TempDir};

/// A proxy config reporting every server to `collector`, quickly retrying, state in `state`.
fn beacon_config(sims: &[(&str, SocketAddr)], collector: &FakeCollector, state: &Path) -> Reporting {
    let mut cfg = reporting_config(sims, &collector.url(), &collector.ca, state);
    for target in &mut cfg.beacon.targets {
        target.interval = Duration::from_secs(3600);
        target.timeout = Duration::from_secs(5);
    }
    cfg
}

/// Proxy configuration for `sims`, reporting to `url` (trusting `ca`) with no jitter and quick
/// retries, its state in `state`.
fn reporting_config(sims: &[(&str, SocketAddr)], url: &str, ca: &Path, state: &Path) -> Reporting {
    let proxy = config(sims.iter().map(|(name, addr)| server(name, *addr)).collect());
    let mut target = Target::new("test", url);
    target.ca_path = Some(ca.to_path_buf());
    target.jitter = Duration::ZERO;
    target.retry_min = Duration::from_millis(50);
    target.retry_max = Duration::from_millis(200);
    let beacon = BeaconConfig {
        enabled: true,
        private_name: Some("lab".to_string()),
        state_file: state.to_path_buf(),
        targets: vec![target],
        ..BeaconConfig::default()
    };
    Reporting { proxy, beacon, board: Board::default() }
}

/// A proxy configuration with its Beacon configuration and the board the test watches.
struct Reporting {
    proxy: Config,
    beacon: BeaconConfig,
    board: Board,
}

/// Starts the proxy of `cfg`, its Beacon service filling `cfg.board`.
async fn spawn_reporting(cfg: Reporting) -> TestProxy {
    spawn_proxy_with_beacon(cfg.proxy, astmanproxy::beacon::Setup { config: cfg.beacon, board: cfg.board }).await
}

/// The `BeaconShowServerResponse` events of `server`.
async fn show(c: &mut AmiClient, id: &str) -> Vec<Message> {
    let start = c.action("BeaconShowServer", id, &[]).await;
    assert_eq!(start.response(), Some("Success"));
    let mut items = Vec::new();
    loop {
        let m = c.recv_until(|m| m.kind() == Kind::Event && m.action_id() == Some(id)).await;
        if m.event() == Some("BeaconShowServerComplete") {
            return items;
        }
        items.push(m);
    }
}

/// Waits until the board holds an accepted report for `server` with id `id`.
async fn wait_posted(board: &Board, url: &str, server: &str, id: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if board.get(url, server).is_some_and(|e| e.server_id.as_deref() == Some(id) && e.last_posting.is_some()) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "no accepted report for {server}: {:?}", board.entries());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn first_report_is_a_post_with_the_design_body_then_puts_with_the_token() {
    let dir = TempDir::new("post-put");
    let sim = sim().await;
    let mut collector = FakeCollector::start(&dir.0).await;
    let cfg = beacon_config(&[("pbx1", sim.addr())], &collector, &dir.path("state.json"));
    let board = cfg.board.clone();
    let proxy = spawn_reporting(cfg).await;

    let first = collector.next().await;
    assert_eq!((first.method.as_str(), first.path.as_str()), ("POST", "/api/v1/servers"));
    let body = &first.body;
    assert!(body.get("id").is_none(), "no id before registration: {body}");
    assert_eq!(body["asterisk"]["version"]["name"], "22.10.1");
    assert_eq!(body["asterisk"]["version"]["number"], 221_001);
    assert_eq!(body["asterisk"]["modules"].as_array().unwrap().len(), 258);
    assert_eq!(body["asterisk"]["modules"][0]["name"], "acl");
    assert_eq!(body["asterisk"]["modules"][0]["support_level"], "core");
    assert_eq!(body["asterisk"]["stats"]["run_time"]["startup_time"], "2026-11-22 10:39:23");
    assert_eq!(body["asterisk"]["stats"]["calls"]["active"], 0);
    assert!(body["asterisk"]["stats"]["calls"]["processed"].is_u64());
    assert_eq!(body["operating_system"]["sys_name"], "Linux");
    assert_eq!(body["operating_system"]["machine"], "x86_64");
    assert_eq!(body["operating_system"]["release"], "");
    assert_eq!(body["private_name"], "lab");
    wait_posted(&board, &collector.url(), "pbx1", "srv-1").await;

    board.trigger();
    let second = collector.next().await;
    assert_eq!((second.method.as_str(), second.path.as_str()), ("PUT", "/api/v1/servers/srv-1"));
    assert_eq!(second.query, "tokenId=tok-1");
    assert_eq!(second.body["id"], "srv-1");
    wait_posted(&board, &collector.url(), "pbx1", "srv-1").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while board.get(&collector.url(), "pbx1").and_then(|e| e.token).as_deref() != Some("tok-2") {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The live fields, over AMI and in the CLI layout.
    let mut c = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    let items = show(&mut c, "b").await;
    assert_eq!(items.len(), 1);
    let item = &items[0];
    assert_eq!(item.get("ServerId"), Some("srv-1"));
    assert_eq!(item.get("TokenId"), Some("tok-2"));
    assert_eq!(item.get("TokenIssuedDate"), Some("2026-12-01T08:00:00Z"));
    assert!(item.get("LastPosting").is_some_and(|p| p.len() == 20 && p.ends_with('Z')), "{item:?}");
    assert!(item.get("NextPosting").is_some_and(|p| !p.is_empty()), "{item:?}");
    let text = astmanproxy::beacon::show::show_server(proxy.addr, "alice", "alicepw", None).await.unwrap();
    assert!(text.contains("Server ID: srv-1\n"), "{text}");
    assert!(text.contains("Token: tok-2\n"), "{text}");
    assert!(text.contains(&format!("Last Posting: {}\n", item.get("LastPosting").unwrap())), "{text}");
    assert!(text.contains("Next Posting: 20"), "{text}");

    // The state file: 0600, with the id and token.
    let state =
        saved(&dir.path("state.json"), |s| s.servers.first().is_some_and(|e| e.token.as_deref() == Some("tok-2")))
            .await;
    assert_eq!(state.servers[0].server_id.as_deref(), Some("srv-1"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path("state.json")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // Gathering went over AMI, never the reporter's business to forward.
    assert!(!sim.received().iter().any(|m| m.action() == Some("BeaconShowServer")));
    proxy.stop().await;
}

#[tokio::test]
async fn a_restart_keeps_the_server_id_and_puts() {
    let dir = TempDir::new("restart");
    let sim = sim().await;
    let mut collector = FakeCollector::start(&dir.0).await;
    let state = dir.path("state.json");
    let cfg = beacon_config(&[("pbx1", sim.addr())], &collector, &state);
    let board = cfg.board.clone();
    let proxy = spawn_reporting(cfg).await;
    assert_eq!(collector.next().await.method, "POST");
    wait_posted(&board, &collector.url(), "pbx1", "srv-1").await;
    saved(&state, |s| s.servers.first().is_some_and(|e| e.server_id.as_deref() == Some("srv-1"))).await;
    proxy.stop().await;

    let cfg = beacon_config(&[("pbx1", sim.addr())], &collector, &state);
    let board = cfg.board.clone();
    // A trigger before the start counts for the reporters that start after it.
    board.trigger();
    let proxy = spawn_reporting(cfg).await;
    let again = collector.next().await;
    assert_eq!((again.method.as_str(), again.path.as_str()), ("PUT", "/api/v1/servers/srv-1"));
    assert_eq!(again.query, "tokenId=tok-1");
    wait_posted(&board, &collector.url(), "pbx1", "srv-1").await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_401_registers_a_new_server_id() {
    let dir = TempDir::new("401");
    let sim = sim().await;
    let mut collector = FakeCollector::start(&dir.0).await;
    let cfg = beacon_config(&[("pbx1", sim.addr())], &collector, &dir.path("state.json"));
    let board = cfg.board.clone();
    let proxy = spawn_reporting(cfg).await;
    assert_eq!(collector.next().await.method, "POST");
    wait_posted(&board, &collector.url(), "pbx1", "srv-1").await;

    collector.script(&[(401, None)]);
    board.trigger();
    let refused = collector.next().await;
    assert_eq!((refused.method.as_str(), refused.path.as_str()), ("PUT", "/api/v1/servers/srv-1"));
    let again = collector.next().await;
    assert_eq!((again.method.as_str(), again.path.as_str()), ("POST", "/api/v1/servers"));
    assert!(again.body.get("id").is_none(), "a new registration carries no old id");
    wait_posted(&board, &collector.url(), "pbx1", "srv-2").await;
    saved(&dir.path("state.json"), |s| s.servers.first().is_some_and(|e| e.server_id.as_deref() == Some("srv-2")))
        .await;
    proxy.stop().await;
}

#[tokio::test]
async fn retry_after_is_respected_and_server_errors_back_off() {
    let dir = TempDir::new("429");
    let sim = sim().await;
    let mut collector = FakeCollector::start(&dir.0).await;
    collector.script(&[(429, Some("1")), (503, None), (500, None)]);
    let cfg = beacon_config(&[("pbx1", sim.addr())], &collector, &dir.path("state.json"));
    let board = cfg.board.clone();
    let proxy = spawn_reporting(cfg).await;
    let limited = collector.next().await;
    let after_limit = collector.next().await;
    assert!(after_limit.at - limited.at >= Duration::from_secs(1), "Retry-After: 1 not respected");
    let after_503 = collector.next().await;
    assert!(after_503.at - after_limit.at >= Duration::from_millis(50), "retried faster than retry_min");
    let accepted = collector.next().await;
    assert!(accepted.at - after_503.at >= Duration::from_millis(100), "the backoff doubles");
    for seen in [&limited, &after_limit, &after_503, &accepted] {
        assert_eq!(seen.method, "POST");
    }
    wait_posted(&board, &collector.url(), "pbx1", "srv-1").await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_silent_collector_times_out_and_is_retried() {
    let dir = TempDir::new("timeout");
    let sim = sim().await;
    let mut collector = FakeCollector::start(&dir.0).await;
    collector.script(&[(0, None)]);
    let mut cfg = beacon_config(&[("pbx1", sim.addr())], &collector, &dir.path("state.json"));
    cfg.beacon.targets[0].timeout = Duration::from_secs(1);
    let board = cfg.board.clone();
    let proxy = spawn_reporting(cfg).await;
    let hung = collector.next().await;
    let retried = collector.next().await;
    // The timeout runs from the request's start (connect, TLS), `hung.at` from its arrival, which
    // a loaded machine delays: half the timeout tells "waited for it" from "retried at once".
    assert!(retried.at - hung.at >= Duration::from_millis(500), "retried before the request timeout");
    assert_eq!(retried.method, "POST");
    wait_posted(&board, &collector.url(), "pbx1", "srv-1").await;
    proxy.stop().await;
}

#[tokio::test]
async fn each_asterisk_server_is_its_own_beacon_server() {
    let dir = TempDir::new("two");
    let (sim1, sim2) = (sim().await, sim().await);
    let mut collector = FakeCollector::start(&dir.0).await;
    let cfg = beacon_config(&[("pbx1", sim1.addr()), ("pbx2", sim2.addr())], &collector, &dir.path("s.json"));
    let board = cfg.board.clone();
    let proxy = spawn_reporting(cfg).await;
    let (a, b) = (collector.next().await, collector.next().await);
    assert_eq!((a.method.as_str(), b.method.as_str()), ("POST", "POST"));
    let ids: Vec<String> = {
        let url = collector.url();
        for server in ["pbx1", "pbx2"] {
            let deadline = tokio::time::Instant::now() + WAIT;
            while board.get(&url, server).and_then(|e| e.last_posting).is_none() {
                assert!(tokio::time::Instant::now() < deadline);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        ["pbx1", "pbx2"].iter().map(|s| board.get(&url, s).unwrap().server_id.unwrap()).collect()
    };
    assert_ne!(ids[0], ids[1]);
    saved(&dir.path("s.json"), |s| s.servers.len() == 2 && s.servers.iter().all(|e| e.last_posting.is_some())).await;
    proxy.stop().await;
}

#[tokio::test]
async fn certificates_are_verified_unless_told_not_to() {
    let dir = TempDir::new("verify");
    let sim = sim().await;
    let mut collector = FakeCollector::start(&dir.0).await;
    // Without ca_path the test CA is unknown: the handshake fails, no request arrives.
    let mut cfg = beacon_config(&[("pbx1", sim.addr())], &collector, &dir.path("a.json"));
    cfg.beacon.targets[0].ca_path = None;
    let board = cfg.board.clone();
    let proxy = spawn_reporting(cfg).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while collector.connections() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the reporter did not retry");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(collector.requests.try_recv().is_err(), "a request went through an unverified connection");
    assert!(board.get(&collector.url(), "pbx1").is_none_or(|e| e.server_id.is_none()));
    proxy.stop().await;
    // verify_cert = no: accepted.
    let mut cfg = beacon_config(&[("pbx1", sim.addr())], &collector, &dir.path("b.json"));
    cfg.beacon.targets[0].ca_path = None;
    cfg.beacon.targets[0].verify_cert = false;
    let proxy = spawn_reporting(cfg).await;
    assert_eq!(collector.next().await.method, "POST");
    proxy.stop().await;
}

#[tokio::test]
async fn disabled_or_without_targets_nothing_is_sent() {
    let dir = TempDir::new("off");
    let sim = sim().await;
    let collector = FakeCollector::start(&dir.0).await;
    let mut cfg = beacon_config(&[("pbx1", sim.addr())], &collector, &dir.path("s.json"));
    cfg.beacon.enabled = false;
    let proxy = spawn_reporting(cfg).await;
    wait_ready(proxy.addr, None).await;
    let mut c = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    // Gathered and shown, never sent.
    let items = show(&mut c, "b").await;
    assert_eq!(items[0].get("AsteriskVersion"), Some("22.10.1"));
    assert_eq!(items[0].get("ServerId"), Some(""));
    let config = c.action("BeaconShowConfiguration", "c", &[]).await;
    assert_eq!((config.get("Enabled"), config.get("Sending")), (Some("no"), Some("no")));
    assert_eq!(config.get("Target1Url"), Some(collector.url().as_str()));
    proxy.stop().await;
    assert_eq!(collector.connections(), 0);
    assert!(!dir.path("s.json").exists());
}

#[tokio::test]
async fn reports_go_through_a_connect_proxy_with_basic_auth() {
    let dir = TempDir::new("proxy");
    let sim = sim().await;
    let mut collector = FakeCollector::start(&dir.0).await;
    let (proxy_addr, seen) = connect_proxy().await;
    let mut cfg = beacon_config(&[("pbx1", sim.addr())], &collector, &dir.path("s.json"));
    cfg.beacon.targets[0].proxy = Some(ProxySetting {
        host: proxy_addr.ip().to_string(),
        port: proxy_addr.port(),
        auth: Some(("user".to_string(), Secret::new("pw"))),
    });
    let proxy = spawn_reporting(cfg).await;
    assert_eq!(collector.next().await.method, "POST");
    let lines = seen.lock().unwrap().clone();
    assert_eq!(lines[0], format!("CONNECT 127.0.0.1:{} HTTP/1.1", collector.addr.port()));
    proxy.stop().await;
}

/// The real binary with a `beacon.conf` next to its configuration.
#[tokio::test]
async fn the_binary_reports_says_so_loudly_and_shows_it() {
    let dir = TempDir::new("binary");
    let sim = sim().await;
    let mut collector = FakeCollector::start(&dir.0).await;
    let conf = dir.path("astmanproxy.conf");
    let users = dir.path("astmanproxy.users");
    std::fs::write(
        &conf,
        format!(
            "host = {}, {}, admin, adminpass, on, off, pbx1\nlistenaddress = 127.0.0.1\nlistenport = 0\n",
            sim.addr().ip(),
            sim.addr().port()
        ),
    )
    .unwrap();
    std::fs::write(&users, "alice=alicepw\n").unwrap();
    let ca = collector.ca.clone();
    let beacon = |url: &str| {
        format!(
            "[general]\nenabled = yes\nprivate_name = lab\nstatefile = state.json\n\n[test]\nurl = {url}\n\
             interval = 60\njitter = 0\nca_path = {}\nproxy = user:TopSecret@127.0.0.1:9\n",
            ca.display()
        )
    };
    let run = |args: Vec<String>| async move {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_astmanproxy")).args(args).output().await.unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let c = conf.display().to_string();
    let u = users.display().to_string();

    // Errors name the file and line, at --check-config.
    std::fs::write(dir.path("beacon.conf"), beacon("http://127.0.0.1/api/v1")).unwrap();
    let (code, _, err) = run(vec!["-c".into(), c.clone(), "-u".into(), u.clone(), "--check-config".into()]).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("beacon.conf:7: invalid value for url"), "{err}");
    // Dev mode (a debug build, as every test binary is) refuses the public server.
    std::fs::write(dir.path("beacon.conf"), beacon("public")).unwrap();
    let (code, _, err) = run(vec!["-c".into(), c.clone(), "-u".into(), u.clone(), "--check-config".into()]).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("beacon.conf:7:") && err.contains("dev mode"), "{err}");

    // Without the proxy line: a real run.
    let text = beacon(&collector.url()).replace("proxy = user:TopSecret@127.0.0.1:9\n", "");
    std::fs::write(dir.path("beacon.conf"), text).unwrap();
    let (code, out, err) = run(vec!["-c".into(), c.clone(), "-u".into(), u.clone(), "--check-config".into()]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Beacon reporting ON, 1 targets"), "{out}");
    let crate::binary::Binary { mut child, addr, mut log } = crate::binary::start_binary(&conf, &users, &[]).await;
    let first = collector.next().await;
    assert_eq!(first.method, "POST");
    assert_eq!(first.body["private_name"], "lab");
    let mut loud = None;
    while let Ok(Some(line)) = tokio::time::timeout(WAIT, log.recv()).await {
        if line.contains("Beacon reporting is ON") {
            loud = Some(line);
            break;
        }
    }
    let loud = loud.expect("no loud log line");
    assert!(loud.contains("WARN") && loud.contains(&collector.url()) && loud.contains("every 60 minutes"), "{loud}");
    // The state file appears next to beacon.conf once the answer is stored.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !std::fs::read_to_string(dir.path("state.json")).is_ok_and(|s| s.contains("srv-1")) {
        assert!(tokio::time::Instant::now() < deadline, "no state file");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (code, out, err) = run(vec![
        "beacon".into(),
        "show".into(),
        "server".into(),
        "--proxy".into(),
        addr.to_string(),
        "--user".into(),
        "alice".into(),
        "--secret".into(),
        "alicepw".into(),
    ])
    .await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Server: pbx1\nServer ID: srv-1\nToken: tok-1\n"), "{out}");
    assert!(out.contains("Last Posting: 20") && out.contains("Next Posting: 20"), "{out}");
    let _ = child.kill().await;

    // `beacon show configuration` reads the files; the proxy password is masked.
    std::fs::write(dir.path("beacon.conf"), beacon(&collector.url())).unwrap();
    let (code, out, err) = run(vec!["-c".into(), c, "beacon".into(), "show".into(), "configuration".into()]).await;
    assert_eq!(code, Some(0), "{err}");
    for line in [
        "Enabled: yes\n",
        "Private Name: lab\n",
        "[test]\n",
        &format!("  URL: {}\n", collector.url()),
        "  Interval: 60 minutes\n",
        "  Verify Certificate: yes\n",
        &format!("  CA Path: {}\n", collector.ca.display()),
        "  Proxy: user:********@127.0.0.1:9\n",
    ] {
        assert!(out.contains(line), "{line:?} not in {out}");
    }
    assert!(!out.contains("TopSecret"), "{out}");
}

#[tokio::test]
async fn an_action_that_fails_mid_gather_sends_nothing_until_a_whole_gather_succeeds() {
    let dir = TempDir::new("midgather");
    let sim = sim().await;
    // CoreStatus is never answered: the proxy answers it `Response: Error` (timeout) while the
    // server stays connected and the other actions are answered.
    sim.set_hold(Some("CoreStatus"));
    let mut collector = FakeCollector::start(&dir.0).await;
    let mut cfg = beacon_config(&[("pbx1", sim.addr())], &collector, &dir.path("state.json"));
    cfg.proxy.action_timeout = Duration::from_millis(200);
    let proxy = spawn_reporting(cfg).await;
    // A failed gather is retried (after the backoff), not sent half empty.
    let deadline = tokio::time::Instant::now() + WAIT;
    while sim.received().iter().filter(|m| m.action() == Some("CoreStatus")).count() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the failed gather was not retried");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sim.set_hold(None);
    let first = collector.next().await;
    assert_eq!(first.method, "POST");
    assert_eq!(first.body["asterisk"]["stats"]["run_time"]["startup_time"], "2026-11-22 10:39:23", "{}", first.body);
    proxy.stop().await;
}
