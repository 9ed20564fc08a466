//! astmanproxy 2: a multiplexing proxy for the Asterisk Manager Interface.
//!
//! # Layout
//! - [`config`]: the 1.x-compatible configuration and users files.
//! - [`sim`]: an AMI simulator that behaves like Asterisk (tests and the benchmark tool).

pub mod config;
pub mod sim;
