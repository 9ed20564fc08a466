//! Integration tests: the real proxy on 127.0.0.1:0 against the AMI simulator.
//! One test binary keeps link time and CI time down.

mod support;

mod ajam;
mod beacon;
mod beacon_collector;
mod beacon_report;
mod binary;
mod booted;
mod browser;
mod bugs_1x;
mod container;
mod examples;
mod formats;
mod hol;
mod http;
mod http_access;
mod isolation;
mod layers;
mod limits;
mod login;
mod ops;
mod ordering;
mod permissions;
mod proxy_actions;
mod raw_bytes;
mod storms;
mod systemd;
mod tls;
mod upstream;
mod ws;
