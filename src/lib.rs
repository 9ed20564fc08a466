//! astmanproxy 2: a multiplexing proxy for the Asterisk Manager Interface.
//!
//! # Layers (who may import whom)
//!
//! A module imports only modules of its own layer or of layers below it, and no two files import
//! each other in a circle; `tests/it/layers.rs` checks both on every test run, from the code's
//! own `crate::`/`super::` paths. From the top:
//!
//! ```text
//!  main.rs (the binary: flags, start-up, --check-config, beacon show)
//!    |
//!  server, reload, check, cli, error       listeners and start-up, SIGHUP, --check-config
//!    |
//!  client, http, cmd, beacon, admin         transports (AMI over TCP/TLS; HTTP 1.x, AJAM,
//!    |                                      WebSocket), the local actions (one enum, one file
//!    |                                      each), Beacon (a service registering its actions),
//!    |                                      the admin listener (metrics, health)
//!  hub                                      registry of servers and clients
//!    |
//!  upstream                                 one task per Asterisk (event session + action
//!    |                                      sessions); it alone decides when an answer is complete
//!  route                                    client sinks, requests and their answers (Call), the
//!    |                                      one routing rule (forward), the event-bus trait
//!  tls, auth, extension                     rustls both ways; users, policies, filters, the login
//!    |                                      limiter and the one login function; the extension trait
//!  config, event, metrics                   plain configuration (shared as Arc<Config>), the
//!    |                                      shared event and its in-process buffer, metrics
//!  logfile, privileges                      leaves
//!    |
//!  crates: astmanproxy-handlers (Message, codecs, input decoding; sans-IO), astmanproxy-net
//!          (listening, stall limits, PEM), astmanproxy-beacon-wire (Beacon's REST bodies)
//! ```
//!
//! Beside the proxy: the Beacon collector (`crates/beacon-collector`), the AMI simulator
//! (`crates/ami-sim`) and `ampbench` (`crates/ampbench`) are crates of their own; none is in the
//! proxy's dependency graph. `docs/architecture.md` walks one action and one event through these
//! layers file by file.
pub mod admin;
pub mod auth;
pub mod beacon;
pub mod check;
pub mod cli;
pub mod client;
pub mod cmd;
pub mod config;
pub mod error;
pub mod event;
pub mod extension;
pub mod http;
pub mod hub;
pub mod logfile;
pub mod metrics;
pub mod privileges;
pub mod reload;
pub mod route;
pub mod server;
pub mod tls;
pub mod upstream;

pub use astmanproxy_net::{listen, shutdown};
pub use server::{run, serve, Listeners};
