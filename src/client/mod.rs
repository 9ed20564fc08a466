//! Client sessions: one reader task and one writer task per connected client.
//!
//! [`serve`] runs a TCP client; [`serve_with`] a client of any [`transport`] (TCP, WebSocket,
//! AJAM). It sends the banner, spawns the [`writer`], then takes the client's actions from the
//! transport's input.
//! Login, Challenge, Logoff and Events are answered by the proxy (the `handler` module); every other
//! action is routed to an upstream session. Answers reach the client through its
//! [`sink::ClientSink`], never through a shared lock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use astmanproxy_handlers::{Charset, DecodeError, Limits, Message, OutputFormat};
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::hub::{ClientInfo, Hub};

mod handler;
pub mod transport;
pub mod writer;

use crate::route::sink::{self, ToClient};
use crate::route::ANSWER_GRACE;
use handler::{ClientReader, Flow};
use transport::{ByteInput, ByteOutput, Input, Output, Received};
use writer::ClientShared;

/// How a client session starts; [`ClientOptions::default`] is an AMI client over TCP.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The client kind in metrics and logs (`ami`, `ajam`, `ws`).
    pub kind: &'static str,
    /// Send the `Asterisk Call Manager/...` banner first.
    pub banner: bool,
    /// Output format (default: `outputformat`).
    pub format: Option<OutputFormat>,
    /// Already authenticated as this user by the transport (HTTP Basic): logged in from the
    /// start, events flowing.
    pub user: Option<String>,
    /// The output wants to know when each answer is complete ([`Output::answered`]): AJAM,
    /// which returns each answer to its own HTTP request.
    pub mark_answers: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self { kind: "ami", banner: true, format: None, user: None, mark_answers: false }
    }
}

/// Serves one client connection until it logs off, disconnects, or the proxy shuts down.
pub async fn serve<S>(stream: S, peer: SocketAddr, hub: Hub, shutdown: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (reader, writer) = tokio::io::split(stream);
    let input = ByteInput::new(reader, hub.config().limits);
    serve_with(input, ByteOutput::new(writer), peer, hub, shutdown, ClientOptions::default()).await;
}

/// Serves one client session over any transport (a socket, a WebSocket, an AJAM session), started
/// as `options` say: actions come from `input`, answers and events leave through `output`.
pub async fn serve_with<I: Input, O: Output>(
    mut input: I,
    output: O,
    peer: SocketAddr,
    hub: Hub,
    shutdown: CancellationToken,
    options: ClientOptions,
) {
    let cfg = hub.config().clone();
    let id = hub.next_client_id();
    let cancel = shutdown.child_token();
    let (sink, receiver) = sink::channel(id, cfg.client_max_pending_bytes, cancel.clone());
    if options.mark_answers {
        sink.mark_answers();
    }
    let format = options.format.unwrap_or(cfg.output_format);
    let shared = Arc::new(ClientShared::new(format, options.kind));
    hub.add_client(id, ClientInfo { peer, user: None, format: format.name(), kind: options.kind, sink: sink.clone() });
    let connected =
        hub.metrics().clients_connected.get_or_create(&crate::metrics::KindLabels { kind: options.kind }).clone();
    connected.inc();
    let span = tracing::info_span!("client", id, %peer, kind = options.kind);
    async move {
        tracing::debug!("connected");
        if options.banner {
            sink.send(ToClient::Raw(Bytes::from(format!("{}\r\n", hub.banner()))));
        }
        if !cfg.auth_required && options.user.is_none() {
            // An open proxy (`authrequired = no`) serves events without a Login, as 1.x did.
            sink.send(ToClient::Subscribe(hub.subscribe()));
        }
        let writer =
            tokio::spawn(writer::run(output, receiver, hub.clone(), shared.clone(), cancel.clone()).in_current_span());
        let mut session = ClientReader::new(id, peer, hub.clone(), sink.clone(), shared);
        if let Some(user) = &options.user {
            session.preauthenticate(user);
        }
        let auth_deadline =
            (cfg.auth_required && !cfg.auth_timeout.is_zero()).then(|| tokio::time::Instant::now() + cfg.auth_timeout);
        loop {
            let login_due = auth_deadline.filter(|_| !session.authenticated());
            let received = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                () = sleep_until_opt(login_due) => {
                    tracing::info!("no login within authtimeout; closing");
                    sink.send_message(Message::response_with("Error", None, Some("Authentication timeout")));
                    sink.send(ToClient::Close);
                    break;
                }
                received = input.next() => received,
            };
            match received {
                Received::Message(message) => {
                    tracing::trace!(ami = ?message, "from client");
                    match session.handle(message).await {
                        Flow::Continue => {}
                        Flow::Close => break,
                        Flow::Logoff(goodbye) => {
                            // Asterisk answers pipelined actions in order: those before the
                            // Logoff come before its Goodbye.
                            wait_for_answers(&sink, cfg.action_timeout, &cancel).await;
                            let id = goodbye.get_value("ActionID");
                            sink.send_message(goodbye);
                            sink.answered(id.as_ref());
                            sink.send(ToClient::Close);
                            break;
                        }
                    }
                }
                Received::Invalid(why) => {
                    tracing::info!(error = %why, "bad input from client");
                    session.after_earlier_answers().await;
                    sink.send_message(Message::response_with("Error", None, Some(&why)));
                }
                Received::BadInput(e) => {
                    session.after_earlier_answers().await;
                    if let Flow::Close = on_decode_error(&sink, &e, cfg.limits.charset) {
                        break;
                    }
                }
                Received::Reply(answer) => {
                    session.after_earlier_answers().await;
                    sink.send_message(answer);
                }
                Received::End => {
                    wait_for_answers(&sink, cfg.action_timeout, &cancel).await;
                    sink.send(ToClient::Close);
                    break;
                }
                Received::Failed => {
                    cancel.cancel();
                    break;
                }
            }
        }
        // The writer flushes what is queued (a Goodbye, a final error) and closes.
        let _ = writer.await;
        input.finish().await;
        hub.remove_client(id);
        connected.dec();
        tracing::debug!("disconnected");
    }
    .instrument(span)
    .await;
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Answers a decode error (with the skipped message's ActionID when one was read); returns
/// whether the connection must close.
fn on_decode_error(sink: &sink::ClientSink, error: &DecodeError, charset: Charset) -> Flow {
    tracing::info!(error = %error, "bad input from client");
    let mut answer = Message::with_capacity(3);
    answer.push("Response", "Error");
    if let Some(id) = error.action_id() {
        answer.push_raw(b"ActionID", id, charset);
    }
    match error {
        DecodeError::NoLineEnd { limit } => {
            let why = format!(
                "Bad input: no line end within {limit} bytes ({} x maxlinelength); closing connection",
                Limits::LINE_END_FACTOR
            );
            answer.push("Message", why);
        }
        _ if !error.can_continue() => answer.push("Message", format!("Bad input: {error}; closing connection")),
        _ => answer.push("Message", format!("Bad input: {error}")),
    }
    sink.send_message(answer);
    if error.can_continue() {
        Flow::Continue
    } else {
        sink.send(ToClient::Close);
        Flow::Close
    }
}

/// Waits until the actions the client sent so far are answered (after a Logoff, or once the
/// client half-closed its socket), for at most `limit` (`actiontimeout`) plus [`ANSWER_GRACE`].
async fn wait_for_answers(sink: &sink::ClientSink, limit: Duration, cancel: &CancellationToken) {
    tokio::select! {
        () = sink.actions_done() => {}
        () = cancel.cancelled() => {}
        () = tokio::time::sleep(limit + ANSWER_GRACE) => {
            tracing::debug!(in_flight = sink.in_flight(), "closing with actions still unanswered");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Users};
    use astmanproxy_handlers::OutputFormat;
    use tokio::io::AsyncReadExt;

    /// An event published after a login succeeded reaches the client even when the client's
    /// writer has not yet run: the login takes its place in the event buffer before its
    /// `Success` is queued (the writer used to subscribe only when it got to it, and missed
    /// whatever came in between).
    #[tokio::test]
    async fn an_event_right_after_the_login_is_not_missed() {
        let users = Users::from_pairs(&[("alice", "alicepw")]);
        let hub = Hub::new(Config::default(), users.clone());
        hub.set_users(users);
        let cancel = CancellationToken::new();
        let (sink, receiver) = sink::channel(1, 1 << 20, cancel.clone());
        let shared = Arc::new(ClientShared::new(OutputFormat::Standard, "ami"));
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mut session = ClientReader::new(1, peer, hub.clone(), sink.clone(), shared.clone());
        let login = Message::new().with("Action", "Login").with("Username", "alice").with("Secret", "alicepw");
        assert!(matches!(session.handle(login).await, handler::Flow::Continue));
        // Published before the writer has taken anything from the client's queue.
        hub.publish(crate::event::SharedEvent::new(
            Message::new().with("Event", "Right").with("Privilege", "user,all"),
        ));
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let output = transport::ByteOutput::new(server);
        let writer = tokio::spawn(writer::run(output, receiver, hub, shared, cancel.clone()));
        let mut out = String::new();
        let read = async {
            let mut chunk = [0u8; 4096];
            while !out.contains("Event: Right") {
                let n = client.read(&mut chunk).await.unwrap();
                assert!(n > 0, "closed: {out}");
                out.push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        };
        // Bounded only so that a missed event fails instead of hanging.
        let got = tokio::time::timeout(Duration::from_secs(10), read).await.is_ok();
        cancel.cancel();
        writer.await.unwrap();
        assert!(got, "the event was missed: {out}");
        let success = out.find("Response: Success").expect("the login's answer");
        let event = out.find("Event: Right").unwrap_or_else(|| panic!("the event was missed: {out}"));
        assert!(success < event, "the event came before the login's answer: {out}");
    }
}
