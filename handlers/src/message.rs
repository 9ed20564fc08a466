//! The format-neutral AMI message.
//!
//! A [`Message`] is an ordered list of `(key, value)` headers, exactly as received: keys keep their
//! case and their order, and a key may repeat (`Output:`, `Variable:`, `ChanVariable:`). Lookups
//! ignore ASCII case, as Asterisk does. A message may also carry a raw body: the CLI text of an
//! Asterisk 11-13 `Response: Follows` answer to `Action: Command`, kept line by line rather than
//! guessed into headers.
//!
//! # Bytes and text
//! AMI is bytes: a Latin-1 caller name or an arbitrary ActionID is not UTF-8. Every key and value
//! keeps the exact bytes it was read with ([`get_bytes`](Message::get_bytes),
//! [`headers_bytes`](Message::headers_bytes)), and the standard encoder writes those. Each also
//! has a UTF-8 text ([`get`](Message::get), [`headers`](Message::headers)): the bytes themselves
//! when they are UTF-8 (nearly always), otherwise their conversion by a [`Charset`] rule, which is
//! what the XML, JSON and CSV encoders write.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::str::FromStr;

/// How bytes that are not valid UTF-8 become text (config key `charset`). Bytes that are valid
/// UTF-8 are always taken as they are; the rule applies to a whole key or value at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Charset {
    /// Each byte is one ISO-8859-1 character (`\xe9t\xe9` reads "été"): what older phones and
    /// trunks send in caller names. Every byte string converts, nothing is lost.
    #[default]
    Latin1,
    /// Each invalid sequence becomes U+FFFD (`\xe9t\xe9` reads "�t�").
    Utf8Lossy,
}

impl Charset {
    /// Every rule, for error messages.
    pub const ALL: &'static [Charset] = &[Charset::Latin1, Charset::Utf8Lossy];

    /// The configuration name of the rule.
    pub fn name(self) -> &'static str {
        match self {
            Self::Latin1 => "latin1",
            Self::Utf8Lossy => "utf8-lossy",
        }
    }

    /// The text of `bytes`: borrowed when they are UTF-8, converted by this rule otherwise.
    pub fn text(self, bytes: &[u8]) -> Cow<'_, str> {
        match std::str::from_utf8(bytes) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => Cow::Owned(self.convert(bytes)),
        }
    }

    /// Converts bytes that are not valid UTF-8.
    fn convert(self, bytes: &[u8]) -> String {
        match self {
            Self::Latin1 => bytes.iter().map(|&b| char::from(b)).collect(),
            Self::Utf8Lossy => String::from_utf8_lossy(bytes).into_owned(),
        }
    }
}

impl fmt::Display for Charset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown `charset` name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown charset {0:?} (known: latin1, utf8-lossy)")]
pub struct UnknownCharset(pub String);

impl FromStr for Charset {
    type Err = UnknownCharset;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if ["latin1", "latin-1", "iso-8859-1", "iso8859-1"].iter().any(|n| n.eq_ignore_ascii_case(s)) {
            Ok(Self::Latin1)
        } else if ["utf8-lossy", "utf-8-lossy"].iter().any(|n| n.eq_ignore_ascii_case(s)) {
            Ok(Self::Utf8Lossy)
        } else {
            Err(UnknownCharset(s.to_string()))
        }
    }
}

/// One header value kept whole, outside a message: its exact bytes and its UTF-8 text. Used to
/// carry a client's ActionID to the answers, byte for byte.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct RawValue {
    text: String,
    /// The exact bytes when they differ from `text` (they were not UTF-8).
    raw: Option<Box<[u8]>>,
    /// The rule `text` was made with, when it is a conversion.
    charset: Charset,
}

impl RawValue {
    /// A value read as `bytes`, its text made by `charset` when they are not UTF-8.
    pub fn from_bytes(bytes: &[u8], charset: Charset) -> Self {
        match charset.text(bytes) {
            Cow::Borrowed(text) => Self { text: text.to_string(), raw: None, charset },
            Cow::Owned(text) => Self { text, raw: Some(bytes.into()), charset },
        }
    }

    /// The UTF-8 text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The exact bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.raw.as_deref().unwrap_or(self.text.as_bytes())
    }
}

impl From<&str> for RawValue {
    fn from(text: &str) -> Self {
        Self { text: text.to_string(), raw: None, charset: Charset::default() }
    }
}

impl From<String> for RawValue {
    fn from(text: String) -> Self {
        Self { text, raw: None, charset: Charset::default() }
    }
}

impl fmt::Debug for RawValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.raw {
            None => fmt::Debug::fmt(&self.text, f),
            Some(raw) => write!(f, "{:?} (bytes {:?})", self.text, bytes::Bytes::copy_from_slice(raw)),
        }
    }
}

impl fmt::Display for RawValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// One AMI message: ordered headers plus an optional raw body.
///
/// All keys and values live in one text buffer and the headers are ranges into it, so decoding a
/// message costs two allocations however many headers it has (events are decoded at Asterisk's
/// full rate). A key or value that was not UTF-8 has its converted text there and its exact bytes
/// in a side buffer. That buffer and the raw body share one box, allocated only for the messages
/// that have either, so a message is seven words (56 bytes on 64-bit). Replacing or removing a
/// header leaves its old text in the buffer until the message is dropped.
#[derive(Clone, Default)]
pub struct Message {
    text: String,
    spans: Vec<Span>,
    extra: Option<Box<Extra>>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Span {
    key: Field,
    value: Field,
}

/// A key or value: a range of the text buffer. The top bit of `end` (never set in a real string
/// length, which is at most `isize::MAX`) marks a converted field, whose exact bytes are in
/// [`Extra`].
#[derive(Clone, Copy, Debug, Default)]
struct Field {
    start: usize,
    end: usize,
}

const CONVERTED: usize = 1 << (usize::BITS - 1);

impl Field {
    #[inline]
    fn range(self) -> Range<usize> {
        self.start..(self.end & !CONVERTED)
    }

    #[inline]
    fn converted(self) -> bool {
        self.end & CONVERTED != 0
    }
}

/// What few messages have: a raw body, and the exact bytes of the converted fields.
#[derive(Clone, Debug, Default)]
struct Extra {
    body: Option<Vec<String>>,
    /// The rule of the (last) conversion.
    charset: Charset,
    bytes: Vec<u8>,
    /// (text start of the field, its bytes in `bytes`), in increasing text start: the text
    /// buffer only grows, and a converted field's text is never empty.
    index: Vec<(usize, Range<usize>)>,
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
        Self { text: String::with_capacity(n * 24), spans: Vec::with_capacity(n), extra: None }
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

    fn append(&mut self, text: &str) -> Field {
        let start = self.text.len();
        self.text.push_str(text);
        Field { start, end: self.text.len() }
    }

    /// Appends `text` as the conversion of `bytes` (which are not UTF-8) by `charset`.
    fn append_converted(&mut self, text: &str, bytes: &[u8], charset: Charset) -> Field {
        let mut field = self.append(text);
        if field.start == field.end {
            // Cannot happen with the Charset rules (a non-empty byte string never converts to
            // nothing); an empty text keeps no bytes rather than break the index order.
            return field;
        }
        let exact = self.extra.get_or_insert_with(Box::default);
        exact.charset = charset;
        let from = exact.bytes.len();
        exact.bytes.extend_from_slice(bytes);
        exact.index.push((field.start, from..exact.bytes.len()));
        field.end |= CONVERTED;
        field
    }

    #[inline]
    fn append_bytes(&mut self, bytes: &[u8], charset: Charset) -> Field {
        match std::str::from_utf8(bytes) {
            Ok(text) => self.append(text),
            Err(_) => self.append_invalid(bytes, charset),
        }
    }

    #[cold]
    #[inline(never)]
    fn append_invalid(&mut self, bytes: &[u8], charset: Charset) -> Field {
        let text = charset.convert(bytes);
        self.append_converted(&text, bytes, charset)
    }

    fn append_value(&mut self, value: &RawValue) -> Field {
        match &value.raw {
            None => self.append(&value.text),
            Some(raw) => self.append_converted(&value.text, raw, value.charset),
        }
    }

    #[inline]
    fn text_of(&self, field: Field) -> &str {
        &self.text[field.range()]
    }

    #[inline]
    fn bytes_of(&self, field: Field) -> &[u8] {
        if field.converted() {
            self.exact_bytes(field)
        } else {
            self.text_of(field).as_bytes()
        }
    }

    /// The exact bytes of a converted field.
    #[cold]
    #[inline(never)]
    fn exact_bytes(&self, field: Field) -> &[u8] {
        let exact = self.extra.as_deref().and_then(|exact| {
            let i = exact.index.binary_search_by_key(&field.start, |(start, _)| *start).ok()?;
            Some(&exact.bytes[exact.index[i].1.clone()])
        });
        exact.unwrap_or_else(|| self.text_of(field).as_bytes())
    }

    fn value_of(&self, field: Field) -> RawValue {
        let text = self.text_of(field).to_string();
        let raw = field.converted().then(|| self.bytes_of(field).into());
        RawValue { text, raw, charset: self.charset().unwrap_or_default() }
    }

    /// Appends a header at the end; keys may repeat.
    pub fn push(&mut self, key: impl AsRef<str>, value: impl AsRef<str>) {
        let key = self.append(key.as_ref());
        let value = self.append(value.as_ref());
        self.spans.push(Span { key, value });
    }

    /// Appends a header from the exact bytes read (the decoder's path): kept byte for byte, with
    /// a text made by `charset` for a key or value that is not UTF-8.
    pub fn push_raw(&mut self, key: &[u8], value: &[u8], charset: Charset) {
        let key = self.append_bytes(key, charset);
        let value = self.append_bytes(value, charset);
        self.spans.push(Span { key, value });
    }

    /// Appends a header whose value is kept whole (bytes and text).
    pub fn push_value(&mut self, key: impl AsRef<str>, value: &RawValue) {
        let key = self.append(key.as_ref());
        let value = self.append_value(value);
        self.spans.push(Span { key, value });
    }

    /// Inserts a header at position `index` (clamped to the end).
    pub fn insert(&mut self, index: usize, key: impl AsRef<str>, value: impl AsRef<str>) {
        let index = index.min(self.spans.len());
        let key = self.append(key.as_ref());
        let value = self.append(value.as_ref());
        self.spans.insert(index, Span { key, value });
    }

    /// The `i`-th header, as text.
    pub fn header(&self, i: usize) -> Option<(&str, &str)> {
        self.spans.get(i).map(|s| (self.text_of(s.key), self.text_of(s.value)))
    }

    /// The `i`-th header, as the exact bytes.
    pub fn header_bytes(&self, i: usize) -> Option<(&[u8], &[u8])> {
        self.spans.get(i).map(|s| (self.bytes_of(s.key), self.bytes_of(s.value)))
    }

    /// The text of the first header named `key` (ASCII case-insensitive).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.position(key).map(|i| self.text_of(self.spans[i].value))
    }

    /// The exact bytes of the first header named `key`.
    pub fn get_bytes(&self, key: &str) -> Option<&[u8]> {
        self.position(key).map(|i| self.bytes_of(self.spans[i].value))
    }

    /// The first header named `key`, kept whole (bytes and text), to put in another message.
    pub fn get_value(&self, key: &str) -> Option<RawValue> {
        self.position(key).map(|i| self.value_of(self.spans[i].value))
    }

    /// Every value of the headers named `key`, in order, as text.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.spans.iter().filter(move |s| self.key_is(s, key)).map(|s| self.text_of(s.value))
    }

    /// Whether a header named `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.position(key).is_some()
    }

    /// Header names match as ASCII, ignoring case, on the exact bytes.
    fn key_is(&self, span: &Span, key: &str) -> bool {
        self.bytes_of(span.key).eq_ignore_ascii_case(key.as_bytes())
    }

    /// Index of the first header named `key`.
    pub fn position(&self, key: &str) -> Option<usize> {
        self.spans.iter().position(|s| self.key_is(s, key))
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

    /// Like [`set`](Self::set), with a value kept whole (a client's ActionID restored byte for
    /// byte).
    pub fn set_value(&mut self, key: &str, value: &RawValue) {
        match self.position(key) {
            Some(i) => {
                let value = self.append_value(value);
                self.spans[i].value = value;
            }
            None => self.push_value(key, value),
        }
    }

    /// Removes the first header named `key` and returns its position and text.
    pub fn remove(&mut self, key: &str) -> Option<(usize, String)> {
        let i = self.position(key)?;
        let value = self.text_of(self.spans[i].value).to_string();
        self.spans.remove(i);
        Some((i, value))
    }

    /// Removes every header named `key`.
    pub fn remove_all(&mut self, key: &str) {
        let spans = std::mem::take(&mut self.spans);
        self.spans = spans.into_iter().filter(|s| !self.key_is(s, key)).collect();
    }

    /// All headers in order, as `(key, value)` text.
    pub fn headers(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + DoubleEndedIterator + '_ {
        self.spans.iter().map(|s| (self.text_of(s.key), self.text_of(s.value)))
    }

    /// All headers in order, as the exact `(key, value)` bytes.
    pub fn headers_bytes(&self) -> impl ExactSizeIterator<Item = (&[u8], &[u8])> + DoubleEndedIterator + '_ {
        self.spans.iter().map(|s| (self.bytes_of(s.key), self.bytes_of(s.value)))
    }

    /// Whether every key and value is UTF-8 as received (no text is a conversion).
    pub fn is_utf8(&self) -> bool {
        self.charset().is_none()
    }

    /// The rule the texts of its converted keys and values were made with; `None` when every
    /// key and value is UTF-8. Decoding the message's standard encoding with this rule gives the
    /// same texts back (a message mixing values read under different rules reports the last).
    pub fn charset(&self) -> Option<Charset> {
        self.extra.as_ref().filter(|e| !e.index.is_empty()).map(|e| e.charset)
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// True when the message has no header and no body (an empty block).
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty() && self.body().is_none()
    }

    /// The raw body lines of a `Response: Follows` answer, if any.
    pub fn body(&self) -> Option<&[String]> {
        self.extra.as_ref().and_then(|e| e.body.as_deref())
    }

    /// Sets the raw body lines.
    pub fn set_body(&mut self, body: Option<Vec<String>>) {
        match (&mut self.extra, body) {
            (None, None) => {}
            (Some(extra), body) => extra.body = body,
            (None, body) => self.extra = Some(Box::new(Extra { body, ..Extra::default() })),
        }
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

    /// The `ActionID:` value (text; [`get_value`](Self::get_value) keeps its exact bytes).
    pub fn action_id(&self) -> Option<&str> {
        self.get("ActionID")
    }

    /// An approximate encoded size in bytes, used for queue accounting.
    pub fn encoded_len_hint(&self) -> usize {
        let len = |f: Field| f.range().len();
        let headers: usize = self.spans.iter().map(|s| len(s.key) + len(s.value) + 4).sum();
        let body: usize = self.body().into_iter().flatten().map(|l| l.len() + 2).sum();
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

    /// Like [`response_with`](Self::response_with), with the client's ActionID byte for byte.
    pub fn response_with_id(response: &str, action_id: Option<&RawValue>, message: Option<&str>) -> Self {
        let mut m = Self::response_with(response, None, message);
        if let Some(id) = action_id {
            let value = m.append_value(id);
            let key = m.append("ActionID");
            m.spans.insert(1, Span { key, value });
        }
        m
    }
}

impl PartialEq for Message {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self.headers_bytes().eq(other.headers_bytes())
            && self.headers().eq(other.headers())
            && self.body() == other.body()
    }
}

impl Eq for Message {}

/// Headers whose value `Debug` masks: `Secret` and `Key` (the MD5 login answer), `ProxyKey`,
/// and any password or token (`Password`, `Token`, `AuthToken`, ...).
fn is_secret_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    matches!(lower.as_str(), "secret" | "key" | "proxykey")
        || lower.ends_with("password")
        || lower.ends_with("token")
        || lower.ends_with("secret")
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for s in &self.spans {
            let (k, v) = (self.text_of(s.key), self.text_of(s.value));
            // Never print secrets, even in debug output (and `-dd` traces every message).
            if is_secret_header(k) {
                list.entry(&format_args!("{k}: ********"));
            } else if s.value.converted() {
                let raw = bytes::Bytes::copy_from_slice(self.bytes_of(s.value));
                list.entry(&format_args!("{k}: {v} (bytes {raw:?})"));
            } else {
                list.entry(&format_args!("{k}: {v}"));
            }
        }
        if let Some(body) = self.body() {
            list.entry(&format_args!("<body: {} lines>", body.len()));
        }
        list.finish()
    }
}

#[cfg(test)]
mod tests;
