//! Reader of the `.cap` transcripts recorded from a real Asterisk (`tests/fixtures/*.cap`),
//! shared by the golden codec tests and the AMI simulator. Sans-IO: it parses a byte slice.
//!
//! # Format
//! A capture is a sequence of marker lines and raw data. Marker lines start with `#@ ` and end
//! with a bare LF.
//! - `#@ C->S conn=N t=+S.SSS len=L` (client to server) and `#@ S->C ...` (server to client) are
//!   followed by exactly `L` bytes of data, byte for byte as sent (CRLF kept). When the data does
//!   not end in LF, one LF that is not data follows, so the next marker starts a line.
//! - `#@ OPEN conn=N ... proto=ami|http ...` opens a connection; `CLOSE`, `NOTE`, `DESC`,
//!   `SCENARIO`, `INFO`, `END` (and any other marker) are metadata and skipped.
//!
//! Server data is chunked at AMI message boundaries: the banner line, then one chunk per message
//! (up to and including its closing empty line).
//!
//! ```
//! use astmanproxy_handlers::capture::{Capture, Direction};
//!
//! let file = b"#@ OPEN conn=1 t=+0.000 proto=ami\n\
//! #@ S->C conn=1 t=+0.001 len=30\nAsterisk Call Manager/11.0.0\r\n\
//! #@ C->S conn=1 t=+0.002 len=3\nabc\n\
//! #@ END\n";
//! let cap = Capture::parse(file).unwrap();
//! assert_eq!(cap.ami_conns(), [1]);
//! assert_eq!(cap.stream(1, Direction::ClientToServer), b"abc");
//! ```

use std::fmt;
use std::time::Duration;

/// Direction of a recorded chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to server (`C->S`).
    ClientToServer,
    /// Server to client (`S->C`).
    ServerToClient,
}

/// One recorded chunk of bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Connection number in the scenario.
    pub conn: u32,
    /// Direction.
    pub direction: Direction,
    /// Time since the scenario started (`t=+S.SSS`; zero when the marker has none).
    pub at: Duration,
    /// The bytes, exactly as sent.
    pub data: Vec<u8>,
}

/// A parsed capture file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capture {
    /// Every chunk, in file order.
    pub chunks: Vec<Chunk>,
    /// Connections whose `OPEN` marker says `proto=http`.
    pub http_conns: Vec<u32>,
}

/// A capture file that does not follow the format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureError {
    /// Byte offset of the offending line.
    pub offset: usize,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "capture byte {}: {}", self.offset, self.reason)
    }
}

impl std::error::Error for CaptureError {}

impl Capture {
    /// Parses a capture file.
    ///
    /// # Errors
    /// A line outside a chunk that is not a `#@ ` marker, a data marker without a valid `conn=`
    /// or `len=`, data running past the end of the file, or data not ending in LF that is not
    /// followed by the separating LF.
    pub fn parse(bytes: &[u8]) -> Result<Capture, CaptureError> {
        let mut cap = Capture::default();
        let mut pos = 0;
        while pos < bytes.len() {
            let offset = pos;
            let err = |reason: String| CaptureError { offset, reason };
            let end = memchr::memchr(b'\n', &bytes[pos..]).map_or(bytes.len(), |i| pos + i);
            let line = std::str::from_utf8(&bytes[pos..end]).map_err(|_| err("marker is not UTF-8".into()))?;
            pos = (end + 1).min(bytes.len());
            let Some(marker) = line.strip_prefix("#@ ") else {
                return Err(err(format!("not a marker line: {line:?}")));
            };
            let field = |name: &str| {
                marker.split_ascii_whitespace().find_map(|w| w.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            };
            let direction = match marker.split_ascii_whitespace().next() {
                Some("C->S") => Direction::ClientToServer,
                Some("S->C") => Direction::ServerToClient,
                Some("OPEN") => {
                    if field("proto") == Some("http") {
                        let conn = field("conn").and_then(|c| c.parse::<u32>().ok());
                        cap.http_conns.extend(conn);
                    }
                    continue;
                }
                _ => continue,
            };
            let conn =
                field("conn").and_then(|c| c.parse().ok()).ok_or_else(|| err(format!("no conn= in {line:?}")))?;
            let len: usize =
                field("len").and_then(|c| c.parse().ok()).ok_or_else(|| err(format!("no len= in {line:?}")))?;
            let at = field("t")
                .and_then(|t| t.trim_start_matches('+').parse::<f64>().ok())
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .unwrap_or_default();
            let data = bytes.get(pos..pos + len).ok_or_else(|| err(format!("data runs past the end: {line:?}")))?;
            pos += len;
            if data.last() != Some(&b'\n') {
                if bytes.get(pos) != Some(&b'\n') {
                    return Err(err(format!("no LF after data not ending in LF: {line:?}")));
                }
                pos += 1;
            }
            cap.chunks.push(Chunk { conn, direction, at, data: data.to_vec() });
        }
        Ok(cap)
    }

    /// The AMI (not HTTP) connections that carry data, in ascending order.
    pub fn ami_conns(&self) -> Vec<u32> {
        let mut conns: Vec<u32> = self.chunks.iter().map(|c| c.conn).filter(|c| !self.http_conns.contains(c)).collect();
        conns.sort_unstable();
        conns.dedup();
        conns
    }

    /// The chunks of one connection and direction, in order.
    pub fn chunks(&self, conn: u32, direction: Direction) -> impl Iterator<Item = &Chunk> {
        self.chunks.iter().filter(move |c| c.conn == conn && c.direction == direction)
    }

    /// The unframed byte stream of one connection and direction (its chunks concatenated; what
    /// `raw/<scenario>.connN.{c2s,s2c}.bin` hold).
    pub fn stream(&self, conn: u32, direction: Direction) -> Vec<u8> {
        self.chunks(conn, direction).flat_map(|c| c.data.iter().copied()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_without_final_lf_skips_one_separator() {
        let file = b"#@ C->S conn=2 t=+1.500 len=2\nab\n#@ S->C conn=2 t=+1.501 len=3\nx\r\n#@ END\n";
        let cap = Capture::parse(file).unwrap();
        assert_eq!(cap.chunks.len(), 2);
        assert_eq!(cap.chunks[0].data, b"ab");
        assert_eq!(cap.chunks[0].at, Duration::from_millis(1500));
        assert_eq!(cap.chunks[1].data, b"x\r\n");
        assert_eq!(cap.chunks[1].direction, Direction::ServerToClient);
    }

    #[test]
    fn data_may_contain_marker_lookalikes() {
        let file = b"#@ C->S conn=1 len=12\n#@ S->C x\r\n\n#@ END\n";
        let cap = Capture::parse(file).unwrap();
        assert_eq!(cap.chunks.len(), 1);
        assert_eq!(cap.chunks[0].data, b"#@ S->C x\r\n\n");
    }

    #[test]
    fn http_connections_are_set_apart() {
        let file = b"#@ OPEN conn=1 proto=http\n#@ OPEN conn=2 proto=ami\n\
#@ C->S conn=1 len=1\na\n#@ C->S conn=2 len=1\nb\n";
        let cap = Capture::parse(file).unwrap();
        assert_eq!(cap.http_conns, [1]);
        assert_eq!(cap.ami_conns(), [2]);
    }

    #[test]
    fn malformed_files_are_errors() {
        assert!(Capture::parse(b"#@ C->S conn=1 len=10\nshort").is_err());
        assert!(Capture::parse(b"#@ C->S conn=1 len=2\nabX").is_err());
        assert!(Capture::parse(b"#@ C->S len=1\na\n").is_err());
        assert!(Capture::parse(b"stray line\n").is_err());
        assert_eq!(Capture::parse(b"").unwrap(), Capture::default());
    }
}
