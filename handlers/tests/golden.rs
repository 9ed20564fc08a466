//! Every real Asterisk transcript in `tests/fixtures/*.cap` decodes into the right messages:
//! one per recorded chunk, the same when the stream is fed one byte at a time, and encoding each
//! message gives back Asterisk's exact bytes.

use std::path::PathBuf;

use astmanproxy_handlers::capture::{Capture, Direction};
use astmanproxy_handlers::standard::{encode_to_bytes, AmiDecoder};
use astmanproxy_handlers::{Kind, Message};
use bytes::BytesMut;

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

/// Decodes a whole stream; the server side starts with the banner line.
fn decode_stream(bytes: &[u8], banner: bool, step: usize) -> (Option<String>, Vec<Message>) {
    let mut dec = AmiDecoder::default();
    let mut buf = BytesMut::new();
    let mut first = None;
    let mut out = Vec::new();
    for piece in bytes.chunks(step.max(1)) {
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
    assert!(buf.is_empty(), "bytes left over");
    (first, out)
}

#[test]
fn every_capture_decodes_one_message_per_chunk() {
    for (name, cap) in captures() {
        for conn in cap.ami_conns() {
            for direction in [Direction::ServerToClient, Direction::ClientToServer] {
                let chunks: Vec<&[u8]> = cap.chunks(conn, direction).map(|c| c.data.as_slice()).collect();
                let stream: Vec<u8> = chunks.concat();
                let server = direction == Direction::ServerToClient;
                let (banner, whole) = decode_stream(&stream, server, stream.len());
                // Server chunks are one message each (after the banner); a client chunk may hold
                // several pipelined actions (24), so count their closing blank lines.
                let expected_messages =
                    if server { chunks.len() - 1 } else { stream.windows(4).filter(|w| w == b"\r\n\r\n").count() };
                if server {
                    assert_eq!(banner.as_deref(), Some("Asterisk Call Manager/11.0.0"), "{name} conn {conn}");
                }
                assert_eq!(whole.len(), expected_messages, "{name} conn {conn} {direction:?}");
                let (_, bytewise) = decode_stream(&stream, server, 1);
                assert_eq!(bytewise, whole, "{name} conn {conn}: byte-at-a-time differs");
                // Each chunk alone is that message, and re-encoding gives Asterisk's bytes.
                let skip = usize::from(server);
                if !server {
                    assert!(whole.iter().all(|m| m.contains("Action") || name.starts_with("20-")), "{name}");
                    continue;
                }
                for (chunk, message) in chunks[skip..].iter().zip(&whole) {
                    let (_, alone) = decode_stream(chunk, false, chunk.len());
                    assert_eq!(alone.as_slice(), std::slice::from_ref(message), "{name}");
                    if server {
                        let again = encode_to_bytes(message);
                        assert!(
                            &again[..] == *chunk,
                            "{name}: re-encoding differs:\n{}\n---\n{}",
                            String::from_utf8_lossy(&again),
                            String::from_utf8_lossy(chunk)
                        );
                        assert!(matches!(message.kind(), Kind::Response | Kind::Event), "{name}: {message:?}");
                    } else {
                        assert!(message.contains("Action") || name.starts_with("20-"), "{name}: {message:?}");
                    }
                }
            }
        }
    }
}

fn server_messages(file: &str, conn: u32) -> Vec<Message> {
    let (_, cap) = captures().into_iter().find(|(n, _)| n == file).unwrap();
    let stream: Vec<u8> = cap.chunks(conn, Direction::ServerToClient).flat_map(|c| c.data.clone()).collect();
    decode_stream(&stream, true, stream.len()).1
}

#[test]
fn module_show_keeps_every_output_line_in_order() {
    let msgs = server_messages("08-command-module-show.cap", 1);
    let answer = msgs.iter().find(|m| m.action_id() == Some("cmd-modshow")).unwrap();
    let lines: Vec<&str> = answer.get_all("Output").collect();
    assert!(lines.len() > 250, "{}", lines.len());
    assert!(lines[0].starts_with("Module"), "{}", lines[0]);
    assert!(lines.last().unwrap().contains("modules loaded"));
}

#[test]
fn eventlist_items_carry_the_action_id_and_complete_counts_them() {
    let msgs = server_messages("13-eventlist-coreshowchannels.cap", 2);
    let list: Vec<&Message> = msgs.iter().filter(|m| m.action_id() == Some("csc-1")).collect();
    assert_eq!(list[0].get("EventList"), Some("start"));
    let complete = list.last().unwrap();
    assert_eq!(complete.event(), Some("CoreShowChannelsComplete"));
    assert_eq!(complete.get("ListItems"), Some((list.len() - 2).to_string().as_str()));
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
    assert_eq!(ev.response(), Some("Success"));
    assert_eq!(ev.action_id(), Some("orig-1"));
}

#[test]
fn asterisk_11_follows_framing_with_blank_lines_and_colons() {
    let raw = b"Response: Follows\r\nPrivilege: Command\r\nActionID: old-1\r\n\
Module                         Description                              Use Count  Status\n\
\n\
res_pjsip.so: something        PJSIP                                    0          Running\n\
2 modules loaded\n--END COMMAND--\r\n\r\nEvent: FullyBooted\r\nPrivilege: system,all\r\n\r\n";
    let mut dec = AmiDecoder::default();
    dec.expect_command_output();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for b in raw.iter() {
        buf.extend_from_slice(&[*b]);
        while let Some(m) = dec.decode(&mut buf).unwrap() {
            out.push(m);
        }
    }
    assert_eq!(out.len(), 2);
    let body = out[0].body().unwrap();
    assert_eq!(body.len(), 4);
    assert_eq!(body[1], "");
    assert!(body[2].starts_with("res_pjsip.so: something"));
    assert_eq!(out[0].action_id(), Some("old-1"));
    assert_eq!(out[1].event(), Some("FullyBooted"));
}

mod roundtrip {
    use astmanproxy_handlers::standard::{encode_to_bytes, AmiDecoder};
    use astmanproxy_handlers::Message;
    use bytes::BytesMut;
    use proptest::prelude::*;

    fn key() -> impl Strategy<Value = String> {
        "[A-Za-z][A-Za-z0-9_-]{0,15}"
    }

    fn value() -> impl Strategy<Value = String> {
        "([!-~][ -~]{0,30})?"
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
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
    }
}
