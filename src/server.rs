//! The server entry point: upstream sessions, the accept loop, and shutdown.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use astmanproxy_handlers::Message;

use crate::client::sink::ToClient;
use crate::config::Config;
use crate::error::Error;
use crate::hub::Hub;

/// Runs the proxy on an already-bound `listener` until `shutdown` completes.
///
/// Binds the admin listener itself when `adminlisten` is set; see [`serve`] to pass one in.
///
/// # Errors
/// Only errors that stop the whole proxy (the admin address cannot be bound); a failing client
/// or server never does.
pub async fn run(config: Config, listener: TcpListener, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let admin = match config.admin_listen {
        Some(addr) => {
            Some(TcpListener::bind(addr).await.map_err(|e| io_error(&format!("cannot listen on {addr}"), e))?)
        }
        None => None,
    };
    serve(config, listener, admin, shutdown).await
}

/// Runs the proxy with already-bound AMI and (optional) admin listeners until `shutdown`.
///
/// Starts one upstream session per configured server and accepts clients. On shutdown it stops
/// accepting, stops every upstream session (each logs off Asterisk and answers its pending
/// actions), sends every client `Event: ProxyShutdown` and closes it after its queue is flushed,
/// and waits for all of it up to `shutdowngrace`.
///
/// # Errors
/// Only errors that stop the whole proxy; a failing client or server never does.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    admin: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let servers_token = CancellationToken::new();
    let clients_token = CancellationToken::new();
    let servers_tracker = TaskTracker::new();
    let tracker = TaskTracker::new();
    let users = config.users.clone();
    let hub = Hub::new(config, users);
    for server in hub.config().servers.clone() {
        let handle = crate::upstream::spawn(server, hub.clone(), &servers_token, &servers_tracker);
        hub.add_server(handle);
    }
    if let Some(admin) = admin {
        let addr = admin.local_addr().map_err(|e| io_error("admin listener address", e))?;
        tracing::info!("admin endpoints (/metrics, /healthz, /readyz) on http://{addr}");
        tracker.spawn(crate::admin::serve(admin, hub.clone(), clients_token.clone(), tracker.clone()));
    }
    let limit = Arc::new(Semaphore::new(hub.config().max_clients.max(1)));
    tracing::info!(addr = %listener.local_addr().map_err(|e| io_error("listener address", e))?, "accepting AMI clients");
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                match limit.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let (hub, token) = (hub.clone(), clients_token.clone());
                        tracker.spawn(async move {
                            crate::client::serve(stream, peer, hub, token).await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        tracker.spawn(refuse(stream, peer));
                    }
                }
            }
            Err(e) => accept_backoff(e).await,
        }
    }
    drain(hub, listener, servers_token, servers_tracker, clients_token, tracker).await;
    Ok(())
}

/// The shutdown sequence (see [`serve`]).
async fn drain(
    hub: Hub,
    listener: TcpListener,
    servers_token: CancellationToken,
    servers_tracker: TaskTracker,
    clients_token: CancellationToken,
    tracker: TaskTracker,
) {
    let grace = hub.config().shutdown_grace;
    let deadline = tokio::time::Instant::now() + grace;
    tracing::info!(?grace, "shutting down");
    drop(listener);
    servers_token.cancel();
    servers_tracker.close();
    if tokio::time::timeout_at(deadline, servers_tracker.wait()).await.is_err() {
        tracing::warn!("some server sessions did not end within the grace period");
    }
    let open_proxy = !hub.config().auth_required;
    for (_, client) in hub.clients() {
        if client.user.is_none() && !open_proxy {
            // Nothing but login answers ever reaches a client that has not logged in.
            client.sink.send(ToClient::Close);
            continue;
        }
        let notice = Message::new()
            .with("Event", "ProxyShutdown")
            .with("Privilege", "system,all")
            .with("Message", "Proxy shutting down");
        client.sink.send_message(notice);
        client.sink.send(ToClient::Close);
    }
    tracker.close();
    if tokio::time::timeout_at(deadline, tracker.wait()).await.is_err() {
        tracing::warn!("some clients did not finish within the grace period; closing them");
    }
    clients_token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(1), tracker.wait()).await;
}

/// Tells a client over the connection limit why it is refused, then closes.
async fn refuse(mut stream: TcpStream, peer: SocketAddr) {
    tracing::warn!(%peer, "connection limit reached (maxclients); refusing client");
    let text = b"Response: Error\r\nMessage: Too many connections to the proxy (maxclients)\r\n\r\n";
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(text)).await;
}

/// Accept errors never end the loop: per-connection ones are ignored, resource exhaustion
/// (EMFILE, ENFILE, ENOBUFS) sleeps a little.
async fn accept_backoff(e: io::Error) {
    match e.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted => {}
        _ => {
            tracing::warn!(error = %e, "accept failed; backing off");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn io_error(context: &str, source: io::Error) -> Error {
    Error::Io { context: context.to_string(), source }
}
