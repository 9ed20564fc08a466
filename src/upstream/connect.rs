//! Connecting to one Asterisk: TCP connect, banner, login, `FullyBooted`, each under a deadline.

use std::time::Duration;

use astmanproxy_handlers::{AmiDecoder, Kind, Message};
use bytes::BytesMut;
use md5::{Digest, Md5};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use super::error::UpstreamError;
use crate::config::{Config, ServerConfig};
use crate::tls::BoxStream;

/// ActionIDs the proxy uses during its own login (never seen by clients).
const CHALLENGE_ID: &str = "astmanproxy-challenge";
const LOGIN_ID: &str = "astmanproxy-login";

/// A logged-in connection, ready for the session loop.
pub struct Connection {
    pub stream: BoxStream,
    pub rbuf: BytesMut,
    pub decoder: AmiDecoder,
    pub ami_version: String,
    /// Asterisk's `FullyBooted` of this login (none with `events = off`, or when it never came).
    pub booted: Option<Message>,
}

/// Connects, reads the banner, logs in and waits for `FullyBooted` (unless `events = off`).
///
/// # Errors
/// Timeouts, refused connections, a banner that is not AMI, and failed logins.
pub async fn connect(
    server: &ServerConfig,
    cfg: &Config,
    tls: Option<&tokio_rustls::TlsConnector>,
) -> Result<Connection, UpstreamError> {
    let deadline = Instant::now() + cfg.connect_timeout;
    let addr = format!("{}:{}", server.host, server.port);
    let tcp = timeout_at(deadline, TcpStream::connect(&addr))
        .await
        .map_err(|_| UpstreamError::Timeout("connect"))?
        .map_err(UpstreamError::Io)?;
    // Small AMI messages must not wait for Nagle.
    let _ = tcp.set_nodelay(true);
    let stream: BoxStream = match tls {
        Some(connector) => {
            let name = crate::tls::server_name(&server.host)
                .map_err(|source| UpstreamError::ServerName { host: server.host.clone(), source })?;
            let tls = timeout_at(deadline, connector.connect(name, tcp))
                .await
                .map_err(|_| UpstreamError::Timeout("TLS handshake"))?
                .map_err(|e| UpstreamError::Protocol(format!("TLS handshake failed: {e}")))?;
            Box::new(tls)
        }
        None => Box::new(tcp),
    };
    let mut conn = Connection {
        stream,
        rbuf: BytesMut::with_capacity(16 * 1024),
        decoder: AmiDecoder::new(cfg.limits),
        ami_version: String::new(),
        booted: None,
    };

    let banner = loop {
        if let Some(line) = conn.decoder.decode_line(&mut conn.rbuf)? {
            break line;
        }
        read_more(&mut conn, deadline, "banner").await?;
    };
    conn.ami_version =
        parse_banner(&banner).ok_or_else(|| UpstreamError::Protocol(format!("not an AMI banner: {banner:?}")))?;

    let deadline = Instant::now() + cfg.login_timeout;
    let challenge = Message::new().with("Action", "Challenge").with("AuthType", "MD5").with("ActionID", CHALLENGE_ID);
    write(&mut conn, &challenge).await?;
    let answer = wait_response(&mut conn, CHALLENGE_ID, deadline).await?;
    let mut login = Message::new().with("Action", "Login").with("Username", &server.username);
    match answer.get("Challenge").filter(|_| answer.response() == Some("Success")) {
        Some(nonce) => {
            let key = format!("{:x}", Md5::digest(format!("{nonce}{}", server.secret.expose())));
            login.push("AuthType", "MD5");
            login.push("Key", key);
        }
        None => login.push("Secret", server.secret.expose()),
    }
    login.push("Events", &server.events);
    login.push("ActionID", LOGIN_ID);
    write(&mut conn, &login).await?;
    let answer = wait_response(&mut conn, LOGIN_ID, deadline).await?;
    if answer.response() != Some("Success") {
        let why = answer.get("Message").unwrap_or("no reason given").to_string();
        return Err(UpstreamError::LoginFailed(why));
    }
    if !server.events.trim().eq_ignore_ascii_case("off") {
        conn.booted = wait_fully_booted(&mut conn, deadline).await?;
    }
    Ok(conn)
}

/// `Asterisk Call Manager/11.0.0` -> `11.0.0`.
pub fn parse_banner(line: &str) -> Option<String> {
    let (name, version) = line.trim().rsplit_once('/')?;
    (name.starts_with("Asterisk Call Manager") && !version.is_empty()).then(|| version.to_string())
}

async fn read_more(conn: &mut Connection, deadline: Instant, what: &'static str) -> Result<(), UpstreamError> {
    let n = timeout_at(deadline, conn.stream.read_buf(&mut conn.rbuf))
        .await
        .map_err(|_| UpstreamError::Timeout(what))?
        .map_err(UpstreamError::Io)?;
    if n == 0 {
        return Err(UpstreamError::Closed(what));
    }
    Ok(())
}

async fn write(conn: &mut Connection, message: &Message) -> Result<(), UpstreamError> {
    let mut out = BytesMut::new();
    tracing::trace!(ami = ?message, "to Asterisk");
    astmanproxy_handlers::standard::encode(message, &mut out);
    conn.stream.write_all(&out).await.map_err(UpstreamError::Io)
}

async fn next_message(conn: &mut Connection, deadline: Instant, what: &'static str) -> Result<Message, UpstreamError> {
    loop {
        if let Some(m) = conn.decoder.decode(&mut conn.rbuf)? {
            tracing::trace!(ami = ?m, "from Asterisk");
            return Ok(m);
        }
        read_more(conn, deadline, what).await?;
    }
}

async fn wait_response(conn: &mut Connection, id: &str, deadline: Instant) -> Result<Message, UpstreamError> {
    loop {
        let m = next_message(conn, deadline, "login").await?;
        if m.kind() == Kind::Response && m.action_id() == Some(id) {
            return Ok(m);
        }
    }
}

async fn wait_fully_booted(conn: &mut Connection, deadline: Instant) -> Result<Option<Message>, UpstreamError> {
    loop {
        match next_message(conn, deadline, "FullyBooted").await {
            Ok(m) if m.event().is_some_and(|e| e.eq_ignore_ascii_case("FullyBooted")) => return Ok(Some(m)),
            Ok(_) => {}
            Err(UpstreamError::Timeout(_)) => {
                // Asterisk sends FullyBooted only to sessions whose event mask includes
                // `system`; a narrower mask must not keep the server down forever.
                tracing::warn!("no FullyBooted within the login timeout; counting the server as ready");
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
    }
}

/// How long to wait for the answer to the proxy's own Logoff at shutdown.
pub const LOGOFF_GRACE: Duration = Duration::from_millis(500);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banners() {
        assert_eq!(parse_banner("Asterisk Call Manager/11.0.0").as_deref(), Some("11.0.0"));
        assert_eq!(parse_banner("Asterisk Call Manager/1.1"), Some("1.1".into()));
        assert_eq!(parse_banner("SSH-2.0-OpenSSH"), None);
    }
}
