//! Operations: metrics and health endpoints, graceful shutdown, and fault tests.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use astmanproxy_handlers::{Kind, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// One admin request with an optional `Accept` header: status, the response head (lower-cased)
/// and the body.
async fn admin_request(addr: SocketAddr, method: &str, path: &str, accept: Option<&str>) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let accept = accept.map(|a| format!("Accept: {a}\r\n")).unwrap_or_default();
    s.write_all(format!("{method} {path} HTTP/1.1\r\nHost: test\r\n{accept}Connection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

/// The `Content-Type` in a response head from [`admin_request`].
fn content_type(head: &str) -> &str {
    head.lines().find_map(|l| l.strip_prefix("content-type: ")).unwrap_or("")
}

/// The name of a sample line (up to its labels or value).
fn sample_name(line: &str) -> &str {
    &line[..line.find(['{', ' ']).unwrap_or(line.len())]
}

/// Checks the structure of a Prometheus text format 0.0.4 exposition: every family has HELP then
/// TYPE once, before its samples, and each sample belongs to the family above it; counters are
/// named with `_total`; nothing of OpenMetrics (`# EOF`, `# UNIT`, `_created`) is left.
/// Returns the family names with their types.
fn check_text_format(body: &str) -> Vec<(String, String)> {
    let mut families: Vec<(String, String)> = Vec::new();
    let mut help: Option<String> = None;
    for line in body.lines() {
        assert!(!line.is_empty(), "blank line in:\n{body}");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest.split(' ').next().unwrap().to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert_eq!(help.take().as_deref(), Some(name), "TYPE {name} without its HELP just before");
            assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind), "{line}");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter family not named with _total: {line}");
            }
            assert!(families.iter().all(|(n, _)| n != name), "family {name} twice");
            families.push((name.to_string(), kind.to_string()));
        } else {
            assert!(!line.starts_with('#'), "unexpected comment {line}");
            let (family, kind) = families.last().unwrap_or_else(|| panic!("sample before any TYPE: {line}"));
            let name = sample_name(line);
            let ok = match kind.as_str() {
                "histogram" => ["_bucket", "_sum", "_count"].iter().any(|s| name == format!("{family}{s}")),
                _ => name == family,
            };
            assert!(ok, "sample {name} under family {family} ({kind})");
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "bad value in {line}");
        }
    }
    families
}

/// Checks the structure of an OpenMetrics exposition: ends with `# EOF`, counter families are
/// named without `_total` and their samples with it. Returns the family names with their types.
fn check_openmetrics(body: &str) -> Vec<(String, String)> {
    assert!(body.ends_with("# EOF\n"), "no # EOF at the end:\n{body}");
    assert_eq!(body.matches("# EOF").count(), 1);
    let mut families: Vec<(String, String)> = Vec::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            families.push((name.to_string(), kind.to_string()));
        } else if !line.starts_with('#') {
            let (family, kind) = families.last().unwrap();
            let name = sample_name(line);
            if kind == "counter" {
                assert!(!family.ends_with("_total"), "{family}");
                assert_eq!(name, format!("{family}_total"), "{line}");
            } else if kind == "gauge" {
                assert_eq!(name, family, "{line}");
            }
        }
    }
    families
}

/// Every name a PromQL query can use in `body` (text format): family names, sample names and a
/// histogram's `_bucket`, `_sum` and `_count` series, present or not yet.
fn metric_names(body: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (name, kind) in check_text_format(body) {
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
        names.insert(name);
    }
    names
}

#[tokio::test]
async fn metrics_health_and_readiness() {
    let sim = sim().await;
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let mut cfg = config(vec![server("pbx1", sim.addr()), server("dead", closed)]);
    cfg.ready_share = 1.0;
    let proxy = spawn_proxy_with_admin(cfg).await;
    let admin = proxy.admin.unwrap();
    wait_ready(proxy.addr, Some("pbx1")).await;
    let mut c = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    assert_eq!(c.action("Ping", "m1", &[]).await.get("Ping"), Some("Pong"));
    let mut bad = AmiClient::connect(proxy.addr).await;
    assert_eq!(bad.login_as("alice", "wrong", None).await.response(), Some("Error"));

    let (status, body) = http(admin, "GET", "/metrics").await;
    assert_eq!(status, 200);
    for needle in [
        "astmanproxy_server_connected{server=\"pbx1\"} 1",
        "astmanproxy_server_connected{server=\"dead\"} 0",
        "astmanproxy_clients_connected{kind=\"ami\"}",
        "astmanproxy_auth_failures_total{kind=\"ami\"} 1",
        "astmanproxy_server_action_seconds_count{server=\"pbx1\"}",
        "astmanproxy_server_actions_total{server=\"pbx1\"}",
        "astmanproxy_server_events_total{server=\"pbx1\"}",
        "astmanproxy_server_pending_actions{server=\"pbx1\"} 0",
        "astmanproxy_client_queue_bytes{kind=\"ami\"}",
    ] {
        assert!(body.contains(needle), "{needle} missing from:\n{body}");
    }
    // The dead server's failed attempts are counted (it is retried, so wait for the first).
    let dead = "astmanproxy_server_connect_failures_total{server=\"dead\"}";
    eventually("a connect failure counted for dead", || async { metric(admin, dead).await >= 1.0 }).await;
    let body = http(admin, "GET", "/metrics").await.1;
    assert!(body.contains("astmanproxy_server_connect_failures_total{server=\"pbx1\"} 0\n"), "{body}");
    assert_eq!(http(admin, "GET", "/healthz").await, (200, "ok\n".to_string()));
    let (status, body) = http(admin, "GET", "/readyz").await;
    assert_eq!((status, body.as_str()), (503, "not ready: 1/2 servers logged in\n"));
    assert_eq!(http(admin, "POST", "/metrics").await.0, 405);
    assert_eq!(http(admin, "GET", "/nope").await.0, 404);
    proxy.stop().await;
}

/// Events out per server count one per client that got the event; queue bytes have one series
/// per client kind.
#[tokio::test]
async fn metrics_count_events_sent_per_server_and_queues_per_kind() {
    let sim = sim().await;
    let proxy = spawn_proxy_with_admin(config(vec![server("pbx1", sim.addr())])).await;
    let admin = proxy.admin.unwrap();
    wait_ready(proxy.addr, Some("pbx1")).await;
    let mut a = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    let mut b = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    let sent = "astmanproxy_server_events_sent_total{server=\"pbx1\"}";
    let before = metric(admin, sent).await;
    for n in 0..3 {
        sim.emit(Message::new().with("Event", "UserEvent").with("UserEvent", format!("Count{n}")));
    }
    for client in [&mut a, &mut b] {
        client.recv_until(|m| m.get("UserEvent") == Some("Count2")).await;
    }
    let delta = metric(admin, sent).await - before;
    assert!(delta >= 6.0, "3 events to 2 clients counted {delta} times");
    let body = http(admin, "GET", "/metrics").await.1;
    for kind in ["ami", "ajam", "ws"] {
        let series = format!("astmanproxy_client_queue_bytes{{kind=\"{kind}\"}}");
        assert!(body.contains(&series), "{series} missing from:\n{body}");
    }
    proxy.stop().await;
}

#[tokio::test]
async fn metrics_negotiate_text_format_and_openmetrics() {
    let (_sim, proxy) = {
        let sim = sim().await;
        let proxy = spawn_proxy_with_admin(config(vec![server("pbx1", sim.addr())])).await;
        wait_ready(proxy.addr, None).await;
        (sim, proxy)
    };
    let admin = proxy.admin.unwrap();
    let mut c = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    assert_eq!(c.action("Ping", "m1", &[]).await.get("Ping"), Some("Pong"));
    const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
    const OPEN: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,\
                      text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let mut texts = Vec::new();
    for (accept, want) in [
        (None, TEXT),
        (Some("text/plain"), TEXT),
        (Some("*/*"), TEXT),
        (Some("text/plain;q=1, application/openmetrics-text;q=0.5"), TEXT),
        (Some("application/openmetrics-text"), OPEN),
        (Some(prometheus), OPEN),
    ] {
        let (status, head, body) = admin_request(admin, "GET", "/metrics", accept).await;
        assert_eq!((status, content_type(&head)), (200, want), "Accept {accept:?}");
        if want == TEXT {
            texts.push(body);
        } else {
            let families = check_openmetrics(&body);
            assert!(families.contains(&("astmanproxy_server_connects".into(), "counter".into())), "{body}");
            assert!(body.contains("astmanproxy_server_connects_total{server=\"pbx1\"} 1\n"), "{body}");
        }
    }
    for body in &texts {
        let families = check_text_format(body);
        for (name, kind) in [
            ("astmanproxy_server_connects_total", "counter"),
            ("astmanproxy_server_connect_failures_total", "counter"),
            ("astmanproxy_server_events_total", "counter"),
            ("astmanproxy_server_action_seconds", "histogram"),
            ("astmanproxy_auth_failures_total", "counter"),
            ("astmanproxy_client_lag_disconnects_total", "counter"),
            ("astmanproxy_client_events_dropped_total", "counter"),
            ("astmanproxy_build_info", "gauge"),
            ("process_cpu_seconds_total", "counter"),
            ("process_resident_memory_bytes", "gauge"),
            ("process_open_fds", "gauge"),
            ("process_max_fds", "gauge"),
            ("process_start_time_seconds", "gauge"),
        ] {
            assert!(families.contains(&(name.into(), kind.into())), "{name} {kind} missing from:\n{body}");
        }
        assert!(body.contains("astmanproxy_server_connects_total{server=\"pbx1\"} 1\n"), "{body}");
        assert!(body.contains("astmanproxy_server_action_seconds_bucket{le=\"+Inf\",server=\"pbx1\"} "), "{body}");
        assert!(body.contains(&format!("astmanproxy_build_info{{version=\"{}\",", env!("CARGO_PKG_VERSION"))));
        let rss = body.lines().find_map(|l| l.strip_prefix("process_resident_memory_bytes ")).unwrap();
        assert!(rss.parse::<f64>().unwrap() > 0.0, "{body}");
    }
    proxy.stop().await;
}

#[tokio::test]
async fn head_on_admin_endpoints_answers_like_get_without_a_body() {
    let sim = sim().await;
    let proxy = spawn_proxy_with_admin(config(vec![server("pbx1", sim.addr())])).await;
    wait_ready(proxy.addr, None).await;
    let admin = proxy.admin.unwrap();
    for path in ["/metrics", "/healthz", "/readyz", "/nope"] {
        let (get_status, get_head, get_body) = admin_request(admin, "GET", path, None).await;
        let (status, head, body) = admin_request(admin, "HEAD", path, None).await;
        assert_eq!(status, get_status, "HEAD {path}");
        assert_eq!(content_type(&head), content_type(&get_head), "HEAD {path}");
        assert_eq!(body, "", "HEAD {path} has a body");
        assert!(!get_body.is_empty());
    }
    let (status, head, _) = admin_request(admin, "HEAD", "/metrics", Some("application/openmetrics-text")).await;
    assert_eq!((status, content_type(&head)), (200, "application/openmetrics-text; version=1.0.0; charset=utf-8"));
    proxy.stop().await;
}

#[tokio::test]
async fn dashboard_and_alert_rules_use_only_metrics_that_exist() {
    let sim = sim().await;
    let proxy = spawn_proxy_with_admin(config(vec![server("pbx1", sim.addr())])).await;
    wait_ready(proxy.addr, None).await;
    let (status, body) = http(proxy.admin.unwrap(), "GET", "/metrics").await;
    assert_eq!(status, 200);
    let exist = metric_names(&body);
    let conf = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(conf.join("grafana-dashboard.json")).unwrap()).unwrap();
    let mut dashboard_exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(panel["title"].is_string() && panel["gridPos"].is_object(), "{panel}");
        for target in panel["targets"].as_array().unwrap() {
            dashboard_exprs.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(q) = variable["definition"].as_str() {
            dashboard_exprs.push(q.to_string());
        }
    }
    let rules: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(conf.join("prometheus-alerts.yml")).unwrap()).unwrap();
    let mut alerts = BTreeSet::new();
    let mut rule_exprs = Vec::new();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            alerts.insert(rule["alert"].as_str().unwrap().to_string());
            rule_exprs.push(rule["expr"].as_str().unwrap().to_string());
        }
    }
    for wanted in ["AstmanproxyServerDown", "AstmanproxyClientsLagging", "AstmanproxyAuthFailuresSpike"] {
        assert!(alerts.contains(wanted), "alert {wanted} missing: {alerts:?}");
    }
    let name = regex::Regex::new(r"\b(?:astmanproxy|process)_[a-z_]+").unwrap();
    for (file, exprs) in [("grafana-dashboard.json", &dashboard_exprs), ("prometheus-alerts.yml", &rule_exprs)] {
        let used: BTreeSet<&str> = exprs.iter().flat_map(|e| name.find_iter(e).map(|m| m.as_str())).collect();
        assert!(used.len() >= 5, "{file} uses hardly any metric: {used:?}");
        for metric in used {
            assert!(exist.contains(metric), "{file} uses {metric}, which /metrics does not have:\n{body}");
        }
    }
    proxy.stop().await;
}

#[tokio::test]
async fn readiness_with_a_share() {
    let sim = sim().await;
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let mut cfg = config(vec![server("pbx1", sim.addr()), server("dead", closed)]);
    cfg.ready_share = 0.5;
    let proxy = spawn_proxy_with_admin(cfg).await;
    wait_ready(proxy.addr, Some("pbx1")).await;
    assert_eq!(http(proxy.admin.unwrap(), "GET", "/readyz").await.0, 200);
}

#[tokio::test]
async fn graceful_shutdown_answers_pending_tells_clients_and_logs_off() {
    let (sim, proxy) = proxy_with_sim().await;
    let mut a = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    sim.set_hold(Some("CoreStatus"));
    a.send(&Message::new().with("Action", "CoreStatus").with("ActionID", "held")).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !sim.received().iter().any(|m| m.action() == Some("CoreStatus")) {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut pre = AmiClient::connect(proxy.addr).await;
    // The held action does not keep the proxy from stopping.
    assert!(proxy.stop_finished().await, "the proxy never finished stopping");
    let answer = a.response("held").await;
    assert_eq!(answer.response(), Some("Error"));
    let notice = a.recv_until(|m| m.kind() == Kind::Event && m.event() == Some("ProxyShutdown")).await;
    assert_eq!(notice.get("Message"), Some("Proxy shutting down"));
    assert!(a.is_closed(WAIT).await);
    // A client that never logged in gets nothing, just the close.
    assert!(pre.try_recv(Duration::from_secs(2)).await.is_none());
    let deadline = tokio::time::Instant::now() + WAIT;
    while sim.connection_count() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the proxy never logged off Asterisk");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_killed_repeatedly_under_event_load() {
    let (sim, proxy) = proxy_with_sim().await;
    // Events off: this client checks its answers; the flood is load on the proxy's reader only.
    let mut a = AmiClient::connect(proxy.addr).await;
    assert_eq!(a.login_as("alice", "alicepw", Some("off")).await.response(), Some("Success"));
    let mut watcher = AmiClient::connect(proxy.addr).await;
    assert_eq!(watcher.login_as("bob", "bobpw", Some("system")).await.response(), Some("Success"));
    let flood = Message::new().with("Event", "UserEvent").with("Privilege", "user,all").with("Data", "x");
    for round in 0..5 {
        wait_ready(proxy.addr, None).await;
        sim.emit_many(&flood, 5_000);
        let id = format!("r{round}");
        a.send(&Message::new().with("Action", "CoreSettings").with("ActionID", id.as_str())).await;
        sim.kill_connections();
        // Every action is answered: by Asterisk before the kill, or with an error after it.
        let answer = a.response(&id).await;
        assert!(matches!(answer.response(), Some("Success" | "Error")), "{answer:?}");
    }
    wait_ready(proxy.addr, None).await;
    // The client never lost its proxy session.
    assert_eq!(a.action("Ping", "end", &[]).await.get("Ping"), Some("Pong"));
    assert!(sim.login_count() >= 6);
    // A client with events on saw the server go and come back.
    let status = watcher.recv_until(|m| m.event() == Some("ProxyServerStatus")).await;
    assert_eq!(status.get("Server"), Some("pbx1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_connects_and_disconnects() {
    let sim = sim().await;
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    cfg.admin_users = vec!["alice".into()]; // to count the sessions with ListSessions
    let proxy = spawn_proxy(cfg).await;
    wait_ready(proxy.addr, None).await;
    let mut tasks = Vec::new();
    for i in 0..2_000 {
        let addr = proxy.addr;
        tasks.push(tokio::spawn(async move {
            let mut c = AmiClient::connect_raw(addr).await;
            if i % 2 == 0 {
                c.send_raw(b"Action: Login\r\nUsername: alice\r\nSecret: alicepw\r\n\r\n").await;
            }
            // Dropped at once: half of them mid-login.
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut a = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    assert_eq!(a.action("Ping", "after", &[]).await.get("Ping"), Some("Pong"));
    // Every one of them is gone from the session list (only `a` remains), eventually: 2000
    // teardowns can take a while when the machine runs the whole suite at once.
    let deadline = tokio::time::Instant::now() + 3 * WAIT;
    loop {
        a.send(&Message::new().with("ProxyAction", "ListSessions").with("ActionID", "ls")).await;
        let list = a.recv_until(|m| m.get("ProxyResponse").is_some() && m.action_id() == Some("ls")).await;
        if list.get_all("ProxyClientSession").count() == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sessions leaked: {}",
            list.get_all("ProxyClientSession").count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn megabytes_of_garbage_from_a_client_harm_nobody() {
    let (_sim, proxy) = proxy_with_sim().await;
    let mut other = AmiClient::login(proxy.addr, "bob", "bobpw").await;
    let mut garbage = AmiClient::connect(proxy.addr).await;
    let mut junk = Vec::new();
    let mut x: u32 = 12345;
    while junk.len() < 4 * 1024 * 1024 {
        // A cheap deterministic byte soup with some line breaks and colons.
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        junk.push(match x >> 24 {
            0..=9 => b'\n',
            10..=14 => b':',
            b => b as u8,
        });
    }
    // Written from another task: the proxy answers junk blocks and this client never reads.
    let writer = tokio::spawn(async move {
        garbage.send_raw(&junk).await;
        garbage
    });
    assert_eq!(other.action("Ping", "fine", &[]).await.get("Ping"), Some("Pong"));
    let _ = tokio::time::timeout(WAIT, writer).await;
    assert_eq!(other.action("Ping", "still", &[]).await.get("Ping"), Some("Pong"));
}
