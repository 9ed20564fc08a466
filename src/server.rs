//! The server entry point: upstream sessions, the accept loop, and shutdown.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use astmanproxy_handlers::Message;

use crate::beacon::Setup;
use crate::config::Config;
use crate::error::Error;
use crate::http::detect::{detect, Prefixed, Protocol};
use crate::http::Front;
use crate::hub::Hub;
use crate::route::ToClient;

/// The sockets the proxy listens on, bound before privileges are dropped.
pub struct Listeners {
    /// AMI clients (plain, or TLS detected by its first byte when `acceptencryptedconnection`).
    pub ami: TcpListener,
    /// TLS-only clients (`tlslistenport`).
    pub tls: Option<TcpListener>,
    /// The admin HTTP endpoints (`adminlisten`).
    pub admin: Option<TcpListener>,
    /// The HTTP front (`httplistenport`).
    pub http: Option<TcpListener>,
}

impl Listeners {
    /// Binds every listener the configuration asks for.
    ///
    /// # Errors
    /// An address that cannot be bound, named in the error.
    pub async fn bind(config: &Config) -> Result<Listeners, Error> {
        let ami = listen(config, std::net::SocketAddr::new(config.listen_address, config.listen_port))?;
        Self::bind_extra(config, ami).await
    }

    /// Binds the TLS-only and admin listeners the configuration asks for, next to `ami`.
    async fn bind_extra(config: &Config, ami: TcpListener) -> Result<Listeners, Error> {
        let tls = match config.tls.listen_port {
            Some(port) => Some(listen(config, std::net::SocketAddr::new(config.listen_address, port))?),
            None => None,
        };
        let admin = match config.admin_listen {
            Some(addr) => Some(listen(config, addr)?),
            None => None,
        };
        let http = match config.http_listen_port {
            Some(port) => Some(listen(config, std::net::SocketAddr::new(config.listen_address, port))?),
            None => None,
        };
        Ok(Listeners { ami, tls, admin, http })
    }
}

/// One listener with the configured `listenbacklog`.
fn listen(config: &Config, addr: SocketAddr) -> Result<TcpListener, Error> {
    crate::listen::bind(addr, config.listen_backlog).map_err(|e| io_error(&format!("cannot listen on {addr}"), e))
}

/// Runs the proxy on an already-bound `listener` until `shutdown` completes.
///
/// Binds the TLS-only and admin listeners itself when the configuration asks for them; see
/// [`serve`] to pass them in.
///
/// # Errors
/// Only errors that stop the whole proxy (a listener or the TLS certificate cannot be set up); a
/// failing client or server never does.
pub async fn run(config: Config, listener: TcpListener, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let listeners = Listeners::bind_extra(&config, listener).await?;
    serve(config, listeners, shutdown).await
}

/// Runs the proxy on bound listeners until `shutdown`.
///
/// Starts one upstream session per configured server and accepts clients. On shutdown it stops
/// accepting, stops every upstream session (each logs off Asterisk and answers its pending
/// actions), sends every client `Event: ProxyShutdown` and closes it after its queue is flushed,
/// and waits for all of it up to `shutdowngrace`.
///
/// # Errors
/// Only errors that stop the whole proxy (the TLS certificate cannot be loaded); a failing
/// client or server never does.
pub async fn serve(config: Config, listeners: Listeners, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    serve_with_beacon(config, Setup::default(), listeners, shutdown).await
}

/// [`serve`] with the Beacon service set up by the caller (`beacon.conf`, read by
/// [`crate::beacon::report::BeaconConfig::for_proxy`]); [`serve`] starts it with reporting off.
///
/// # Errors
/// As [`serve`].
pub async fn serve_with_beacon(
    config: Config,
    beacon: Setup,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let acceptor = crate::tls::client_acceptor(&config.tls)?;
    serve_with_acceptor(config, beacon, listeners, acceptor, shutdown).await
}

/// [`serve`] with the TLS acceptor for clients already loaded (by
/// [`crate::tls::client_acceptor`], before privileges are dropped).
///
/// # Errors
/// As [`serve`].
pub async fn serve_with_acceptor(
    config: Config,
    beacon: Setup,
    listeners: Listeners,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let Listeners { ami: listener, tls: tls_listener, admin, http } = listeners;
    let clients_token = CancellationToken::new();
    let tracker = TaskTracker::new();
    // One copy of the users: the hub's (reloads swap it); the configuration it shares has none.
    let mut config = config;
    let users = std::mem::take(&mut config.users);
    let hub = Hub::new(config, users);
    for server in hub.config().servers.clone() {
        // Names are unique: the configuration was validated.
        let _ = hub.spawn_server(server, crate::hub::Origin::File);
    }
    crate::beacon::Beacon::start(&hub, beacon, Arc::new(astmanproxy_beacon_wire::clock::SystemClock));
    #[cfg(unix)]
    if let Some((config_path, users_path)) = hub.config().sources.clone() {
        let reload_hub = hub.clone();
        hub.spawn_background(move |_| crate::reload::on_sighup(reload_hub, config_path, users_path));
    }
    if let Some(admin) = admin {
        let addr = admin.local_addr().map_err(|e| io_error("admin listener address", e))?;
        tracing::info!("admin endpoints (/metrics, /healthz, /readyz) on http://{addr}");
        let (admin_hub, admin_tracker) = (hub.clone(), tracker.clone());
        hub.spawn_background(move |cancel| crate::admin::serve(admin, admin_hub, cancel, admin_tracker));
    }
    // HTTP connections and AJAM sessions end first at shutdown.
    let http_token = CancellationToken::new();
    let front = Front::new(hub.clone(), http_token.clone(), tracker.clone());
    if let Some(http) = http {
        let addr = http.local_addr().map_err(|e| io_error("HTTP listener address", e))?;
        tracing::info!("HTTP front on http://{addr}");
        let http_front = front.clone();
        hub.spawn_background(move |_| crate::http::serve(http, http_front));
    }
    if let Some(tls) = &tls_listener {
        tracing::info!(addr = %tls.local_addr().map_err(|e| io_error("TLS listener address", e))?, "accepting TLS AMI clients");
    }
    // WebSocket sessions take their room from the same `maxclients`.
    let limit = front.limit.clone();
    tracing::info!(addr = %listener.local_addr().map_err(|e| io_error("listener address", e))?, "accepting AMI clients");
    // systemd `Type=notify`: ready once every listener is bound and every server's first
    // connection attempt is under way (an Asterisk that is down does not hold up the start).
    // Without NOTIFY_SOCKET (not under systemd) this sends nothing.
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!("cannot tell systemd the proxy is ready (NOTIFY_SOCKET): {e}");
    }
    tokio::pin!(shutdown);
    loop {
        let (accepted, tls_only) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => (accepted, false),
            Some(accepted) = accept_opt(tls_listener.as_ref()) => (accepted, true),
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                match limit.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let (token, acceptor, front) = (clients_token.clone(), acceptor.clone(), front.clone());
                        tracker.spawn(async move {
                            connection(stream, peer, front, token, acceptor, tls_only).await;
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
    drop(tls_listener);
    http_token.cancel();
    drain(hub, listener, clients_token, tracker).await;
    Ok(())
}

/// Accepts on an optional listener (pending forever without one).
async fn accept_opt(listener: Option<&TcpListener>) -> Option<io::Result<(TcpStream, SocketAddr)>> {
    match listener {
        Some(l) => Some(l.accept().await),
        None => std::future::pending().await,
    }
}

/// Sorts out TLS, HTTP or AMI for one connection, in its own task (a slow or silent peer never
/// holds up accepting others), then serves it.
async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    front: Front,
    token: CancellationToken,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    tls_only: bool,
) {
    let hub = front.hub.clone();
    let tls_cfg = hub.config().tls.clone();
    let http_wait = hub.config().http.detect_timeout;
    let sniff_tls = acceptor.is_some() && !tls_only && tls_cfg.accept_encrypted;
    let sniff_http = !http_wait.is_zero();
    // AMI clients wait for the banner, so silence means AMI: decide on the first bytes, or after
    // `sslclienthellotimeout` / `httpdetecttimeout`, whichever is longer.
    let (protocol, prefix) = if tls_only {
        (Protocol::Tls, BytesMut::new())
    } else if sniff_tls || sniff_http {
        let wait = if sniff_tls { tls_cfg.client_hello_timeout.max(http_wait) } else { http_wait };
        match detect(&mut stream, wait, sniff_tls, sniff_http).await {
            Some(found) => found,
            None => return,
        }
    } else {
        (Protocol::Ami, BytesMut::new())
    };
    let stream = Prefixed::new(prefix, stream);
    match (protocol, acceptor) {
        (Protocol::Tls, Some(acceptor)) => {
            match tokio::time::timeout(tls_cfg.handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(mut tls)) => {
                    let inner = if sniff_http { detect(&mut tls, http_wait, false, true).await } else { None };
                    match inner {
                        Some((Protocol::Http, prefix)) => {
                            crate::http::serve_connection(Prefixed::new(prefix, tls), peer, front).await
                        }
                        Some((_, prefix)) => crate::client::serve(Prefixed::new(prefix, tls), peer, hub, token).await,
                        None if sniff_http => {}
                        None => crate::client::serve(tls, peer, hub, token).await,
                    }
                }
                Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
            }
        }
        _ if !tls_cfg.accept_unencrypted => {
            tracing::info!(%peer, "plain client refused (acceptunencryptedconnection = no)");
            let mut stream = stream;
            let text = b"Response: Error\r\nMessage: This proxy accepts TLS connections only\r\n\r\n";
            let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(text)).await;
        }
        (Protocol::Http, _) => crate::http::serve_connection(stream, peer, front).await,
        _ => crate::client::serve(stream, peer, hub, token).await,
    }
}

/// The shutdown sequence (see [`serve`]).
async fn drain(hub: Hub, listener: TcpListener, clients_token: CancellationToken, tracker: TaskTracker) {
    let grace = hub.config().shutdown_grace;
    let deadline = tokio::time::Instant::now() + grace;
    tracing::info!(?grace, "shutting down");
    drop(listener);
    if !hub.stop_servers(deadline).await {
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
