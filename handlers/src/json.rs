//! JSON (new in 2.x): one object per message, newline-delimited on TCP.
//!
//! Keys keep the message's order; a key that repeats (`Output`, `Variable`) becomes an array of
//! its values in order; a `Response: Follows` body becomes `"Body": [lines]`. Input: one action
//! object per line; values may be strings, numbers, booleans or arrays (an array repeats the
//! header).

use bytes::{BufMut, BytesMut};
use serde_json::{Map, Value};

use crate::message::Message;

/// The JSON object of a message.
pub fn to_value(message: &Message) -> Value {
    let mut map = Map::new();
    for (key, value) in message.headers() {
        match map.get_mut(key) {
            Some(Value::Array(items)) => items.push(Value::String(value.to_string())),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, Value::String(value.to_string())]);
            }
            None => {
                map.insert(key.to_string(), Value::String(value.to_string()));
            }
        }
    }
    if let Some(body) = message.body() {
        map.insert("Body".to_string(), Value::Array(body.iter().map(|l| Value::String(l.clone())).collect()));
    }
    Value::Object(map)
}

/// Writes `message` as one JSON line (the same object as [`to_value`], written directly).
pub fn encode(message: &Message, out: &mut BytesMut) {
    let headers: Vec<(&str, &str)> = message.headers().collect();
    out.reserve(message.encoded_len_hint() + 32);
    out.put_u8(b'{');
    let mut first = true;
    for (i, (key, _)) in headers.iter().enumerate() {
        // Each key once, at its first position; repeats become an array there.
        if headers[..i].iter().any(|(k, _)| k == key) {
            continue;
        }
        if !first {
            out.put_u8(b',');
        }
        first = false;
        put_string(out, key);
        out.put_u8(b':');
        let repeats = headers[i + 1..].iter().any(|(k, _)| k == key);
        if repeats {
            out.put_u8(b'[');
            for (n, (_, v)) in headers[i..].iter().filter(|(k, _)| k == key).enumerate() {
                if n > 0 {
                    out.put_u8(b',');
                }
                put_string(out, v);
            }
            out.put_u8(b']');
        } else {
            put_string(out, headers[i].1);
        }
    }
    if let Some(body) = message.body() {
        if !first {
            out.put_u8(b',');
        }
        out.put_slice(b"\"Body\":[");
        for (n, line) in body.iter().enumerate() {
            if n > 0 {
                out.put_u8(b',');
            }
            put_string(out, line);
        }
        out.put_u8(b']');
    }
    out.put_slice(b"}\n");
}

fn put_string(out: &mut BytesMut, text: &str) {
    let mut writer = out.writer();
    // Serialising a str into memory cannot fail.
    let _ = serde_json::to_writer(&mut writer, text);
}

/// Why a JSON action could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON action: {0}")]
pub struct JsonInputError(pub String);

/// Parses one action object.
///
/// # Errors
/// Not JSON, not an object, or a nested object as a value.
pub fn decode_input(text: &str) -> Result<Message, JsonInputError> {
    let value: Value = serde_json::from_str(text).map_err(|e| JsonInputError(e.to_string()))?;
    let Value::Object(map) = value else { return Err(JsonInputError("expected one object per line".into())) };
    decode_object(map)
}

/// The action of an already parsed JSON object (a WebSocket text frame).
///
/// # Errors
/// A nested object as a value.
pub fn decode_object(map: Map<String, Value>) -> Result<Message, JsonInputError> {
    let mut message = Message::with_capacity(map.len());
    for (key, value) in map {
        let mut push = |v: &Value| -> Result<(), JsonInputError> {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null => String::new(),
                _ => return Err(JsonInputError(format!("unsupported value for {key:?}"))),
            };
            message.push(key.as_str(), text);
            Ok(())
        };
        match &value {
            Value::Array(items) => items.iter().try_for_each(&mut push)?,
            other => push(other)?,
        }
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_keys_arrays_and_body() {
        let mut m = Message::new().with("Response", "Success").with("Output", "a").with("Output", "b").with("Z", "1");
        m.set_body(Some(vec!["raw".into()]));
        let mut out = BytesMut::new();
        encode(&m, &mut out);
        assert_eq!(&out[..], br#"{"Response":"Success","Output":["a","b"],"Z":"1","Body":["raw"]}"#.as_slice().iter().chain(b"\n").copied().collect::<Vec<_>>().as_slice());
    }

    #[test]
    fn direct_encoding_matches_the_value() {
        let mut m = Message::new().with("A", "x\"y").with("B", "1").with("A", "z").with("C", "\u{1}");
        m.set_body(Some(vec!["l1".into(), "l2".into()]));
        let mut out = BytesMut::new();
        encode(&m, &mut out);
        let parsed: Value = serde_json::from_slice(&out[..out.len() - 1]).unwrap();
        assert_eq!(parsed, to_value(&m));
        assert_eq!(serde_json::to_string(&parsed).unwrap(), std::str::from_utf8(&out[..out.len() - 1]).unwrap());
    }

    #[test]
    fn input() {
        let m =
            decode_input(r#"{"Action":"Originate","Variable":["a=1","b=2"],"Async":true,"Timeout":30000}"#).unwrap();
        assert_eq!(m.get_all("Variable").collect::<Vec<_>>(), ["a=1", "b=2"]);
        assert_eq!(m.get("Async"), Some("true"));
        assert_eq!(m.get("Timeout"), Some("30000"));
        for bad in ["[1]", "{", "{\"A\":{\"b\":1}}", "nonsense"] {
            assert!(decode_input(bad).is_err(), "{bad}");
        }
    }
}
