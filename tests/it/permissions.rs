//! The permissions matrix against the simulator: read-only, pinned and filtered users.

use std::path::Path;
use std::time::Duration;

use astmanproxy::config::Users;
use astmanproxy_handlers::{Kind, Message};

use crate::support::*;

const USERS: &str = "\
full=fullpw
pinned=pinnedpw,,,,,pbx2
[reader]
secret = readerpw
readonly = yes
[calls]
secret = callspw
read = call
eventfilter = !Channel: Local/
[nowhere]
secret = nowherepw
deny = 0.0.0.0/0
";

#[tokio::test]
async fn permissions_matrix() {
    let sim1 = sim().await;
    let sim2 = sim().await;
    let mut cfg = config(vec![server("pbx1", sim1.addr()), server("pbx2", sim2.addr())]);
    cfg.users = Users::parse(USERS, Path::new("matrix.users")).unwrap();
    let proxy = spawn_proxy(cfg).await;
    let mut full = AmiClient::login(proxy.addr, "full", "fullpw").await;
    for name in ["pbx1", "pbx2"] {
        let deadline = tokio::time::Instant::now() + WAIT;
        while full.action("Ping", "w", &[("Server", name)]).await.response() != Some("Success") {
            assert!(tokio::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // Read-only: state changes are refused before reaching Asterisk, reporting works.
    let mut reader = AmiClient::login(proxy.addr, "reader", "readerpw").await;
    let denied = reader.action("Originate", "o", &[("Channel", "Local/100@ami-test"), ("Async", "true")]).await;
    assert_eq!((denied.response(), denied.get("Message")), (Some("Error"), Some("Permission denied")));
    assert_eq!(denied.header(1), Some(("ActionID", "o")));
    assert!(!sim1.received().iter().any(|m| m.action() == Some("Originate")));
    assert_eq!(reader.action("CoreStatus", "c", &[]).await.response(), Some("Success"));
    assert_eq!(reader.action("Command", "k", &[("Command", "core show version")]).await.response(), Some("Error"));

    // Pinned to pbx2: its default is pbx2, pbx1 is out of reach, and only pbx2's events come.
    let mut pinned = AmiClient::login(proxy.addr, "pinned", "pinnedpw").await;
    assert_eq!(pinned.action("CoreSettings", "d", &[]).await.get("Server"), Some("pbx2"));
    let other = pinned.action("Ping", "p1", &[("Server", "pbx1")]).await;
    assert_eq!(other.get("Message"), Some("Permission denied"));
    sim1.emit(Message::new().with("Event", "FromOne").with("Privilege", "call,all"));
    sim2.emit(Message::new().with("Event", "FromTwo").with("Privilege", "call,all"));
    let ev = pinned.recv_until(|m| m.kind() == Kind::Event && m.event() != Some("FullyBooted")).await;
    assert_eq!(ev.event(), Some("FromTwo"));

    // Filtered: read=call only, and no Local/ channels.
    let mut calls = AmiClient::login(proxy.addr, "calls", "callspw").await;
    // Its FullyBooted (system) is not sent: read=call.
    sim1.emit(Message::new().with("Event", "Reload").with("Privilege", "system,all"));
    sim1.emit(Message::new().with("Event", "Newchannel").with("Privilege", "call,all").with("Channel", "Local/1@x"));
    sim1.emit(Message::new().with("Event", "Newchannel").with("Privilege", "call,all").with("Channel", "PJSIP/1"));
    let got = calls.recv_until(|m| m.kind() == Kind::Event).await;
    assert_eq!((got.event(), got.get("Channel")), (Some("Newchannel"), Some("PJSIP/1")));
    assert!(calls.try_recv(Duration::from_millis(200)).await.is_none());

    // deny=0.0.0.0/0: the right secret from a refused address fails.
    let mut nowhere = AmiClient::connect(proxy.addr).await;
    assert_eq!(nowhere.login_as("nowhere", "nowherepw", None).await.response(), Some("Error"));
}
