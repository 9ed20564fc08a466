//! `astmanproxy beacon show server`: asks a running proxy over AMI and prints the res_beacon
//! layout, from the same [`ServerData`] that `BeaconShowServer` and the report body use.

use std::net::SocketAddr;
use std::time::Duration;

use astmanproxy_handlers::{standard, AmiDecoder, Message};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::ServerData;

/// How long the whole query may take.
const DEADLINE: Duration = Duration::from_secs(30);

/// Logs in to the proxy at `addr`, asks `BeaconShowServer` (for `server`, or all) and renders
/// the answer.
///
/// # Errors
/// The proxy cannot be reached, refuses the login, or does not answer in time.
pub async fn show_server(addr: SocketAddr, user: &str, secret: &str, server: Option<&str>) -> Result<String, String> {
    tokio::time::timeout(DEADLINE, query(addr, user, secret, server))
        .await
        .map_err(|_| format!("no answer from {addr} within {DEADLINE:?}"))?
}

async fn query(addr: SocketAddr, user: &str, secret: &str, server: Option<&str>) -> Result<String, String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let mut decoder = AmiDecoder::default();
    let mut buf = BytesMut::new();
    let send = async |stream: &mut TcpStream, m: Message| {
        let mut out = BytesMut::new();
        standard::encode(&m, &mut out);
        stream.write_all(&out).await.map_err(|e| e.to_string())
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
    while decoder.decode_line(&mut buf).map_err(|e| e.to_string())?.is_none() {
        if stream.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
            return Err("the proxy closed the connection".to_string());
        }
    }
    loop {
        while let Some(m) = decoder.decode(&mut buf).map_err(|e| e.to_string())? {
            match (m.action_id(), m.response(), m.event()) {
                (Some("l"), Some("Success"), _) if !asked => {
                    send(&mut stream, ask.clone()).await?;
                    asked = true;
                }
                (Some("l"), Some(_), _) => {
                    return Err(format!("login refused: {}", m.get("Message").unwrap_or_default()))
                }
                (Some("beacon"), Some("Error"), _) => return Err(m.get("Message").unwrap_or("error").to_string()),
                (Some("beacon"), _, Some("BeaconShowServerResponse")) => servers.push(ServerData::from_event(&m)),
                (Some("beacon"), _, Some("BeaconShowServerComplete")) => {
                    return Ok(servers.iter().map(ServerData::render).collect::<Vec<_>>().join("\n"));
                }
                _ => {}
            }
        }
        if stream.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
            return Err("the proxy closed the connection".to_string());
        }
    }
}
