//! The standard AMI wire format: `Key: Value` lines closed by an empty line, sans-IO.
//!
//! [`AmiDecoder`] turns bytes into [`Message`]s. It is tolerant on input (bare LF, no space after
//! the colon, blank lines between blocks) and strict about limits: a line longer than
//! [`Limits::max_line`], a message larger than [`Limits::max_message`] or with more than
//! [`Limits::max_headers`] headers gives a typed [`DecodeError`].
//!
//! The Asterisk 11-13 `Command` framing (`Response: Follows`, raw CLI lines, `--END COMMAND--`)
//! is entered only when the caller has announced a pending `Command` answer with
//! [`AmiDecoder::expect_command_output`]: a header *value* that reads `Response: Follows` (a caller
//! ID chosen by an outsider, say) can never switch the parser into that mode (astmanproxy 1.x bug
//! B10).
//!
//! [`encode`] writes CRLF lines; CR and LF inside keys or values are replaced by spaces, so a value
//! can never inject a header or end a message early.

use bytes::{Buf, BufMut, BytesMut};

use crate::error::DecodeError;
use crate::message::{Charset, Message};

/// The marker that closes an Asterisk 11-13 `Response: Follows` body.
pub const END_COMMAND: &str = "--END COMMAND--";

/// Bounds applied while decoding, and how bytes that are not UTF-8 become text. Every one is
/// configurable (see `docs/configuration.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest accepted line in bytes, line ending excluded.
    pub max_line: usize,
    /// Largest accepted message in bytes (all its lines).
    pub max_message: usize,
    /// Most headers (plus raw body lines) in one message.
    pub max_headers: usize,
    /// The text given to a key or value that is not UTF-8 (its exact bytes are kept anyway).
    pub charset: Charset,
}

impl Limits {
    /// Default longest line: 64 KiB. Asterisk's own lines stay far below this (long `Variable`
    /// or `ChanVariable` values are the largest seen), but hand-written clients get a clear error
    /// instead of unbounded buffering.
    pub const DEFAULT_MAX_LINE: usize = 64 * 1024;
    /// Default largest message: 4 MiB. `Command: module show` is ~31 KB; `dialplan show` on a big
    /// system can reach a few hundred KB.
    pub const DEFAULT_MAX_MESSAGE: usize = 4 * 1024 * 1024;
    /// Default most headers: 16384 (one `Output:` header per CLI line of a long command).
    pub const DEFAULT_MAX_HEADERS: usize = 16 * 1024;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_line: Self::DEFAULT_MAX_LINE,
            max_message: Self::DEFAULT_MAX_MESSAGE,
            max_headers: Self::DEFAULT_MAX_HEADERS,
            charset: Charset::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading ordinary `Key: Value` lines.
    Headers,
    /// After `Response: Follows` of an announced Command answer: `Privilege:`/`ActionID:` lines.
    FollowsHeaders,
    /// Raw CLI lines up to `--END COMMAND--`.
    FollowsBody,
    /// After `--END COMMAND--`, waiting for the closing empty line.
    FollowsEnd,
    /// Skipping the rest of an oversize message up to its closing empty line.
    Discard,
}

/// Incremental decoder of the standard AMI format. Keeps its partial state between calls, so it
/// is safe to feed it bytes split anywhere (one byte at a time included).
#[derive(Debug)]
pub struct AmiDecoder {
    limits: Limits,
    state: State,
    current: Message,
    body: Vec<String>,
    current_size: usize,
    /// Bytes of the buffer already searched for a newline (avoids rescanning a long partial line).
    scanned: usize,
    /// `Command` answers announced by the caller and not yet seen.
    pending_commands: usize,
    /// The current block had lines that are not `Key: Value`.
    saw_junk: bool,
}

impl AmiDecoder {
    /// A decoder with the given limits.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            state: State::Headers,
            current: Message::new(),
            body: Vec::new(),
            current_size: 0,
            scanned: 0,
            pending_commands: 0,
            saw_junk: false,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Announces that an answer to an `Action: Command` is on its way: the next message that
    /// starts with exactly `Response: Follows` is read in the raw-body framing.
    pub fn expect_command_output(&mut self) {
        self.pending_commands += 1;
    }

    /// Withdraws one announcement (the answer came in the modern `Output:` framing, or the
    /// connection was reset).
    pub fn command_answered(&mut self) {
        self.pending_commands = self.pending_commands.saturating_sub(1);
    }

    /// Forgets every announcement (after a reconnect).
    pub fn reset_commands(&mut self) {
        self.pending_commands = 0;
    }

    /// Whether no message is in progress (nothing of a message has been consumed yet).
    pub fn is_idle(&self) -> bool {
        self.state == State::Headers && self.current.is_empty() && !self.saw_junk
    }

    /// Reads one line (the banner): `Ok(None)` until a full line is buffered.
    ///
    /// # Errors
    /// [`DecodeError::LineTooLong`] when no newline comes within `max_line` bytes.
    pub fn decode_line(&mut self, buf: &mut BytesMut) -> Result<Option<String>, DecodeError> {
        Ok(self.next_line(buf)?.map(|line| String::from_utf8_lossy(&line).into_owned()))
    }

    /// Decodes the next complete message. Empty blocks (runs of blank lines) are skipped; a block
    /// made only of lines that are not `Key: Value` gives a message without headers.
    ///
    /// # Errors
    /// [`DecodeError::LineTooLong`] (the stream cannot be resynchronised: close it), or
    /// [`DecodeError::MessageTooLarge`] / [`DecodeError::TooManyHeaders`] (the rest of that
    /// message is skipped; decoding may continue, see [`DecodeError::can_continue`]).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, DecodeError> {
        // Lines are read in place and the buffer is advanced once per call: no per-line split.
        let mut pos = 0;
        let result = loop {
            let from = pos + self.scanned;
            let Some(offset) = memchr::memchr(b'\n', &buf[from..]) else {
                let pending = buf.len() - pos;
                if pending > self.limits.max_line {
                    break Err(DecodeError::LineTooLong { limit: self.limits.max_line });
                }
                self.scanned = pending;
                break Ok(None);
            };
            let newline = from + offset;
            self.scanned = 0;
            let end = if newline > pos && buf[newline - 1] == b'\r' { newline - 1 } else { newline };
            let line_start = pos;
            pos = newline + 1;
            if end - line_start > self.limits.max_line {
                break Err(DecodeError::LineTooLong { limit: self.limits.max_line });
            }
            match self.feed_line(&buf[line_start..end]) {
                Ok(None) => continue,
                other => break other,
            }
        };
        buf.advance(pos);
        result
    }

    /// Like [`decode`](Self::decode), at end of stream: a last line without newline is taken as
    /// a line. A clean end gives `Ok(None)`.
    ///
    /// # Errors
    /// As `decode`, plus [`DecodeError::Truncated`] when the stream ends inside a message.
    pub fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, DecodeError> {
        if let Some(m) = self.decode(buf)? {
            return Ok(Some(m));
        }
        if !buf.is_empty() {
            let line = buf.split().freeze();
            self.scanned = 0;
            if let Some(m) = self.feed_line(strip_cr(&line))? {
                return Ok(Some(m));
            }
        }
        let partial = !self.current.is_empty() || self.state != State::Headers;
        self.clear();
        if partial {
            Err(DecodeError::Truncated)
        } else {
            Ok(None)
        }
    }

    fn clear(&mut self) {
        self.saw_junk = false;
        self.current = Message::new();
        self.body.clear();
        self.current_size = 0;
        self.state = State::Headers;
    }

    /// Takes one line (without its line ending) off the buffer.
    fn next_line(&mut self, buf: &mut BytesMut) -> Result<Option<BytesMut>, DecodeError> {
        let start = self.scanned.min(buf.len());
        match memchr::memchr(b'\n', &buf[start..]) {
            Some(offset) => {
                let end = start + offset;
                self.scanned = 0;
                let mut line = buf.split_to(end + 1);
                line.truncate(end);
                if line.last() == Some(&b'\r') {
                    line.truncate(end - 1);
                }
                if line.len() > self.limits.max_line {
                    return Err(DecodeError::LineTooLong { limit: self.limits.max_line });
                }
                Ok(Some(line))
            }
            None if buf.len() > self.limits.max_line => Err(DecodeError::LineTooLong { limit: self.limits.max_line }),
            None => {
                self.scanned = buf.len();
                Ok(None)
            }
        }
    }

    fn feed_line(&mut self, line: &[u8]) -> Result<Option<Message>, DecodeError> {
        if self.state == State::Discard {
            if line.is_empty() {
                self.clear();
            }
            return Ok(None);
        }
        self.current_size += line.len() + 2;
        if self.current_size > self.limits.max_message {
            return self.start_discard(line, DecodeError::MessageTooLarge { limit: self.limits.max_message });
        }
        match self.state {
            State::Headers => {
                if line.is_empty() {
                    return Ok(self.finish());
                }
                let Some((key, value)) = split_header(line) else {
                    // Not a header line: dropped, but the block still counts as a message
                    // (Asterisk answers such a block `Missing action in request`).
                    self.saw_junk = true;
                    return Ok(None);
                };
                if self.current.is_empty()
                    && self.pending_commands > 0
                    && key.eq_ignore_ascii_case(b"Response")
                    && value.eq_ignore_ascii_case(b"Follows")
                {
                    self.state = State::FollowsHeaders;
                }
                self.push_header(line, key, value)
            }
            State::FollowsHeaders => match split_header(line) {
                Some((key, value))
                    if key.eq_ignore_ascii_case(b"Privilege") || key.eq_ignore_ascii_case(b"ActionID") =>
                {
                    self.push_header(line, key, value)
                }
                _ => {
                    self.state = State::FollowsBody;
                    self.feed_body(line)
                }
            },
            State::FollowsBody => self.feed_body(line),
            State::FollowsEnd => {
                if line.is_empty() {
                    self.pending_commands = self.pending_commands.saturating_sub(1);
                    let body = std::mem::take(&mut self.body);
                    self.current.set_body(Some(body));
                    return Ok(self.finish());
                }
                match split_header(line) {
                    Some((key, value)) => self.push_header(line, key, value),
                    None => Ok(None),
                }
            }
            State::Discard => Ok(None),
        }
    }

    fn feed_body(&mut self, line: &[u8]) -> Result<Option<Message>, DecodeError> {
        let text = self.limits.charset.text(line);
        if let Some(prefix) = text.strip_suffix(END_COMMAND) {
            if !prefix.is_empty() {
                self.body.push(prefix.trim_end_matches(['\r', '\n']).to_string());
            }
            self.state = State::FollowsEnd;
            return Ok(None);
        }
        self.body.push(text.into_owned());
        self.check_count(line)
    }

    fn push_header(&mut self, line: &[u8], key: &[u8], value: &[u8]) -> Result<Option<Message>, DecodeError> {
        self.current.push_raw(key, value, self.limits.charset);
        self.check_count(line)
    }

    fn check_count(&mut self, line: &[u8]) -> Result<Option<Message>, DecodeError> {
        if self.current.len() + self.body.len() > self.limits.max_headers {
            return self.start_discard(line, DecodeError::TooManyHeaders { limit: self.limits.max_headers });
        }
        Ok(None)
    }

    fn start_discard(&mut self, line: &[u8], error: DecodeError) -> Result<Option<Message>, DecodeError> {
        self.clear();
        // In the Follows body an empty line is data, but the message is dropped anyway; an empty
        // line here ends the oversize message.
        if !line.is_empty() {
            self.state = State::Discard;
        }
        Err(error)
    }

    fn finish(&mut self) -> Option<Message> {
        let message = std::mem::take(&mut self.current);
        self.current_size = 0;
        self.state = State::Headers;
        let junk = std::mem::take(&mut self.saw_junk);
        if message.is_empty() && !junk {
            None
        } else {
            Some(message)
        }
    }
}

impl Default for AmiDecoder {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Splits `Key: Value` (the space after the colon is optional).
fn split_header(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = memchr::memchr(b':', line)?;
    let key = line[..colon].trim_ascii();
    if key.is_empty() {
        return None;
    }
    // Exactly one space after the colon belongs to the syntax; more is data (CLI output lines
    // in `Output:` headers keep their indentation, which fixed-width columns depend on).
    let value = &line[colon + 1..];
    Some((key, value.strip_prefix(b" ").unwrap_or(value)))
}

/// Writes `message` in the standard AMI format (CRLF lines, closing empty line), every key and
/// value as the exact bytes it was read with. A raw body is written after the headers, followed by
/// `--END COMMAND--` as Asterisk 11-13 did.
pub fn encode(message: &Message, out: &mut BytesMut) {
    out.reserve(message.encoded_len_hint() + 32);
    for (key, value) in message.headers_bytes() {
        put_clean(out, key);
        out.put_slice(b": ");
        put_clean(out, value);
        out.put_slice(b"\r\n");
    }
    if let Some(body) = message.body() {
        for line in body {
            put_clean(out, line.as_bytes());
            out.put_slice(b"\n");
        }
        out.put_slice(END_COMMAND.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
}

/// Encodes into a fresh buffer.
pub fn encode_to_bytes(message: &Message) -> bytes::Bytes {
    let mut out = BytesMut::new();
    encode(message, &mut out);
    out.freeze()
}

fn put_clean(out: &mut BytesMut, bytes: &[u8]) {
    if bytes.iter().any(|&b| b == b'\r' || b == b'\n') {
        for &b in bytes {
            out.put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
        }
    } else {
        out.put_slice(bytes);
    }
}

#[cfg(test)]
mod tests;
