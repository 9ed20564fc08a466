//! Client transports: where a client session's actions come from ([`Input`]) and how its answers
//! and events leave ([`Output`]).
//!
//! A TCP client is bytes both ways ([`ByteInput`], [`ByteOutput`]: the handlers decoder in, the
//! client's output format out). WebSocket and AJAM sessions (`crate::http`) have their own
//! implementations that hand over and take back [`Message`]s, never bytes to be parsed again. The
//! session logic ([`super::serve_with`]) and the writer ([`super::writer::run`]: event cursor, lag
//! policy, write timeout, batching) are the same for all.

use std::future::Future;
use std::time::Duration;

use astmanproxy_handlers::input::{self, Input as Decoded};
use astmanproxy_handlers::{DecodeError, Limits, Message, OutputFormat};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::event::SharedEvent;

/// Initial read buffer of a client. Small: most clients are idle most of the time.
const READ_BUFFER: usize = 4096;

/// A byte output gives its buffer back after a burst larger than this (a long list): four of
/// the writer's batches.
const KEEP_BUFFER: usize = 256 * 1024;

/// What a transport's input yields next.
#[derive(Debug)]
pub enum Received {
    /// An action for the session.
    Message(Message),
    /// Unreadable input, answered with this error; the session goes on.
    Invalid(String),
    /// A decode error of the byte stream (answered with its ActionID; may close the session).
    BadInput(DecodeError),
    /// The transport answered this itself (a WebSocket `Filter`): sent in order with the answers.
    Reply(Message),
    /// The client closed its side: pending actions are answered, then the session ends.
    End,
    /// The transport failed: the session ends at once.
    Failed,
}

/// The actions of one client, as its transport receives them.
pub trait Input: Send + 'static {
    /// The next input. Must be cancel safe: the session waits for it beside timers.
    fn next(&mut self) -> impl Future<Output = Received> + Send;

    /// Called once the writer has closed the output (a WebSocket reads the client's close reply).
    fn finish(self) -> impl Future<Output = ()> + Send
    where
        Self: Sized,
    {
        async {}
    }
}

/// Why the writer closes the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The session ended (Logoff, failed login, end of input).
    Ended,
    /// Cut off by the lag policy after a `ProxyClientLagged`.
    Lagged,
    /// The client was cancelled (shutdown, queue overflow, a transport failure).
    Cancelled,
    /// A write made no progress within `clientwritetimeout`.
    Stalled,
    /// A write failed.
    Failed,
}

/// Why a flush ended early.
#[derive(Debug)]
pub enum WriteFailure {
    /// The connection failed or closed.
    Io(std::io::Error),
    /// Nothing could be written within the stall limit; what was not written is kept.
    Stalled,
}

/// Where the writer puts what a client gets, in the transport's own form. `message`, `raw` and
/// `event` buffer; `flush` sends what is buffered.
pub trait Output: Send + 'static {
    /// A message for this client only (an answer, a notice), in `format`.
    fn message(&mut self, message: Message, format: OutputFormat);
    /// Bytes written as they are (the banner).
    fn raw(&mut self, bytes: Bytes);

    /// The answer to the action `action_id` is complete (only for sessions that asked with
    /// [`crate::route::ClientSink::mark_answers`]; others never get it).
    fn answered(&mut self, _action_id: Option<astmanproxy_handlers::RawValue>) {}
    /// A shared event that passed the client's mask and rights, in `format`.
    fn event(&mut self, event: &SharedEvent, format: OutputFormat);
    /// Bytes buffered and not yet flushed (the writer batches up to `BATCH_BYTES`).
    fn buffered(&self) -> usize;
    /// Sends what is buffered; each write may take `stall` to make progress.
    fn flush(&mut self, stall: Duration) -> impl Future<Output = Result<(), WriteFailure>> + Send;
    /// Ends the output (after a last flush), within `stall`.
    fn close(&mut self, why: CloseReason, stall: Duration) -> impl Future<Output = ()> + Send;
}

/// The input of a byte stream (a TCP or TLS socket): read and decoded by the handlers decoder.
pub struct ByteInput<R> {
    reader: R,
    decoder: input::Reader,
    buf: BytesMut,
    eof: bool,
}

impl<R> ByteInput<R> {
    /// Reads `reader` within `limits`.
    pub fn new(reader: R, limits: Limits) -> Self {
        Self { reader, decoder: input::Reader::new(limits), buf: BytesMut::with_capacity(READ_BUFFER), eof: false }
    }
}

impl<R: AsyncRead + Unpin + Send + 'static> Input for ByteInput<R> {
    async fn next(&mut self) -> Received {
        loop {
            match self.decoder.next(&mut self.buf, self.eof) {
                Ok(Some(Decoded::Message(message))) => return Received::Message(message),
                Ok(Some(Decoded::Invalid(why))) => return Received::Invalid(why),
                Ok(None) if self.eof => return Received::End,
                Ok(None) => {}
                Err(e) => return Received::BadInput(e),
            }
            // Room for a typical burst of actions; small, since most clients are idle.
            self.buf.reserve(READ_BUFFER);
            // Cancel safe: `read_buf` keeps what it read in `buf`.
            match self.reader.read_buf(&mut self.buf).await {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "read error");
                    return Received::Failed;
                }
            }
        }
    }
}

/// The output of a byte stream: everything encoded in the client's format into one buffer.
pub struct ByteOutput<W> {
    out: W,
    buf: BytesMut,
}

impl<W> ByteOutput<W> {
    /// Writes to `out`.
    pub fn new(out: W) -> Self {
        Self { out, buf: BytesMut::new() }
    }
}

impl<W: AsyncWrite + Unpin + Send + 'static> Output for ByteOutput<W> {
    fn message(&mut self, message: Message, format: OutputFormat) {
        format.encode(&message, &mut self.buf);
    }

    fn raw(&mut self, bytes: Bytes) {
        self.buf.extend_from_slice(&bytes);
    }

    fn event(&mut self, event: &SharedEvent, format: OutputFormat) {
        self.buf.extend_from_slice(event.bytes(format));
    }

    fn buffered(&self) -> usize {
        self.buf.len()
    }

    async fn flush(&mut self, stall: Duration) -> Result<(), WriteFailure> {
        let mut written = 0;
        let result = write_with_progress(&mut self.out, &self.buf, stall, &mut written).await;
        if result.is_ok() {
            self.buf.clear();
            if self.buf.capacity() > KEEP_BUFFER {
                // Give memory back after a burst (a long list) so idle clients stay small.
                self.buf = BytesMut::new();
            }
        } else {
            // The rest stays: a stalled client still gets whole messages, then the notice.
            let _ = self.buf.split_to(written);
        }
        result
    }

    async fn close(&mut self, _why: CloseReason, stall: Duration) {
        let _ = tokio::time::timeout(stall, self.out.shutdown()).await;
    }
}

/// Writes all of `data`, allowing each write `stall` to make progress: a client that reads
/// slowly but steadily is served, one that stops reading is cut off after `stall`. `written`
/// counts the bytes written.
async fn write_with_progress<W: AsyncWrite + Unpin>(
    out: &mut W,
    data: &[u8],
    stall: Duration,
    written: &mut usize,
) -> Result<(), WriteFailure> {
    while *written < data.len() {
        match tokio::time::timeout(stall, out.write(&data[*written..])).await {
            Ok(Ok(0)) => return Err(WriteFailure::Io(std::io::ErrorKind::WriteZero.into())),
            Ok(Ok(n)) => *written += n,
            Ok(Err(e)) => return Err(WriteFailure::Io(e)),
            Err(_) => return Err(WriteFailure::Stalled),
        }
    }
    match tokio::time::timeout(stall, out.flush()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(WriteFailure::Io(e)),
        Err(_) => Err(WriteFailure::Stalled),
    }
}
