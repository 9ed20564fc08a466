//! The standard AMI wire format: `Key: Value` lines closed by an empty line, sans-IO.
//!
//! [`AmiDecoder`] turns bytes into [`Message`]s. It is tolerant on input (bare LF, no space after
//! the colon, blank lines between blocks) and strict about limits, without giving up the stream:
//! a message with a line longer than [`Limits::max_line`], larger than [`Limits::max_message`] or
//! with more than [`Limits::max_headers`] headers is skipped up to its closing empty line and
//! reported as [`DecodeError::Skipped`], with its ActionID when one was read (before or after
//! the oversize part). The bytes of an overlong line are dropped as they come, never buffered, so
//! the decoder holds at most about one message's limit. Only a stream that yields no line end
//! within [`Limits::max_without_line_end`] bytes ([`Limits::LINE_END_FACTOR`] times the line
//! limit) is given up, with [`DecodeError::NoLineEnd`].
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

use crate::error::{DecodeError, Limit};
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
    /// How many times [`max_line`](Self::max_line) bytes may come without any line end before
    /// the stream is given up: an overlong line is skipped, but input that never ends a line
    /// (binary junk, a wrong protocol) closes the connection. 16 times the default line limit is
    /// 1 MiB.
    pub const LINE_END_FACTOR: usize = 16;

    /// Bytes without a line end after which the stream is given up
    /// ([`LINE_END_FACTOR`](Self::LINE_END_FACTOR) times the line limit).
    pub fn max_without_line_end(&self) -> usize {
        self.max_line.saturating_mul(Self::LINE_END_FACTOR)
    }
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
    /// Skipping the rest of an oversize message up to its closing empty line (see [`Discard`]).
    Discard,
}

/// What is kept of a message being skipped: why, its ActionID, and where in its framing it is.
#[derive(Debug)]
struct Discard {
    limit: Limit,
    action_id: Option<Vec<u8>>,
    /// The framing state the message was in: an announced `Response: Follows` body ends at
    /// `--END COMMAND--`, not at the first empty line.
    phase: State,
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
    /// The message being skipped (in [`State::Discard`]).
    discard: Option<Discard>,
    /// Bytes dropped so far of an overlong line whose end has not come yet.
    dropping: Option<usize>,
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
            discard: None,
            dropping: None,
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
    /// [`DecodeError::NoLineEnd`] when no newline comes within `max_line` bytes.
    pub fn decode_line(&mut self, buf: &mut BytesMut) -> Result<Option<String>, DecodeError> {
        Ok(self.next_line(buf)?.map(|line| String::from_utf8_lossy(&line).into_owned()))
    }

    /// Decodes the next complete message. Empty blocks (runs of blank lines) are skipped; a block
    /// made only of lines that are not `Key: Value` gives a message without headers.
    ///
    /// # Errors
    /// [`DecodeError::Skipped`] once a message that broke a limit has ended (decoding goes on
    /// with the next one), or [`DecodeError::NoLineEnd`] (the stream cannot be resynchronised:
    /// close it). See [`DecodeError::can_continue`].
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, DecodeError> {
        // Lines are read in place and the buffer is advanced once per call: no per-line split.
        let mut pos = 0;
        let result = loop {
            if let Some(dropped) = self.dropping {
                // The rest of an overlong line: dropped as it comes, never buffered.
                if let Some(offset) = memchr::memchr(b'\n', &buf[pos..]) {
                    self.dropped_line_end(strip_cr(&buf[pos..pos + offset]));
                    pos += offset + 1;
                    self.dropping = None;
                    continue;
                }
                // The last few bytes stay, in case they are a glued `--END COMMAND--`.
                let keep = (buf.len() - pos).min(END_COMMAND.len() + 1);
                let dropped = dropped + (buf.len() - pos - keep);
                pos = buf.len() - keep;
                if dropped + keep > self.limits.max_without_line_end() {
                    self.dropping = None;
                    self.clear();
                    break Err(DecodeError::NoLineEnd { limit: self.limits.max_without_line_end() });
                }
                self.dropping = Some(dropped);
                break Ok(None);
            }
            let from = pos + self.scanned;
            let Some(offset) = memchr::memchr(b'\n', &buf[from..]) else {
                let pending = buf.len() - pos;
                // A line at the limit whose CR came without its LF yet is still whole.
                let cr_only = pending == self.limits.max_line + 1 && buf.last() == Some(&b'\r');
                if pending > self.limits.max_line && !cr_only {
                    // Too long already: drop it (the branch above) and skip its message.
                    self.scanned = 0;
                    self.start_discard(Limit::LineLength(self.limits.max_line));
                    self.dropping = Some(0);
                    continue;
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
                self.start_discard(Limit::LineLength(self.limits.max_line));
                self.dropped_line_end(&buf[line_start..end]);
                continue;
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
    /// As `decode` (a message being skipped is reported as [`DecodeError::Skipped`]), plus
    /// [`DecodeError::Truncated`] when the stream ends inside a message.
    pub fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, DecodeError> {
        if let Some(m) = self.decode(buf)? {
            return Ok(Some(m));
        }
        if self.dropping.take().is_some() {
            // The end of the stream ends the overlong line; `decode` consumed it already.
        } else if !buf.is_empty() {
            let line = buf.split().freeze();
            self.scanned = 0;
            if let Some(m) = self.feed_line(strip_cr(&line))? {
                return Ok(Some(m));
            }
        }
        if let Some(discard) = self.discard.take() {
            self.clear();
            return Err(DecodeError::Skipped { limit: discard.limit, action_id: discard.action_id });
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
        self.discard = None;
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
                    return Err(DecodeError::NoLineEnd { limit: self.limits.max_line });
                }
                Ok(Some(line))
            }
            None if buf.len() > self.limits.max_line => Err(DecodeError::NoLineEnd { limit: self.limits.max_line }),
            None => {
                self.scanned = buf.len();
                Ok(None)
            }
        }
    }

    fn feed_line(&mut self, line: &[u8]) -> Result<Option<Message>, DecodeError> {
        if self.state == State::Discard {
            return self.discard_line(line);
        }
        // The closing empty line is not counted: a message at its limit is still whole.
        let closes = line.is_empty() && matches!(self.state, State::Headers | State::FollowsEnd);
        if !closes {
            self.current_size += line.len() + 2;
            if self.current_size > self.limits.max_message {
                self.start_discard(Limit::MessageSize(self.limits.max_message));
                // This line may carry the ActionID, or be the end of a Follows body.
                return self.discard_line(line);
            }
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
                self.push_header(key, value)
            }
            State::FollowsHeaders => match split_header(line) {
                Some((key, value))
                    if key.eq_ignore_ascii_case(b"Privilege") || key.eq_ignore_ascii_case(b"ActionID") =>
                {
                    self.push_header(key, value)
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
                    Some((key, value)) => self.push_header(key, value),
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
        self.check_count()
    }

    fn push_header(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Message>, DecodeError> {
        self.current.push_raw(key, value, self.limits.charset);
        self.check_count()
    }

    fn check_count(&mut self) -> Result<Option<Message>, DecodeError> {
        if self.current.len() + self.body.len() > self.limits.max_headers {
            // The line is in `current` already: its ActionID, if it is one, is kept.
            self.start_discard(Limit::Headers(self.limits.max_headers));
        }
        Ok(None)
    }

    /// Starts skipping the current message (a no-op when it is skipped already: the first limit
    /// broken is the one reported). What was read of it is dropped, except its ActionID.
    fn start_discard(&mut self, limit: Limit) {
        if self.state == State::Discard {
            return;
        }
        let action_id = self.current.get_bytes("ActionID").map(<[u8]>::to_vec);
        let phase = self.state;
        self.clear();
        self.state = State::Discard;
        self.discard = Some(Discard { limit, action_id, phase });
    }

    /// The end of an overlong line, dropped (`tail`: what of it is still buffered). In a skipped
    /// `Response: Follows` body, `--END COMMAND--` glued to the line still ends the body.
    fn dropped_line_end(&mut self, tail: &[u8]) {
        if let Some(discard) = self.discard.as_mut() {
            let in_body = matches!(discard.phase, State::FollowsHeaders | State::FollowsBody);
            if in_body && tail.ends_with(END_COMMAND.as_bytes()) {
                discard.phase = State::FollowsEnd;
            } else if in_body {
                discard.phase = State::FollowsBody;
            }
        }
    }

    /// One line of a message being skipped: looks for its ActionID and its end. Reports the
    /// skipped message when its closing empty line comes.
    fn discard_line(&mut self, line: &[u8]) -> Result<Option<Message>, DecodeError> {
        let Some(discard) = self.discard.as_mut() else {
            self.clear();
            return Ok(None);
        };
        let header = split_header(line);
        let is_key = |key: &[u8]| header.is_some_and(|(k, _)| k.eq_ignore_ascii_case(key));
        match discard.phase {
            State::Headers | State::FollowsEnd if line.is_empty() => {
                let (limit, action_id) = (discard.limit, discard.action_id.take());
                self.clear();
                return Err(DecodeError::Skipped { limit, action_id });
            }
            State::FollowsHeaders if is_key(b"Privilege") || is_key(b"ActionID") => {}
            State::FollowsHeaders | State::FollowsBody => {
                // Raw CLI text: neither its empty lines nor its `ActionID:` lines count.
                discard.phase =
                    if line.ends_with(END_COMMAND.as_bytes()) { State::FollowsEnd } else { State::FollowsBody };
                return Ok(None);
            }
            _ => {}
        }
        if discard.action_id.is_none() && is_key(b"ActionID") {
            discard.action_id = header.map(|(_, value)| value.to_vec());
        }
        Ok(None)
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
