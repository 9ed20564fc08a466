//! The live events page in a real headless Chromium, driven like a user through WebDriver
//! (fantoccini and a chromedriver this test starts on a free loopback port).
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian's `chromium` and
//! `chromium-driver`; other paths with `CHROMIUM` and `CHROMEDRIVER`). Without them the test
//! prints `skipped: ...` and passes, unless `ASTMANPROXY_REQUIRE_BROWSER=1` (as in CI). Set
//! `ASTMANPROXY_SCREENSHOT=path.png` to keep a screenshot of the page at the end.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use astmanproxy_handlers::Message;
use fantoccini::{Client, ClientBuilder, Locator};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

use crate::support::*;

type Error = Box<dyn std::error::Error + Send + Sync>;

const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
];

fn tool(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from)
}

/// A chromedriver on 127.0.0.1, killed when dropped.
struct Driver {
    _child: Child,
    url: String,
}

/// Starts chromedriver on a free loopback port; ready once it says so on its output.
async fn start_driver(path: &PathBuf) -> Result<Driver, Error> {
    let port = TcpListener::bind("127.0.0.1:0").await?.local_addr()?.port();
    let mut child = Command::new(path)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no chromedriver stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let started = async {
        while let Some(line) = lines.next_line().await? {
            if line.contains("started successfully") {
                return Ok::<_, Error>(());
            }
        }
        Err("chromedriver exited before it started".into())
    };
    tokio::time::timeout(WAIT, started).await.map_err(|_| "chromedriver did not start in time")??;
    // Keep draining its output so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Driver { _child: child, url: format!("http://127.0.0.1:{port}") })
}

/// Polls `check` (bounded by [`WAIT`]) until it gives `Some`.
async fn until<T, F, Fut>(what: &str, mut check: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, Error>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn text_of(c: &Client, css: &str) -> Result<String, Error> {
    Ok(c.find(Locator::Css(css)).await?.text().await?)
}

/// Waits until the element `css` shows text containing `needle`.
async fn wait_text(c: &Client, css: &str, needle: &str) -> Result<(), Error> {
    until(&format!("{css} to show {needle:?}"), || async {
        let found = c.find_all(Locator::Css(css)).await?;
        for e in found {
            if e.text().await?.contains(needle) {
                return Ok(Some(()));
            }
        }
        Ok(None)
    })
    .await
}

/// Waits until the element `css` is shown (`true`) or hidden (`false`).
async fn wait_displayed(c: &Client, css: &str, shown: bool) -> Result<(), Error> {
    until(&format!("{css} to be {}", if shown { "shown" } else { "hidden" }), || async {
        let found = c.find_all(Locator::Css(css)).await?;
        match found.first() {
            Some(e) if e.is_displayed().await? == shown => Ok(Some(())),
            None if !shown => Ok(Some(())),
            _ => Ok(None),
        }
    })
    .await
}

fn ensure(ok: bool, what: &str) -> Result<(), Error> {
    if ok {
        Ok(())
    } else {
        Err(format!("not as expected: {what}").into())
    }
}

async fn fill(c: &Client, css: &str, value: &str) -> Result<(), Error> {
    let e = c.find(Locator::Css(css)).await?;
    e.clear().await?;
    e.send_keys(value).await?;
    Ok(())
}

fn event(name: &str, channel: &str) -> Message {
    Message::new().with("Event", name).with("Privilege", "call,all").with("Channel", channel)
}

/// What a user does on the page, start to end.
async fn use_the_page(c: &Client, addr: SocketAddr, sim: &ami_sim::AmiSim) -> Result<(), Error> {
    c.goto(&format!("http://{addr}/")).await?;
    ensure(c.title().await? == "astmanproxy: live events", "page title")?;

    // A wrong secret: an error, still on the login form.
    fill(c, "#user", "alice").await?;
    fill(c, "#secret", "wrong").await?;
    c.find(Locator::Id("login")).await?.click().await?;
    wait_text(c, "#login-error", "Authentication failed").await?;
    wait_displayed(c, "#app", false).await?;

    // The right one: the servers, listed as connected.
    fill(c, "#secret", "alicepw").await?;
    c.find(Locator::Id("login")).await?.click().await?;
    wait_displayed(c, "#app", true).await?;
    wait_text(c, "#servers tr[data-server='pbx1'] td.state", "Connected").await?;

    // Live events from the simulator.
    sim.emit(event("Newchannel", "PJSIP/1001-00000001"));
    sim.emit(event("Hangup", "PJSIP/2002-00000002"));
    wait_text(c, "#events tr[data-event='Newchannel']", "PJSIP/1001-00000001").await?;
    wait_text(c, "#events tr[data-event='Hangup']", "PJSIP/2002-00000002").await?;

    // The filter applies as one types: by event name, then by any text.
    c.find(Locator::Id("filter")).await?.send_keys("hangup").await?;
    wait_displayed(c, "#events tr[data-event='Newchannel']", false).await?;
    wait_displayed(c, "#events tr[data-event='Hangup']", true).await?;
    ensure(text_of(c, "#event-count").await? == "1", "one event shown under the filter")?;
    fill(c, "#filter", "1001").await?;
    wait_displayed(c, "#events tr[data-event='Newchannel']", true).await?;
    wait_displayed(c, "#events tr[data-event='Hangup']", false).await?;

    // An action and its answer.
    fill(c, "#action", "Ping").await?;
    fill(c, "#headers", "Server: pbx1").await?;
    c.find(Locator::Id("send")).await?.click().await?;
    wait_text(c, "#answer", "Ping: Pong").await?;
    ensure(text_of(c, "#answer").await?.contains("Response: Success"), "a Success answer")?;

    if let Some(path) = std::env::var_os("ASTMANPROXY_SCREENSHOT") {
        std::fs::write(path, c.screenshot().await?)?;
    }

    // The server goes away: its state follows `Event: ProxyServerStatus`.
    sim.shutdown().await;
    wait_text(c, "#servers tr[data-server='pbx1'] td.state", "Disconnected").await?;

    // Log out: back to the login form, with no error on it.
    c.find(Locator::Id("logout")).await?.click().await?;
    wait_displayed(c, "#login-form", true).await?;
    wait_displayed(c, "#app", false).await?;
    ensure(text_of(c, "#login-error").await?.is_empty(), "no error after logging out")?;
    Ok(())
}

/// The page itself, without a browser: HTML, a restrictive CSP, and `/?Action=` still the
/// action handler.
#[tokio::test]
async fn page_is_served_with_a_restrictive_csp() {
    let sim = sim().await;
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = http.local_addr().unwrap();
    let _proxy = spawn_proxy_with_http(config(vec![server("pbx1", sim.addr())]), http).await;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/html; charset=utf-8"), "{head}");
    let csp = head.lines().find_map(|l| l.strip_prefix("content-security-policy: ")).expect("a CSP header");
    assert!(csp.starts_with("default-src 'none'; script-src 'sha256-"), "{csp}");
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
    assert!(body.contains("<form id=\"login-form\""), "{body}");
    // With an Action, `/` is the 1.x handler (401 without credentials).
    assert_eq!(http_get_status(addr, "/?Action=Ping").await, 401);
    // HEAD answers like GET, without the body (it was 405).
    let (status, body) = crate::support::http(addr, "HEAD", "/").await;
    assert_eq!((status, body.as_str()), (200, ""));
}

async fn http_get_status(addr: SocketAddr, path: &str) -> u16 {
    http(addr, "GET", path).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_page_in_headless_chromium() {
    let (chromium, chromedriver) =
        (tool("CHROMIUM", "/usr/bin/chromium"), tool("CHROMEDRIVER", "/usr/bin/chromedriver"));
    if !chromium.exists() || !chromedriver.exists() {
        let why = format!(
            "{} or {} not found (apt-get install chromium chromium-driver)",
            chromium.display(),
            chromedriver.display()
        );
        assert!(
            std::env::var("ASTMANPROXY_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "ASTMANPROXY_REQUIRE_BROWSER=1: {why}"
        );
        println!("skipped: live_page_in_headless_chromium: {why}");
        return;
    }
    let sim = sim().await;
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = http.local_addr().unwrap();
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    // The page lists the servers with ListServers, which is for admin users.
    cfg.admin_users = vec!["alice".to_string()];
    let proxy = spawn_proxy_with_http(cfg, http).await;
    wait_ready(proxy.addr, None).await;

    let driver = start_driver(&chromedriver).await.expect("chromedriver");
    let profile = std::env::temp_dir().join(format!("astmanproxy-chromium-{}-{}", std::process::id(), rand_suffix()));
    let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| s.to_string()).collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".to_string(),
        serde_json::json!({ "binary": chromium.to_string_lossy(), "args": args }),
    );
    // chromedriver is plain HTTP on loopback: no TLS stack needed.
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let connect = ClientBuilder::new(connector).capabilities(caps).connect(&driver.url).await;
    let client = connect.expect("a Chromium session through chromedriver");
    let outcome = tokio::time::timeout(Duration::from_secs(120), use_the_page(&client, addr, &sim)).await;
    let _ = client.close().await;
    drop(driver);
    let _ = std::fs::remove_dir_all(&profile);
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("browser test failed: {e}"),
        Err(_) => panic!("browser test took over 120 s"),
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}
