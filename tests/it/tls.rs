//! TLS toward clients (same-port detection, TLS-only port) and toward Asterisk (`use_ssl`),
//! with certificates made by rcgen.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use astmanproxy_handlers::{standard, AmiDecoder, Message};
use bytes::BytesMut;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::pki::Pki;
use crate::support::*;

/// Reads the banner, logs in and pings over any stream; returns the banner and whether the Ping
/// was answered with success.
async fn try_login_and_ping<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> (String, bool) {
    let mut dec = AmiDecoder::default();
    let mut buf = BytesMut::new();
    let banner = loop {
        if let Some(line) = dec.decode_line(&mut buf).unwrap() {
            break line;
        }
        assert!(stream.read_buf(&mut buf).await.unwrap() > 0);
    };
    let mut ok = true;
    for (m, id) in [
        (Message::new().with("Action", "Login").with("Username", "alice").with("Secret", "alicepw"), "l"),
        (Message::new().with("Action", "Ping"), "p"),
    ] {
        let mut out = BytesMut::new();
        standard::encode(&m.with("ActionID", id), &mut out);
        stream.write_all(&out).await.unwrap();
        let answer = loop {
            if let Some(m) = dec.decode(&mut buf).unwrap() {
                if m.action_id() == Some(id) {
                    break m;
                }
                continue;
            }
            assert!(tokio::time::timeout(WAIT, stream.read_buf(&mut buf)).await.unwrap().unwrap() > 0);
        };
        if id == "l" {
            assert_eq!(answer.response(), Some("Success"), "{answer:?}");
        }
        ok = answer.response() == Some("Success");
    }
    (banner, ok)
}

/// As `try_login_and_ping`, the Ping must succeed.
async fn login_and_ping<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> String {
    let (banner, ok) = try_login_and_ping(stream).await;
    assert!(ok, "Ping failed");
    banner
}

/// A proxy taking TLS and plain clients on its AMI port, with `pki`'s certificate.
async fn same_port_tls_proxy(pki: &Pki) -> (ami_sim::AmiSim, TestProxy) {
    let sim = sim().await;
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    cfg.tls.accept_encrypted = true;
    cfg.tls.cert_file = Some(pki.path("both.pem"));
    let proxy = spawn_proxy(cfg).await;
    wait_ready(proxy.addr, None).await;
    (sim, proxy)
}

async fn tls_connect(pki: &Pki, addr: SocketAddr) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    pki.connector().connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap()
}

#[tokio::test]
async fn tls_and_plain_clients_share_the_port_and_a_tls_only_port_works() {
    let pki = Pki::new("clients");
    let sim = sim().await;
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    cfg.tls.accept_encrypted = true;
    cfg.tls.cert_file = Some(pki.path("both.pem"));
    let tls_only = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls_addr = tls_only.local_addr().unwrap();
    cfg.tls.listen_port = Some(tls_addr.port());
    let proxy = spawn_proxy_with_tls(cfg, tls_only).await;
    wait_ready(proxy.addr, None).await;

    let mut tls = tls_connect(&pki, proxy.addr).await;
    assert_eq!(login_and_ping(&mut tls).await, "Asterisk Call Manager/11.0.0");
    let mut plain = TcpStream::connect(proxy.addr).await.unwrap();
    login_and_ping(&mut plain).await;
    let mut dedicated = tls_connect(&pki, tls_addr).await;
    login_and_ping(&mut dedicated).await;
}

#[tokio::test]
async fn a_stalled_hello_never_blocks_other_clients() {
    // 1.x froze its accept loop on a peer that sent `16 03 01` and stalled.
    let pki = Pki::new("stall");
    let sim = sim().await;
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    cfg.tls.accept_encrypted = true;
    cfg.tls.cert = Some(pki.path("cert.pem"));
    cfg.tls.key = Some(pki.path("key.pem"));
    cfg.tls.handshake_timeout = Duration::from_secs(30);
    let proxy = spawn_proxy(cfg).await;
    wait_ready(proxy.addr, None).await;
    let mut stallers = Vec::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        s.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
        stallers.push(s);
    }
    // Served while the 50 stallers still hold their half-done handshakes (30 s timeout): a
    // stalled handshake never blocks the accept loop.
    let mut tls = tls_connect(&pki, proxy.addr).await;
    login_and_ping(&mut tls).await;
    let c = AmiClient::connect(proxy.addr).await;
    assert_eq!(c.banner, "Asterisk Call Manager/11.0.0");
    for s in &mut stallers {
        let mut byte = [0u8; 1];
        let open = tokio::time::timeout(Duration::from_millis(1), s.read(&mut byte)).await.is_err();
        assert!(open, "a staller was closed: the test no longer holds handshakes open");
    }
    // No fixed cap on TLS clients (1.x hung the 17th): 40 at once.
    let pki = Arc::new(pki);
    let mut clients = Vec::new();
    for _ in 0..40 {
        let (pki, addr) = (pki.clone(), proxy.addr);
        clients.push(tokio::spawn(async move {
            let mut tls = tls_connect(&pki, addr).await;
            login_and_ping(&mut tls).await;
            tls
        }));
    }
    let mut open = Vec::new();
    for c in clients {
        open.push(c.await.unwrap());
    }
    assert_eq!(open.len(), 40);
}

#[tokio::test]
async fn plain_clients_refused_when_only_tls_is_accepted() {
    let pki = Pki::new("only");
    let sim = sim().await;
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    cfg.tls.accept_encrypted = true;
    cfg.tls.accept_unencrypted = false;
    cfg.tls.cert_file = Some(pki.path("both.pem"));
    cfg.tls.client_hello_timeout = Duration::from_millis(100);
    let proxy = spawn_proxy(cfg).await;
    let mut plain = AmiClient::connect_raw(proxy.addr).await;
    let m = plain.recv().await;
    assert_eq!(m.get("Message"), Some("This proxy accepts TLS connections only"));
    assert!(plain.is_closed(WAIT).await);
    // TLS clients are served (the Ping inside waits for the server to be up, retrying).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut tls = tls_connect(&pki, proxy.addr).await;
        if try_login_and_ping(&mut tls).await.1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TLS front for the simulator: terminates TLS with the test PKI and relays to `to`.
pub(crate) async fn tls_front(pki: &Pki, to: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = pki.acceptor();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let Ok(mut upstream) = TcpStream::connect(to).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
            });
        }
    });
    addr
}

fn tls_server(name: &str, addr: SocketAddr) -> astmanproxy::config::ServerConfig {
    let mut s = server(name, addr);
    s.host = "localhost".to_string();
    s.use_ssl = true;
    s
}

#[tokio::test]
async fn tls_to_asterisk_verifies_the_certificate() {
    let pki = Pki::new("upstream");
    let other = Pki::new("upstream-other");
    let sim = sim().await;
    let front = tls_front(&pki, sim.addr()).await;

    // Verified against tlscafile, with SNI `localhost`.
    let mut cfg = config(vec![tls_server("secure", front)]);
    cfg.tls.ca_file = Some(pki.path("ca.pem"));
    let proxy = spawn_proxy(cfg).await;
    wait_ready(proxy.addr, None).await;
    drop(proxy);

    // A certificate from another CA is refused: the server stays down, and says why.
    let mut cfg = config(vec![tls_server("secure", front)]);
    cfg.tls.ca_file = Some(other.path("ca.pem"));
    let proxy = spawn_proxy(cfg).await;
    let mut c = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    // Until the first attempt has failed the error says only that the server is connecting;
    // once it has, every answer is an error that names TLS.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let r = c.action("Ping", "x", &[]).await;
        assert_eq!(r.response(), Some("Error"), "a server with a certificate of another CA answered");
        if r.get("Message").unwrap().contains("TLS") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the error never named TLS: {r:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(proxy);

    // The explicit per-server opt-out connects anyway.
    let mut cfg = config(vec![tls_server("secure", front)]);
    cfg.tls.insecure_servers = vec!["secure".to_string()];
    let proxy = spawn_proxy(cfg).await;
    wait_ready(proxy.addr, None).await;
}

#[tokio::test]
async fn https_requests_on_the_ami_port() {
    let pki = Pki::new("https");
    let (_sim, proxy) = same_port_tls_proxy(&pki).await;
    // An HTTP request inside TLS on the AMI port is served as HTTPS...
    let mut tls = tls_connect(&pki, proxy.addr).await;
    let request = "GET /rawman?action=login&username=alice&secret=alicepw HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    // A TLS peer may close without close_notify; what was read before counts.
    let _ = tokio::time::timeout(WAIT, tls.read_to_end(&mut raw)).await.unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("Set-Cookie: mansession_id=") && text.contains("Authentication accepted"), "{text}");
    // ... and an AMI client inside TLS still gets AMI.
    let mut ami = tls_connect(&pki, proxy.addr).await;
    assert_eq!(login_and_ping(&mut ami).await, "Asterisk Call Manager/11.0.0");
}

#[tokio::test]
async fn websocket_over_tls_on_the_ami_port() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message as Frame;
    let pki = Pki::new("wss");
    let (_sim, proxy) = same_port_tls_proxy(&pki).await;
    let tls = tls_connect(&pki, proxy.addr).await;
    let mut request = "wss://localhost/ws".into_client_request().unwrap();
    request.headers_mut().insert("Authorization", "Basic YWxpY2U6YWxpY2Vwdw==".parse().unwrap()); // alice:alicepw
    let (mut ws, _) = tokio_tungstenite::client_async(request, tls).await.expect("wss upgrade");
    ws.send(Frame::text(r#"{"Action":"Ping","ActionID":"s"}"#)).await.unwrap();
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("no frame") {
            Some(Ok(Frame::Text(t))) if t.as_str().contains("\"ActionID\":\"s\"") => {
                assert!(t.as_str().contains("\"Ping\":\"Pong\""), "{t}");
                break;
            }
            Some(Ok(_)) => {}
            other => panic!("closed: {other:?}"),
        }
    }
}
