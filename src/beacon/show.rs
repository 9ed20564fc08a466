//! `astmanproxy beacon show server`: asks a running proxy over AMI and prints the res_beacon
//! layout, from the same [`ServerData`] that `BeaconShowServer` and the report body use.

use std::net::SocketAddr;
use std::time::Duration;

use astmanproxy_handlers::{standard, AmiDecoder, Message};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::data::ServerData;

/// Why `beacon show server` got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ShowError {
    /// The whole query took longer than its deadline.
    #[error("no answer from {addr} within {DEADLINE:?}")]
    Timeout {
        /// The proxy asked.
        addr: SocketAddr,
    },
    /// No TCP connection.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The proxy asked.
        addr: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The proxy's answer could not be read as AMI.
    #[error("unreadable answer: {0}")]
    Decode(#[from] astmanproxy_handlers::DecodeError),
    /// The proxy closed the connection before the answer was complete.
    #[error("the proxy closed the connection")]
    Closed,
    /// The proxy refused the login.
    #[error("login refused: {0}")]
    LoginRefused(String),
    /// The proxy answered the action with an error.
    #[error("{0}")]
    Refused(String),
}

/// How long the whole query may take.
const DEADLINE: Duration = Duration::from_secs(30);

/// Logs in to the proxy at `addr`, asks `BeaconShowServer` (for `server`, or all) and renders
/// the answer.
///
/// # Errors
/// The proxy cannot be reached, refuses the login, or does not answer in time.
pub async fn show_server(
    addr: SocketAddr,
    user: &str,
    secret: &str,
    server: Option<&str>,
) -> Result<String, ShowError> {
    tokio::time::timeout(DEADLINE, query(addr, user, secret, server)).await.map_err(|_| ShowError::Timeout { addr })?
}

async fn query(addr: SocketAddr, user: &str, secret: &str, server: Option<&str>) -> Result<String, ShowError> {
    let mut stream = TcpStream::connect(addr).await.map_err(|source| ShowError::Connect { addr, source })?;
    let mut decoder = AmiDecoder::default();
    let mut buf = BytesMut::new();
    let send = async |stream: &mut TcpStream, m: Message| {
        let mut out = BytesMut::new();
        standard::encode(&m, &mut out);
        stream.write_all(&out).await
    };
    send(
        &mut stream,
        Message::new().with("Action", "Login").with("Username", user).with("Secret", secret).with("ActionID", "l"),
    )
    .await?;
    let mut ask = Message::new().with("Action", "BeaconShowServer").with("ActionID", "beacon");
    if let Some(name) = server {
        ask.push("Server", name);
    }
    let mut servers = Vec::new();
    let mut asked = false;
    // The banner line first.
    while decoder.decode_line(&mut buf)?.is_none() {
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(ShowError::Closed);
        }
    }
    loop {
        while let Some(m) = decoder.decode(&mut buf)? {
            match (m.action_id(), m.response(), m.event()) {
                (Some("l"), Some("Success"), _) if !asked => {
                    send(&mut stream, ask.clone()).await?;
                    asked = true;
                }
                (Some("l"), Some(_), _) => {
                    return Err(ShowError::LoginRefused(m.get("Message").unwrap_or_default().to_string()))
                }
                (Some("beacon"), Some("Error"), _) => {
                    return Err(ShowError::Refused(m.get("Message").unwrap_or("error").to_string()))
                }
                (Some("beacon"), _, Some("BeaconShowServerResponse")) => servers.push(ServerData::from_event(&m)),
                (Some("beacon"), _, Some("BeaconShowServerComplete")) => {
                    return Ok(servers.iter().map(ServerData::render).collect::<Vec<_>>().join("\n"));
                }
                _ => {}
            }
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(ShowError::Closed);
        }
    }
}
