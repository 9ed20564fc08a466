//! Bytes pass through unchanged: an ActionID that is not UTF-8 comes back byte for byte, and a
//! Latin-1 value from Asterisk reaches standard clients unchanged and XML/JSON clients as valid
//! UTF-8 by the `charset` rule.

use astmanproxy_handlers::Message;
use tokio::io::AsyncReadExt;

use crate::support::*;

/// Not UTF-8: `\xff` and `\xfe` never occur in it, `\xc3` starts a sequence `(` does not finish.
const ID: &[u8] = b"\xff\xfe\xc3(";

/// `Key: ` + bytes + CRLF.
fn line(key: &str, value: &[u8]) -> Vec<u8> {
    [key.as_bytes(), b": ", value, b"\r\n"].concat()
}

/// Sends `action` (whole wire bytes) and reads raw bytes until `end` arrives; returns how many
/// times `expected` (exact bytes) was seen.
async fn exchange(c: &mut AmiClient, action: &[u8], expected: &[u8], end: &[u8]) -> (usize, String) {
    c.send_raw(action).await;
    let (count, seen, data) = c.count_until(expected, end, None).await;
    assert!(seen, "closed before {:?}", String::from_utf8_lossy(end));
    (count, String::from_utf8_lossy(&data).into_owned())
}

#[tokio::test]
async fn an_action_id_that_is_not_utf8_comes_back_byte_for_byte() {
    let (sim, proxy) = proxy_with_sim().await;
    let mut c = AmiClient::connect(proxy.addr).await;
    let login = c.login_as("alice", "alicepw", Some("off")).await;
    assert_eq!(login.response(), Some("Success"));
    let id = line("ActionID", ID);

    // Forwarded to Asterisk (the ActionID is rewritten there and restored on the answer); its
    // other headers reach Asterisk byte for byte.
    let action = [b"Action: Ping\r\n".as_slice(), &id, &line("Variable", b"name=\xe9t\xe9"), b"\r\n"].concat();
    let expected = [b"Response: Success\r\n".as_slice(), &id, b"Ping: Pong\r\n"].concat();
    let (n, got) = exchange(&mut c, &action, &expected, b"Ping: Pong\r\n").await;
    assert_eq!(n, 1, "the Ping's answer changed its ActionID: {got:?}");
    let received = sim.received();
    let ping = received.iter().rev().find(|m| m.action() == Some("Ping") && m.contains("Variable")).unwrap();
    assert_eq!(ping.get_bytes("Variable"), Some(&b"name=\xe9t\xe9"[..]), "{ping:?}");

    // Refused by the proxy before forwarding.
    let action = [b"Action: Ping\r\nServer: nope\r\n".as_slice(), &id, b"\r\n"].concat();
    let expected = [b"Response: Error\r\n".as_slice(), &id, b"Message: Unknown server nope\r\n"].concat();
    let (n, got) = exchange(&mut c, &action, &expected, b"Unknown server nope\r\n").await;
    assert_eq!(n, 1, "the proxy's error changed the ActionID: {got:?}");

    // Answered by the proxy itself: an AMI action and a ProxyAction.
    let action = [b"Action: Events\r\nEventMask: off\r\n".as_slice(), &id, b"\r\n"].concat();
    let expected = [b"Response: Success\r\n".as_slice(), &id, b"Events: Off\r\n"].concat();
    let (n, got) = exchange(&mut c, &action, &expected, b"Events: Off\r\n").await;
    assert_eq!(n, 1, "the Events answer changed the ActionID: {got:?}");
    let action = [b"ProxyAction: ListIOHandlers\r\n".as_slice(), &id, b"\r\n"].concat();
    let expected = [b"ProxyResponse: Success\r\n".as_slice(), &id, b"InputHandler: standard\r\n"].concat();
    let (n, got) = exchange(&mut c, &action, &expected, b"OutputHandler: json\r\n").await;
    assert_eq!(n, 1, "the ProxyAction answer changed the ActionID: {got:?}");
}

/// A `Newchannel` whose caller name is `été` in Latin-1, as the simulator writes it.
fn latin1_event() -> Vec<u8> {
    [
        b"Event: Newchannel\r\nPrivilege: call,all\r\nChannel: SIP/100-1\r\n".as_slice(),
        &line("CallerIDName", b"\xe9t\xe9"),
        b"Uniqueid: raw.1\r\n\r\n",
    ]
    .concat()
}

/// Reads raw bytes until `needle`, then checks they are UTF-8.
async fn read_utf8_until(c: &mut AmiClient, needle: &str) -> String {
    read_utf8_until_after(c, needle, "").await
}

/// Reads raw bytes until `needle` and then `then` after it, then checks they are UTF-8.
async fn read_utf8_until_after(c: &mut AmiClient, needle: &str, then: &str) -> String {
    let mut all = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut chunk = vec![0u8; 65536];
    let done = |all: &[u8]| {
        memchr::memmem::find(all, needle.as_bytes())
            .is_some_and(|at| memchr::memmem::find(&all[at..], then.as_bytes()).is_some())
    };
    while !done(&all) {
        let n = tokio::time::timeout_at(deadline, c.stream_mut().read(&mut chunk)).await.expect("timed out").unwrap();
        assert!(n > 0, "closed; got {:?}", String::from_utf8_lossy(&all));
        all.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8(all).unwrap_or_else(|e| panic!("output is not UTF-8: {e}"))
}

/// Logs in a client and sets its output format. Its answer comes after the login's event
/// subscription, so the client gets every event published from then on.
async fn client(proxy: &TestProxy, format: &str) -> AmiClient {
    let mut c = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    c.send(&Message::new().with("ProxyAction", "SetOutputFormat").with("OutputFormat", format).with("ActionID", "f"))
        .await;
    read_utf8_until(&mut c, "OutputFormat").await;
    c
}

/// The three clients see one Latin-1 event: standard byte for byte; JSON and XML as UTF-8 text
/// with the caller name `expected`.
async fn latin1_event_reaches(cfg_charset: Option<&str>, expected: &str) {
    let sim = sim().await;
    let mut cfg = config(vec![server("pbx1", sim.addr())]);
    if let Some(name) = cfg_charset {
        cfg.limits.charset = name.parse().unwrap();
    }
    let proxy = spawn_proxy(cfg).await;
    wait_ready(proxy.addr, Some("pbx1")).await;
    let mut standard = client(&proxy, "standard").await;
    let mut json = client(&proxy, "json").await;
    let mut xml = client(&proxy, "xml").await;
    sim.emit_wire(&latin1_event());

    let wanted = line("CallerIDName", b"\xe9t\xe9");
    let (n, _, data) = standard.count_until(&wanted, b"Uniqueid: raw.1\r\n", None).await;
    assert_eq!(n, 1, "the standard client got the caller name changed: {:?}", String::from_utf8_lossy(&data));

    let out = read_utf8_until_after(&mut json, "raw.1", "\n").await;
    let line = out.lines().find(|l| l.contains("raw.1")).unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["CallerIDName"], expected, "{line}");

    let out = read_utf8_until_after(&mut xml, "raw.1", "</AsteriskManagerOutput>").await;
    assert!(out.contains(&format!("<CallerIDName Value=\"{expected}\"/>")), "{out}");
    proxy.stop().await;
}

#[tokio::test]
async fn a_latin1_value_from_asterisk_reaches_standard_clients_unchanged_and_others_as_utf8() {
    latin1_event_reaches(None, "\u{e9}t\u{e9}").await;
}

#[tokio::test]
async fn with_charset_utf8_lossy_other_formats_get_replacement_characters() {
    latin1_event_reaches(Some("utf8-lossy"), "\u{fffd}t\u{fffd}").await;
}
