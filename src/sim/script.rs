//! Replies recorded from a real Asterisk 22.10.1 (`tests/fixtures/raw/*.s2c.bin`), replayed with
//! the asker's ActionID substituted.

use std::sync::OnceLock;

use astmanproxy_handlers::{AmiDecoder, Message};
use bytes::BytesMut;

macro_rules! raw {
    ($name:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/raw/", $name, ".s2c.bin"))
    };
}

/// One recorded server-to-client stream, decoded.
struct Stream {
    messages: Vec<Message>,
}

fn decode(bytes: &[u8]) -> Stream {
    let mut decoder = AmiDecoder::default();
    let mut buf = BytesMut::from(bytes);
    // Skip the banner line.
    let _ = decoder.decode_line(&mut buf);
    let mut messages = Vec::new();
    while let Ok(Some(m)) = decoder.decode(&mut buf) {
        messages.push(m);
    }
    Stream { messages }
}

/// What the simulator knows how to answer.
#[derive(Clone, Copy)]
struct Entry {
    action: &'static str,
    command: Option<&'static str>,
    stream: fn() -> &'static Stream,
    id: &'static str,
}

macro_rules! stream_fn {
    ($fn:ident, $file:literal) => {
        fn $fn() -> &'static Stream {
            static S: OnceLock<Stream> = OnceLock::new();
            S.get_or_init(|| decode(raw!($file)))
        }
    };
}

stream_fn!(ping, "04-ping.conn1");
stream_fn!(coresettings, "05-coresettings.conn1");
stream_fn!(corestatus, "06-corestatus.conn1");
stream_fn!(version, "07-command-core-show-version.conn1");
stream_fn!(modules, "08-command-module-show.conn1");
stream_fn!(calls, "09-command-core-show-calls.conn1");
stream_fn!(uptime, "10-command-core-show-uptime.conn1");
stream_fn!(channels, "13-eventlist-coreshowchannels.conn2");
stream_fn!(status, "14-eventlist-status.conn2");
stream_fn!(queuestatus, "15-eventlist-queuestatus.conn2");
stream_fn!(queuesummary, "16-eventlist-queuesummary.conn2");
stream_fn!(originate, "17-originate-async-events.conn1");
stream_fn!(missing, "20-missing-header.conn1");

const ENTRIES: &[Entry] = &[
    Entry { action: "Ping", command: None, stream: ping, id: "ping-1" },
    Entry { action: "CoreSettings", command: None, stream: coresettings, id: "cs-1" },
    Entry { action: "CoreStatus", command: None, stream: corestatus, id: "cst-1" },
    Entry { action: "Command", command: Some("core show version"), stream: version, id: "cmd-1" },
    Entry { action: "Command", command: Some("module show"), stream: modules, id: "cmd-modshow" },
    Entry { action: "Command", command: Some("core show calls"), stream: calls, id: "cmd-calls-idle" },
    Entry { action: "Command", command: Some("core show uptime"), stream: uptime, id: "cmd-up" },
    Entry { action: "Command", command: None, stream: uptime, id: "cmd-bad" },
    Entry { action: "CoreShowChannels", command: None, stream: channels, id: "csc-1" },
    Entry { action: "Status", command: None, stream: status, id: "st-1" },
    Entry { action: "QueueStatus", command: None, stream: queuestatus, id: "qs-1" },
    Entry { action: "QueueSummary", command: None, stream: queuesummary, id: "qsum-1" },
    Entry { action: "Originate", command: None, stream: originate, id: "orig-1" },
];

/// The recorded answer to `action` (response and list items, in order), with the ActionID set to
/// `action_id` (removed when `None`). `None` when the simulator does not know the action.
pub fn answer(action: &Message, action_id: Option<&str>) -> Option<Vec<Message>> {
    let name = action.action()?;
    let command = action.get("Command").map(str::trim);
    let entry = ENTRIES.iter().find(|e| {
        e.action.eq_ignore_ascii_case(name)
            && match (e.command, command) {
                (None, _) => true,
                (Some(c), Some(asked)) => c.eq_ignore_ascii_case(asked),
                (Some(_), None) => false,
            }
    })?;
    let mut out: Vec<Message> = (entry.stream)()
        .messages
        .iter()
        .filter(|m| m.action_id() == Some(entry.id) && m.event() != Some("OriginateResponse"))
        .cloned()
        .collect();
    if entry.id == "cmd-bad" {
        if let (Some(first), Some(asked)) = (out.first_mut(), command) {
            first.set(
                "Output",
                format!("No such command '{asked}' (type 'core show help {asked}' for other possible commands)"),
            );
        }
    }
    for m in &mut out {
        set_id(m, action_id);
    }
    Some(out)
}

/// The `OriginateResponse` event and the call's broadcast events recorded after an async
/// Originate.
pub fn originate_events(action_id: Option<&str>) -> (Message, Vec<Message>) {
    let stream = originate();
    let mut response = stream
        .messages
        .iter()
        .find(|m| m.event() == Some("OriginateResponse"))
        .cloned()
        .unwrap_or_else(|| Message::new().with("Event", "OriginateResponse").with("Response", "Success"));
    set_id(&mut response, action_id);
    let events =
        stream.messages.iter().filter(|m| m.event().is_some() && m.action_id().is_none()).take(40).cloned().collect();
    (response, events)
}

/// Capture 20's answer to a message without `Action:`.
pub fn missing_action(action_id: Option<&str>) -> Message {
    let mut m = missing()
        .messages
        .iter()
        .find(|m| m.action_id() == Some("noaction-1"))
        .cloned()
        .unwrap_or_else(|| Message::response_with("Error", None, Some("Missing action in request")));
    set_id(&mut m, action_id);
    m
}

/// Capture 19's answer to an unknown action.
pub fn unknown_action(name: &str, action_id: Option<&str>) -> Message {
    Message::response_with(
        "Error",
        action_id,
        Some(&format!("Invalid/unknown command: {name}. Use Action: ListCommands to show available commands.")),
    )
}

fn set_id(m: &mut Message, action_id: Option<&str>) {
    match action_id {
        Some(id) => {
            if m.contains("ActionID") {
                m.set("ActionID", id);
            } else {
                m.insert(1, "ActionID", id);
            }
        }
        None => {
            m.remove("ActionID");
        }
    }
}

/// Turns an `Output:`-style Command answer into the Asterisk 11-13 `Response: Follows` framing.
pub fn legacy_command(answer: &Message) -> Message {
    let mut m = Message::new().with("Response", "Follows").with("Privilege", "Command");
    if let Some(id) = answer.action_id() {
        m.push("ActionID", id);
    }
    m.set_body(Some(answer.get_all("Output").map(str::to_string).collect()));
    m
}
