//! The XML format of astmanproxy 1.x, always well formed.
//!
//! Output: one element per message, `<AsteriskManagerOutput>` for messages from Asterisk and
//! `<AsteriskManagerProxyOutput>` for messages the proxy made (no `Server:` header, or a
//! `ProxyResponse:`), each header as ` <Name Value="value"/>`, CRLF line ends and a blank line
//! after each message, as 1.x wrote them. Unlike 1.x, values are escaped by quick-xml whatever
//! their length, and a header whose name is not a valid XML name becomes
//! ` <UnparsedText Value="Name: value"/>` (1.x did that to every header over 30 bytes).
//! A `Response: Follows` body becomes one `<Output Value="line"/>` per line.
//!
//! Input: `<AsteriskManagerInput>` with `<Name Value="v"/>` children (1.x), parsed by quick-xml.

use bytes::{BufMut, BytesMut};
use quick_xml::escape::escape;
use quick_xml::events::Event;
use quick_xml::Reader;

use crate::message::Message;

/// Writes `message` as one XML element.
pub fn encode(message: &Message, out: &mut BytesMut) {
    let proxy_made = message.contains("ProxyResponse") || !message.contains("Server");
    let root = if proxy_made { "AsteriskManagerProxyOutput" } else { "AsteriskManagerOutput" };
    out.reserve(message.encoded_len_hint() * 2 + 64);
    out.put_slice(b"<");
    out.put_slice(root.as_bytes());
    out.put_slice(b">\r\n");
    for (key, value) in message.headers() {
        if is_xml_name(key) {
            element(out, key, value);
        } else {
            element(out, "UnparsedText", &format!("{key}: {value}"));
        }
    }
    for line in message.body().unwrap_or_default() {
        element(out, "Output", line);
    }
    out.put_slice(b"</");
    out.put_slice(root.as_bytes());
    out.put_slice(b">\r\n\r\n");
}

fn element(out: &mut BytesMut, name: &str, value: &str) {
    out.put_slice(b" <");
    out.put_slice(name.as_bytes());
    out.put_slice(b" Value=\"");
    if value.chars().any(forbidden) {
        let clean: String = value.chars().map(|c| if forbidden(c) { ' ' } else { c }).collect();
        out.put_slice(escape(clean.as_str()).as_bytes());
    } else {
        out.put_slice(escape(value).as_bytes());
    }
    out.put_slice(b"\"/>\r\n");
}

/// Whether `c` must not appear in an XML value: control characters and U+FFFE, U+FFFF are not
/// allowed in XML 1.0 at all (tab and line ends are, but never reach a value), so every XML
/// writer here turns them into spaces.
pub fn forbidden(c: char) -> bool {
    c.is_control() || matches!(c, '\u{FFFE}' | '\u{FFFF}')
}

/// Whether `name` can be an XML element name as it is.
fn is_xml_name(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else { return false };
    (first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.to_ascii_lowercase().starts_with("xml")
}

enum Kind {
    Start,
    Other,
}

/// Why an XML action could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid XML action: {0}")]
pub struct XmlInputError(pub String);

/// Parses one `<AsteriskManagerInput>` document into an action.
///
/// # Errors
/// Malformed XML, another root element, or a child without a `Value` attribute.
pub fn decode_input(text: &str) -> Result<Message, XmlInputError> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(true);
    let mut message = Message::new();
    let mut depth = 0usize;
    let mut seen_root = false;
    loop {
        let event = reader.read_event().map_err(|e| XmlInputError(e.to_string()))?;
        let event_kind = if matches!(event, Event::Start(_)) { Kind::Start } else { Kind::Other };
        match event {
            Event::Empty(e) if depth == 0 => {
                if e.name().as_ref() != b"AsteriskManagerInput" {
                    return Err(XmlInputError("the root element must be AsteriskManagerInput".into()));
                }
                break;
            }
            Event::Start(e) if depth == 0 => {
                if e.name().as_ref() != b"AsteriskManagerInput" {
                    return Err(XmlInputError("the root element must be AsteriskManagerInput".into()));
                }
                seen_root = true;
                depth = 1;
            }
            Event::Empty(e) | Event::Start(e) => {
                if matches!(event_kind, Kind::Start) {
                    depth += 1;
                }
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                let value = e
                    .attributes()
                    .filter_map(Result::ok)
                    .find(|a| a.key.as_ref().eq_ignore_ascii_case(b"Value"))
                    .ok_or_else(|| XmlInputError(format!("<{name}> has no Value attribute")))?
                    .unescape_value()
                    .map_err(|e| XmlInputError(e.to_string()))?
                    .into_owned();
                message.push(name, value);
            }
            Event::End(_) => {
                if depth == 1 {
                    break;
                }
                depth -= 1;
            }
            Event::Eof => {
                if !seen_root {
                    return Err(XmlInputError("no AsteriskManagerInput element".into()));
                }
                return Err(XmlInputError("unexpected end of document".into()));
            }
            _ => {}
        }
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: &Message) -> String {
        let mut out = BytesMut::new();
        encode(m, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn values_forbidden_in_xml_become_spaces() {
        let t = text(&Message::new().with("Event", "UserEvent").with("Note", "a\u{FFFE}b\u{FFFF}c\u{1}d"));
        let xml_char =
            |c| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..);
        assert!(t.chars().all(xml_char), "{t:?}");
        assert!(t.contains("<Note Value=\"a b c d\"/>"), "{t:?}");
    }

    #[test]
    fn the_1x_layout() {
        let m = Message::new()
            .with("Response", "Success")
            .with("ActionID", "x1")
            .with("Ping", "Pong")
            .with("Server", "pbx");
        assert_eq!(
            text(&m),
            "<AsteriskManagerOutput>\r\n <Response Value=\"Success\"/>\r\n <ActionID Value=\"x1\"/>\r\n \
             <Ping Value=\"Pong\"/>\r\n <Server Value=\"pbx\"/>\r\n</AsteriskManagerOutput>\r\n\r\n"
        );
        let proxy = Message::new().with("Response", "Success").with("Message", "Authentication accepted");
        assert!(text(&proxy).starts_with("<AsteriskManagerProxyOutput>\r\n"));
    }

    #[test]
    fn always_well_formed() {
        let long = "a<b>&\"c'".repeat(500);
        let m = Message::new()
            .with("Event", "X")
            .with("CallerIDName", &long)
            .with("ProxyListServer I", "x")
            .with("1bad", "\u{1}");
        let xml = text(&m);
        let mut reader = Reader::from_str(&xml);
        while reader.read_event().unwrap() != Event::Eof {}
        assert!(xml.contains("<UnparsedText Value=\"ProxyListServer I: x\"/>"));
        assert!(xml.contains("&lt;b&gt;&amp;&quot;c&apos;"));
    }

    #[test]
    fn input() {
        let m = decode_input(
            "<AsteriskManagerInput>\n<Action Value=\"Ping\"></Action><ActionID Value=\"a&amp;b\"/>\n</AsteriskManagerInput>",
        )
        .unwrap();
        assert_eq!(m.action(), Some("Ping"));
        assert_eq!(m.action_id(), Some("a&b"));
        for bad in [
            "<Action/>",
            "<AsteriskManagerInput><Action/></AsteriskManagerInput>",
            "<AsteriskManagerInput><",
            "nonsense",
        ] {
            assert!(decode_input(bad).is_err(), "{bad}");
        }
    }
}
