//! The format-neutral AMI message.
//!
//! A [`Message`] is an ordered list of `(key, value)` headers, exactly as received: keys keep their
//! case and their order, and a key may repeat (`Output:`, `Variable:`, `ChanVariable:`). Lookups
//! ignore ASCII case, as Asterisk does. A message may also carry a raw body: the CLI text of an
//! Asterisk 11-13 `Response: Follows` answer to `Action: Command`, kept line by line rather than
//! guessed into headers.

use std::fmt;

/// One AMI message: ordered headers plus an optional raw body.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Message {
    headers: Vec<(String, String)>,
    body: Option<Vec<String>>,
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
        Self { headers: Vec::with_capacity(n), body: None }
    }

    /// Builds a message from `(key, value)` pairs, in order.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self { headers: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect(), body: None }
    }

    /// Appends a header (repeats allowed), builder style.
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.push(key, value);
        self
    }

    /// Appends a header at the end; keys may repeat.
    pub fn push(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.headers.push((key.into(), value.into()));
    }

    /// Inserts a header at position `index` (clamped to the end).
    pub fn insert(&mut self, index: usize, key: impl Into<String>, value: impl Into<String>) {
        let index = index.min(self.headers.len());
        self.headers.insert(index, (key.into(), value.into()));
    }

    /// The value of the first header named `key` (ASCII case-insensitive).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.position(key).map(|i| self.headers[i].1.as_str())
    }

    /// Every value of the headers named `key`, in order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_str())
    }

    /// Whether a header named `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.position(key).is_some()
    }

    /// Index of the first header named `key`.
    pub fn position(&self, key: &str) -> Option<usize> {
        self.headers.iter().position(|(k, _)| k.eq_ignore_ascii_case(key))
    }

    /// Replaces the value of the first header named `key`, keeping its position and the key's
    /// spelling; appends the header when absent.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        match self.position(key) {
            Some(i) => self.headers[i].1 = value.into(),
            None => self.headers.push((key.to_string(), value.into())),
        }
    }

    /// Removes the first header named `key` and returns its position and value.
    pub fn remove(&mut self, key: &str) -> Option<(usize, String)> {
        let i = self.position(key)?;
        Some((i, self.headers.remove(i).1))
    }

    /// Removes every header named `key`.
    pub fn remove_all(&mut self, key: &str) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(key));
    }

    /// All headers in order.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        self.headers.len()
    }

    /// True when the message has no header and no body (an empty block).
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty() && self.body.is_none()
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
        self.headers.first().map(|(k, v)| (k.as_str(), v.as_str()))
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
        let headers: usize = self.headers.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
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

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for (k, v) in &self.headers {
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
        assert_eq!(m.headers()[1], ("ActionID".to_string(), "2".to_string()));
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
