use bytes::BytesMut;

use super::*;

fn decode_all(dec: &mut AmiDecoder, input: &[u8]) -> Vec<Message> {
    let mut buf = BytesMut::from(input);
    let mut out = Vec::new();
    while let Some(m) = dec.decode(&mut buf).unwrap() {
        out.push(m);
    }
    out
}

#[test]
fn tolerant_input_bare_lf_and_no_space() {
    let mut dec = AmiDecoder::default();
    let msgs = decode_all(&mut dec, b"\r\n\naction:login\nUsername: admin\r\nSecret:x\nOutput:   indented\n\n");
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].action(), Some("login"));
    assert_eq!(msgs[0].get("username"), Some("admin"));
    assert_eq!(msgs[0].get("Secret"), Some("x"));
    assert_eq!(msgs[0].get("Output"), Some("  indented"));
}

#[test]
fn empty_values_and_repeats_survive() {
    let mut dec = AmiDecoder::default();
    let msgs = decode_all(&mut dec, b"Response: Success\r\nOutput: a\r\nOutput: \r\nOutput: b\r\n\r\n");
    assert_eq!(msgs[0].get_all("Output").collect::<Vec<_>>(), ["a", "", "b"]);
    let bytes = encode_to_bytes(&msgs[0]);
    assert_eq!(&bytes[..], b"Response: Success\r\nOutput: a\r\nOutput: \r\nOutput: b\r\n\r\n");
}

const FOLLOWS: &[u8] = b"Response: Follows\r\nPrivilege: Command\r\nActionID: c1\r\n\
Name: value looking line\n\nsecond: line\n--END COMMAND--\r\n\r\nEvent: Next\r\n\r\n";

#[test]
fn follows_framing_only_when_announced() {
    let mut dec = AmiDecoder::default();
    dec.expect_command_output();
    let msgs = decode_all(&mut dec, FOLLOWS);
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].action_id(), Some("c1"));
    assert_eq!(msgs[0].body().unwrap(), ["Name: value looking line", "", "second: line"]);
    assert_eq!(msgs[1].event(), Some("Next"));
    // Round trip keeps the framing.
    let again = decode_all(
        &mut {
            let mut d = AmiDecoder::default();
            d.expect_command_output();
            d
        },
        &encode_to_bytes(&msgs[0]),
    );
    assert_eq!(again[0], msgs[0]);
}

#[test]
fn end_command_glued_to_last_line() {
    let mut dec = AmiDecoder::default();
    dec.expect_command_output();
    let msgs = decode_all(&mut dec, b"Response: Follows\r\nPrivilege: Command\r\nlast line--END COMMAND--\r\n\r\n");
    assert_eq!(msgs[0].body().unwrap(), ["last line"]);
}

#[test]
fn follows_in_a_value_never_switches_mode() {
    // astmanproxy 1.x bug B10: a caller ID that reads "Response: Follows".
    let mut dec = AmiDecoder::default();
    dec.expect_command_output();
    let input = b"Event: Newchannel\r\nCallerIDName: Response: Follows\r\n\r\nEvent: Hangup\r\n\r\n";
    let msgs = decode_all(&mut dec, input);
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].get("CallerIDName"), Some("Response: Follows"));
}

#[test]
fn unannounced_follows_is_plain() {
    let mut dec = AmiDecoder::default();
    let msgs = decode_all(&mut dec, b"Response: Follows\r\nActionID: 1\r\n\r\nEvent: X\r\n\r\n");
    assert_eq!(msgs.len(), 2);
    assert!(msgs[0].body().is_none());
}

/// What a decoder made of `input` fed `chunk` bytes at a time (then the end of the stream):
/// messages and errors in order. Checks on the way that the buffer never holds more than the line
/// limit plus one chunk (overlong lines are dropped as they come, never buffered).
fn feed(limits: Limits, input: &[u8], chunk: usize) -> Vec<Result<Message, DecodeError>> {
    let mut dec = AmiDecoder::new(limits);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let drain = |dec: &mut AmiDecoder, buf: &mut BytesMut, out: &mut Vec<_>, eof: bool| loop {
        let step = if eof { dec.decode_eof(buf) } else { dec.decode(buf) };
        match step {
            Ok(Some(m)) => out.push(Ok(m)),
            Ok(None) => break,
            Err(e) => {
                let go_on = e.can_continue();
                out.push(Err(e));
                if !go_on {
                    break;
                }
            }
        }
    };
    for piece in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        drain(&mut dec, &mut buf, &mut out, false);
        assert!(buf.len() <= limits.max_line + 1 + chunk, "buffered {} bytes", buf.len());
        if matches!(out.last(), Some(Err(e)) if !e.can_continue()) {
            return out;
        }
    }
    drain(&mut dec, &mut buf, &mut out, true);
    out
}

/// `feed` at every chunk size from 1 byte to the whole input, all giving the same result.
fn feed_every_way(limits: Limits, input: &[u8]) -> Vec<Result<Message, DecodeError>> {
    let whole = feed(limits, input, input.len());
    for chunk in 1..input.len() {
        assert_eq!(feed(limits, input, chunk), whole, "reads of {chunk} bytes");
    }
    whole
}

fn skipped(limit: Limit, action_id: Option<&str>) -> Result<Message, DecodeError> {
    Err(DecodeError::Skipped { limit, action_id: action_id.map(|id| id.as_bytes().to_vec()) })
}

fn ping(id: &str) -> Result<Message, DecodeError> {
    Ok(Message::new().with("Action", "Ping").with("ActionID", id))
}

const SMALL_LINES: Limits = Limits { max_line: 16, max_message: 4096, max_headers: 64, charset: Charset::Latin1 };

#[test]
fn overlong_line_skips_its_message_with_the_actionid_read_before_it() {
    let long = "x".repeat(200);
    let input = format!(
        "Action: Ping\r\nActionID: a1\r\nValue: {long}\r\nOther: 1\r\n\r\nAction: Ping\r\nActionID: a2\r\n\r\n"
    );
    let got = feed_every_way(SMALL_LINES, input.as_bytes());
    assert_eq!(got, [skipped(Limit::LineLength(16), Some("a1")), ping("a2")]);
    assert!(got[0].as_ref().unwrap_err().can_continue());
}

#[test]
fn overlong_line_skips_its_message_with_the_actionid_read_after_it() {
    let long = "y".repeat(200);
    let input =
        format!("Action: Ping\nValue: {long}\nActionID: late\nActionID: second\n\nAction: Ping\nActionID: a2\n\n");
    let got = feed_every_way(SMALL_LINES, input.as_bytes());
    assert_eq!(got, [skipped(Limit::LineLength(16), Some("late")), ping("a2")]);
}

#[test]
fn overlong_first_line_without_actionid_and_several_overlong_lines() {
    let long = "z".repeat(100);
    let input = format!("Action: {long}\r\nA: {long}\r\n\r\nAction: Ping\r\nActionID: a2\r\n\r\n");
    let got = feed_every_way(SMALL_LINES, input.as_bytes());
    assert_eq!(got, [skipped(Limit::LineLength(16), None), ping("a2")]);
}

#[test]
fn line_at_the_limit_is_whole_even_when_cr_and_lf_come_apart() {
    // 16 bytes exactly, CR LF split across reads by `feed_every_way`.
    let input = b"Action: Pingxxxx\r\nActionID: 1234\r\n\r\n";
    let got = feed_every_way(SMALL_LINES, input);
    assert_eq!(got, [Ok(Message::new().with("Action", "Pingxxxx").with("ActionID", "1234"))]);
}

#[test]
fn no_line_end_within_the_factor_closes_and_is_never_buffered() {
    let limits = SMALL_LINES;
    let junk = vec![b'j'; limits.max_without_line_end() + 1];
    let mut input = b"Action: Ping\r\nActionID: a1\r\n".to_vec();
    input.extend_from_slice(&junk);
    for chunk in [1, 7, 16, 17, 100, input.len()] {
        let got = feed(limits, &input, chunk);
        assert_eq!(got, [Err(DecodeError::NoLineEnd { limit: 16 * 16 })], "reads of {chunk} bytes");
        assert!(!got[0].as_ref().unwrap_err().can_continue());
    }
    // Just under the factor, a line end still saves the session.
    let mut input = b"Action: Ping\r\nActionID: a1\r\nV: ".to_vec();
    input.extend_from_slice(&junk[..limits.max_without_line_end() - 8]);
    input.extend_from_slice(b"\r\n\r\nAction: Ping\r\nActionID: a2\r\n\r\n");
    for chunk in [1, 5, 16, 300] {
        assert_eq!(feed(limits, &input, chunk), [skipped(Limit::LineLength(16), Some("a1")), ping("a2")]);
    }
}

#[test]
fn banner_line_without_end_is_fatal() {
    let mut dec = AmiDecoder::new(Limits { max_line: 16, ..Limits::default() });
    let mut buf = BytesMut::from(&b"Asterisk Call Manager/11.0.0 and more"[..]);
    let err = dec.decode_line(&mut buf).unwrap_err();
    assert_eq!(err, DecodeError::NoLineEnd { limit: 16 });
    assert!(!err.can_continue());
}

#[test]
fn too_many_headers_skips_message_and_continues() {
    let limits = Limits { max_headers: 2, ..Limits::default() };
    let input = b"A: 1\r\nB: 2\r\nC: 3\r\nActionID: after\r\n\r\nAction: Ping\r\nActionID: a2\r\n\r\n";
    assert_eq!(feed_every_way(limits, input), [skipped(Limit::Headers(2), Some("after")), ping("a2")]);
    // The header that breaks the limit is the ActionID itself: still found.
    let input = b"A: 1\r\nB: 2\r\nActionID: third\r\nD: 4\r\n\r\nAction: Ping\r\nActionID: a2\r\n\r\n";
    assert_eq!(feed_every_way(limits, input), [skipped(Limit::Headers(2), Some("third")), ping("a2")]);
}

#[test]
fn message_too_large_skips_message() {
    let limits = Limits { max_message: 40, ..Limits::default() };
    let input = b"ActionID: early\r\nAaaaaa: 1111111111\r\nB: 2222222222\r\n\r\nX: y\r\n\r\n";
    let got = feed_every_way(limits, input);
    assert_eq!(got, [skipped(Limit::MessageSize(40), Some("early")), Ok(Message::new().with("X", "y"))]);
    let input = b"Aaaaaa: 1111111111\r\nB: 2222222222\r\nC: 3\r\nActionID: late\r\n\r\nX: y\r\n\r\n";
    assert_eq!(feed_every_way(limits, input)[0], skipped(Limit::MessageSize(40), Some("late")));
    // A message exactly at the limit (its closing empty line not counted) is whole.
    let input = b"Aaaaaa: 1111111111\r\nB: 222222222222222\r\n\r\n";
    assert_eq!(input.len() - 2, 40);
    assert_eq!(feed_every_way(limits, input).len(), 1);
    assert!(feed_every_way(limits, input)[0].is_ok());
}

#[test]
fn skipped_follows_body_ends_at_end_command_not_at_its_empty_lines() {
    let limits = Limits { max_message: 80, ..Limits::default() };
    let input = b"Response: Follows\r\nPrivilege: Command\r\nActionID: c1\r\nline one is long enough\n\n\
ActionID: not-this\nline two is long enough too\n\n--END COMMAND--\r\n\r\nEvent: Next\r\n\r\n";
    for chunk in 1..=input.len() {
        assert_eq!(
            decode_command_answer(limits, input, chunk),
            [skipped(Limit::MessageSize(80), Some("c1")), Ok(Message::new().with("Event", "Next"))],
            "reads of {chunk} bytes"
        );
    }
}

#[test]
fn overlong_follows_line_glued_to_end_command_still_ends_the_body() {
    let limits = Limits { max_line: 32, ..Limits::default() };
    let long = "o".repeat(100);
    let input = format!(
        "Response: Follows\r\nPrivilege: Command\r\nActionID: c1\r\nshort\n\n{long}--END COMMAND--\r\n\r\nEvent: Next\r\n\r\n"
    );
    for chunk in 1..=input.len() {
        let out = decode_command_answer(limits, input.as_bytes(), chunk);
        assert_eq!(
            out,
            [skipped(Limit::LineLength(32), Some("c1")), Ok(Message::new().with("Event", "Next"))],
            "reads of {chunk} bytes"
        );
    }
}

#[test]
fn end_of_stream_inside_a_skipped_message_reports_it() {
    let long = "x".repeat(100);
    let input = format!("Action: Ping\r\nActionID: a1\r\nV: {long}");
    assert_eq!(feed_every_way(SMALL_LINES, input.as_bytes()), [skipped(Limit::LineLength(16), Some("a1"))]);
    let input = format!("Action: Ping\r\nActionID: a1\r\nV: {long}\r\nMore: 1\r\n");
    assert_eq!(feed_every_way(SMALL_LINES, input.as_bytes()), [skipped(Limit::LineLength(16), Some("a1"))]);
}

#[test]
fn skipped_error_names_the_limit() {
    let e = DecodeError::Skipped { limit: Limit::LineLength(65536), action_id: None };
    assert_eq!(e.to_string(), "line longer than maxlinelength (65536 bytes); message skipped");
    let e = DecodeError::Skipped { limit: Limit::MessageSize(10), action_id: Some(b"x".to_vec()) };
    assert_eq!(e.to_string(), "message larger than maxmessagesize (10 bytes); message skipped");
    assert_eq!(e.action_id(), Some(&b"x"[..]));
}

#[test]
fn eof_inside_message_is_truncated_clean_eof_is_none() {
    let mut dec = AmiDecoder::default();
    let mut buf = BytesMut::from(&b"Action: Ping\r\n"[..]);
    assert_eq!(dec.decode(&mut buf).unwrap(), None);
    assert_eq!(dec.decode_eof(&mut buf).unwrap_err(), DecodeError::Truncated);
    assert_eq!(dec.decode_eof(&mut BytesMut::new()).unwrap(), None);
}

#[test]
fn banner_line() {
    let mut dec = AmiDecoder::default();
    let mut buf = BytesMut::from(&b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\n\r\n"[..]);
    assert_eq!(dec.decode_line(&mut buf).unwrap().as_deref(), Some("Asterisk Call Manager/11.0.0"));
    assert_eq!(dec.decode(&mut buf).unwrap().unwrap().response(), Some("Success"));
}

#[test]
fn encode_neutralises_line_breaks_in_values() {
    let m = Message::new().with("Event", "X").with("CallerIDName", "evil\r\n\r\nAction: Hangup");
    let bytes = encode_to_bytes(&m);
    assert_eq!(&bytes[..], b"Event: X\r\nCallerIDName: evil    Action: Hangup\r\n\r\n");
}

#[test]
fn byte_at_a_time_equals_whole() {
    let mut whole = AmiDecoder::default();
    whole.expect_command_output();
    let expected = decode_all(&mut whole, FOLLOWS);
    let mut dec = AmiDecoder::default();
    dec.expect_command_output();
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for b in FOLLOWS {
        buf.extend_from_slice(&[*b]);
        while let Some(m) = dec.decode(&mut buf).unwrap() {
            got.push(m);
        }
    }
    assert_eq!(got, expected);
}

#[test]
fn bytes_that_are_not_utf8_are_kept_and_read_by_the_charset() {
    let input = b"Event: Newchannel\r\nCallerIDName: \xe9t\xe9\r\nActionID: \xff\xfe\xc3(\r\n\r\n";
    for (charset, name) in [(Charset::Latin1, "\u{e9}t\u{e9}"), (Charset::Utf8Lossy, "\u{fffd}t\u{fffd}")] {
        let mut dec = AmiDecoder::new(Limits { charset, ..Limits::default() });
        let msgs = decode_all(&mut dec, input);
        assert_eq!(msgs[0].get("CallerIDName"), Some(name));
        assert_eq!(msgs[0].get_bytes("calleridname"), Some(&b"\xe9t\xe9"[..]));
        assert_eq!(&encode_to_bytes(&msgs[0])[..], input);
    }
    // Raw CLI lines of a Follows body are text, read by the same rule.
    let mut dec = AmiDecoder::default();
    dec.expect_command_output();
    let msgs = decode_all(&mut dec, b"Response: Follows\r\nPrivilege: Command\r\n\xe9t\xe9\n--END COMMAND--\r\n\r\n");
    assert_eq!(msgs[0].body().unwrap(), ["\u{e9}t\u{e9}"]);
}

/// Everything a decoder expecting a Command answer makes of `input` fed in reads of `chunk`
/// bytes, errors included.
fn decode_command_answer(limits: Limits, input: &[u8], chunk: usize) -> Vec<Result<Message, DecodeError>> {
    let mut dec = AmiDecoder::new(limits);
    dec.expect_command_output();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in input.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(m)) => out.push(Ok(m)),
                Ok(None) => break,
                Err(e) => out.push(Err(e)),
            }
        }
    }
    out
}
