//! A client's input: standard AMI, or XML (`<AsteriskManagerInput>`) and JSON (`{...}` per line)
//! actions, recognised per message by their first byte while no AMI message is in progress.

use astmanproxy_handlers::{json, xml, AmiDecoder, DecodeError, Message};
use bytes::{Buf, BytesMut};

/// What the next bytes held.
pub enum Input {
    /// An action (or any message) to handle.
    Message(Message),
    /// An XML or JSON action that could not be read; the connection goes on.
    Invalid(String),
}

const XML_END: &[u8] = b"</AsteriskManagerInput>";

/// Decodes the next input; `Ok(None)` until a whole one is buffered.
///
/// # Errors
/// The AMI decoder's errors, and [`DecodeError::MessageTooLarge`] for an XML or JSON action
/// larger than the message limit.
pub fn next(decoder: &mut AmiDecoder, buf: &mut BytesMut, eof: bool) -> Result<Option<Input>, DecodeError> {
    if decoder.is_idle() {
        let skip = buf.iter().take_while(|b| b.is_ascii_whitespace()).count();
        match buf.get(skip) {
            Some(b'<') => return structured(buf, skip, eof, decoder, Kind::Xml),
            Some(b'{') => return structured(buf, skip, eof, decoder, Kind::Json),
            _ => {}
        }
    }
    let decoded = if eof { decoder.decode_eof(buf) } else { decoder.decode(buf) };
    decoded.map(|m| m.map(Input::Message))
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

enum Kind {
    Xml,
    Json,
}

fn structured(
    buf: &mut BytesMut,
    skip: usize,
    eof: bool,
    decoder: &AmiDecoder,
    kind: Kind,
) -> Result<Option<Input>, DecodeError> {
    let limit = decoder.limits().max_message;
    let end = match kind {
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
    };
    let end = match end {
        Some(end) => end,
        // `<AsteriskManagerInput/>` or a document cut by the end of the stream.
        None if eof => buf.len(),
        None if buf.len() > limit => {
            buf.clear();
            return Err(DecodeError::MessageTooLarge { limit });
        }
        None => return Ok(None),
    };
    let text = String::from_utf8_lossy(&buf[skip..end]).into_owned();
    buf.advance(end);
    let parsed = match kind {
        Kind::Xml => xml::decode_input(&text).map_err(|e| e.to_string()),
        Kind::Json => json::decode_input(text.trim()).map_err(|e| e.to_string()),
    };
    Ok(Some(match parsed {
        Ok(m) => Input::Message(m),
        Err(e) => Input::Invalid(e),
    }))
}
