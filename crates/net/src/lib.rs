//! What the proxy, the Beacon collector and the AMI simulator all need from the network, and
//! nothing else: listening sockets with a configurable backlog ([`listen`]), a write timeout for
//! hyper connections ([`stall`]), PEM files for rustls ([`tls`]), and the SIGINT/SIGTERM
//! future a server stops on ([`shutdown`]).

pub mod listen;
pub mod shutdown;
pub mod stall;
pub mod tls;
