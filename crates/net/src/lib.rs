//! What the proxy, the Beacon collector and the AMI simulator all need from the network, and
//! nothing else: listening sockets with a configurable backlog ([`listen`]), a write timeout for
//! hyper connections ([`stall`]), and PEM files for rustls ([`tls`]).

pub mod listen;
pub mod stall;
pub mod tls;
