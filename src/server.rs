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

use crate::config::Config;
use crate::error::Error;
use crate::hub::Hub;

/// How long shutdown waits for clients and upstream sessions to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Runs the proxy on an already-bound `listener` until `shutdown` completes.
///
/// Starts one upstream session per configured server, accepts clients, and on shutdown stops
/// accepting, tells every task to finish, and waits for them up to [`SHUTDOWN_GRACE`].
///
/// # Errors
/// Only errors that stop the whole proxy; a failing client or server never does.
pub async fn run(config: Config, listener: TcpListener, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let token = CancellationToken::new();
    let tracker = TaskTracker::new();
    let users = config.users.clone();
    let hub = Hub::new(config, users);
    for server in hub.config().servers.clone() {
        let handle = crate::upstream::spawn(server, hub.clone(), &token, &tracker);
        hub.add_server(handle);
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
                        let (hub, token) = (hub.clone(), token.clone());
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
    tracing::info!("shutting down");
    drop(listener);
    token.cancel();
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await.is_err() {
        tracing::warn!("some tasks did not finish within the shutdown grace period");
    }
    Ok(())
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
