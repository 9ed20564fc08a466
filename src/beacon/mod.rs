//! Beacon: the anonymous usage data of each Asterisk server behind the proxy (DESIGN section 7),
//! shown by `Action: BeaconShowServer`.
//!
//! [`ServerData`] is gathered over AMI ([`gather`]) from `CoreSettings`, `CoreStatus`,
//! `Command: core show version`, `Command: module show` and `Command: core show calls`, and is
//! the single struct that both the AMI answer ([`show_server_events`]) and the report body
//! ([`ServerData::to_report`]) render from. [`report`] sends it to Beacon servers (opt-in,
//! `beacon.conf`) and fills the [`Posting`] fields.

mod cache;
mod data;
pub mod gather;
mod parse;
pub mod report;
pub mod service;
pub mod show;

pub use astmanproxy_beacon_wire::{clock, wire};

pub use data::{show_server_event, show_server_events, Module, Posting, ServerData};
pub use parse::{parse_modules, version_number};
pub use service::{Beacon, Setup};
