//! The CSV format of astmanproxy 1.x (output only): one line per message, each header a quoted
//! `"Key: value"` field, fields separated by `, `, the line followed by a blank line. Unlike 1.x,
//! fields are quoted by the csv crate (an inner `"` is doubled) and never cut, and CR/LF inside a
//! value become spaces so a message stays on one line.

use bytes::{BufMut, BytesMut};

use crate::message::Message;

fn field(out: &mut BytesMut, text: &str) {
    let clean = text.replace(['\r', '\n'], " ");
    let mut writer = ::csv::WriterBuilder::new().quote_style(::csv::QuoteStyle::Always).from_writer(Vec::new());
    // Writing to a Vec cannot fail.
    let _ = writer.write_record([clean.as_bytes()]);
    let _ = writer.flush();
    if let Ok(bytes) = writer.into_inner() {
        out.put_slice(bytes.strip_suffix(b"\n").unwrap_or(&bytes));
    }
}

/// Writes `message` as one CSV line.
pub fn encode(message: &Message, out: &mut BytesMut) {
    let mut first = true;
    let mut sep = |out: &mut BytesMut| {
        if !first {
            out.put_slice(b", ");
        }
        first = false;
    };
    for (key, value) in message.headers() {
        sep(out);
        field(out, &format!("{key}: {value}"));
    }
    for line in message.body().unwrap_or_default() {
        sep(out);
        field(out, &format!("Output: {line}"));
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
