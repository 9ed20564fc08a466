//! A client's input: standard AMI, or XML (`<AsteriskManagerInput>`) and JSON (`{...}` per line)
//! actions, recognised per message by their first byte while no AMI message is in progress.
//!
//! Input over a limit is skipped, not buffered, and the session goes on: an AMI message up to its
//! blank line (see [`AmiDecoder`]), an XML action up to its closing tag or blank line, a JSON
//! action up to its line end. Each is answered once, when its end has come.

use crate::{json, xml, AmiDecoder, DecodeError, Limit, Limits, Message};
use bytes::{Buf, BytesMut};

/// What the next bytes held.
pub enum Input {
    /// An action (or any message) to handle.
    Message(Message),
    /// An XML or JSON action that could not be read; the connection goes on.
    Invalid(String),
}

const XML_END: &[u8] = b"</AsteriskManagerInput>";

/// The decoding state of one client's input.
pub struct Reader {
    decoder: AmiDecoder,
    /// An XML or JSON action over `maxmessagesize` being dropped up to its end.
    skipping: Option<Kind>,
}

impl Reader {
    /// A reader with the codec limits in force.
    pub fn new(limits: Limits) -> Self {
        Self { decoder: AmiDecoder::new(limits), skipping: None }
    }

    /// Decodes the next input; `Ok(None)` until a whole one is buffered.
    ///
    /// # Errors
    /// The AMI decoder's errors; [`DecodeError::Skipped`] also for an XML or JSON action larger
    /// than the message limit, once its end has come.
    pub fn next(&mut self, buf: &mut BytesMut, eof: bool) -> Result<Option<Input>, DecodeError> {
        let limit = self.decoder.limits().max_message;
        if let Some(kind) = self.skipping {
            return match end_of(kind, buf, 0) {
                Some(end) => {
                    buf.advance(end);
                    self.skipping = None;
                    Err(DecodeError::Skipped { limit: Limit::MessageSize(limit), action_id: None })
                }
                None if eof => {
                    buf.clear();
                    self.skipping = None;
                    Err(DecodeError::Skipped { limit: Limit::MessageSize(limit), action_id: None })
                }
                None => {
                    // Keep only what could be the start of the end marker.
                    let keep = buf.len().min(XML_END.len());
                    buf.advance(buf.len() - keep);
                    Ok(None)
                }
            };
        }
        if self.decoder.is_idle() {
            let skip = buf.iter().take_while(|b| b.is_ascii_whitespace()).count();
            let kind = match buf.get(skip) {
                Some(b'<') => Some(Kind::Xml),
                Some(b'{') => Some(Kind::Json),
                _ => None,
            };
            if let Some(kind) = kind {
                return match structured(buf, skip, eof, limit, kind) {
                    Structured::Done(result) => result,
                    Structured::TooLarge => {
                        // Drop it as it comes; it is answered when its end comes.
                        self.skipping = Some(kind);
                        let keep = buf.len().min(XML_END.len());
                        buf.advance(buf.len() - keep);
                        Ok(None)
                    }
                };
            }
        }
        let decoded = if eof { self.decoder.decode_eof(buf) } else { self.decoder.decode(buf) };
        decoded.map(|m| m.map(Input::Message))
    }
}

/// The end (exclusive) of the first blank line: `\n\n` or `\n\r\n`.
fn blank_line(bytes: &[u8]) -> Option<usize> {
    let lf_lf = memchr::memmem::find(bytes, b"\n\n").map(|i| i + 2);
    let lf_crlf = memchr::memmem::find(bytes, b"\n\r\n").map(|i| i + 3);
    match (lf_lf, lf_crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Xml,
    Json,
}

/// The end (exclusive) of the structured action starting at `skip`, if it has come.
fn end_of(kind: Kind, buf: &[u8], skip: usize) -> Option<usize> {
    match kind {
        // The document ends at its closing tag, or at a blank line (as 1.x read it), whichever
        // comes first: an unterminated tag never holds up the input that follows.
        Kind::Xml => {
            let closing = memchr::memmem::find(&buf[skip..], XML_END).map(|i| skip + i + XML_END.len());
            let blank = blank_line(&buf[skip..]).map(|i| skip + i);
            match (closing, blank) {
                (Some(c), Some(b)) => Some(c.min(b)),
                (c, b) => c.or(b),
            }
        }
        Kind::Json => memchr::memchr(b'\n', &buf[skip..]).map(|i| skip + i + 1),
    }
}

/// A structured action, or why there is none yet.
enum Structured {
    Done(Result<Option<Input>, DecodeError>),
    /// Larger than the limit and not ended yet: the caller drops it as it comes.
    TooLarge,
}

fn structured(buf: &mut BytesMut, skip: usize, eof: bool, limit: usize, kind: Kind) -> Structured {
    let end = match end_of(kind, buf, skip) {
        Some(end) => end,
        // `<AsteriskManagerInput/>` or a document cut by the end of the stream.
        None if eof => buf.len(),
        None if buf.len() - skip > limit => return Structured::TooLarge,
        None => return Structured::Done(Ok(None)),
    };
    if end - skip > limit {
        buf.advance(end);
        return Structured::Done(Err(DecodeError::Skipped { limit: Limit::MessageSize(limit), action_id: None }));
    }
    let text = String::from_utf8_lossy(&buf[skip..end]).into_owned();
    buf.advance(end);
    let parsed = match kind {
        Kind::Xml => xml::decode_input(&text).map_err(|e| e.to_string()),
        Kind::Json => json::decode_input(text.trim()).map_err(|e| e.to_string()),
    };
    Structured::Done(Ok(Some(match parsed {
        Ok(m) => Input::Message(m),
        Err(e) => Input::Invalid(e),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits =
        Limits { max_line: 64 * 1024, max_message: 200, max_headers: 64, charset: crate::Charset::Latin1 };

    /// What a reader made of `input` fed `chunk` bytes at a time: `Ok(action id)` per action,
    /// `Err(error text)` per skipped one. The buffer never holds much more than the limit.
    fn run(input: &[u8], chunk: usize) -> Vec<Result<String, String>> {
        let mut reader = Reader::new(LIMITS);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in input.chunks(chunk) {
            buf.extend_from_slice(piece);
            loop {
                match reader.next(&mut buf, false) {
                    Ok(Some(Input::Message(m))) => out.push(Ok(m.action_id().unwrap_or_default().to_string())),
                    Ok(Some(Input::Invalid(why))) => out.push(Err(why)),
                    Ok(None) => break,
                    Err(e) => out.push(Err(e.to_string())),
                }
            }
            assert!(buf.len() <= LIMITS.max_message + chunk + XML_END.len(), "buffered {}", buf.len());
        }
        out
    }

    #[test]
    fn oversize_json_and_xml_actions_are_skipped_to_their_end() {
        let pad = "p".repeat(1000);
        let input = format!(
            "{{\"Action\":\"Ping\",\"ActionID\":\"j1\",\"Pad\":\"{pad}\"}}\n{{\"Action\":\"Ping\",\"ActionID\":\"j2\"}}\n\
             <AsteriskManagerInput><Action Value=\"Ping\"/><Pad Value=\"{pad}\"/></AsteriskManagerInput>\
             <AsteriskManagerInput><Action Value=\"Ping\"/><ActionID Value=\"x2\"/></AsteriskManagerInput>\r\n\r\n\
             Action: Ping\r\nActionID: a3\r\n\r\n"
        );
        let skipped = Err("message larger than maxmessagesize (200 bytes); message skipped".to_string());
        let expected = [skipped.clone(), Ok("j2".to_string()), skipped, Ok("x2".to_string()), Ok("a3".to_string())];
        for chunk in [1, 2, 7, 23, 24, 100, 201, input.len()] {
            assert_eq!(run(input.as_bytes(), chunk), expected, "reads of {chunk} bytes");
        }
    }
}
