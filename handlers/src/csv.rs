//! The CSV format of astmanproxy 1.x (output only): one line per message, each header a quoted
//! `"Key: value"` field, fields separated by `, `, the line followed by a blank line. Unlike 1.x,
//! fields are quoted by the csv crate (an inner `"` is doubled) and never cut, and CR/LF inside a
//! value become spaces so a message stays on one line.

use bytes::{BufMut, BytesMut};

use crate::message::Message;

/// Writes `message` as one CSV line.
pub fn encode(message: &Message, out: &mut BytesMut) {
    // One csv writer per message; each field is written as a one-field record (one line, since
    // CR/LF are replaced), and the lines are then joined with `, ` as 1.x did.
    let mut writer = ::csv::WriterBuilder::new()
        .quote_style(::csv::QuoteStyle::Always)
        .terminator(::csv::Terminator::Any(b'\n'))
        .buffer_capacity(1024)
        .from_writer(Vec::with_capacity(message.encoded_len_hint() + 64));
    let body = message.body().unwrap_or_default().iter().map(|line| ("Output", line.as_str()));
    let mut text = String::new();
    for (key, value) in message.headers().chain(body) {
        text.clear();
        text.push_str(key);
        text.push_str(": ");
        text.push_str(value);
        if text.contains(['\r', '\n']) {
            text = text.replace(['\r', '\n'], " ");
        }
        // Writing to a Vec cannot fail.
        let _ = writer.write_record([text.as_bytes()]);
    }
    let _ = writer.flush();
    let bytes = writer.into_inner().unwrap_or_default();
    for (i, line) in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).enumerate() {
        if i > 0 {
            out.put_slice(b", ");
        }
        out.put_slice(line);
    }
    out.put_slice(b"\r\n\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_1x_layout_with_real_quoting() {
        let m = Message::new().with("Response", "Success").with("ActionID", "c1").with("Ping", "Pong");
        let mut out = BytesMut::new();
        encode(&m, &mut out);
        assert_eq!(&out[..], b"\"Response: Success\", \"ActionID: c1\", \"Ping: Pong\"\r\n\r\n");
        let tricky = Message::new().with("CallerIDName", "say \"hi\", bye\r\nnext");
        let mut out = BytesMut::new();
        encode(&tricky, &mut out);
        assert_eq!(&out[..], b"\"CallerIDName: say \"\"hi\"\", bye  next\"\r\n\r\n");
        let mut rdr = ::csv::ReaderBuilder::new().has_headers(false).from_reader(&out[..out.len() - 4]);
        let rec = rdr.records().next().unwrap().unwrap();
        assert_eq!(&rec[0], "CallerIDName: say \"hi\", bye  next");
    }
}
