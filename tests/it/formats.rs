//! Output formats (standard, xml, csv, json) per client, and XML/JSON action input.

use std::time::Duration;

use astmanproxy_handlers::Message;
use tokio::io::AsyncReadExt;

use crate::support::*;

/// Reads raw bytes until `needle` has been seen (or panics after the deadline).
async fn read_until(c: &mut AmiClient, needle: &str) -> String {
    let mut all = String::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut chunk = vec![0u8; 65536];
    while !all.contains(needle) {
        let n = tokio::time::timeout_at(deadline, c.stream_mut().read(&mut chunk)).await.expect("timed out").unwrap();
        assert!(n > 0, "closed; got {all}");
        all.push_str(&String::from_utf8_lossy(&chunk[..n]));
    }
    all
}

async fn set_format(c: &mut AmiClient, format: &str) -> String {
    c.send(&Message::new().with("ProxyAction", "SetOutputFormat").with("OutputFormat", format).with("ActionID", "f"))
        .await;
    read_until(c, "OutputFormat").await
}

#[tokio::test]
async fn xml_output_is_1x_shaped_and_well_formed() {
    let (sim, proxy) = proxy_with_sim().await;
    let mut c = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    let _ = c.drain(Duration::from_millis(100)).await;
    let answer = set_format(&mut c, "xml").await;
    assert!(answer.contains("<AsteriskManagerProxyOutput>\r\n <ProxyResponse Value=\"Success\"/>"), "{answer}");
    c.send(&Message::new().with("Action", "Ping").with("ActionID", "x1")).await;
    let ping = read_until(&mut c, "</AsteriskManagerOutput>\r\n\r\n").await;
    assert!(
        ping.contains("<AsteriskManagerOutput>\r\n <Response Value=\"Success\"/>\r\n <ActionID Value=\"x1\"/>\r\n"),
        "{ping}"
    );
    sim.emit(
        Message::new().with("Event", "Newchannel").with("Privilege", "call,all").with("CallerIDName", "<Eve> & \"co\""),
    );
    let ev = read_until(&mut c, "CallerIDName").await;
    let ev = read_until_end(&mut c, ev, "</AsteriskManagerOutput>").await;
    assert!(ev.contains("<CallerIDName Value=\"&lt;Eve&gt; &amp; &quot;co&quot;\"/>"), "{ev}");
    let start = ev.rfind("<AsteriskManagerOutput>").unwrap();
    let mut reader = quick_xml::Reader::from_str(&ev[start..]);
    loop {
        if matches!(reader.read_event().expect("well-formed XML"), quick_xml::events::Event::Eof) {
            break;
        }
    }
}

async fn read_until_end(c: &mut AmiClient, mut so_far: String, needle: &str) -> String {
    if !so_far.contains(needle) {
        so_far.push_str(&read_until(c, needle).await);
    }
    so_far
}

#[tokio::test]
async fn csv_and_json_output() {
    let (sim, proxy) = proxy_with_sim().await;
    let mut c = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    let _ = c.drain(Duration::from_millis(100)).await;
    set_format(&mut c, "csv").await;
    c.send(&Message::new().with("Action", "Ping").with("ActionID", "c1")).await;
    let csv = read_until(&mut c, "\"Server: pbx1\"\r\n\r\n").await;
    assert!(csv.contains("\"Response: Success\", \"ActionID: c1\", \"Ping: Pong\""), "{csv}");

    set_format(&mut c, "json").await;
    c.send(&Message::new().with("Action", "Command").with("Command", "core show version").with("ActionID", "j1")).await;
    let json = read_until(&mut c, "\"j1\"").await;
    let line = read_until_end(&mut c, json, "}\n").await;
    let line = line.lines().find(|l| l.contains("\"j1\"")).unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["Response"], "Success");
    assert!(v["Output"].as_str().unwrap_or_default().starts_with("Asterisk 22") || v["Output"].is_array());
    sim.emit(
        Message::new()
            .with("Event", "VarSet")
            .with("Privilege", "dialplan,all")
            .with("Variable", "a")
            .with("Variable", "b"),
    );
    let ev = read_until(&mut c, "VarSet").await;
    let ev = read_until_end(&mut c, ev, "}\n").await;
    let line = ev.lines().find(|l| l.contains("VarSet")).unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["Variable"], serde_json::json!(["a", "b"]));
    assert_eq!(v["Server"], "pbx1");
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys[0], "Event");
}

#[tokio::test]
async fn xml_and_json_actions_in() {
    let (_sim, proxy) = proxy_with_sim().await;
    let mut c = AmiClient::connect(proxy.addr).await;
    c.send_raw(b"{\"Action\":\"Login\",\"Username\":\"alice\",\"Secret\":\"alicepw\",\"ActionID\":\"jl\"}\n").await;
    assert_eq!(c.response("jl").await.response(), Some("Success"));
    c.send_raw(b"<AsteriskManagerInput>\r\n<Action Value=\"Ping\"/>\r\n<ActionID Value=\"xp\"/>\r\n</AsteriskManagerInput>\r\n").await;
    assert_eq!(c.response("xp").await.get("Ping"), Some("Pong"));
    // Malformed input gets an error, never a crash, and the connection goes on.
    c.send_raw(b"{\"Action\": \n").await;
    let err = c.recv_until(|m| m.response() == Some("Error")).await;
    assert!(err.get("Message").unwrap().contains("invalid JSON action"), "{err:?}");
    c.send_raw(b"<AsteriskManagerInput><Action/></AsteriskManagerInput>\r\n").await;
    let err = c.recv_until(|m| m.response() == Some("Error")).await;
    assert!(err.get("Message").unwrap().contains("invalid XML action"), "{err:?}");
    c.send_raw(b"Action: Ping\r\nActionID: after\r\n\r\n").await;
    assert_eq!(c.response("after").await.get("Ping"), Some("Pong"));
}

#[tokio::test]
async fn list_io_handlers_and_unknown_format() {
    let (_sim, proxy) = proxy_with_sim().await;
    let mut c = AmiClient::login(proxy.addr, "alice", "alicepw").await;
    c.send(&Message::new().with("ProxyAction", "ListIOHandlers").with("ActionID", "io")).await;
    let io = c.recv_until(|m| m.action_id() == Some("io")).await;
    assert_eq!(io.get_all("OutputHandler").collect::<Vec<_>>(), ["standard", "xml", "csv", "json"]);
    assert_eq!(io.get_all("InputHandler").collect::<Vec<_>>(), ["standard", "xml", "json", "http"]);
    c.send(&Message::new().with("ProxyAction", "SetOutputFormat").with("OutputFormat", "yaml").with("ActionID", "y"))
        .await;
    let no = c.recv_until(|m| m.action_id() == Some("y")).await;
    assert_eq!((no.get("ProxyResponse"), no.get("OutputFormat")), (Some("Failure"), Some("standard")));
}
