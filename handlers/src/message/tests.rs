use super::*;

#[test]
fn lookups_ignore_case_and_keep_order() {
    let mut m = Message::new().with("Response", "Success").with("ActionID", "1").with("Output", "a");
    m.push("output", "b");
    assert_eq!(m.get("actionid"), Some("1"));
    assert_eq!(m.get_all("OUTPUT").collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(m.kind(), Kind::Response);
    m.set("actionid", "2");
    assert_eq!(m.header(1), Some(("ActionID", "2")));
    assert_eq!(m.remove("ActionID"), Some((1, "2".to_string())));
    assert_eq!(m.action_id(), None);
}

#[test]
fn debug_masks_secrets_keys_and_tokens() {
    let m = Message::new()
        .with("Action", "Login")
        .with("Username", "admin")
        .with("Secret", "s3cret")
        .with("key", "abc")
        .with("AuthToken", "t0k")
        .with("ProxyKey", "pk");
    let shown = format!("{m:?}");
    for hidden in ["s3cret", "abc", "t0k", "pk"] {
        assert!(!shown.contains(hidden), "{shown}");
    }
    assert!(shown.contains("Secret: ********") && shown.contains("Username: admin"), "{shown}");
}

#[test]
fn action_anywhere_is_an_action() {
    let m = Message::new().with("ActionID", "x").with("action", "Ping");
    assert_eq!(m.kind(), Kind::Action);
    assert_eq!(m.action(), Some("Ping"));
}

#[test]
fn debug_masks_secrets() {
    let m = Message::new().with("Action", "Login").with("Secret", "hunter2");
    assert!(!format!("{m:?}").contains("hunter2"));
}

#[test]
fn bytes_are_kept_and_text_follows_the_charset() {
    let mut m = Message::new();
    m.push_raw(b"Event", b"Newchannel", Charset::Latin1);
    m.push_raw(b"CallerIDName", b"\xe9t\xe9", Charset::Latin1);
    m.push_raw(b"Other", b"\xe9t\xe9", Charset::Utf8Lossy);
    m.push_raw(b"Plain", "\u{e9}t\u{e9}".as_bytes(), Charset::Latin1);
    assert!(!m.is_utf8());
    assert_eq!(m.charset(), Some(Charset::Utf8Lossy), "the last rule used");
    assert_eq!(m.get("calleridname"), Some("\u{e9}t\u{e9}"));
    assert_eq!(m.get_bytes("CALLERIDNAME"), Some(&b"\xe9t\xe9"[..]));
    assert_eq!(m.get("Other"), Some("\u{fffd}t\u{fffd}"));
    assert_eq!(m.get_bytes("Other"), Some(&b"\xe9t\xe9"[..]));
    assert_eq!(m.get_bytes("Plain"), Some("\u{e9}t\u{e9}".as_bytes()));
    // A value kept whole moves to another message with its bytes and its text.
    let v = m.get_value("CallerIDName").unwrap();
    let mut copy = Message::new().with("Response", "Success").with("ActionID", "proxy-1");
    copy.set_value("actionid", &v);
    assert_eq!((copy.get("ActionID"), copy.get_bytes("ActionID")), (Some(v.as_str()), Some(v.as_bytes())));
    assert_eq!(copy.header(1).unwrap().0, "ActionID");
    let answer = Message::response_with_id("Error", Some(&v), Some("Permission denied"));
    let keys: Vec<&[u8]> = answer.headers_bytes().map(|(k, _)| k).collect();
    assert_eq!(keys, [&b"Response"[..], b"ActionID", b"Message"]);
    assert_eq!(answer.header_bytes(1).unwrap().1, b"\xe9t\xe9");
    // Names match as ASCII on the exact bytes; a converted key is found by its bytes only.
    m.push_raw(b"K\xe9y", b"1", Charset::Latin1);
    assert_eq!(m.get("K\u{e9}y"), None);
    m.remove_all("calleridname");
    assert_eq!(m.get("CallerIDName"), None);
    assert_eq!(m.get_bytes("Other"), Some(&b"\xe9t\xe9"[..]));
}

#[test]
fn charset_names() {
    assert_eq!("latin1".parse::<Charset>(), Ok(Charset::Latin1));
    assert_eq!("ISO-8859-1".parse::<Charset>(), Ok(Charset::Latin1));
    assert_eq!(" utf8-lossy ".parse::<Charset>(), Ok(Charset::Utf8Lossy));
    assert!("ebcdic".parse::<Charset>().unwrap_err().to_string().contains("latin1, utf8-lossy"));
    assert_eq!(Charset::default(), Charset::Latin1);
    for c in Charset::ALL {
        assert_eq!(c.name().parse::<Charset>(), Ok(*c));
    }
}

#[test]
fn layout_stays_compact() {
    // Raw bytes cost nothing per header (a flag bit); the side buffer (shared with the raw
    // body) exists only for messages that need it.
    assert_eq!(std::mem::size_of::<Span>(), 4 * std::mem::size_of::<usize>());
    assert_eq!(std::mem::size_of::<Message>(), 7 * std::mem::size_of::<usize>());
    let mut m = Message::new();
    m.push_raw(b"Event", b"Newchannel", Charset::Latin1);
    assert!(m.is_utf8() && m.extra.is_none() && m.charset().is_none());
}
