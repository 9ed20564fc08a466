//! The property the fuzz targets and their regression tests check, shared so that both run the
//! same code (`handlers/fuzz/`, `handlers/tests/fuzz_regressions.rs`).

use bytes::BytesMut;

use crate::message::Message;
use crate::standard::{encode_to_bytes, AmiDecoder, Limits};

/// What encoding does to a message: a CR or LF inside a key, value or body line becomes a space
/// (so no value can break a line on any reader).
fn sanitized(m: &Message) -> Message {
    let clean = |t: &str| t.replace(['\r', '\n'], " ");
    let mut out = Message::from_pairs(m.headers().map(|(k, v)| (clean(k), clean(v))));
    out.set_body(m.body().map(|b| b.iter().map(|l| clean(l)).collect()));
    out
}

/// Feeds `data` to a decoder (limits and split point taken from its first bytes), then checks
/// that every decoded message re-encodes and decodes back to itself. Panics on a violation.
pub fn check_decode(data: &[u8]) {
    let (head, body) = data.split_at(data.len().min(3));
    let knob = |i: usize| head.get(i).copied().unwrap_or(0) as usize;
    let limits = Limits { max_line: 16 + knob(0) * 16, max_message: 64 + knob(1) * 64, max_headers: 1 + knob(2) };
    let split = if body.is_empty() { 0 } else { knob(0) % body.len() };
    let mut decoder = AmiDecoder::new(limits);
    if knob(1) % 2 == 1 {
        decoder.expect_command_output();
    }
    let mut buf = BytesMut::new();
    let mut messages = Vec::new();
    for piece in [&body[..split], &body[split..]] {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(m)) => messages.push(m),
                Ok(None) => break,
                Err(e) if e.can_continue() => continue,
                Err(_) => return,
            }
        }
    }
    let _ = decoder.decode_eof(&mut buf);
    for m in messages {
        if m.is_empty() {
            continue;
        }
        let bytes = encode_to_bytes(&m);
        let mut again = AmiDecoder::new(Limits::default());
        if m.body().is_some() {
            again.expect_command_output();
        }
        let mut buf = BytesMut::from(&bytes[..]);
        let back = again.decode(&mut buf).expect("re-decoding an encoded message").expect("a whole message");
        assert_eq!(back, sanitized(&m), "encode/decode changed a message");
    }
}

/// Reads `data` as `key=value&...` pairs (an HTTP query), writes the message as an AJAM `/mxml`
/// body, and checks that the body is well-formed XML whose attributes read back, in order, as the
/// message's values (characters XML forbids as spaces). Panics on a violation.
pub fn check_mxml(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let pairs: Vec<(String, String)> = text
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let message = Message::from_pairs(pairs);
    let mut out = BytesMut::new();
    crate::ajam::encode_mxml(std::slice::from_ref(&message), &mut out);
    let body = std::str::from_utf8(&out).expect("mxml is UTF-8");
    let mut reader = quick_xml::Reader::from_str(body);
    let mut values = Vec::new();
    loop {
        match reader.read_event().expect("mxml is well formed") {
            quick_xml::events::Event::Empty(e) => {
                for a in e.attributes() {
                    let a = a.expect("well-formed attribute");
                    values.push(a.unescape_value().expect("escaped value").to_string());
                }
            }
            quick_xml::events::Event::Eof => break,
            _ => {}
        }
    }
    let expected: Vec<String> = message
        .headers()
        .map(|(_, v)| v.chars().map(|c| if crate::xml::forbidden(c) { ' ' } else { c }).collect())
        .collect();
    assert_eq!(values, expected, "mxml changed a value: {body}");
}
