//! Golden tests of the AMI codec against every real Asterisk 22 transcript in
//! `tests/fixtures/*.cap` (see `tests/fixtures/CAPTURES.md`).
//!
//! For each AMI connection (HTTP ones are skipped) and each direction:
//! - the server stream starts with the banner line, then every recorded chunk is exactly one
//!   message: decoding the whole stream gives one message per chunk, each equal to decoding that
//!   chunk alone, with `Response`/`Event` first and the headers exactly as written, in order;
//! - the same holds when the stream is fed one byte at a time, and (for small streams) when it is
//!   split in two at every position;
//! - re-encoding a message with `standard::encode` gives back Asterisk's exact bytes;
//! - the client stream decodes into actions (one or more per chunk: capture 24 pipelines three).

use std::path::PathBuf;

use astmanproxy_handlers::capture::{Capture, Direction};
use astmanproxy_handlers::standard::{encode_to_bytes, AmiDecoder};
use astmanproxy_handlers::{Kind, Message};
use bytes::BytesMut;

const BANNER: &str = "Asterisk Call Manager/11.0.0";

fn captures() -> Vec<(String, Capture)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cap"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let cap = Capture::parse(&std::fs::read(&p).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, cap)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(out.len(), 30, "expected the 30 recorded scenarios");
    out
}

fn capture(file: &str) -> Capture {
    captures().into_iter().find(|(n, _)| n == file).unwrap_or_else(|| panic!("no {file}")).1
}

/// Feeds `pieces` in order to a fresh decoder; a server stream starts with the banner line.
fn decode_pieces<'a>(pieces: impl IntoIterator<Item = &'a [u8]>, banner: bool) -> (Option<String>, Vec<Message>) {
    let mut dec = AmiDecoder::default();
    let mut buf = BytesMut::new();
    let mut first = None;
    let mut out = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        if banner && first.is_none() {
            match dec.decode_line(&mut buf).unwrap() {
                Some(line) => first = Some(line),
                None => continue,
            }
        }
        while let Some(m) = dec.decode(&mut buf).unwrap() {
            out.push(m);
        }
    }
    assert!(buf.is_empty(), "bytes left over: {:?}", String::from_utf8_lossy(&buf));
    assert!(dec.is_idle(), "a message was left unfinished");
    (first, out)
}

fn decode_whole(bytes: &[u8], banner: bool) -> (Option<String>, Vec<Message>) {
    decode_pieces([bytes], banner)
}

/// The headers of one recorded message, read independently of the decoder: CRLF lines up to the
/// closing empty line, each split at its first colon with exactly one following space dropped.
fn naive_headers(chunk: &[u8]) -> Vec<(String, String)> {
    let text = std::str::from_utf8(chunk).expect("recorded AMI text is UTF-8");
    let text = text.strip_suffix("\r\n\r\n").expect("a chunk ends with its empty line");
    text.split("\r\n")
        .map(|line| {
            let (k, v) = line.split_once(':').unwrap_or_else(|| panic!("not a header: {line:?}"));
            (k.to_string(), v.strip_prefix(' ').unwrap_or(v).to_string())
        })
        .collect()
}

fn owned_headers(m: &Message) -> Vec<(String, String)> {
    m.headers().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn every_server_stream_is_the_banner_then_one_message_per_chunk() {
    let mut checked = 0;
    for (name, cap) in captures() {
        for conn in cap.ami_conns() {
            let chunks: Vec<&[u8]> = cap.chunks(conn, Direction::ServerToClient).map(|c| c.data.as_slice()).collect();
            let ctx = format!("{name} conn {conn}");
            assert_eq!(chunks[0], format!("{BANNER}\r\n").as_bytes(), "{ctx}: banner chunk");
            let stream = cap.stream(conn, Direction::ServerToClient);
            let (banner, whole) = decode_whole(&stream, true);
            assert_eq!(banner.as_deref(), Some(BANNER), "{ctx}");
            assert_eq!(whole.len(), chunks.len() - 1, "{ctx}: one message per chunk");
            let (_, bytewise) = decode_pieces(stream.chunks(1), true);
            assert_eq!(bytewise, whole, "{ctx}: byte at a time differs");
            for (chunk, message) in chunks[1..].iter().zip(&whole) {
                let (_, alone) = decode_whole(chunk, false);
                assert_eq!(alone.as_slice(), std::slice::from_ref(message), "{ctx}: chunk alone differs");
                assert_eq!(owned_headers(message), naive_headers(chunk), "{ctx}: headers or their order");
                let first = message.first().unwrap().0;
                match message.kind() {
                    Kind::Response => assert_eq!(first, "Response", "{ctx}"),
                    Kind::Event => assert_eq!(first, "Event", "{ctx}"),
                    other => panic!("{ctx}: {other:?} {message:?}"),
                }
                // Asterisk writes `Key: Value\r\n` lines and an empty line, as `encode` does, so
                // the bytes come back identical (empty values included: `Key: `).
                let again = encode_to_bytes(message);
                assert!(
                    again[..] == **chunk,
                    "{ctx}: re-encoding differs:\n{}\n---\n{}",
                    String::from_utf8_lossy(&again),
                    String::from_utf8_lossy(chunk)
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 561, "server messages checked");
}

#[test]
fn every_client_stream_decodes_into_actions() {
    for (name, cap) in captures() {
        for conn in cap.ami_conns() {
            let ctx = format!("{name} conn {conn}");
            let chunks: Vec<&[u8]> = cap.chunks(conn, Direction::ClientToServer).map(|c| c.data.as_slice()).collect();
            let stream = cap.stream(conn, Direction::ClientToServer);
            let (_, whole) = decode_whole(&stream, false);
            let (_, bytewise) = decode_pieces(stream.chunks(1), false);
            assert_eq!(bytewise, whole, "{ctx}: byte at a time differs");
            // A client chunk is one write: one action, or several pipelined ones (24).
            let per_chunk: Vec<Message> = chunks.iter().flat_map(|c| decode_whole(c, false).1).collect();
            assert_eq!(per_chunk, whole, "{ctx}: chunk by chunk differs");
            let closing_lines = stream.windows(4).filter(|w| w == b"\r\n\r\n").count();
            assert_eq!(whole.len(), closing_lines, "{ctx}");
            for m in &whole {
                // 20 sends one block without `Action:` on purpose.
                let no_action = name.starts_with("20-") && m.action_id() == Some("noaction-1");
                assert!(m.kind() == Kind::Action || no_action, "{ctx}: {m:?}");
            }
            // The Python client also wrote `Key: Value\r\n` lines.
            let again: Vec<u8> = whole.iter().flat_map(|m| encode_to_bytes(m).to_vec()).collect();
            assert_eq!(again, stream, "{ctx}: re-encoding the actions differs");
        }
    }
}

#[test]
fn small_streams_split_in_two_at_every_position() {
    for (file, conn) in [("04-ping.cap", 1), ("21-logoff.cap", 2), ("24-pipelined-actions.cap", 1)] {
        let cap = capture(file);
        for direction in [Direction::ServerToClient, Direction::ClientToServer] {
            let server = direction == Direction::ServerToClient;
            let stream = cap.stream(conn, direction);
            let expected = decode_whole(&stream, server);
            assert!(!expected.1.is_empty());
            for at in 0..=stream.len() {
                let (a, b) = stream.split_at(at);
                assert_eq!(decode_pieces([a, b], server), expected, "{file} {direction:?} split at {at}");
            }
        }
    }
}

fn server_messages(file: &str, conn: u32) -> Vec<Message> {
    decode_whole(&capture(file).stream(conn, Direction::ServerToClient), true).1
}

#[test]
fn module_show_is_one_response_with_every_output_line_in_order() {
    let msgs = server_messages("08-command-module-show.cap", 1);
    let answer = msgs.iter().find(|m| m.action_id() == Some("cmd-modshow")).unwrap();
    assert_eq!(answer.header(0), Some(("Response", "Success")));
    assert_eq!(answer.header(2), Some(("Message", "Command output follows")));
    let lines: Vec<&str> = answer.get_all("Output").collect();
    assert_eq!(lines.len(), 260);
    assert!(lines[0].starts_with("Module"), "{}", lines[0]);
    assert!(lines.last().unwrap().contains("modules loaded"));
    // Every header after the first three is an Output line.
    assert_eq!(answer.len(), 3 + lines.len());
}

#[test]
fn eventlist_items_carry_the_action_id_and_complete_counts_them() {
    let msgs = server_messages("13-eventlist-coreshowchannels.cap", 2);
    let list: Vec<&Message> = msgs.iter().filter(|m| m.action_id() == Some("csc-1")).collect();
    assert_eq!(list.len(), 4);
    assert_eq!(list[0].get("EventList"), Some("start"));
    for item in &list[1..3] {
        assert_eq!(item.event(), Some("CoreShowChannel"));
        assert_eq!(item.header(1), Some(("ActionID", "csc-1")));
        assert!(!item.contains("Privilege"), "list items carry no Privilege");
    }
    let complete = list[3];
    assert_eq!(complete.event(), Some("CoreShowChannelsComplete"));
    assert_eq!(complete.get("EventList"), Some("Complete"));
    assert_eq!(complete.get("ListItems"), Some("2"));
    // The empty list still has its start and Complete.
    let empty: Vec<&Message> = msgs.iter().filter(|m| m.action_id() == Some("csc-2")).collect();
    assert_eq!(empty.len(), 2);
    assert_eq!(empty[1].get("ListItems"), Some("0"));
    // Status items carry the ActionID on their last line.
    let status = server_messages("14-eventlist-status.cap", 2);
    let item = status.iter().find(|m| m.event() == Some("Status") && m.action_id() == Some("st-1")).unwrap();
    assert_eq!(item.headers().last().unwrap().0, "ActionID");
}

#[test]
fn originate_response_is_an_event_with_its_own_response_header() {
    let msgs = server_messages("17-originate-async-events.cap", 1);
    let ev = msgs.iter().find(|m| m.event() == Some("OriginateResponse")).unwrap();
    assert_eq!(ev.kind(), Kind::Event);
    assert_eq!(ev.header(0), Some(("Event", "OriginateResponse")));
    assert_eq!(ev.header(1), Some(("Privilege", "call,all")));
    assert_eq!(ev.header(2), Some(("ActionID", "orig-1")));
    assert_eq!(ev.response(), Some("Success"));
    assert_eq!(ev.get("Reason"), Some("4"));
}

/// The captures (Asterisk 22) have no `Response: Follows` answer; this is the Asterisk 11 form.
const FOLLOWS: &[u8] = b"Response: Follows\r\nPrivilege: Command\r\nActionID: old-1\r\n\
Module                         Description                              Use Count  Status\n\
\n\
res_pjsip.so: something        PJSIP                                    0          Running\n\
Key: looks like a header\n\
2 modules loaded\n--END COMMAND--\r\n\r\nEvent: FullyBooted\r\nPrivilege: system,all\r\n\r\n";

fn decode_follows(pieces: &[&[u8]]) -> Vec<Message> {
    let mut dec = AmiDecoder::default();
    dec.expect_command_output();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        while let Some(m) = dec.decode(&mut buf).unwrap() {
            out.push(m);
        }
    }
    assert!(buf.is_empty());
    out
}

#[test]
fn asterisk_11_follows_framing_with_blank_lines_and_colons() {
    let out = decode_follows(&[FOLLOWS]);
    assert_eq!(out.len(), 2);
    assert_eq!(
        out[0].headers().collect::<Vec<_>>(),
        [("Response", "Follows"), ("Privilege", "Command"), ("ActionID", "old-1")]
    );
    let body = out[0].body().unwrap();
    assert_eq!(body.len(), 5);
    assert!(body[0].starts_with("Module "));
    assert_eq!(body[1], "");
    assert!(body[2].starts_with("res_pjsip.so: something"));
    assert_eq!(body[3], "Key: looks like a header");
    assert_eq!(body[4], "2 modules loaded");
    assert_eq!(out[1].event(), Some("FullyBooted"));
    // Encoding gives the same framing back.
    let booted: &[u8] = b"Event: FullyBooted\r\nPrivilege: system,all\r\n\r\n";
    assert_eq!(&encode_to_bytes(&out[0])[..], &FOLLOWS[..FOLLOWS.len() - booted.len()]);
    // Split anywhere, the result is the same.
    let bytes: Vec<&[u8]> = FOLLOWS.chunks(1).collect();
    assert_eq!(decode_follows(&bytes), out);
    for at in 0..=FOLLOWS.len() {
        let (a, b) = FOLLOWS.split_at(at);
        assert_eq!(decode_follows(&[a, b]), out, "split at {at}");
    }
}

#[test]
fn unannounced_follows_is_read_as_headers() {
    let (_, out) = decode_whole(b"Response: Follows\r\nPrivilege: Command\r\n\r\n", false);
    assert_eq!(out.len(), 1);
    assert!(out[0].body().is_none());
}

mod roundtrip {
    use astmanproxy_handlers::standard::{encode_to_bytes, AmiDecoder};
    use astmanproxy_handlers::Message;
    use bytes::BytesMut;
    use proptest::prelude::*;

    /// Printable keys: no colon, no CR/LF, not empty, and no surrounding whitespace (the decoder
    /// trims whitespace around keys, as Asterisk does).
    fn key() -> impl Strategy<Value = String> {
        "[^:\\s\\p{Cc}]([^:\r\n\\p{Cc}]{0,14}[^:\\s\\p{Cc}])?"
    }

    /// Values: no CR/LF and no leading whitespace (one space after the colon is syntax); may be
    /// empty, may contain colons and end in spaces.
    fn value() -> impl Strategy<Value = String> {
        "([^\\s\\p{Cc}][^\r\n\\p{Cc}]{0,40})?"
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn decode_encode_is_identity(headers in prop::collection::vec((key(), value()), 1..20)) {
            let m = Message::from_pairs(headers);
            let bytes = encode_to_bytes(&m);
            let mut dec = AmiDecoder::default();
            let mut buf = BytesMut::from(&bytes[..]);
            let back = dec.decode(&mut buf).unwrap().unwrap();
            prop_assert_eq!(back, m);
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn streams_of_messages_survive_any_split(
            messages in prop::collection::vec(prop::collection::vec((key(), value()), 1..6), 1..5),
            at in any::<prop::sample::Index>(),
        ) {
            let messages: Vec<Message> = messages.into_iter().map(Message::from_pairs).collect();
            let stream: Vec<u8> = messages.iter().flat_map(|m| encode_to_bytes(m).to_vec()).collect();
            let at = at.index(stream.len() + 1);
            let mut dec = AmiDecoder::default();
            let mut buf = BytesMut::new();
            let mut back = Vec::new();
            for piece in [&stream[..at], &stream[at..]] {
                buf.extend_from_slice(piece);
                while let Some(m) = dec.decode(&mut buf).unwrap() {
                    back.push(m);
                }
            }
            prop_assert_eq!(back, messages);
        }
    }
}
