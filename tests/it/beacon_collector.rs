//! The Beacon collector over real HTTPS on 127.0.0.1:0 (rcgen certificates, reqwest trusting
//! the test CA), with a manual clock for the 48-hour token rules. Every answer is checked
//! against `docs/beacon-openapi.yaml`: its status must be documented for the route, its
//! documented required headers present, and its body valid against the documented schema.

use std::sync::Arc;
use std::time::Duration;

use astmanproxy_beacon_wire::clock::ManualClock;
use astmanproxy_collector::CollectorConfig;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::WAIT;

use crate::support::collector::*;

#[tokio::test]
async fn token_lifecycle_follows_the_48_hour_rule() {
    let pki = Pki::new("life");
    let clock = ManualClock::new(t0());
    let c = Running::start(&pki, config(&pki), &clock).await;
    let body = server("22.10.1", "Linux", &["chan_pjsip.so"], Some("pbx1"));

    let reg = c.register(body.clone()).await;
    assert_eq!(reg.status, StatusCode::CREATED);
    let id = reg.body["server"]["id"].as_str().unwrap().to_string();
    assert_eq!(reg.headers["location"], format!("/servers/{id}").as_str());
    assert_eq!(reg.body["server"]["private_name"], "pbx1");
    let first = reg.body["token"]["id"].as_str().unwrap().to_string();
    assert_eq!(reg.body["token"]["issued"], "2026-12-01T08:00:00Z");

    // With the token: accepted, and a new token.
    clock.advance(chrono::Duration::hours(6));
    let up = c.update(&id, Some(&first), body.clone()).await;
    assert_eq!(up.status, StatusCode::OK);
    let (second, issued) = token_of(&up);
    assert_ne!(second, first);
    assert_eq!(issued, "2026-12-01T14:00:00Z");
    // The body may carry its own id (the same).
    let mut with_id = body.clone();
    with_id["id"] = json!(id);
    // Within 48 h: no token, a wrong one, the replaced one: 401.
    clock.advance(chrono::Duration::hours(47));
    for token in [None, Some("wrong"), Some(first.as_str())] {
        let a = c.update(&id, token, body.clone()).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert!(a.body["error"].as_str().unwrap().contains("token"));
    }
    let third = token_of(&c.update(&id, Some(&second), with_id).await).0;

    // 49 h later no token is required: none, and the expired one, are accepted and replaced.
    clock.advance(chrono::Duration::hours(49));
    let a = c.update(&id, None, body.clone()).await;
    assert_eq!(a.status, StatusCode::OK);
    let fourth = token_of(&a).0;
    assert!(![first.as_str(), second.as_str(), third.as_str()].contains(&fourth.as_str()));
    clock.advance(chrono::Duration::hours(49));
    let a = c.update(&id, Some(&fourth), body.clone()).await;
    assert_eq!(a.status, StatusCode::OK);
    let fifth = token_of(&a).0;
    // The replaced token no longer works while the new one is young.
    assert_eq!(c.update(&id, Some(&fourth), body.clone()).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(c.update(&id, Some(&fifth), body.clone()).await.status, StatusCode::OK);

    // Unknown servers and foreign ids.
    let unknown = "00000000-0000-4000-8000-000000000000";
    assert_eq!(c.update(unknown, None, body.clone()).await.status, StatusCode::NOT_FOUND);
    assert_eq!(c.update("not-an-id", None, body.clone()).await.status, StatusCode::NOT_FOUND);
    let mut other_id = body.clone();
    other_id["id"] = json!(unknown);
    assert_eq!(c.update(&id, None, other_id).await.status, StatusCode::BAD_REQUEST);
    c.stop().await;
}

#[tokio::test]
async fn bad_bodies_get_400_or_413_and_tolerant_ones_are_accepted() {
    let pki = Pki::new("bodies");
    let clock = ManualClock::new(t0());
    let cfg = CollectorConfig { register_per_hour: 0, ..config(&pki) };
    let c = Running::start(&pki, cfg, &clock).await;
    let post = |body: Body| c.call(Method::POST, "/servers", "/servers", Some(body));

    for (text, needle) in [
        ("garbage", "invalid JSON"),
        ("", "invalid JSON"),
        ("[1,2]", "JSON object"),
        (r#"{"asterisk":{"version":{"number":"x"}}}"#, "not a Server"),
        (r#"{"asterisk":{"modules":"all"}}"#, "not a Server"),
        (r#"{"asterisk":{"stats":{"calls":{"active":-1}}}}"#, "not a Server"),
    ] {
        let a = post(Body::Raw(text.to_string())).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{text}");
        assert!(a.body["error"].as_str().unwrap().contains(needle), "{text}: {}", a.body);
    }
    // The default limits: 1000 modules, 256-byte strings, 64 KiB bodies.
    let many: Vec<Value> = (0..1001).map(|_| json!({})).collect();
    let a = post(Body::Json(json!({"asterisk": {"modules": many}}))).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body["error"].as_str().unwrap().contains("too many modules"));
    let a = post(Body::Json(json!({"private_name": "x".repeat(257)}))).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let big = json!({"private_name": "x".repeat(70 * 1024)});
    let a = post(Body::Json(big)).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(a.body["error"].as_str().unwrap().contains("65536"));

    // Missing optional fields and unknown extra ones are fine.
    assert_eq!(post(Body::Raw("{}".into())).await.status, StatusCode::CREATED);
    let mut extra = server("22.10.1", "Linux", &["a.so"], None);
    extra["future_field"] = json!({"nested": [1, 2, 3]});
    extra["asterisk"]["modules"][0]["load_order"] = json!(12);
    let a = post(Body::Json(extra)).await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert!(a.body["server"].get("future_field").is_none(), "unknown fields are not stored");
    let a = post(Body::Json(json!({"asterisk": {"version": {"name": "18.0.0"}}}))).await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.body["server"]["asterisk"]["version"]["name"], "18.0.0");
    c.stop().await;
}

#[tokio::test]
async fn wrong_methods_and_paths_get_405_and_404() {
    let pki = Pki::new("routes");
    let clock = ManualClock::new(t0());
    let c = Running::start(&pki, config(&pki), &clock).await;
    let a = c.call(Method::GET, "/servers", "/servers", None).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(a.headers["allow"], "POST");
    let id = "00000000-0000-4000-8000-000000000000";
    let a = c.call(Method::POST, "/stats", "/stats", None).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(a.headers["allow"], "GET");
    for (method, route, path, status) in [
        (Method::GET, "/servers/{serverId}", format!("/servers/{id}"), StatusCode::METHOD_NOT_ALLOWED),
        (Method::DELETE, "/servers/{serverId}", format!("/servers/{id}"), StatusCode::METHOD_NOT_ALLOWED),
        (Method::GET, "/", "/".to_string(), StatusCode::NOT_FOUND),
        (Method::PUT, "/servers/a/b", "/servers/a/b".to_string(), StatusCode::NOT_FOUND),
        (Method::GET, "/serversX", "/serversX".to_string(), StatusCode::NOT_FOUND),
    ] {
        assert_eq!(c.call(method.clone(), route, &path, None).await.status, status, "{method} {path}");
    }
    for bad in ["?days=0", "?days=x", "?days=3651", "?days=-1"] {
        assert_eq!(c.stats(bad).await.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    c.stop().await;
}

#[tokio::test]
async fn registration_is_rate_limited_harder_than_updates() {
    let pki = Pki::new("rate");
    let clock = ManualClock::new(t0());
    let cfg = CollectorConfig { register_per_hour: 2, update_per_hour: 10, ..config(&pki) };
    let c = Running::start(&pki, cfg, &clock).await;
    let body = server("22.10.1", "Linux", &[], None);
    let reg = c.register(body.clone()).await;
    assert_eq!(reg.status, StatusCode::CREATED);
    assert_eq!(c.register(body.clone()).await.status, StatusCode::CREATED);
    let limited = c.register(body.clone()).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = limited.headers["retry-after"].to_str().unwrap().parse().unwrap();
    // One registration every 30 minutes comes back.
    assert!((1..=1800).contains(&retry), "{retry}");
    // Updates have their own, larger budget.
    let id = reg.body["server"]["id"].as_str().unwrap().to_string();
    let mut token = reg.body["token"]["id"].as_str().unwrap().to_string();
    for _ in 0..10 {
        let a = c.update(&id, Some(&token), body.clone()).await;
        assert_eq!(a.status, StatusCode::OK);
        token = token_of(&a).0;
    }
    let a = c.update(&id, Some(&token), body.clone()).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(a.headers.contains_key("retry-after"));
    c.stop().await;
}

#[tokio::test]
async fn stats_aggregate_and_fold_small_groups_without_identifying_anyone() {
    let pki = Pki::new("stats");
    let clock = ManualClock::new(t0());
    let cfg = CollectorConfig { register_per_hour: 0, ..config(&pki) };
    let c = Running::start(&pki, cfg, &clock).await;
    // An old server, not seen for 40 days: outside the default window.
    let old = c.register(server("16.0.0", "Linux", &["chan_sip.so"], Some("old-pbx"))).await;
    clock.advance(chrono::Duration::days(40));
    let mut ids = vec![old.body["server"]["id"].as_str().unwrap().to_string()];
    for i in 0..4 {
        let a = c
            .register(server("22.10.1", "Linux", &["chan_pjsip.so", "app_queue.so"], Some(&format!("site-{i}"))))
            .await;
        ids.push(a.body["server"]["id"].as_str().unwrap().to_string());
    }
    let rare = c.register(server("20.5.0", "FreeBSD", &["chan_pjsip.so", "app_secret.so"], Some("acme-hq"))).await;
    ids.push(rare.body["server"]["id"].as_str().unwrap().to_string());

    let s = c.stats("").await;
    assert_eq!(s.status, StatusCode::OK);
    let b = &s.body;
    assert_eq!(b["days"], 30);
    assert_eq!(b["min_group"], 3);
    assert_eq!(b["servers"], 5);
    assert_eq!(b["asterisk_versions"], json!([{"name": "22.10.1", "servers": 4}, {"name": "other", "servers": 1}]));
    assert_eq!(b["operating_systems"], json!([{"name": "Linux", "servers": 4}, {"name": "other", "servers": 1}]));
    assert_eq!(b["machines"], json!([{"name": "x86_64", "servers": 5}]));
    assert_eq!(
        b["modules"],
        json!([{"name": "chan_pjsip.so", "servers": 5}, {"name": "app_queue.so", "servers": 4}, {"name": "other", "servers": 1}])
    );
    let text = b.to_string();
    for secret in
        ids.iter().map(String::as_str).chain(["site-", "acme-hq", "old-pbx", "app_secret.so", "20.5.0", "FreeBSD"])
    {
        assert!(!text.contains(secret), "{secret} leaked into {text}");
    }
    assert!(text.contains("other"));

    // The answer is reused for a minute: one more server does not show yet.
    c.register(server("22.10.1", "Linux", &[], None)).await;
    assert_eq!(c.stats("").await.body, s.body);

    // A wider window takes in the old server, still folded.
    let wide = c.stats("?days=60").await;
    assert_eq!(wide.body["servers"], 7);
    assert!(!wide.body.to_string().contains("16.0.0"));
    c.stop().await;
}

#[tokio::test]
async fn servers_and_tokens_survive_a_reopen() {
    let pki = Pki::new("reopen");
    let clock = ManualClock::new(t0());
    let body = server("22.10.1", "Linux", &["chan_pjsip.so"], None);
    let c = Running::start(&pki, config(&pki), &clock).await;
    let reg = c.register(body.clone()).await;
    let id = reg.body["server"]["id"].as_str().unwrap().to_string();
    let token = reg.body["token"]["id"].as_str().unwrap().to_string();
    c.stop().await;

    // No token is stored in the clear.
    let db = std::fs::read(pki.path("collector.db")).unwrap();
    let wal = std::fs::read(pki.path("collector.db-wal")).unwrap_or_default();
    let needle = token.as_bytes();
    for file in [&db, &wal] {
        assert!(!file.windows(needle.len()).any(|w| w == needle), "the token is stored in the clear");
    }

    clock.advance(chrono::Duration::hours(1));
    let c = Running::start(&pki, config(&pki), &clock).await;
    assert_eq!(c.update(&id, None, body.clone()).await.status, StatusCode::UNAUTHORIZED);
    let a = c.update(&id, Some(&token), body.clone()).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(c.stats("").await.body["servers"], 1);
    c.stop().await;
}

#[test]
fn the_spec_checks_are_not_vacuous() {
    let schema = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    assert!(validate(&schema("Token"), &json!({"id": "t", "issued": "2026-12-01T08:00:00Z"})).is_ok());
    assert!(validate(&schema("Token"), &json!({"id": 1, "issued": "2026-12-01T08:00:00Z"})).is_err());
    assert!(validate(&schema("Token"), &json!({"id": "t", "issued": "yesterday"})).is_err());
    assert!(validate(
        &schema("ServerToken"),
        &json!({"token": {"id": "t", "issued": "2026-12-01T08:00:00Z"}, "server": {}})
    )
    .is_err());
    assert!(validate(&schema("Error"), &json!({"error": "x", "id": "leak"})).is_err());
    assert!(validate(&schema("Server"), &json!({"asterisk": {"modules": [{"name": 3}]}})).is_err());
    assert!(validate(&schema("Stats"), &json!({"days": 30})).is_err());
    // Every path of the spec is one the collector serves.
    let paths: Vec<&str> = SPEC["paths"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(paths, ["/servers", "/servers/{serverId}", "/stats"]);
    assert_eq!(SPEC["openapi"], "3.1.0");
}

#[tokio::test]
async fn racing_updates_with_one_token_let_exactly_one_win() {
    let pki = Pki::new("race");
    let clock = ManualClock::new(t0());
    let c = Arc::new(Running::start(&pki, config(&pki), &clock).await);
    let body = server("22.10.1", "Linux", &[], None);
    let reg = c.register(body.clone()).await;
    let id = reg.body["server"]["id"].as_str().unwrap().to_string();
    let token = reg.body["token"]["id"].as_str().unwrap().to_string();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (c, id, token, body) = (c.clone(), id.clone(), token.clone(), body.clone());
            tokio::spawn(async move { c.update(&id, Some(&token), body).await.status })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count(), 7, "{statuses:?}");
    Arc::into_inner(c).unwrap().stop().await;
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let pki = Pki::new("slow");
    let clock = ManualClock::new(t0());
    let cfg = CollectorConfig {
        // Short, yet with room for this client's own handshake on a loaded machine.
        request_timeout: Duration::from_secs(1),
        handshake_timeout: Duration::from_secs(2),
        ..config(&pki)
    };
    let c = Running::start(&pki, cfg, &clock).await;
    // A body that never ends: 408, then the connection closes.
    let tcp = tokio::net::TcpStream::connect(c.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut s = pki.connector().connect(name, tcp).await.unwrap();
    s.write_all(b"POST /servers HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{").await.unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut raw)).await.unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.to_ascii_lowercase().contains("content-type: application/json"), "{head}");
    let body: Value = serde_json::from_str(body).unwrap();
    assert!(body["error"].as_str().unwrap().contains("not received in time"));
    let documented = resolve(&SPEC["paths"]["/servers"]["post"]["responses"]["408"]);
    validate(&documented["content"]["application/json"]["schema"], &body).unwrap();
    // A TCP client that never starts TLS is dropped.
    let mut idle = tokio::net::TcpStream::connect(c.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(WAIT, idle.read(&mut buf)).await.unwrap().unwrap_or(0);
    assert_eq!(n, 0);
    c.stop().await;
}

/// `astmanproxy beacon serve` is gone from the proxy (which no longer links SQLite): it fails,
/// naming the program that serves now, instead of an unknown-subcommand error.
#[tokio::test]
async fn beacon_serve_names_the_collector_program() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_astmanproxy"))
        .args(["beacon", "serve", "--listen", "127.0.0.1:0", "--db", "/nonexistent/x.db"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("run `astmanproxy-collector` with the same flags"), "{err}");
    assert!(!std::path::Path::new("/nonexistent/x.db").exists());
}

/// Not a check: prints how fast updates go over HTTPS and how long a `/stats` scan of many
/// servers takes. `cargo test --test it measure_collector -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn measure_collector_updates_and_stats_scan() {
    let pki = Pki::new("measure");
    let clock = ManualClock::new(t0());
    let cfg = CollectorConfig { register_per_hour: 0, update_per_hour: 0, stats_per_hour: 0, ..config(&pki) };
    let modules: Vec<String> = (0..300).map(|i| format!("mod_{i}.so")).collect();
    let names: Vec<&str> = modules.iter().map(String::as_str).collect();
    let body = server("22.10.1", "Linux", &names, Some("pbx"));
    // 10 000 servers written straight into the database (the documented schema).
    {
        let c = Running::start(&pki, cfg.clone(), &clock).await;
        c.stop().await;
        let mut db = rusqlite::Connection::open(pki.path("collector.db")).unwrap();
        let tx = db.transaction().unwrap();
        let now = t0().timestamp_millis();
        for i in 0..10_000 {
            tx.execute(
                "INSERT INTO servers VALUES (?1, ?2, ?2, ?3, ?2, ?4, '22.10.1', 'Linux', 'x86_64', ?5)",
                rusqlite::params![
                    format!("{i:08}-0000-4000-8000-000000000000"),
                    now,
                    [0u8; 32].as_slice(),
                    body.to_string(),
                    names.join("\n")
                ],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    let c = Arc::new(Running::start(&pki, cfg, &clock).await);
    let started = std::time::Instant::now();
    let s = c.stats("").await;
    eprintln!("GET /stats over 10000 servers x 300 modules: {:?}", started.elapsed());
    assert_eq!(s.body["servers"], 10_000);

    let mut servers = Vec::new();
    for _ in 0..8 {
        let reg = c.register(body.clone()).await;
        servers.push((
            reg.body["server"]["id"].as_str().unwrap().to_string(),
            reg.body["token"]["id"].as_str().unwrap().to_string(),
        ));
    }
    let started = std::time::Instant::now();
    let per_task = 100;
    let tasks: Vec<_> = servers
        .into_iter()
        .map(|(id, first)| {
            let (c, body) = (c.clone(), body.clone());
            tokio::spawn(async move {
                let mut token = first;
                // Straight reqwest: the spec checks of `update` would dominate the time.
                for _ in 0..per_task {
                    let url = format!("https://{}/servers/{id}?tokenId={token}", c.addr);
                    let resp = c.client.put(url).json(&body).send().await.unwrap();
                    assert_eq!(resp.status(), StatusCode::OK);
                    let answer: Value = resp.json().await.unwrap();
                    token = answer["id"].as_str().unwrap().to_string();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    let n = 8 * per_task;
    eprintln!(
        "{n} updates (300 modules, {} bytes each), 8 clients: {elapsed:?}, {:.0}/s",
        body.to_string().len(),
        n as f64 / elapsed.as_secs_f64()
    );
    Arc::into_inner(c).unwrap().stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_answers_does_not_keep_its_connection_slot() {
    use tokio::io::AsyncWriteExt;

    let pki = Pki::new("noread");
    let clock = ManualClock::new(t0());
    // One slot: while a stuck connection holds it, nobody else is served.
    let cfg = CollectorConfig {
        max_connections: 1,
        request_timeout: Duration::from_secs(1),
        handshake_timeout: Duration::from_secs(2),
        ..config(&pki)
    };
    let c = Running::start(&pki, cfg, &clock).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(c.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut s = pki.connector().connect(name, tcp).await.unwrap();
    // Pipelined requests, answers never read: the collector's writes to it stall for good.
    let flood = tokio::spawn(async move {
        let requests = b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n".repeat(64);
        while s.write_all(&requests).await.is_ok() {}
    });
    // Another client still gets its answer once the stuck one is cut off.
    let a = c.stats("").await;
    assert_eq!(a.status, StatusCode::OK);
    flood.abort();
    c.stop().await;
}

#[tokio::test]
async fn one_address_cannot_take_every_connection_slot() {
    use tokio::io::AsyncReadExt;

    let pki = Pki::new("peraddr");
    let clock = ManualClock::new(t0());
    let cfg = CollectorConfig {
        max_connections: 4,
        max_connections_per_address: 2,
        // Longer than the client's own wait: a held slot stays held for the whole test.
        handshake_timeout: Duration::from_secs(60),
        ..config(&pki)
    };
    let c = Running::start(&pki, cfg, &clock).await;
    // Another loopback address opens as many TCP connections as there are slots, and never
    // starts TLS.
    let mut held = Vec::new();
    for _ in 0..4 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        held.push(socket.connect(c.addr).await.unwrap());
    }
    // Past its share, its connections are closed at once.
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(WAIT, held[3].read(&mut buf)).await.unwrap().unwrap_or(0);
    assert_eq!(n, 0);
    // Everyone else is still served.
    assert_eq!(c.stats("").await.status, StatusCode::OK);
    drop(held);
    c.stop().await;
}
