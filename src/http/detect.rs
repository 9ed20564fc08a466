//! Protocol detection on the AMI port: TLS, HTTP or AMI, told apart by the first bytes a client
//! sends, which are then replayed ([`Prefixed`]) to whoever serves the connection.
//!
//! HTTP clients speak first (`GET /rawman?...`), TLS clients send a handshake record (`0x16`),
//! AMI clients mostly wait for the banner. Bytes are read until they match or rule out an HTTP
//! method; a client silent for the detection time is an AMI client.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The first byte of a TLS handshake record.
pub const TLS_HANDSHAKE: u8 = 0x16;

/// Request methods recognised as the start of HTTP, with their space.
const METHODS: [&[u8]; 7] = [b"GET ", b"POST ", b"HEAD ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH "];

/// What a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// A TLS handshake.
    Tls,
    /// An HTTP request.
    Http,
    /// AMI (anything else, or silence).
    Ami,
}

/// What `prefix` is, or `None` while more bytes are needed to tell.
pub fn classify(prefix: &[u8], tls: bool, http: bool) -> Option<Protocol> {
    let first = *prefix.first()?;
    if tls && first == TLS_HANDSHAKE {
        return Some(Protocol::Tls);
    }
    if http {
        for method in METHODS {
            if prefix.starts_with(method) {
                return Some(Protocol::Http);
            }
            if method.starts_with(prefix) {
                return None;
            }
        }
    }
    Some(Protocol::Ami)
}

/// Reads from `stream` until its protocol is known or `wait` has passed in silence (AMI).
/// `None` when the peer closed or failed before saying anything that decides.
pub async fn detect<S: AsyncRead + Unpin>(
    stream: &mut S,
    wait: Duration,
    tls: bool,
    http: bool,
) -> Option<(Protocol, BytesMut)> {
    let mut prefix = BytesMut::with_capacity(16);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(protocol) = classify(&prefix, tls, http) {
            return Some((protocol, prefix));
        }
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut prefix)).await {
            Err(_) => return Some((Protocol::Ami, prefix)),
            Ok(Ok(0)) | Ok(Err(_)) => return None,
            Ok(Ok(_)) => {}
        }
    }
}

/// A stream whose first bytes were already read: they are read again first.
pub struct Prefixed<S> {
    prefix: BytesMut,
    inner: S,
}

impl<S> Prefixed<S> {
    /// `inner`, with `prefix` read before it.
    pub fn new(prefix: BytesMut, inner: S) -> Self {
        Self { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes_decide() {
        assert_eq!(classify(b"", true, true), None);
        assert_eq!(classify(&[0x16, 3, 1], true, true), Some(Protocol::Tls));
        assert_eq!(classify(&[0x16], false, true), Some(Protocol::Ami));
        assert_eq!(classify(b"GE", true, true), None);
        assert_eq!(classify(b"GET /rawman", true, true), Some(Protocol::Http));
        assert_eq!(classify(b"POST / HTTP/1.1", true, true), Some(Protocol::Http));
        assert_eq!(classify(b"P", true, true), None);
        assert_eq!(classify(b"ProxyAction: ListSessions", true, true), Some(Protocol::Ami));
        assert_eq!(classify(b"Action: Login", true, true), Some(Protocol::Ami));
        assert_eq!(classify(b"GET /", true, false), Some(Protocol::Ami));
        assert_eq!(classify(b"{\"Action\":\"Ping\"}", true, true), Some(Protocol::Ami));
    }

    #[tokio::test]
    async fn prefix_is_replayed_then_the_stream() {
        let (mut a, b) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut a, b"GET / HTTP/1.1\r\n").await.unwrap();
        drop(a);
        let mut b = b;
        let (protocol, prefix) = detect(&mut b, Duration::from_secs(5), true, true).await.unwrap();
        assert_eq!(protocol, Protocol::Http);
        let mut all = String::new();
        Prefixed::new(prefix, b).read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "GET / HTTP/1.1\r\n");
    }

    #[tokio::test(start_paused = true)]
    async fn silence_is_ami() {
        let (_a, mut b) = tokio::io::duplex(64);
        let (protocol, prefix) = detect(&mut b, Duration::from_millis(100), true, true).await.unwrap();
        assert_eq!((protocol, prefix.len()), (Protocol::Ami, 0));
    }
}
