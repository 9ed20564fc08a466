//! BeaconShowServer against the simulator replaying real CoreSettings, CoreStatus and Command
//! output (Asterisk 22), and the Asterisk 11 `Response: Follows` framing.

use ami_sim::{AmiSim, SimOptions};
use astmanproxy_handlers::{Kind, Message};

use crate::support::*;

async fn show(c: &mut AmiClient, id: &str, extra: &[(&str, &str)]) -> (Message, Vec<Message>, Message) {
    let start = c.action("BeaconShowServer", id, extra).await;
    let mut items = Vec::new();
    loop {
        let m = c.recv_until(|m| m.kind() == Kind::Event && m.action_id() == Some(id)).await;
        if m.event() == Some("BeaconShowServerComplete") {
            return (start, items, m);
        }
        items.push(m);
    }
}

#[tokio::test]
async fn beacon_show_server_from_real_output() {
    let sim1 = sim().await;
    let sim2 = AmiSim::start(SimOptions { legacy_command: true, ..Default::default() }).await.unwrap();
    let proxy = spawn_proxy(config(vec![server("pbx1", sim1.addr()), server("old", sim2.addr())])).await;
    wait_ready(proxy.addr, Some("pbx1")).await;
    wait_ready(proxy.addr, Some("old")).await;
    let mut c = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    let (start, items, complete) = show(&mut c, "b1", &[]).await;
    assert_eq!((start.response(), start.get("EventList")), (Some("Success"), Some("start")));
    assert_eq!(complete.get("ListItems"), Some("2"));
    assert_eq!(complete.get("EventList"), Some("Complete"));
    for item in &items {
        assert_eq!(item.event(), Some("BeaconShowServerResponse"));
        assert_eq!(item.get("AsteriskVersion"), Some("22.10.1"));
        assert_eq!(item.get("AsteriskVersionNumber"), Some("221001"));
        assert_eq!(item.get("ModuleCount"), Some("258"), "{:?}", item.get("Server"));
        assert_eq!(item.get("Module1Name"), Some("acl"));
        assert_eq!(item.get("Module1SupportLevel"), Some("core"));
        assert_eq!(item.get("StartupTime"), Some("2026-11-22 10:39:23"));
        assert_eq!(item.get("ActiveCalls"), Some("0"));
        assert_eq!(item.get("OperatingSystemName"), Some("Linux"));
        assert_eq!(item.get("OperatingSystemMachine"), Some("x86_64"));
        assert_eq!(item.get("OperatingSystemRelease"), Some(""));
        for key in ["ServerId", "TokenId", "TokenIssuedDate", "LastPosting", "NextPosting", "Module258Status"] {
            assert!(item.contains(key), "{key}");
        }
    }
    let names: Vec<&str> = items.iter().filter_map(|m| m.get("Server")).collect();
    assert_eq!(names, ["pbx1", "old"]);
    // One server by name; never forwarded to Asterisk.
    let (_, one, _) = show(&mut c, "b2", &[("Server", "old")]).await;
    assert_eq!(one.len(), 1);
    assert!(!sim1.received().iter().chain(sim2.received().iter()).any(|m| m.action() == Some("BeaconShowServer")));
    // Gathering is rate-limited: the second call used the cache.
    let commands = sim1.received().iter().filter(|m| m.action() == Some("Command")).count();
    assert_eq!(commands, 3, "module show, core show version, core show calls once");
}
