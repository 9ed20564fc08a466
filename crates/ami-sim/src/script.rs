//! Replies recorded from a real Asterisk 22.10.1. The `tests/fixtures/*.cap` transcripts are
//! embedded at compile time, parsed with [`Capture`] on first use, and replayed with the asker's
//! ActionID substituted wherever the recording had one (responses, list items, Complete events,
//! `OriginateResponse`).
//!
//! Lookups of recorded messages panic when a fixture lacks them: the fixtures are fixed, and the
//! simulator's tests go through every lookup.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use astmanproxy_handlers::capture::{Capture, Direction};
use astmanproxy_handlers::{AmiDecoder, Kind, Message};
use bytes::BytesMut;

/// How long a synchronous `Originate` takes to answer (the call must be up first; 17b).
pub const SYNC_ORIGINATE_DELAY: Duration = Duration::from_millis(100);

macro_rules! fixture {
    ($name:literal) => {
        ($name, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/", $name, ".cap")))
    };
}

/// The transcripts the simulator answers from.
const FIXTURES: &[(&str, &[u8])] = &[
    fixture!("01-banner-login-success"),
    fixture!("02-login-failure"),
    fixture!("03-challenge-md5-login"),
    fixture!("04-ping"),
    fixture!("05-coresettings"),
    fixture!("06-corestatus"),
    fixture!("07-command-core-show-version"),
    fixture!("07b-command-multiline"),
    fixture!("08-command-module-show"),
    fixture!("09-command-core-show-calls"),
    fixture!("10-command-core-show-uptime"),
    fixture!("11-modulecheck"),
    fixture!("13-eventlist-coreshowchannels"),
    fixture!("14-eventlist-status"),
    fixture!("15-eventlist-queuestatus"),
    fixture!("16-eventlist-queuesummary"),
    fixture!("17-originate-async-events"),
    fixture!("17b-originate-failures-and-sync"),
    fixture!("18-events-off-on"),
    fixture!("19-invalid-action"),
    fixture!("20-missing-header"),
    fixture!("21-logoff"),
    fixture!("23-action-before-login"),
];

/// One recorded AMI connection, decoded.
struct Conn {
    file: &'static str,
    conn: u32,
    /// What the client sent, in order.
    actions: Vec<Message>,
    /// What Asterisk sent after the banner, in order.
    replies: Vec<Message>,
}

fn conns() -> &'static [Conn] {
    static CONNS: OnceLock<Vec<Conn>> = OnceLock::new();
    CONNS.get_or_init(|| {
        let mut out = Vec::new();
        for (file, bytes) in FIXTURES {
            let cap = Capture::parse(bytes).unwrap_or_else(|e| panic!("fixture {file}: {e}"));
            for conn in cap.ami_conns() {
                out.push(Conn {
                    file,
                    conn,
                    actions: decode(&cap.stream(conn, Direction::ClientToServer), false),
                    replies: decode(&cap.stream(conn, Direction::ServerToClient), true),
                });
            }
        }
        out
    })
}

fn decode(bytes: &[u8], banner: bool) -> Vec<Message> {
    let mut decoder = AmiDecoder::default();
    let mut buf = BytesMut::from(bytes);
    if banner {
        decoder.decode_line(&mut buf).expect("banner line");
    }
    let mut out = Vec::new();
    while let Some(m) = decoder.decode(&mut buf).expect("recorded AMI decodes") {
        out.push(m);
    }
    out
}

fn recorded(file: &str, conn: u32) -> &'static Conn {
    conns().iter().find(|c| c.file == file && c.conn == conn).unwrap_or_else(|| panic!("no {file} conn {conn}"))
}

/// The recorded answer to the action `recorded_id` (its response and any list items, without the
/// broadcast `OriginateResponse`), with the ActionID changed to `id`.
pub fn answer(file: &str, conn: u32, recorded_id: &str, id: Option<&str>) -> Vec<Message> {
    let out: Vec<Message> = recorded(file, conn)
        .replies
        .iter()
        .filter(|m| m.action_id() == Some(recorded_id) && m.event() != Some("OriginateResponse"))
        .map(|m| with_id(m, id))
        .collect();
    assert!(!out.is_empty(), "no answer to {recorded_id} in {file}");
    out
}

/// The first message of the recorded answer to `recorded_id`.
fn reply(file: &str, conn: u32, recorded_id: &str, id: Option<&str>) -> Message {
    answer(file, conn, recorded_id, id).swap_remove(0)
}

/// The broadcast events recorded after the response to `recorded_id`, up to the next response;
/// the ActionID of an `OriginateResponse` among them becomes `id`.
fn events_after(file: &str, conn: u32, recorded_id: &str, id: Option<&str>) -> Vec<Message> {
    let replies = &recorded(file, conn).replies;
    let start = replies
        .iter()
        .position(|m| m.kind() == Kind::Response && m.action_id() == Some(recorded_id))
        .unwrap_or_else(|| panic!("no response to {recorded_id} in {file}"));
    replies[start + 1..]
        .iter()
        .take_while(|m| m.kind() == Kind::Event)
        .map(|m| if m.action_id() == Some(recorded_id) { with_id(m, id) } else { m.clone() })
        .collect()
}

/// The first recorded event called `name` in a connection.
fn event(file: &str, conn: u32, name: &str) -> Message {
    recorded(file, conn)
        .replies
        .iter()
        .find(|m| m.kind() == Kind::Event && m.event() == Some(name))
        .cloned()
        .unwrap_or_else(|| panic!("no {name} event in {file}"))
}

/// The ActionID of the first recorded `action` whose `key` header equals `value` (words
/// compared without regard to case or spacing), with the connection it was sent on.
fn recorded_request(action: &str, key: &str, value: &str) -> Option<(&'static Conn, &'static str)> {
    let same = |a: &str| {
        a.split_whitespace().map(str::to_ascii_lowercase).eq(value.split_whitespace().map(str::to_ascii_lowercase))
    };
    conns().iter().find_map(|c| {
        c.actions
            .iter()
            .find(|m| m.action().is_some_and(|a| a.eq_ignore_ascii_case(action)) && m.get(key).is_some_and(same))
            .and_then(Message::action_id)
            .map(|recorded_id| (c, recorded_id))
    })
}

/// A copy with `ActionID` set to `id` where the original had one (added second when it had
/// none), or removed when `id` is `None`: Asterisk leaves it out when the client sent none.
fn with_id(m: &Message, id: Option<&str>) -> Message {
    let mut m = m.clone();
    match id {
        Some(id) if m.contains("ActionID") => m.set("ActionID", id),
        Some(id) => m.insert(1, "ActionID", id),
        None => {
            m.remove_all("ActionID");
        }
    }
    m
}

/// A copy with every value passed through `f`.
fn map_values(m: &Message, f: impl Fn(&str, &str) -> String) -> Message {
    let mut out = Message::from_pairs(m.headers().map(|(k, v)| (k, f(k, v))));
    out.set_body(m.body().map(<[String]>::to_vec));
    out
}

/// Who a security event is about.
#[derive(Debug, Clone)]
pub struct Session {
    /// The user name (`AccountID`).
    pub account: String,
    /// A number unique to the connection (`SessionID`).
    pub id: u64,
    /// The simulator's end (`LocalAddress`).
    pub local: SocketAddr,
    /// The client's end (`RemoteAddress`).
    pub remote: SocketAddr,
    /// When the connection was accepted (`SessionTV`).
    pub since: SystemTime,
}

impl Session {
    fn security_event(&self, template: Message) -> Message {
        let now = event_tv(SystemTime::now());
        let since = event_tv(self.since);
        map_values(&template, |key, value| match key {
            "EventTV" => now.clone(),
            "SessionTV" => since.clone(),
            "AccountID" => self.account.clone(),
            "SessionID" => format!("0x7feb{:08x}", self.id.wrapping_mul(0x1480)),
            "LocalAddress" => ast_address(self.local),
            "RemoteAddress" => ast_address(self.remote),
            _ => value.to_string(),
        })
    }
}

/// `IPV4/TCP/127.0.0.1/5038`, as in security events.
fn ast_address(addr: SocketAddr) -> String {
    let family = if addr.is_ipv4() { "IPV4" } else { "IPV6" };
    format!("{family}/TCP/{}/{}", addr.ip(), addr.port())
}

/// `2026-11-22T10:39:32.081+0000`, the `EventTV` layout.
pub fn event_tv(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}+0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// `Response: Success` / `Message: Authentication accepted` (01).
pub fn login_accepted(id: Option<&str>) -> Message {
    reply("01-banner-login-success", 1, "login-1", id)
}

/// The `FullyBooted` event a session gets right after its login when its events are on (01).
pub fn fully_booted() -> Message {
    event("01-banner-login-success", 1, "FullyBooted")
}

/// The `SuccessfulAuth` security event of a login (01), about `session`.
pub fn successful_auth(session: &Session) -> Message {
    session.security_event(event("01-banner-login-success", 1, "SuccessfulAuth"))
}

/// The `RequestBadFormat` security event (19) for `request_type` (`Action: FooBarBaz`, or
/// `Action: NONE` for a message without Action).
pub fn request_bad_format(session: &Session, request_type: &str) -> Message {
    let mut m = session.security_event(event("19-invalid-action", 1, "RequestBadFormat"));
    m.set("RequestType", request_type);
    m
}

/// `Response: Error` / `Message: Authentication failed` (02).
pub fn auth_failed(id: Option<&str>) -> Message {
    reply("02-login-failure", 1, "badlogin-1", id)
}

/// The answer to `Action: Challenge` carrying `nonce` (03).
pub fn challenge(id: Option<&str>, nonce: &str) -> Message {
    let mut m = reply("03-challenge-md5-login", 1, "chal-1", id);
    m.set("Challenge", nonce);
    m
}

/// `Response: Error` / `Message: Permission denied`, for actions before login (23).
pub fn permission_denied(id: Option<&str>) -> Message {
    reply("23-action-before-login", 1, "pre-ping", id)
}

/// An error in the recorded layout with another text (for errors the captures do not show).
pub fn error(id: Option<&str>, text: &str) -> Message {
    let mut m = permission_denied(id);
    m.set("Message", text);
    m
}

/// `Response: Goodbye` / `Message: Thanks for all the fish.` (21).
pub fn goodbye(id: Option<&str>) -> Message {
    reply("21-logoff", 1, "bye-1", id)
}

/// The answer to `Action: Events`: `Events: On` or `Events: Off` (18).
pub fn events_set(id: Option<&str>, on: bool) -> Message {
    reply("18-events-off-on", 1, if on { "ev-on" } else { "ev-off" }, id)
}

/// `Invalid/unknown command: <name>. Use Action: ListCommands ...` (19).
pub fn unknown_action(name: &str, id: Option<&str>) -> Message {
    let m = reply("19-invalid-action", 1, "inv-1", id);
    map_values(&m, |key, value| if key == "Message" { value.replace("FooBarBaz", name) } else { value.to_string() })
}

/// `Missing action in request` (20), for a message without an `Action:` header.
pub fn missing_action(id: Option<&str>) -> Message {
    reply("20-missing-header", 1, "noaction-1", id)
}

/// Rewrites an `Output:`-style Command answer in the Asterisk 11-13 framing: `Response:
/// Follows`, `Privilege: Command`, the ActionID, the raw CLI lines, `--END COMMAND--`.
pub fn legacy_command(answer: &Message) -> Message {
    let mut m = Message::new().with("Response", "Follows").with("Privilege", "Command");
    if let Some(id) = answer.action_id() {
        m.push("ActionID", id);
    }
    m.set_body(Some(answer.get_all("Output").map(str::to_string).collect()));
    m
}

/// What to do for one action.
#[derive(Debug)]
pub struct Answer {
    /// Wait this long before answering (a synchronous Originate).
    pub delay: Duration,
    /// The response and list items, written to the asker in order.
    pub reply: Vec<Message>,
    /// Broadcast events that follow (the call of an Originate), sent shortly after.
    pub events: Vec<Message>,
}

impl From<Vec<Message>> for Answer {
    fn from(reply: Vec<Message>) -> Self {
        Answer { delay: Duration::ZERO, reply, events: Vec::new() }
    }
}

/// The recorded answer to `action` (called `name`, with ActionID `id`), or `None` when the
/// simulator does not know the action (answered with [`unknown_action`]).
pub fn answer_to(action: &Message, name: &str, id: Option<&str>) -> Option<Answer> {
    let header = |key: &str| action.get(key).map(str::trim).filter(|v| !v.is_empty());
    let answer = match name.to_ascii_lowercase().as_str() {
        "ping" => {
            let mut pong = reply("04-ping", 1, "ping-1", id);
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            pong.set("Timestamp", format!("{}.{:06}", now.as_secs(), now.subsec_micros()));
            vec![pong].into()
        }
        "coresettings" => answer("05-coresettings", 1, "cs-1", id).into(),
        "corestatus" => answer("06-corestatus", 1, "cst-1", id).into(),
        "command" => command(header("Command"), id).into(),
        "modulecheck" => match header("Module") {
            None => answer("20-missing-header", 1, "miss-mod", id),
            // `app_queue` and `app_queue.so` name the same module (11).
            Some(module) => {
                match recorded_request("ModuleCheck", "Module", module.trim_end_matches(".so")).or_else(|| {
                    recorded_request("ModuleCheck", "Module", &format!("{}.so", module.trim_end_matches(".so")))
                }) {
                    Some((c, recorded_id)) => answer(c.file, c.conn, recorded_id, id),
                    None => answer("11-modulecheck", 1, "mc-3", id),
                }
            }
        }
        .into(),
        "coreshowchannels" => answer("13-eventlist-coreshowchannels", 2, "csc-1", id).into(),
        "status" => {
            let all = answer("14-eventlist-status", 2, "st-1", id);
            match header("Channel") {
                None => all.into(),
                Some(channel) => match filter_list(all, "Channel", channel) {
                    Some(list) => list.into(),
                    None => answer("14-eventlist-status", 2, "st-2", id).into(),
                },
            }
        }
        "queuestatus" => queue_list(answer("15-eventlist-queuestatus", 2, "qs-1", id), header("Queue")).into(),
        "queuesummary" => queue_list(answer("16-eventlist-queuesummary", 2, "qsum-1", id), header("Queue")).into(),
        "originate" => originate(action, header("Channel"), id),
        _ => return None,
    };
    Some(answer)
}

/// `Command`: the recorded output of that CLI command, or the recorded `No such command` error
/// naming the asked command.
fn command(command: Option<&str>, id: Option<&str>) -> Vec<Message> {
    let Some(command) = command else {
        return vec![error(id, "No command provided")];
    };
    if let Some((c, recorded_id)) = recorded_request("Command", "Command", command) {
        return answer(c.file, c.conn, recorded_id, id);
    }
    answer("10-command-core-show-uptime", 1, "cmd-bad", id)
        .iter()
        .map(|m| map_values(m, |_, v| v.replace("core show nonsense", command)))
        .collect()
}

/// The list items (between the start response and the Complete event) whose `key` is `value`,
/// with `ListItems` recounted; `None` when no item matches.
fn filter_list(mut list: Vec<Message>, key: &str, value: &str) -> Option<Vec<Message>> {
    let mut complete = list.pop()?;
    let start = list.remove(0);
    let items: Vec<Message> =
        list.into_iter().filter(|m| m.get(key).is_some_and(|v| v.eq_ignore_ascii_case(value))).collect();
    if items.is_empty() {
        return None;
    }
    complete.set("ListItems", items.len().to_string());
    Some(std::iter::once(start).chain(items).chain(std::iter::once(complete)).collect())
}

/// A queue list, narrowed to one queue when asked; an unknown queue gives an empty list.
fn queue_list(list: Vec<Message>, queue: Option<&str>) -> Vec<Message> {
    let Some(queue) = queue else { return list };
    let start = list[0].clone();
    let mut complete = list[list.len() - 1].clone();
    filter_list(list, "Queue", queue).unwrap_or_else(|| {
        complete.set("ListItems", "0");
        vec![start, complete]
    })
}

/// `Originate`: without Channel the recorded error (20); `Async: true` answers at once and the
/// call's events follow, `OriginateResponse` among them (17; a `Local/999@` channel fails as in
/// 17b); otherwise the answer comes once the call is up (17b), followed by the call's events.
fn originate(action: &Message, channel: Option<&str>, id: Option<&str>) -> Answer {
    const B: &str = "17b-originate-failures-and-sync";
    let Some(channel) = channel else {
        return answer("20-missing-header", 1, "miss-chan", id).into();
    };
    let asynchronous = action
        .get("Async")
        .is_some_and(|a| matches!(a.trim().to_ascii_lowercase().as_str(), "true" | "yes" | "1" | "on" | "y" | "t"));
    let (file, recorded_id, delay) = match (asynchronous, channel.contains("/999@")) {
        (true, true) => (B, "orig-fail", Duration::ZERO),
        (true, false) => ("17-originate-async-events", "orig-1", Duration::ZERO),
        (false, true) => {
            // Asterisk's synchronous failure (manager.c: astman_send_error "Originate failed"),
            // after the failed call's events, which carry no OriginateResponse.
            let events = events_after(B, 1, "orig-fail", id);
            let events = events.into_iter().filter(|e| e.event() != Some("OriginateResponse")).collect();
            return Answer { delay: Duration::ZERO, reply: vec![error(id, "Originate failed")], events };
        }
        (false, false) => (B, "orig-sync", SYNC_ORIGINATE_DELAY),
    };
    Answer { delay, reply: answer(file, 1, recorded_id, id), events: events_after(file, 1, recorded_id, id) }
}
