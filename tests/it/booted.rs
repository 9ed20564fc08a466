//! FullyBooted means booted (issue 17): a client gets it once its server is ready, and again,
//! with `Server:`, whenever that server comes back.

use ami_sim::{AmiSim, SimOptions};
use astmanproxy_handlers::Message;

use crate::support::*;

#[tokio::test]
async fn a_client_logged_in_while_the_server_is_down_gets_fully_booted_once_it_is_up() {
    let sim = sim().await;
    let addr = sim.addr();
    sim.shutdown().await;
    let proxy = spawn_proxy(config(vec![server("pbx1", addr)])).await;
    let mut a = AmiClient::connect(proxy.addr).await;
    let login = a.login_as("alice", "alicepw", None).await;
    assert_eq!(login.response(), Some("Success"), "{login:?}");
    let _sim = AmiSim::start_on(addr, SimOptions::default()).await.unwrap();
    // Nothing says booted before the server is: the first FullyBooted follows its Connected.
    let first = a
        .recv_until(|m| {
            m.event() == Some("FullyBooted")
                || (m.event() == Some("ProxyServerStatus") && m.get("Status") == Some("Connected"))
        })
        .await;
    assert_eq!(first.event(), Some("ProxyServerStatus"), "FullyBooted while the server was down: {first:?}");
    let booted = a.recv_until(|m| m.event() == Some("FullyBooted")).await;
    assert_eq!(booted.get("Server"), Some("pbx1"), "{booted:?}");
    assert_eq!(booted.get("Status"), Some("Fully Booted"));
}

#[tokio::test]
async fn after_a_reconnect_clients_get_fully_booted_with_the_server() {
    let (sim, proxy) = proxy_with_sim().await;
    let mut a = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    // At login, the server being up: FullyBooted at once, as from Asterisk.
    let first = a.recv_until(|m| m.event() == Some("FullyBooted")).await;
    assert_eq!(first.get("Status"), Some("Fully Booted"));
    sim.kill_connections();
    a.recv_until(|m| m.event() == Some("ProxyServerStatus") && m.get("Status") == Some("Disconnected")).await;
    a.recv_until(|m| m.event() == Some("ProxyServerStatus") && m.get("Status") == Some("Connected")).await;
    let booted = a.recv_until(|m| m.event() == Some("FullyBooted")).await;
    assert_eq!(booted.get("Server"), Some("pbx1"), "{booted:?}");
    // A client whose events leave out `system` gets none.
    let mut quiet = AmiClient::connect(proxy.addr).await;
    assert_eq!(quiet.login_as("bob", "bobpw", Some("call")).await.response(), Some("Success"));
    sim.kill_connections();
    a.recv_until(|m| m.event() == Some("FullyBooted")).await;
    // Published after that FullyBooted: bob gets it, and nothing of class system before it.
    sim.emit(Message::new().with("Event", "Sentinel").with("Privilege", "call,all"));
    let mut seen = Vec::new();
    while seen.last().and_then(|m: &Message| m.event()) != Some("Sentinel") {
        seen.push(quiet.recv().await);
    }
    assert!(!seen.iter().any(|m| m.event() == Some("FullyBooted")), "{seen:?}");
}
