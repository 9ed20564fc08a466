//! The format-neutral AMI message.
//!
//! A [`Message`] is an ordered list of `(key, value)` headers, exactly as received: keys keep their
//! case and their order, and a key may repeat (`Output:`, `Variable:`, `ChanVariable:`). Lookups
//! ignore ASCII case, as Asterisk does. A message may also carry a raw body: the CLI text of an
//! Asterisk 11-13 `Response: Follows` answer to `Action: Command`, kept line by line rather than
//! guessed into headers.

use std::fmt;
use std::ops::Range;

/// One AMI message: ordered headers plus an optional raw body.
///
/// All keys and values live in one text buffer and the headers are ranges into it, so decoding a
/// message costs two allocations however many headers it has (events are decoded at Asterisk's
/// full rate). Replacing or removing a header leaves its old text in the buffer until the message
/// is dropped.
#[derive(Clone, Default)]
pub struct Message {
    text: String,
    spans: Vec<Span>,
    body: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default)]
struct Span {
    key: Range<usize>,
    value: Range<usize>,
}

/// What kind of message this is, judged by its first header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Starts with `Action:` (or carries one anywhere: clients send headers in any order).
    Action,
    /// Starts with `Response:`.
    Response,
    /// Starts with `Event:`.
    Event,
    /// Anything else (an empty block, a stray header block).
    Other,
}

impl Message {
    /// An empty message.
    pub fn new() -> Self {
        Self::default()
    }

    /// A message with room for `n` headers.
    pub fn with_capacity(n: usize) -> Self {
        Self { text: String::with_capacity(n * 24), spans: Vec::with_capacity(n), body: None }
    }

    /// Builds a message from `(key, value)` pairs, in order.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        let mut m = Self::new();
        for (k, v) in pairs {
            m.push(k.as_ref(), v.as_ref());
        }
        m
    }

    /// Appends a header (repeats allowed), builder style.
    #[must_use]
    pub fn with(mut self, key: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        self.push(key, value);
        self
    }

    fn append(&mut self, text: &str) -> Range<usize> {
        let start = self.text.len();
        self.text.push_str(text);
        start..self.text.len()
    }

    fn append_bytes(&mut self, bytes: &[u8]) -> Range<usize> {
        let start = self.text.len();
        match std::str::from_utf8(bytes) {
            Ok(text) => self.text.push_str(text),
            // AMI is mostly UTF-8; anything else (a Latin-1 caller ID) is kept readable.
            Err(_) => self.text.push_str(&String::from_utf8_lossy(bytes)),
        }
        start..self.text.len()
    }

    /// Appends a header at the end; keys may repeat.
    pub fn push(&mut self, key: impl AsRef<str>, value: impl AsRef<str>) {
        let key = self.append(key.as_ref());
        let value = self.append(value.as_ref());
        self.spans.push(Span { key, value });
    }

    /// Appends a header from raw bytes (the decoder's path; invalid UTF-8 is replaced).
    pub fn push_bytes(&mut self, key: &[u8], value: &[u8]) {
        let key = self.append_bytes(key);
        let value = self.append_bytes(value);
        self.spans.push(Span { key, value });
    }

    /// Inserts a header at position `index` (clamped to the end).
    pub fn insert(&mut self, index: usize, key: impl AsRef<str>, value: impl AsRef<str>) {
        let index = index.min(self.spans.len());
        let key = self.append(key.as_ref());
        let value = self.append(value.as_ref());
        self.spans.insert(index, Span { key, value });
    }

    fn key_at(&self, i: usize) -> &str {
        &self.text[self.spans[i].key.clone()]
    }

    fn value_at(&self, i: usize) -> &str {
        &self.text[self.spans[i].value.clone()]
    }

    /// The `i`-th header.
    pub fn header(&self, i: usize) -> Option<(&str, &str)> {
        (i < self.spans.len()).then(|| (self.key_at(i), self.value_at(i)))
    }

    /// The value of the first header named `key` (ASCII case-insensitive).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.position(key).map(|i| self.value_at(i))
    }

    /// Every value of the headers named `key`, in order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers().filter(move |(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v)
    }

    /// Whether a header named `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.position(key).is_some()
    }

    /// Index of the first header named `key`.
    pub fn position(&self, key: &str) -> Option<usize> {
        (0..self.spans.len()).find(|&i| self.key_at(i).eq_ignore_ascii_case(key))
    }

    /// Replaces the value of the first header named `key`, keeping its position and the key's
    /// spelling; appends the header when absent.
    pub fn set(&mut self, key: &str, value: impl AsRef<str>) {
        match self.position(key) {
            Some(i) => {
                let value = self.append(value.as_ref());
                self.spans[i].value = value;
            }
            None => self.push(key, value),
        }
    }

    /// Removes the first header named `key` and returns its position and value.
    pub fn remove(&mut self, key: &str) -> Option<(usize, String)> {
        let i = self.position(key)?;
        let value = self.value_at(i).to_string();
        self.spans.remove(i);
        Some((i, value))
    }

    /// Removes every header named `key`.
    pub fn remove_all(&mut self, key: &str) {
        let text = &self.text;
        self.spans.retain(|s| !text[s.key.clone()].eq_ignore_ascii_case(key));
    }

    /// All headers in order, as `(key, value)`.
    pub fn headers(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + DoubleEndedIterator + '_ {
        self.spans.iter().map(|s| (&self.text[s.key.clone()], &self.text[s.value.clone()]))
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// True when the message has no header and no body (an empty block).
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty() && self.body.is_none()
    }

    /// The raw body lines of a `Response: Follows` answer, if any.
    pub fn body(&self) -> Option<&[String]> {
        self.body.as_deref()
    }

    /// Sets the raw body lines.
    pub fn set_body(&mut self, body: Option<Vec<String>>) {
        self.body = body;
    }

    /// The first header's key and value.
    pub fn first(&self) -> Option<(&str, &str)> {
        self.header(0)
    }

    /// The kind of message, from its first header (`Action` anywhere counts for actions, since
    /// client libraries sort their headers).
    pub fn kind(&self) -> Kind {
        match self.first() {
            Some((k, _)) if k.eq_ignore_ascii_case("Response") => Kind::Response,
            Some((k, _)) if k.eq_ignore_ascii_case("Event") => Kind::Event,
            _ if self.contains("Action") => Kind::Action,
            _ => Kind::Other,
        }
    }

    /// The `Action:` value.
    pub fn action(&self) -> Option<&str> {
        self.get("Action")
    }

    /// The `Event:` value.
    pub fn event(&self) -> Option<&str> {
        self.get("Event")
    }

    /// The `Response:` value.
    pub fn response(&self) -> Option<&str> {
        self.get("Response")
    }

    /// The `ActionID:` value.
    pub fn action_id(&self) -> Option<&str> {
        self.get("ActionID")
    }

    /// An approximate encoded size in bytes, used for queue accounting.
    pub fn encoded_len_hint(&self) -> usize {
        let headers: usize = self.spans.iter().map(|s| s.key.len() + s.value.len() + 4).sum();
        let body: usize = self.body.iter().flatten().map(|l| l.len() + 2).sum();
        headers + body + 2
    }

    /// A standard proxy-made response in Asterisk's layout: `Response:` first, `ActionID:` second
    /// (when the client sent one), then `Message:`.
    pub fn response_with(response: &str, action_id: Option<&str>, message: Option<&str>) -> Self {
        let mut m = Self::with_capacity(4);
        m.push("Response", response);
        if let Some(id) = action_id {
            m.push("ActionID", id);
        }
        if let Some(text) = message {
            m.push("Message", text);
        }
        m
    }
}

impl PartialEq for Message {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.headers().eq(other.headers()) && self.body == other.body
    }
}

impl Eq for Message {}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for (k, v) in self.headers() {
            // Never print secrets, even in debug output.
            if k.eq_ignore_ascii_case("Secret") || k.eq_ignore_ascii_case("Key") {
                list.entry(&format_args!("{k}: ********"));
            } else {
                list.entry(&format_args!("{k}: {v}"));
            }
        }
        if let Some(body) = &self.body {
            list.entry(&format_args!("<body: {} lines>", body.len()));
        }
        list.finish()
    }
}

#[cfg(test)]
mod tests {
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
}
