//! One simulated AMI connection: a reader that answers actions in order and a writer that drains
//! the connection's queue (answers and events share it, so their order is kept).

use std::sync::atomic::Ordering;
use std::time::Duration;

use astmanproxy_handlers::{standard, AmiDecoder, Message};
use bytes::{Bytes, BytesMut};
use md5::{Digest, Md5};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::{script, AmiSim, ConnHandle};
use crate::event::ClassMask;

/// Serves one connection until it closes, logs off or is killed.
pub async fn serve(sim: AmiSim, stream: TcpStream, conn: ConnHandle, rx: mpsc::Receiver<Bytes>) {
    let (reader, writer) = stream.into_split();
    let writing = tokio::spawn(write_loop(writer, rx, conn.cancel.clone()));
    let banner = Bytes::from(format!("Asterisk Call Manager/{}\r\n", sim.options().ami_version));
    if conn.tx.send(banner).await.is_ok() {
        let mut session = Session { sim, conn: conn.clone(), challenge: None };
        session.read_loop(reader).await;
    }
    // Let the writer flush a final answer (Goodbye, Authentication failed), then close: an
    // empty chunk tells it to.
    let _ = tokio::time::timeout(Duration::from_secs(1), conn.tx.send(Bytes::new())).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), writing).await;
    conn.cancel.cancel();
}

async fn write_loop(
    mut writer: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::Receiver<Bytes>,
    cancel: tokio_util::sync::CancellationToken,
) {
    loop {
        let bytes = tokio::select! {
            () = cancel.cancelled() => return,
            b = rx.recv() => match b { Some(b) if !b.is_empty() => b, _ => break },
        };
        let result = tokio::select! {
            () = cancel.cancelled() => return,
            r = writer.write_all(&bytes) => r,
        };
        if result.is_err() {
            cancel.cancel();
            return;
        }
    }
    let _ = writer.shutdown().await;
}

struct Session {
    sim: AmiSim,
    conn: ConnHandle,
    challenge: Option<String>,
}

enum Flow {
    Continue,
    Close,
}

impl Session {
    async fn read_loop(&mut self, mut reader: tokio::net::tcp::OwnedReadHalf) {
        let mut decoder = AmiDecoder::default();
        let mut buf = BytesMut::with_capacity(4096);
        loop {
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(action)) => {
                        if let Flow::Close = self.handle(action).await {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(_) => return,
                }
            }
            buf.reserve(4096);
            let read = tokio::select! {
                () = self.conn.cancel.cancelled() => return,
                r = reader.read_buf(&mut buf) => r,
            };
            match read {
                Ok(0) | Err(_) => {
                    self.conn.cancel.cancel();
                    return;
                }
                Ok(_) => {}
            }
        }
    }

    async fn send(&self, message: &Message) {
        let mut out = BytesMut::new();
        standard::encode(message, &mut out);
        let _ = self.conn.tx.send(out.freeze()).await;
    }

    fn logged_in(&self) -> bool {
        self.conn.logged_in.load(Ordering::Relaxed)
    }

    async fn handle(&mut self, action: Message) -> Flow {
        let id = action.action_id().map(str::to_owned);
        let id = id.as_deref();
        let Some(name) = action.action().map(str::to_owned) else {
            self.send(&script::missing_action(id)).await;
            return Flow::Continue;
        };
        match name.to_ascii_lowercase().as_str() {
            "login" => return self.login(&action, id).await,
            "challenge" => {
                let nonce = rand::random::<u32>().to_string();
                self.challenge = Some(nonce.clone());
                self.send(&Message::response_with("Success", id, None).with("Challenge", nonce)).await;
                return Flow::Continue;
            }
            "logoff" => {
                self.send(&Message::response_with("Goodbye", id, Some("Thanks for all the fish."))).await;
                return Flow::Close;
            }
            _ if !self.logged_in() => {
                self.send(&Message::response_with("Error", id, Some("Permission denied"))).await;
                return Flow::Continue;
            }
            _ => {}
        }
        self.sim.record(&action);
        if AmiSim::matches(&self.sim.inner.hold, &name) {
            return Flow::Continue;
        }
        match name.to_ascii_lowercase().as_str() {
            "ping" if !self.sim.options().ping_replies => Flow::Continue,
            "events" => {
                let mask = ClassMask::parse(action.get("EventMask").unwrap_or("off"));
                self.conn.mask.store(mask.0, Ordering::Relaxed);
                let answer =
                    Message::response_with("Success", id, None).with("Events", if mask.is_on() { "On" } else { "Off" });
                self.send(&answer).await;
                Flow::Continue
            }
            _ => self.scripted(&action, &name, id).await,
        }
    }

    async fn scripted(&mut self, action: &Message, name: &str, id: Option<&str>) -> Flow {
        let Some(mut answer) = script::answer(action, id) else {
            self.send(&script::unknown_action(name, id)).await;
            return Flow::Continue;
        };
        if name.eq_ignore_ascii_case("Ping") {
            if let Some(first) = answer.first_mut() {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                first.set("Timestamp", format!("{}.{:06}", now.as_secs(), now.subsec_micros()));
            }
        }
        if name.eq_ignore_ascii_case("Command") && self.sim.options().legacy_command {
            if let Some(first) = answer.first_mut() {
                *first = script::legacy_command(first);
            }
        }
        if AmiSim::matches(&self.sim.inner.drop_mid_list, name) {
            for m in answer.iter().take(2) {
                self.send(m).await;
            }
            // Give the writer a moment to flush, then drop the connection mid-list.
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.conn.cancel.cancel();
            return Flow::Close;
        }
        let is_async_originate = name.eq_ignore_ascii_case("Originate")
            && action.get("Async").is_some_and(|a| matches!(a.to_ascii_lowercase().as_str(), "true" | "yes" | "1"));
        if name.eq_ignore_ascii_case("Originate") && !is_async_originate {
            // A synchronous Originate answers only once the call is up.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for m in &answer {
            self.send(m).await;
        }
        if is_async_originate {
            let (response, events) = script::originate_events(id);
            let sim = self.sim.clone();
            let conn = self.conn.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                for e in events {
                    sim.emit(e);
                }
                // OriginateResponse is a broadcast event carrying the originator's ActionID.
                if ClassMask(conn.mask.load(Ordering::Relaxed)).allows(ClassMask::of_event(&response)) {
                    let mut out = BytesMut::new();
                    standard::encode(&response, &mut out);
                    conn.push(out.freeze());
                }
            });
        }
        Flow::Continue
    }

    async fn login(&mut self, action: &Message, id: Option<&str>) -> Flow {
        let opts = self.sim.options();
        let user_ok = action.get("Username") == Some(opts.username.as_str());
        let secret_ok = if action.get("AuthType").is_some_and(|t| t.eq_ignore_ascii_case("md5")) {
            let expected = self.challenge.as_ref().map(|c| format!("{:x}", Md5::digest(format!("{c}{}", opts.secret))));
            expected.is_some() && action.get("Key").map(str::to_ascii_lowercase) == expected
        } else {
            action.get("Secret") == Some(opts.secret.as_str())
        };
        if !(user_ok && secret_ok) {
            tokio::time::sleep(opts.auth_fail_delay).await;
            self.send(&Message::response_with("Error", id, Some("Authentication failed"))).await;
            return Flow::Close;
        }
        let mask = action.get("Events").map_or(ClassMask::ALL, ClassMask::parse);
        self.conn.mask.store(mask.0, Ordering::Relaxed);
        self.send(&Message::response_with("Success", id, Some("Authentication accepted"))).await;
        if mask.allows(ClassMask::parse("system")) {
            let booted = Message::new()
                .with("Event", "FullyBooted")
                .with("Privilege", "system,all")
                .with("Uptime", "8")
                .with("LastReload", "8")
                .with("Status", "Fully Booted");
            self.send(&booted).await;
        }
        self.conn.logged_in.store(true, Ordering::Relaxed);
        self.sim.inner.logins.fetch_add(1, Ordering::Relaxed);
        Flow::Continue
    }
}
