//! The property the fuzz targets and their regression tests check, shared so that both run the
//! same code (`handlers/fuzz/`, `handlers/tests/fuzz_regressions.rs`).

use bytes::BytesMut;

use crate::format::OutputFormat;
use crate::message::{Charset, Message};
use crate::standard::{encode_to_bytes, AmiDecoder, Limits};

/// What encoding does to a message: a CR or LF inside a key, value or body line becomes a space
/// (so no value can break a line on any reader). Everything else stays byte for byte.
fn sanitized(m: &Message, charset: Charset) -> Message {
    let clean = |t: &[u8]| -> Vec<u8> { t.iter().map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }).collect() };
    let mut out = Message::new();
    for (k, v) in m.headers_bytes() {
        out.push_raw(&clean(k), &clean(v), charset);
    }
    out.set_body(m.body().map(|b| b.iter().map(|l| l.replace(['\r', '\n'], " ")).collect()));
    out
}

/// Feeds `data` to a decoder (limits and split point taken from its first bytes), then checks
/// that every decoded message re-encodes and decodes back to itself. Panics on a violation.
pub fn check_decode(data: &[u8]) {
    let (head, body) = data.split_at(data.len().min(3));
    let knob = |i: usize| head.get(i).copied().unwrap_or(0) as usize;
    let charset = if knob(1) & 2 == 0 { Charset::Latin1 } else { Charset::Utf8Lossy };
    let mut limits = Limits { charset, ..Limits::default() };
    limits.max_line = 16 + knob(0) * 16;
    limits.max_message = 64 + knob(1) * 64;
    limits.max_headers = 1 + knob(2);
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
        let mut again = AmiDecoder::new(Limits { charset, ..Limits::default() });
        if m.body().is_some() {
            again.expect_command_output();
        }
        let mut buf = BytesMut::from(&bytes[..]);
        let back = again.decode(&mut buf).expect("re-decoding an encoded message").expect("a whole message");
        assert_eq!(back, sanitized(&m, charset), "encode/decode changed a message");
    }
}

/// Bytes pass through unchanged: reads `data` as a charset choice (first byte), a key length
/// (second byte) and the bytes of a key and a value; any value without CR or LF, whatever its
/// bytes (invalid UTF-8 included), must come out of decode then standard encode byte for byte,
/// with the key; its text must be the charset's reading of it; and the XML, JSON and CSV
/// encodings must be valid UTF-8 carrying that text. Panics on a violation.
pub fn check_raw_value(data: &[u8]) {
    let (head, rest) = data.split_at(data.len().min(2));
    let knob = |i: usize| head.get(i).copied().unwrap_or(0) as usize;
    let charset = if knob(0) % 2 == 0 { Charset::Latin1 } else { Charset::Utf8Lossy };
    let (key, value) = rest.split_at(knob(1).min(rest.len()));
    // What a header can hold: a key has no colon, CR or LF and no surrounding whitespace (the
    // decoder trims it); a value has no CR or LF (its other bytes are all fair game).
    let key: Vec<u8> = key.iter().map(|&b| if matches!(b, b':' | b'\r' | b'\n') { b'_' } else { b }).collect();
    let key = match key.trim_ascii() {
        // Not a name the rest of the check relies on.
        k if k.is_empty() || k.eq_ignore_ascii_case(b"ActionID") || k.eq_ignore_ascii_case(b"Event") => {
            &b"CallerIDName"[..]
        }
        k => k,
    };
    let value: Vec<u8> = value.iter().copied().filter(|&b| b != b'\r' && b != b'\n').collect();
    let mut wire = b"Event: Newchannel\r\n".to_vec();
    for (k, v) in [(key, &value[..]), (b"ActionID", &value[..])] {
        wire.extend_from_slice(k);
        wire.extend_from_slice(b": ");
        wire.extend_from_slice(v);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"\r\n");

    let mut decoder = AmiDecoder::new(Limits { charset, ..Limits::default() });
    let mut buf = BytesMut::from(&wire[..]);
    let m = decoder.decode(&mut buf).expect("a valid message").expect("a whole message");
    assert!(buf.is_empty(), "bytes left over");
    assert_eq!(m.header_bytes(1), Some((key, &value[..])), "decoding changed a header's bytes");
    assert_eq!(m.get_bytes("actionid"), Some(&value[..]), "lookup by name lost the bytes");
    let text = charset.text(&value);
    assert_eq!(m.get("ActionID"), Some(&*text), "the text is not the charset's reading");
    assert_eq!(m.is_utf8(), std::str::from_utf8(key).is_ok() && std::str::from_utf8(&value).is_ok());
    assert_eq!(&encode_to_bytes(&m)[..], &wire[..], "standard encoding changed the bytes");

    // The value kept whole and put in another message (an ActionID restored) keeps its bytes.
    let id = m.get_value("ActionID").expect("an ActionID");
    assert_eq!((id.as_bytes(), id.as_str()), (&value[..], &*text));
    let answer = Message::response_with_id("Success", Some(&id), None);
    let mut expected = b"Response: Success\r\nActionID: ".to_vec();
    expected.extend_from_slice(&value);
    expected.extend_from_slice(b"\r\n\r\n");
    assert_eq!(&encode_to_bytes(&answer)[..], &expected[..], "a restored ActionID changed");

    for format in [OutputFormat::Xml, OutputFormat::Json, OutputFormat::Csv] {
        let mut out = BytesMut::new();
        format.encode(&m, &mut out);
        let out = std::str::from_utf8(&out).unwrap_or_else(|e| panic!("{format} output is not UTF-8: {e}"));
        if format == OutputFormat::Json {
            let v: serde_json::Value = serde_json::from_str(out.trim_end()).expect("valid JSON");
            assert_eq!(v["ActionID"].as_str(), Some(&*text), "JSON changed the text");
        }
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
