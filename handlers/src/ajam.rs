//! The `/mxml` body of Asterisk's AJAM (AMI over HTTP), as Asterisk 22 writes it (see the
//! `26-http-mxml.cap` capture):
//!
//! ```text
//! <ajax-response>
//! <response type='object' id='unknown'><generic response='Success' message='Authentication accepted' /></response>
//! </ajax-response>
//! ```
//!
//! One `<response>` per message, every header an attribute of `<generic>`: the name lowercased,
//! characters other than ASCII letters and digits replaced by `_`, a leading digit prefixed with
//! `_`, and a repeated name numbered (`output`, `output-2`, ...), as Asterisk's `xml_translate`
//! does, so the result is always well formed. Values are escaped (`&`, `<`, `>`, `'`, `"`); control
//! characters and the non-characters U+FFFE and U+FFFF, which XML 1.0 forbids, become spaces.
//! A `Response: Follows` body becomes `output` attributes, one per line. `/rawman` bodies are plain AMI ([`crate::standard::encode`]).

use std::collections::HashMap;

use bytes::{BufMut, BytesMut};

use crate::message::Message;

/// Opening line of an mxml body.
pub const MXML_START: &[u8] = b"<ajax-response>\n";
/// Closing line of an mxml body.
pub const MXML_END: &[u8] = b"</ajax-response>\n";

/// Writes a whole mxml body holding `messages`.
pub fn encode_mxml(messages: &[Message], out: &mut BytesMut) {
    out.put_slice(MXML_START);
    for m in messages {
        encode_mxml_message(m, out);
    }
    out.put_slice(MXML_END);
}

/// Writes one message as a `<response>` line.
pub fn encode_mxml_message(message: &Message, out: &mut BytesMut) {
    out.reserve(message.encoded_len_hint() * 2 + 64);
    out.put_slice(b"<response type='object' id='unknown'><generic");
    let mut seen: HashMap<String, usize> = HashMap::new();
    let body = message.body().unwrap_or_default().iter().map(|line| ("Output", line.as_str()));
    for (key, value) in message.headers().chain(body) {
        let name = attribute_name(key);
        let count = seen.entry(name.clone()).or_insert(0);
        *count += 1;
        out.put_u8(b' ');
        out.put_slice(name.as_bytes());
        if *count > 1 {
            out.put_slice(format!("-{count}").as_bytes());
        }
        out.put_slice(b"='");
        escape_value(value, out);
        out.put_u8(b'\'');
    }
    out.put_slice(b" /></response>\n");
}

/// The attribute name Asterisk makes of a header name.
pub fn attribute_name(key: &str) -> String {
    let mut name = String::with_capacity(key.len() + 1);
    if key.starts_with(|c: char| c.is_ascii_digit()) || key.is_empty() {
        name.push('_');
    }
    name.extend(key.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }));
    name
}

fn escape_value(value: &str, out: &mut BytesMut) {
    for c in value.chars() {
        match c {
            '<' => out.put_slice(b"&lt;"),
            '>' => out.put_slice(b"&gt;"),
            '&' => out.put_slice(b"&amp;"),
            '\'' => out.put_slice(b"&apos;"),
            '"' => out.put_slice(b"&quot;"),
            c if crate::xml::forbidden(c) => out.put_u8(b' '),
            c => {
                let mut buf = [0u8; 4];
                out.put_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(messages: &[Message]) -> String {
        let mut out = BytesMut::new();
        encode_mxml(messages, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn login_answer_is_byte_for_byte_what_asterisk_sends() {
        let m = Message::new().with("Response", "Success").with("Message", "Authentication accepted");
        assert_eq!(
            text(&[m]),
            "<ajax-response>\n<response type='object' id='unknown'><generic response='Success' \
             message='Authentication accepted' /></response>\n</ajax-response>\n"
        );
    }

    #[test]
    fn names_are_made_valid_and_repeats_numbered() {
        let m = Message::new()
            .with("Response", "Success")
            .with("Output", "a & b")
            .with("Output", "<c> 'd' \"e\"")
            .with("X-Weird Name", "1")
            .with("9lives", "\u{7}bell");
        let t = text(&[m]);
        assert!(t.contains(" output='a &amp; b' output-2='&lt;c&gt; &apos;d&apos; &quot;e&quot;'"), "{t}");
        assert!(t.contains(" x_weird_name='1' _9lives=' bell'"), "{t}");
        // Well formed: quick-xml reads it to the end.
        let mut reader = quick_xml::Reader::from_str(&t);
        loop {
            match reader.read_event() {
                Ok(quick_xml::events::Event::Eof) => break,
                Ok(_) => {}
                Err(e) => panic!("not well formed: {e}: {t}"),
            }
        }
    }

    /// Whether every character of `text` is one XML 1.0 allows (its `Char` production).
    fn only_xml_chars(text: &str) -> bool {
        text.chars()
            .all(|c| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..))
    }

    #[test]
    fn values_forbidden_in_xml_become_spaces() {
        let m = Message::new().with("Event", "UserEvent").with("Note", "a\u{FFFE}b\u{FFFF}c\u{1}d\u{10FFFF}");
        let t = text(&[m]);
        assert!(only_xml_chars(&t), "{t:?}");
        assert!(t.contains("note='a b c d\u{10FFFF}'"), "{t:?}");
    }

    #[test]
    fn follows_body_lines_become_output_attributes() {
        let mut m = Message::new().with("Response", "Follows");
        m.set_body(Some(vec!["line 1".into(), "line 2".into()]));
        assert!(text(&[m]).contains("response='Follows' output='line 1' output-2='line 2'"));
    }
}
