//! End to end against the real collector (`astmanproxy_collector`, through the
//! collector tests' own harness) over HTTPS with rcgen certificates: registration, update, a
//! restart, the 401 rule, `/stats`; and the reporter's bodies checked against the published
//! OpenAPI document.

use std::path::Path;
use std::time::Duration;

use astmanproxy::beacon::report::{state, Board};
use astmanproxy_beacon_wire::clock::ManualClock;
use serde_json::json;

use super::fake::{saved, FakeCollector, TempDir};
use crate::support::*;

use crate::support::collector as harness;

fn proxy_config(sim: std::net::SocketAddr, url: &str, ca: &Path, state: &Path) -> super::Reporting {
    super::reporting_config(&[("pbx1", sim)], url, ca, state)
}

/// Waits until the board's entry of pbx1 satisfies `done`; returns it.
async fn wait_for(board: &Board, url: &str, done: impl Fn(&state::Entry) -> bool) -> state::Entry {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(e) = board.get(url, "pbx1").filter(|e| done(e)) {
            return e;
        }
        assert!(tokio::time::Instant::now() < deadline, "never reached: {:?}", board.entries());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_real_collector_registers_updates_keeps_ids_and_refuses_a_wrong_token() {
    let pki = harness::Pki::new("reporter-e2e");
    std::fs::write(pki.path("ca.pem"), &pki.ca_pem).unwrap();
    let collector = harness::Running::start(&pki, harness::config(&pki), &ManualClock::new(harness::t0())).await;
    let url = format!("https://{}", collector.addr);
    let sim = sim().await;
    let state_file = pki.path("state.json");
    let cfg = || proxy_config(sim.addr(), &url, &pki.path("ca.pem"), &state_file);

    // Registration, then an update with the token.
    let first_cfg = cfg();
    let board = first_cfg.board.clone();
    let proxy = super::spawn_reporting(first_cfg).await;
    let first = wait_for(&board, &url, |e| e.server_id.is_some() && e.last_posting.is_some()).await;
    let id = first.server_id.clone().unwrap();
    assert_eq!(first.token_issued, Some(harness::t0()), "the collector's clock issued it");
    board.trigger();
    let second = wait_for(&board, &url, |e| e.last_posting > first.last_posting).await;
    assert_eq!(second.server_id.as_deref(), Some(id.as_str()), "an update keeps the id");
    let mut c = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    c.send(&astmanproxy_handlers::Message::new().with("Action", "BeaconShowServer").with("ActionID", "b")).await;
    let item = c.recv_until(|m| m.event() == Some("BeaconShowServerResponse")).await;
    assert_eq!(item.get("ServerId"), Some(id.as_str()));
    assert_eq!(item.get("TokenId"), second.token.as_deref());
    saved(&state_file, |s| s.servers.first().is_some_and(|e| e.last_posting == second.last_posting)).await;
    proxy.stop().await;

    // A restart goes on with the same id (an update, accepted: the token is right).
    let restart_cfg = cfg();
    let board = restart_cfg.board.clone();
    board.trigger();
    let proxy = super::spawn_reporting(restart_cfg).await;
    let third = wait_for(&board, &url, |e| e.last_posting > second.last_posting).await;
    assert_eq!(third.server_id.as_deref(), Some(id.as_str()));
    saved(&state_file, |s| s.servers.first().is_some_and(|e| e.last_posting == third.last_posting)).await;
    proxy.stop().await;

    // A wrong token within 48 hours: 401, and the reporter registers a new id.
    let mut tampered = state::load(&state_file).unwrap();
    tampered.servers[0].token = Some("not-the-token".to_string());
    state::save(&state_file, &tampered).unwrap();
    let wrong_cfg = cfg();
    let board = wrong_cfg.board.clone();
    board.trigger();
    let proxy = super::spawn_reporting(wrong_cfg).await;
    let fourth = wait_for(&board, &url, |e| e.server_id.as_deref().is_some_and(|s| s != id)).await;
    assert!(fourth.last_posting > third.last_posting);
    assert_ne!(fourth.token.as_deref(), Some("not-the-token"));
    proxy.stop().await;

    // What the collector made of it: two servers (the old id and the new one), Asterisk 22.10.1.
    let stats = collector.stats("").await;
    assert_eq!(stats.status, 200);
    assert_eq!(stats.body["servers"], 2, "{:#}", stats.body);
    collector.stop().await;
}

#[tokio::test]
async fn the_reports_fit_the_published_schema() {
    let dir = TempDir::new("schema");
    let sim = sim().await;
    let mut collector = FakeCollector::start(&dir.0).await;
    let cfg = proxy_config(sim.addr(), &collector.url(), &collector.ca, &dir.path("s.json"));
    let board = cfg.board.clone();
    let proxy = super::spawn_reporting(cfg).await;
    let post = collector.next().await;
    wait_for(&board, &collector.url(), |e| e.last_posting.is_some()).await;
    board.trigger();
    let put = collector.next().await;
    for seen in [&post, &put] {
        if let Err(e) = harness::validate(&json!({"$ref": "#/components/schemas/Server"}), &seen.body) {
            panic!("{} {}: the report does not fit docs/beacon-openapi.yaml: {e}", seen.method, seen.path);
        }
    }
    proxy.stop().await;
}
