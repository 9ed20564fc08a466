//! ProxyActions: the 1.x shapes, authentication first, admin-only AddServer/DropServer.

use std::time::Duration;

use astmanproxy_handlers::Message;

use crate::support::*;

async fn proxy_action(c: &mut AmiClient, name: &str, id: &str, extra: &[(&str, &str)]) -> Message {
    let mut m = Message::new().with("ProxyAction", name).with("ActionID", id);
    for (k, v) in extra {
        m.push(*k, *v);
    }
    c.send(&m).await;
    c.recv_until(|m| m.get("ProxyResponse").is_some() && m.action_id() == Some(id)).await
}

/// The test users plus a read-only one; `carol` is the admin.
fn lists_config(sim: &ami_sim::AmiSim) -> astmanproxy::config::Config {
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    let users = "alice=alicepw\nbob=bobpw\ncarol=carolpw\n[reader]\nsecret = readerpw\nreadonly = yes\n";
    cfg.users = astmanproxy::config::Users::parse(users, std::path::Path::new("lists.users")).unwrap();
    cfg.admin_users = vec!["carol".to_string()];
    cfg
}

fn is_denied(answer: &Message) -> bool {
    answer.first() == Some(("ProxyResponse", "Error")) && answer.get("Message") == Some("Permission denied")
}

#[tokio::test]
async fn proxy_actions_need_a_login_and_never_show_secrets() {
    let sim = sim().await;
    let proxy = spawn_proxy(lists_config(&sim)).await;
    wait_ready(proxy.addr, None).await;
    // 1.x bug B2: ProxyActions ran before authentication.
    let mut anon = AmiClient::connect(proxy.addr).await;
    let denied = proxy_action(&mut anon, "ListServers", "l0", &[]).await;
    assert_eq!((denied.get("ProxyResponse"), denied.get("Message")), (Some("Error"), Some("Permission denied")));

    let mut c = AmiClient::login(proxy.addr, "carol", "carolpw").await;
    let servers = proxy_action(&mut c, "listservers", "l1", &[]).await;
    assert_eq!(servers.first(), Some(("ProxyResponse", "Success")));
    assert_eq!(servers.header(1), Some(("ActionID", "l1")));
    let line = servers.get("ProxyListServer I").unwrap();
    assert!(line.starts_with("pbx1 H: 127.0.0.1 U: admin P: "), "{line}");
    assert!(!format!("{servers:?}").contains("adminpass"));
    // The AMI sessions: logged in / kept (the event session and one action session).
    eventually("ProxyServerSessions: pbx1 2/2", async || {
        let servers = proxy_action(&mut c, "ListServers", "l1b", &[]).await;
        servers.get("ProxyServerSessions") == Some("pbx1 2/2")
    })
    .await;

    let sessions = proxy_action(&mut c, "ListSessions", "l2", &[]).await;
    assert_eq!(sessions.get_all("ProxyClientSession").count(), 2);
    assert!(sessions.get_all("ProxyClientUser").any(|u| u == "carol"));
    let io = proxy_action(&mut c, "ListIOHandlers", "l3", &[]).await;
    assert_eq!(io.get("OutputHandler"), Some("standard"));
    let fmt = proxy_action(&mut c, "SetOutputFormat", "l4", &[("OutputFormat", "yaml")]).await;
    assert_eq!(fmt.get("ProxyResponse"), Some("Failure"));
    let af = proxy_action(&mut c, "SetAutoFilter", "l5", &[("AutoFilter", "unique")]).await;
    assert_eq!(af.get("AutoFilter"), Some("2"));
    let bad = proxy_action(&mut c, "Frobnicate", "l6", &[]).await;
    assert_eq!((bad.get("ProxyResponse"), bad.get("Message")), (Some("Error"), Some("Invalid Proxy Action")));
    c.send(&Message::new().with("ProxyAction", "Logoff").with("ActionID", "bye")).await;
    assert_eq!(c.response("bye").await.response(), Some("Goodbye"));
    assert!(c.is_closed(WAIT).await);
}

#[tokio::test]
async fn add_and_drop_servers_at_run_time() {
    let sim1 = sim().await;
    let sim2 = sim().await;
    let mut cfg = config(vec![server("pbx1", sim1.addr())]);
    cfg.admin_users = vec!["carol".to_string()];
    let proxy = spawn_proxy(cfg).await;
    wait_ready(proxy.addr, None).await;
    let port = sim2.addr().port().to_string();
    let add = [
        ("Server", "127.0.0.1"),
        ("Port", port.as_str()),
        ("Username", "admin"),
        ("Secret", "adminpass"),
        ("Events", "on"),
        ("Name", "pbx2"),
    ];

    let mut user = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    let denied = proxy_action(&mut user, "AddServer", "a0", &add).await;
    assert_eq!(denied.get("Message"), Some("Permission denied"));

    let mut admin = AmiClient::login(proxy.addr, "carol", "carolpw").await;
    let added = proxy_action(&mut admin, "AddServer", "a1", &add).await;
    assert_eq!((added.get("ProxyResponse"), added.get("Message")), (Some("Success"), Some("Added pbx2")));
    wait_ready(proxy.addr, Some("pbx2")).await;
    let again = proxy_action(&mut admin, "AddServer", "a2", &add).await;
    assert_eq!(again.get("ProxyResponse"), Some("Failure"));
    // 1.x bug B3: oversize fields overflowed fixed buffers before authentication.
    let long = "9".repeat(5000);
    let overflow = proxy_action(&mut admin, "AddServer", "a3", &[("Server", "h"), ("Port", &long)]).await;
    assert_eq!(overflow.get("ProxyResponse"), Some("Failure"));
    let bad_port = [("Server", "h"), ("Port", "99999"), ("Username", "u"), ("Secret", "s"), ("Events", "on")];
    assert_eq!(proxy_action(&mut admin, "AddServer", "a4", &bad_port).await.get("ProxyResponse"), Some("Failure"));

    // DropServer answers what is pending on that server, then the name is gone.
    sim2.set_hold(Some("CoreStatus"));
    user.send(&Message::new().with("Action", "CoreStatus").with("Server", "pbx2").with("ActionID", "held")).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !sim2.received().iter().any(|m| m.action() == Some("CoreStatus")) {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let dropped = proxy_action(&mut admin, "DropServer", "d1", &[("Server", "pbx2")]).await;
    assert_eq!(dropped.get("Message"), Some("Dropped pbx2"));
    let answer = user.response("held").await;
    assert_eq!(answer.response(), Some("Error"));
    let gone = user.action("Ping", "p2", &[("Server", "pbx2")]).await;
    assert!(gone.get("Message").unwrap().contains("Unknown server"), "{gone:?}");
    let nosuch = proxy_action(&mut admin, "DropServer", "d2", &[("Server", "nosuch")]).await;
    assert_eq!(nosuch.get("Message"), Some("Cannot Drop Server nosuch, Does Not Exist"));
    // The other server never noticed.
    assert_eq!(user.action("Ping", "p1", &[("Server", "pbx1")]).await.get("Ping"), Some("Pong"));
    // And the dropped one was logged off.
    let deadline = tokio::time::Instant::now() + WAIT;
    while sim2.connection_count() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "pbx2 still connected");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_lists_are_for_admins_unless_openproxylists() {
    let sim = sim().await;
    let proxy = spawn_proxy(lists_config(&sim)).await;
    wait_ready(proxy.addr, None).await;
    let mut alice = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    let mut reader = AmiClient::login(proxy.addr, "reader", "readerpw").await;
    for c in [&mut alice, &mut reader] {
        for name in ["ListSessions", "listservers"] {
            let denied = proxy_action(c, name, "x", &[]).await;
            assert!(is_denied(&denied), "{name}: {denied:?}");
            assert_eq!(denied.header(1), Some(("ActionID", "x")));
            assert!(denied.get("ProxyClientSession").is_none() && denied.get("ProxyListServer I").is_none());
        }
        // The other ProxyActions stay open to every user.
        assert_eq!(proxy_action(c, "ListIOHandlers", "io", &[]).await.get("ProxyResponse"), Some("Success"));
    }
    let mut carol = AmiClient::login(proxy.addr, "carol", "carolpw").await;
    let sessions = proxy_action(&mut carol, "ListSessions", "s", &[]).await;
    assert_eq!(sessions.get("ProxyResponse"), Some("Success"));
    assert!(sessions.get_all("ProxyClientUser").any(|u| u == "reader"), "{sessions:?}");
    let servers = proxy_action(&mut carol, "ListServers", "v", &[]).await;
    assert!(servers.get("ProxyListServer I").unwrap().starts_with("pbx1 H: 127.0.0.1 U: admin"), "{servers:?}");

    // openproxylists = yes: every logged-in user, the read-only one too, as in 1.x.
    let mut cfg = lists_config(&sim);
    cfg.open_proxy_lists = true;
    let proxy = spawn_proxy(cfg).await;
    wait_ready(proxy.addr, None).await;
    let mut anon = AmiClient::connect(proxy.addr).await;
    assert!(is_denied(&proxy_action(&mut anon, "ListSessions", "a", &[]).await), "still a login first");
    let mut reader = AmiClient::login(proxy.addr, "reader", "readerpw").await;
    let sessions = proxy_action(&mut reader, "ListSessions", "s", &[]).await;
    assert!(sessions.get_all("ProxyClientUser").any(|u| u == "reader"), "{sessions:?}");
    let servers = proxy_action(&mut reader, "ListServers", "v", &[]).await;
    assert!(servers.get("ProxyListServer I").is_some(), "{servers:?}");
}

#[tokio::test]
async fn an_open_proxy_lists_only_to_admins_or_with_openproxylists() {
    let sim = sim().await;
    let mut cfg = lists_config(&sim);
    cfg.auth_required = false;
    let proxy = spawn_proxy(cfg.clone()).await;
    wait_ready(proxy.addr, None).await;
    // authrequired = no lets anyone act without a Login, but not list everyone.
    let mut anon = AmiClient::connect(proxy.addr).await;
    assert!(is_denied(&proxy_action(&mut anon, "ListSessions", "a", &[]).await));
    assert!(is_denied(&proxy_action(&mut anon, "ListServers", "b", &[]).await));
    assert_eq!(proxy_action(&mut anon, "ListIOHandlers", "c", &[]).await.get("ProxyResponse"), Some("Success"));
    let mut carol = AmiClient::login(proxy.addr, "carol", "carolpw").await;
    assert_eq!(proxy_action(&mut carol, "ListSessions", "d", &[]).await.get("ProxyResponse"), Some("Success"));

    cfg.open_proxy_lists = true;
    let proxy = spawn_proxy(cfg).await;
    wait_ready(proxy.addr, None).await;
    let mut anon = AmiClient::connect(proxy.addr).await;
    assert_eq!(proxy_action(&mut anon, "ListServers", "e", &[]).await.get("ProxyResponse"), Some("Success"));
}

#[tokio::test]
async fn the_lists_are_for_admins_over_http_too() {
    let sim = sim().await;
    let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = http_listener.local_addr().unwrap();
    let proxy = spawn_proxy_with_http(lists_config(&sim), http_listener).await;
    wait_ready(proxy.addr, None).await;
    let get = |path: &str, basic: &str| {
        let (path, basic) = (path.to_string(), basic.to_string());
        async move { http_basic(addr, &path, &basic).await }
    };
    let (reader, carol) = ("cmVhZGVyOnJlYWRlcnB3", "Y2Fyb2w6Y2Fyb2xwdw=="); // reader:readerpw, carol:carolpw
    for path in ["/rawman?ProxyAction=ListSessions&ActionID=s", "/json?ProxyAction=ListServers&ActionID=v"] {
        let denied = get(path, reader).await;
        assert!(denied.contains("Permission denied") && !denied.contains("127.0.0.1"), "{path}: {denied}");
        let listed = get(path, carol).await;
        assert!(listed.contains("Success") && !listed.contains("Permission denied"), "{path}: {listed}");
    }
}
