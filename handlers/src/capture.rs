//! Reader of the `.cap` transcript files recorded from a real Asterisk (`tests/fixtures/*.cap`).
//!
//! A marker line `#@ C->S conn=N t=+S len=L` (or `S->C`) is followed by exactly `L` bytes of data,
//! plus one `\n` that is not data when the data does not end in `\n`. Other `#@` lines
//! (`OPEN`, `CLOSE`, `NOTE`, ...) are metadata; `OPEN` lines carry `proto=ami|http`.

/// Direction of a recorded chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to server.
    ClientToServer,
    /// Server to client.
    ServerToClient,
}

/// One recorded chunk of bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Connection number in the scenario.
    pub conn: u32,
    /// Direction.
    pub direction: Direction,
    /// The bytes, exactly as sent.
    pub data: Vec<u8>,
}

/// A parsed capture.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    /// Every chunk, in file order.
    pub chunks: Vec<Chunk>,
    /// Connections whose `OPEN` line says `proto=http`.
    pub http_conns: Vec<u32>,
}

impl Capture {
    /// Parses a capture file.
    ///
    /// # Errors
    /// A marker whose length runs past the end of the file, or a malformed marker.
    pub fn parse(bytes: &[u8]) -> Result<Capture, String> {
        let mut cap = Capture::default();
        let mut pos = 0;
        while pos < bytes.len() {
            let end = memchr::memchr(b'\n', &bytes[pos..]).map_or(bytes.len(), |i| pos + i);
            let line = String::from_utf8_lossy(&bytes[pos..end]).into_owned();
            pos = (end + 1).min(bytes.len());
            let Some(marker) = line.strip_prefix("#@ ") else {
                if line.trim().is_empty() {
                    continue;
                }
                return Err(format!("unexpected line outside a chunk: {line:?}"));
            };
            let field = |name: &str| {
                marker.split_whitespace().find_map(|w| w.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            };
            let direction = if marker.starts_with("C->S") {
                Direction::ClientToServer
            } else if marker.starts_with("S->C") {
                Direction::ServerToClient
            } else {
                if marker.starts_with("OPEN") && field("proto") == Some("http") {
                    if let Some(conn) = field("conn").and_then(|c| c.parse().ok()) {
                        cap.http_conns.push(conn);
                    }
                }
                continue;
            };
            let conn = field("conn").and_then(|c| c.parse().ok()).ok_or_else(|| format!("no conn in {line:?}"))?;
            let len: usize = field("len").and_then(|c| c.parse().ok()).ok_or_else(|| format!("no len in {line:?}"))?;
            let data = bytes.get(pos..pos + len).ok_or_else(|| format!("chunk runs past the end: {line:?}"))?.to_vec();
            pos += len;
            if data.last() != Some(&b'\n') && bytes.get(pos) == Some(&b'\n') {
                pos += 1;
            }
            cap.chunks.push(Chunk { conn, direction, data });
        }
        Ok(cap)
    }

    /// The AMI connections (not HTTP) in the capture.
    pub fn ami_conns(&self) -> Vec<u32> {
        let mut conns: Vec<u32> = self.chunks.iter().map(|c| c.conn).filter(|c| !self.http_conns.contains(c)).collect();
        conns.sort_unstable();
        conns.dedup();
        conns
    }

    /// The chunks of one connection and direction.
    pub fn chunks(&self, conn: u32, direction: Direction) -> impl Iterator<Item = &Chunk> {
        self.chunks.iter().filter(move |c| c.conn == conn && c.direction == direction)
    }
}
