//! astmanproxy 2: a multiplexing proxy for the Asterisk Manager Interface.
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
