//! AJAM-compatible HTTP sessions (`/rawman`, `/mxml`, `/arawman`, `/amxml`, cookie sessions on
//! `/`), replayed against Asterisk's own recorded answers, and HTTP on the AMI port.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use astmanproxy_handlers::capture::{Capture, Direction};
use astmanproxy_handlers::{AmiDecoder, Message};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

/// One HTTP answer read off a `Connection: close` exchange.
pub(crate) struct Answer {
    pub(crate) status: u16,
    headers: HashMap<String, String>,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers.get(&name.to_ascii_lowercase()).map_or("", String::as_str)
    }

    pub(crate) fn cookie(&self) -> String {
        let v = self.header("set-cookie");
        v.split(';').next().unwrap_or_default().trim().to_string()
    }

    fn messages(&self) -> Vec<Message> {
        decode_all(self.body.as_bytes())
    }
}

fn decode_all(bytes: &[u8]) -> Vec<Message> {
    let mut decoder = AmiDecoder::default();
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(m) = decoder.decode(&mut buf).unwrap() {
        out.push(m);
    }
    out
}

/// Sends `request` (a whole HTTP request) on a fresh connection and reads the answer to EOF.
pub(crate) async fn exchange(addr: SocketAddr, request: &str) -> Answer {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw)).await.expect("no answer").unwrap();
    parse_answer(&String::from_utf8_lossy(&raw))
}

/// Splits a whole HTTP response into status, headers (names lowercased) and body.
fn parse_answer(text: &str) -> Answer {
    let (head, body) = text.split_once("\r\n\r\n").expect("no header end");
    let mut lines = head.lines();
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut headers: HashMap<String, String> = HashMap::new();
    for (k, v) in lines.filter_map(|l| l.split_once(':')) {
        // A repeated header (WWW-Authenticate) keeps every value, one per line.
        let entry = headers.entry(k.trim().to_ascii_lowercase()).or_default();
        if !entry.is_empty() {
            entry.push('\n');
        }
        entry.push_str(v.trim());
    }
    Answer { status, headers, body: body.to_string() }
}

pub(crate) async fn get(addr: SocketAddr, path: &str, cookie: Option<&str>) -> Answer {
    let cookie = cookie.map(|c| format!("Cookie: {c}\r\n")).unwrap_or_default();
    exchange(addr, &format!("GET {path} HTTP/1.1\r\nHost: t\r\n{cookie}Connection: close\r\n\r\n")).await
}

pub(crate) async fn http_proxy(
    adjust: impl FnOnce(&mut astmanproxy::config::Config),
) -> (ami_sim::AmiSim, TestProxy, SocketAddr) {
    let sim = sim().await;
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = http.local_addr().unwrap();
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    adjust(&mut cfg);
    let proxy = spawn_proxy_with_http(cfg, http).await;
    wait_ready(proxy.addr, None).await;
    (sim, proxy, http_addr)
}

/// The recorded HTTP exchanges of a capture: (request line path, whether it sent the session
/// cookie, recorded answer).
fn recorded(file: &str) -> Vec<(String, bool, Answer)> {
    let raw = std::fs::read(format!("{}/tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let cap = Capture::parse(&raw).unwrap();
    cap.http_conns
        .iter()
        .map(|&conn| {
            let request = String::from_utf8(cap.stream(conn, Direction::ClientToServer)).unwrap();
            let path = request.split_whitespace().nth(1).unwrap().to_string();
            let response = String::from_utf8(cap.stream(conn, Direction::ServerToClient)).unwrap();
            (path, request.contains("\r\nCookie: mansession_id="), parse_answer(&response))
        })
        .collect()
}

/// Values that differ between two runs of the same action (times, counters).
const VOLATILE: [&str; 8] = [
    "Timestamp",
    "CoreStartupDate",
    "CoreStartupTime",
    "CoreReloadDate",
    "CoreReloadTime",
    "CoreCurrentCalls",
    "CoreProcessedCalls",
    "Output",
];

/// The same headers in the same order (the proxy adds `Server:`), with the same values but for
/// volatile ones.
fn assert_same_message(ours: &Message, theirs: &Message, what: &str) {
    let ours: Vec<(&str, &str)> = ours.headers().filter(|(k, _)| *k != "Server").collect();
    let theirs: Vec<(&str, &str)> = theirs.headers().collect();
    let keys = |v: &[(&str, &str)]| v.iter().map(|(k, _)| k.to_string()).collect::<Vec<_>>();
    assert_eq!(keys(&ours), keys(&theirs), "{what}: headers differ");
    for ((k, a), (_, b)) in ours.iter().zip(&theirs) {
        if !VOLATILE.contains(k) {
            assert_eq!(a, b, "{what}: value of {k}");
        }
    }
}

#[tokio::test]
async fn rawman_session_replays_the_recorded_transcript() {
    let (_sim, proxy, addr) = http_proxy(|_| {}).await;
    // Sees the call's broadcast events as the AJAM session does, so the replay can wait for them.
    let mut observer = AmiClient::login(proxy.addr, "bob", "bobpw").await;
    let mut cookie = String::new();
    for (path, with_cookie, theirs) in recorded("25-http-rawman.cap") {
        let path = path.replace("username=admin&secret=adminpass", "username=alice&secret=alicepw");
        let ours = get(addr, &path, with_cookie.then_some(cookie.as_str())).await;
        assert_eq!(ours.status, theirs.status, "{path}");
        for h in ["content-type", "cache-control", "pragma"] {
            assert_eq!(ours.header(h).to_ascii_lowercase(), theirs.header(h).to_ascii_lowercase(), "{path}: {h}");
        }
        assert!(ours.header("set-cookie").starts_with("mansession_id=\""), "{path}");
        assert!(ours.header("set-cookie").contains("Version=1; Max-Age=60"), "{path}");
        let (ours_m, theirs_m) = (ours.messages(), theirs.messages());
        if path.contains("waitevent") {
            // The events are the simulator's recording of the call, not this capture's; the
            // framing and the originator's OriginateResponse are what must match.
            assert_same_message(&ours_m[0], &theirs_m[0], &path);
            assert_same_message(ours_m.last().unwrap(), theirs_m.last().unwrap(), &path);
            let orig = ours_m.iter().find(|m| m.event() == Some("OriginateResponse")).expect("OriginateResponse");
            assert_eq!(orig.action_id(), Some("http-orig"));
            assert!(ours_m.len() > 3, "the call's events are queued: {}", ours.body);
        } else {
            assert_eq!(ours_m.len(), theirs_m.len(), "{path}: {}", ours.body);
            for (a, b) in ours_m.iter().zip(&theirs_m) {
                assert_same_message(a, b, &path);
            }
        }
        if path.contains("action=login") {
            cookie = ours.cookie();
        }
        if path.contains("action=originate") {
            // Let the call's events reach the session's queue, as the recording waited 0.2 s:
            // the call ends with the channel's Hangup and two DeviceStateChange events.
            observer.recv_until(|m| m.event() == Some("Hangup")).await;
            observer.recv_until(|m| m.event() == Some("DeviceStateChange")).await;
            observer.recv_until(|m| m.event() == Some("DeviceStateChange")).await;
        }
    }
}

/// The `<generic .../>` attributes of each `<response>` of an mxml body.
fn mxml_objects(body: &str) -> Vec<Vec<(String, String)>> {
    let mut reader = quick_xml::Reader::from_str(body);
    let mut out = Vec::new();
    loop {
        match reader.read_event().expect("well formed XML") {
            quick_xml::events::Event::Empty(e) if e.name().as_ref() == b"generic" => out.push(
                e.attributes()
                    .map(|a| {
                        let a = a.unwrap();
                        (String::from_utf8(a.key.as_ref().to_vec()).unwrap(), a.unescape_value().unwrap().to_string())
                    })
                    .collect(),
            ),
            quick_xml::events::Event::Eof => return out,
            _ => {}
        }
    }
}

#[tokio::test]
async fn mxml_session_replays_the_recorded_transcript() {
    let (_sim, _proxy, addr) = http_proxy(|_| {}).await;
    let mut cookie = String::new();
    for (path, with_cookie, theirs) in recorded("26-http-mxml.cap") {
        let path = path.replace("username=admin&secret=adminpass", "username=alice&secret=alicepw");
        let path = path.replace("username=admin&secret=bad", "username=alice&secret=bad");
        let ours = get(addr, &path, with_cookie.then_some(cookie.as_str())).await;
        assert_eq!(ours.status, theirs.status, "{path}");
        assert_eq!(ours.header("content-type"), "text/xml", "{path}");
        assert!(ours.body.starts_with("<ajax-response>\n") && ours.body.ends_with("</ajax-response>\n"));
        let (ours_o, theirs_o) = (mxml_objects(&ours.body), mxml_objects(&theirs.body));
        assert!(!ours_o.is_empty(), "{path}");
        // The simulator replays its own QueueStatus recording (one more queue entry): objects are
        // paired by event and queue, and each pair must have the same attributes in order.
        let key = |o: &Vec<(String, String)>| {
            let get = |n: &str| o.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
            (get("event"), get("queue"))
        };
        for b in &theirs_o {
            let a = ours_o.iter().find(|a| key(a) == key(b)).unwrap_or_else(|| panic!("{path}: no {:?}", key(b)));
            let a: Vec<_> = a.iter().filter(|(k, _)| k != "server").collect();
            let names = |v: &[&(String, String)]| v.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
            assert_eq!(names(&a), names(&b.iter().collect::<Vec<_>>()), "{path}");
            for ((k, x), (_, y)) in a.iter().zip(b) {
                if ["response", "message", "event", "eventlist", "actionid", "queue"].contains(&k.as_str()) {
                    assert_eq!(x, y, "{path}: {k}");
                }
            }
        }
        assert_eq!(key(&ours_o[0]), key(&theirs_o[0]), "{path}");
        assert_eq!(key(ours_o.last().unwrap()), key(theirs_o.last().unwrap()), "{path}");
        if path.contains("secret=alicepw") {
            cookie = ours.cookie();
        }
    }
}

#[tokio::test]
async fn cookie_session_with_a_real_client_waits_for_events_and_never_leaks_them() {
    let (sim, _proxy, addr) = http_proxy(|_| {}).await;
    let client = reqwest::Client::builder().build().unwrap();
    let base = format!("http://{addr}");
    // Login by POST with a form body, keep-alive on one connection.
    let login = client
        .post(format!("{base}/rawman"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("action=Login&username=alice&secret=alicepw")
        .send()
        .await
        .unwrap();
    let cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    assert!(login.text().await.unwrap().contains("Authentication accepted"));
    sim.emit(Message::new().with("Event", "PeerStatus").with("Privilege", "system,all").with("Peer", "SIP/1"));
    // Ordinary answers never carry events, even with events queued.
    for i in 0..5 {
        let ping = client.get(format!("{base}/rawman?action=Ping&ActionID=p{i}")).header("Cookie", &cookie).send();
        let text = ping.await.unwrap().text().await.unwrap();
        let messages = decode_all(text.as_bytes());
        assert_eq!(messages.len(), 1, "{text}");
        assert_eq!(messages[0].action_id(), Some(format!("p{i}").as_str()));
        assert_eq!(messages[0].get("Ping"), Some("Pong"));
    }
    let wait = client.get(format!("{base}/rawman?action=WaitEvent&Timeout=5&ActionID=w")).header("Cookie", &cookie);
    let text = wait.send().await.unwrap().text().await.unwrap();
    let messages = decode_all(text.as_bytes());
    assert_eq!(messages[0].get("Message"), Some("Waiting for Event completed."));
    assert_eq!(messages[0].action_id(), Some("w"));
    assert!(messages.iter().any(|m| m.get("Peer") == Some("SIP/1")), "{text}");
    assert_eq!(messages.last().unwrap().event(), Some("WaitEventComplete"));
    assert_eq!(messages.last().unwrap().action_id(), Some("w"));
    // The same session answers in JSON on `/json` and XML on `/xml`.
    let json = client.get(format!("{base}/json?Action=Ping&ActionID=j")).header("Cookie", &cookie).send();
    let json: serde_json::Value = json.await.unwrap().json().await.unwrap();
    assert_eq!(json[0]["ActionID"], "j");
    assert_eq!(json[0]["Ping"], "Pong");
    // Logoff ends the session.
    let bye = client.get(format!("{base}/rawman?action=Logoff")).header("Cookie", &cookie).send();
    assert!(bye.await.unwrap().text().await.unwrap().contains("Response: Goodbye"));
    let after = client.get(format!("{base}/rawman?action=Ping")).header("Cookie", &cookie).send();
    assert!(after.await.unwrap().text().await.unwrap().contains("Permission denied"));
}

#[tokio::test]
async fn login_session_on_the_1x_path_and_basic_on_arawman() {
    let (_sim, _proxy, addr) = http_proxy(|_| {}).await;
    // `Action=Login` on `/` establishes a session, answered in the configured format.
    let login = get(addr, "/?Action=Login&Username=bob&Secret=bobpw", None).await;
    assert!(login.body.contains("Authentication accepted"), "{}", login.body);
    let cookie = login.cookie();
    let ping = get(addr, "/?Action=Ping&ActionID=x&format=xml", Some(&cookie)).await;
    assert!(ping.body.contains("<ActionID Value=\"x\"/>"), "{}", ping.body);
    // Without the cookie and without Basic, `/` asks for credentials.
    assert_eq!(get(addr, "/?Action=Ping", None).await.status, 401);
    // /arawman needs Basic on every request.
    assert_eq!(get(addr, "/arawman?action=Ping", None).await.status, 401);
    let basic = "Authorization: Basic Ym9iOmJvYnB3\r\n"; // bob:bobpw
    let ok = exchange(
        addr,
        &format!("GET /amxml?action=Ping&actionid=a HTTP/1.1\r\nHost: t\r\n{basic}Connection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(ok.status, 200);
    assert!(ok.body.contains("actionid='a'") && ok.body.contains("ping='Pong'"), "{}", ok.body);
    let bad = "Authorization: Basic Ym9iOndyb25n\r\n"; // bob:wrong
    let denied =
        exchange(addr, &format!("GET /arawman?action=Ping HTTP/1.1\r\nHost: t\r\n{bad}Connection: close\r\n\r\n"))
            .await;
    assert_eq!(denied.status, 401);
}

#[tokio::test]
async fn sessions_are_bounded_and_expire() {
    let (_sim, _proxy, addr) = http_proxy(|cfg| {
        cfg.http.max_sessions = 1;
        cfg.http.session_timeout = Duration::from_secs(1);
    })
    .await;
    let first = get(addr, "/rawman?action=login&username=alice&secret=alicepw", None).await;
    assert!(first.body.contains("Authentication accepted"));
    assert_eq!(first.header("set-cookie").split("Max-Age=").nth(1).map(|v| &v[..1]), Some("1"));
    let second = get(addr, "/rawman?action=login&username=bob&secret=bobpw", None).await;
    assert_eq!(second.status, 503);
    // Idle past httpsessiontimeout: the session is closed and its room freed.
    let cookie = first.cookie();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let ping = get(addr, "/rawman?action=ping", None).await;
        assert!(ping.body.contains("Permission denied"));
        let again = get(addr, "/rawman?action=login&username=bob&secret=bobpw", None).await;
        if again.status == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "session never expired");
    }
    assert!(get(addr, "/rawman?action=ping", Some(&cookie)).await.body.contains("Permission denied"));
}

#[tokio::test]
async fn event_flood_while_requests_are_served() {
    let (sim, _proxy, addr) = http_proxy(|cfg| {
        cfg.http.event_queue = 100;
        // A loaded machine may let the session fall behind the flood: it must then miss events,
        // not be closed, for this test.
        cfg.lag_policy = astmanproxy::config::LagPolicy::Drop;
    })
    .await;
    let login = get(addr, "/rawman?action=login&username=alice&secret=alicepw", None).await;
    let cookie = login.cookie();
    let flood = Message::new().with("Event", "VarSet").with("Privilege", "dialplan,all").with("Variable", "x");
    sim.emit_many(&flood, 20_000);
    for i in 0..30 {
        let answer = get(addr, &format!("/rawman?action=Ping&ActionID=f{i}"), Some(&cookie)).await;
        let messages = answer.messages();
        assert_eq!(messages.len(), 1, "an event leaked into an answer: {}", answer.body);
        assert_eq!(messages[0].action_id(), Some(format!("f{i}").as_str()));
    }
    let wait = get(addr, "/rawman?action=WaitEvent&Timeout=1", Some(&cookie)).await;
    let events = wait.messages().iter().filter(|m| m.event() == Some("VarSet")).count();
    assert!((1..=100).contains(&events), "the queue keeps at most httpeventqueue events: {events}");
}

#[tokio::test]
async fn http_problems_on_session_endpoints() {
    let (_sim, _proxy, addr) = http_proxy(|cfg| cfg.http.max_body = 1024).await;
    assert_eq!(get(addr, "/rawman", None).await.status, 400);
    assert_eq!(get(addr, "/nothing", None).await.status, 404);
    let put = exchange(addr, "PUT /rawman?action=ping HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await;
    assert_eq!(put.status, 405);
    let big = "a".repeat(4096);
    let post = format!(
        "POST /rawman HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\naction=ping&x={big}",
        big.len() + 14
    );
    assert_eq!(exchange(addr, &post).await.status, 413);
    // SetOutputFormat makes no sense for HTTP: a clear error.
    let login = get(addr, "/rawman?action=login&username=alice&secret=alicepw", None).await;
    let answer =
        get(addr, "/rawman?ProxyAction=SetOutputFormat&OutputFormat=xml&Action=x", Some(&login.cookie())).await;
    assert!(answer.body.contains("does not apply to HTTP"), "{}", answer.body);
}

#[tokio::test]
async fn http_and_ami_share_the_ami_port() {
    let (_sim, proxy, _http) = http_proxy(|_| {}).await;
    // An HTTP request on the AMI port is served as HTTP...
    let login = get(proxy.addr, "/rawman?action=login&username=alice&secret=alicepw", None).await;
    assert_eq!(login.status, 200);
    assert!(login.body.contains("Authentication accepted"));
    let ping = get(proxy.addr, "/rawman?action=ping&actionid=m", Some(&login.cookie())).await;
    assert!(ping.body.contains("Ping: Pong") && ping.body.contains("ActionID: m"));
    // ... while AMI clients, silent or speaking first, get AMI.
    let mut silent = AmiClient::connect_raw(proxy.addr).await;
    assert!(silent.read_banner().await.starts_with("Asterisk Call Manager/"));
    let mut eager = TcpStream::connect(proxy.addr).await.unwrap();
    eager.write_all(b"Action: Login\r\nUsername: alice\r\nSecret: alicepw\r\nActionID: e\r\n\r\n").await.unwrap();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("Authentication accepted") {
        let n = tokio::time::timeout(WAIT, eager.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0);
        seen.extend_from_slice(&chunk[..n]);
    }
    assert!(String::from_utf8_lossy(&seen).starts_with("Asterisk Call Manager/"));
}

#[tokio::test]
async fn actions_the_proxy_answers_never_reach_asterisk_over_http() {
    // ListSessions and ListServers are for admins.
    let (sim, proxy, addr) = http_proxy(|cfg| cfg.admin_users = vec!["alice".into(), "bob".into()]).await;
    let logins = sim.login_count();
    let basic = "Authorization: Basic YWxpY2U6YWxpY2Vwdw==\r\n"; // alice:alicepw
    let ask = |path: String| {
        let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\n{basic}Connection: close\r\n\r\n");
        async move { exchange(addr, &request).await }
    };
    // A Login with Basic runs on a session of the proxy: it never logs the proxy's own Asterisk
    // connection in as somebody else (which would end that connection).
    let login = ask("/?Action=Login&Username=mallory&Secret=x&ActionID=l".to_string()).await;
    assert!(login.body.contains("Authentication failed"), "{}", login.body);
    // ProxyActions and the Beacon actions are answered at once, in the chosen format.
    let sessions = ask("/json?ProxyAction=ListSessions&ActionID=s".to_string()).await;
    let json: serde_json::Value = serde_json::from_str(&sessions.body).unwrap();
    assert_eq!(json[0]["ProxyResponse"], "Success", "{}", sessions.body);
    assert_eq!(json[0]["ActionID"], "s");
    let beacon = ask("/?Action=BeaconShowServer&ActionID=b".to_string()).await;
    assert!(beacon.body.contains("Event: BeaconShowServerComplete"), "{}", beacon.body);
    let cookie = get(addr, "/rawman?action=login&username=bob&secret=bobpw", None).await.cookie();
    let servers = get(addr, "/rawman?ProxyAction=ListServers&ActionID=v", Some(&cookie)).await;
    assert!(
        servers.body.contains("ProxyResponse: Success") && servers.body.contains("ActionID: v"),
        "{}",
        servers.body
    );
    // The proxy's Asterisk session is untouched and still serves.
    assert!(!sim.received().iter().any(|m| m.get("Username") == Some("mallory")));
    assert_eq!(sim.login_count(), logins, "the proxy logged in to Asterisk again");
    let mut client = AmiClient::login(proxy.addr, "carol", "carolpw").await;
    assert_eq!(client.action("Ping", "after", &[]).await.get("Ping"), Some("Pong"));
}

#[tokio::test]
async fn a_hostile_event_never_joins_or_ends_an_answer() {
    let (sim, _proxy, addr) = http_proxy(|cfg| cfg.action_timeout = Duration::from_secs(2)).await;
    let cookie = get(addr, "/rawman?action=login&username=alice&secret=alicepw", None).await.cookie();
    // CoreStatus stays pending while an event from elsewhere (another AMI user of the same
    // Asterisk: a UserEvent carries the sender's ActionID) names the request by its tag.
    sim.set_hold(Some("corestatus"));
    let held = {
        let cookie = cookie.clone();
        tokio::spawn(async move { get(addr, "/rawman?action=CoreStatus&ActionID=c", Some(&cookie)).await })
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while !sim.received().iter().any(|m| m.action().is_some_and(|a| a.eq_ignore_ascii_case("corestatus"))) {
        assert!(tokio::time::Instant::now() < deadline, "CoreStatus never reached Asterisk");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for tag in ["ajam1", "ajam2", "ajam2-c", "ajam3", "ajam3-c"] {
        sim.emit(
            Message::new()
                .with("Event", "UserEvent")
                .with("Privilege", "user,all")
                .with("UserEvent", "forged")
                .with("ActionID", tag)
                .with("EventList", "Complete")
                .with("Response", "Success"),
        );
    }
    // The events are events: WaitEvent gets all of them, their ActionIDs untouched.
    let mut forged = Vec::new();
    while forged.len() < 5 {
        let wait = get(addr, "/rawman?action=WaitEvent&Timeout=3", Some(&cookie)).await;
        let events = wait.messages();
        if events.len() == 2 {
            break;
        }
        forged.extend(events.into_iter().filter(|m| m.get("UserEvent") == Some("forged")));
    }
    let ids: Vec<_> = forged.iter().map(|m| m.action_id().unwrap_or_default().to_string()).collect();
    assert_eq!(ids, ["ajam1", "ajam2", "ajam2-c", "ajam3", "ajam3-c"]);
    // The held request never got them: it times out.
    let answer = held.await.unwrap();
    assert!(!answer.body.contains("forged"), "an event made the answer: {}", answer.body);
    assert!(!answer.body.contains("Event:"), "{}", answer.body);
}

#[tokio::test]
async fn a_request_whose_client_went_away_leaves_no_session() {
    let (sim, proxy, addr) = http_proxy(|cfg| {
        cfg.http.session_timeout = Duration::from_secs(600);
        cfg.admin_users = vec!["bob".into()]; // to watch the sessions with ListSessions
    })
    .await;
    sim.set_hold(Some("corestatus"));
    // Basic without a cookie: a session for this one request; the client hangs up before the
    // answer.
    let basic = "Authorization: Basic Y2Fyb2w6Y2Fyb2xwdw==\r\n"; // carol:carolpw
    let mut held = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET /rawman?action=CoreStatus HTTP/1.1\r\nHost: t\r\n{basic}\r\n");
    held.write_all(request.as_bytes()).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !sim.received().iter().any(|m| m.action().is_some_and(|a| a.eq_ignore_ascii_case("corestatus"))) {
        assert!(tokio::time::Instant::now() < deadline, "CoreStatus never reached Asterisk");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(held);
    let mut tcp = AmiClient::login(proxy.addr, "bob", "bobpw").await;
    loop {
        tcp.send(&Message::new().with("ProxyAction", "ListSessions").with("ActionID", "ls")).await;
        let list = tcp.recv_until(|m| m.action_id() == Some("ls")).await;
        if !list.get_all("ProxyClientUser").any(|u| u == "carol") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the session outlived its request: {list:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_http_client_that_stops_reading_does_not_keep_its_place() {
    use tokio::io::AsyncWriteExt;
    // One place on the AMI port: while a stuck connection holds it, nobody else gets in.
    let (_sim, proxy, _http) = http_proxy(|cfg| {
        cfg.max_clients = 1;
        cfg.client_write_timeout = Duration::from_secs(1);
    })
    .await;
    // The stuck client takes the place (once the readiness check's client has let it go).
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut stuck = loop {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut s = socket.connect(proxy.addr).await.unwrap();
        s.write_all(b"GET /nothing HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
        let mut head = [0u8; 12];
        if s.read_exact(&mut head).await.is_ok() && head.starts_with(b"HTTP/1.1 404") {
            break s;
        }
        assert!(tokio::time::Instant::now() < deadline, "never got the place");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Pipelined requests whose answers (more than the socket buffers hold) are never read: the
    // proxy's writes stall for good.
    let requests = b"GET /nothing HTTP/1.1\r\nHost: t\r\n\r\n".repeat(60_000);
    let flood = tokio::spawn(async move {
        let _ = stuck.write_all(&requests).await;
        std::future::pending::<()>().await;
    });
    // Once clientwritetimeout cuts the stuck client off, another one is served.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        // Refused while the place is taken: the proxy answers a client over maxclients in AMI.
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        let request = "GET /rawman?action=ping HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
        let _ = s.write_all(request.as_bytes()).await;
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut raw)).await;
        let text = String::from_utf8_lossy(&raw);
        if text.starts_with("HTTP/1.1 200") {
            assert!(text.contains("Permission denied"), "{text}");
            break;
        }
        assert!(text.contains("maxclients"), "{text}");
        assert!(tokio::time::Instant::now() < deadline, "the stuck client kept its place");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    flood.abort();
}
