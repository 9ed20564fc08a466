//! What both ends of Beacon (DESIGN 7) share, and nothing else: the reporter inside the proxy
//! sends these bodies, the collector (`astmanproxy-collector`) reads them.
//!
//! - [`wire`]: the REST API's JSON bodies (`Server`, `Token`, ...);
//! - [`clock`]: where "now" comes from, so that tests move the 48-hour token windows by hand.

pub mod clock;
pub mod wire;
