//! Configuration: the 1.x `astmanproxy.conf` and `astmanproxy.users` files, typed and validated.
//!
//! The workflow is raw, then validated, then typed: [`raw`] splits the `key = value` text into
//! lines with their numbers (a pure function over `&str`), [`Config::parse`] validates each key
//! into the typed [`Config`], with every default in [`Config::default`]. File I/O stays at the
//! edge ([`Config::load`]). Errors name the file and line; unknown keys are warned about, not
//! fatal, because 1.x ignored them silently and old files must keep loading.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use astmanproxy_handlers::{Limits, OutputFormat};

mod parse;
pub mod raw;
pub mod secret;
pub mod users;

pub use parse::parse_bool;
pub(crate) use parse::Value;

pub use secret::Secret;
pub use users::{FilterMethod, FilterRule, User, UserLineError, Users, UsersError};

/// Most AMI sessions per server (`actionsessions`).
pub const MAX_ACTION_SESSIONS: usize = 16;

/// The whole proxy configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The Asterisk servers (`host =` lines), in file order; the first is the default route.
    pub servers: Vec<ServerConfig>,
    /// `listenaddress`: address of the client listener (`*` = all IPv4, `::` works too).
    pub listen_address: IpAddr,
    /// `listenport`: port of the client listener.
    pub listen_port: u16,
    /// `listenbacklog` (new): queue of accepted-by-the-kernel connections of every listener
    /// (AMI, TLS, HTTP, admin); the kernel caps it at `net.core.somaxconn`.
    pub listen_backlog: u32,
    /// `retryinterval`: first delay between reconnect attempts (backoff doubles from here).
    pub retry_interval: Duration,
    /// `retrymax` (new): cap of the reconnect backoff.
    pub retry_max: Duration,
    /// `maxretries`: consecutive failed attempts before a server is given up (0 = never).
    pub max_retries: u32,
    /// `autofilter`: off / on / unique. Responses are always isolated; this only governs
    /// events that carry a proxy-issued ActionID.
    pub autofilter: AutoFilter,
    /// `authrequired`: clients must log in (default yes).
    pub auth_required: bool,
    /// `asteriskwritetimeout`: how long a write to Asterisk may stall before reconnecting.
    pub asterisk_write_timeout: Duration,
    /// `clientwritetimeout`: how long a write to a client may stall before dropping it.
    pub client_write_timeout: Duration,
    /// `inputformat`: default input format of clients.
    pub input_format: String,
    /// `outputformat`: default output format of clients.
    pub output_format: OutputFormat,
    /// `forcebanner`: the banner line sent to clients instead of Asterisk's.
    pub force_banner: Option<String>,
    /// `defaultamiversion` (new): AMI version announced before any server has connected.
    pub default_ami_version: String,
    /// `logfile`: log file (stderr when unset).
    pub log_file: Option<PathBuf>,
    /// `proc_user`: user to switch to after binding (optional).
    pub proc_user: Option<String>,
    /// `proc_group`: group to switch to after binding (optional).
    pub proc_group: Option<String>,
    /// Codec limits: `maxlinelength`, `maxmessagesize`, `maxheaders`, and the `charset` rule for
    /// bytes that are not UTF-8 (all new).
    pub limits: Limits,
    /// `clienteventqueue` (new in 2.0, no longer used since events are buffered by bytes): kept
    /// so that configurations that set it still load; a warning says it is ignored.
    pub client_event_queue: Option<usize>,
    /// `clienteventbuffer`: bytes of recent events kept in the shared event buffer; a client with
    /// more than this waiting gets `lagpolicy`.
    pub client_event_buffer: usize,
    /// `clientmaxpendingbytes` (new): bytes of responses queued for one client before it is
    /// disconnected (responses are never dropped).
    pub client_max_pending_bytes: usize,
    /// `lagpolicy` (new): what happens to a client whose event queue overflows.
    pub lag_policy: LagPolicy,
    /// `maxclients` (new): simultaneous client connections.
    pub max_clients: usize,
    /// `maxpendingactions` (new): actions one client may have in flight.
    pub max_pending_actions: usize,
    /// `connecttimeout` (new): TCP connect plus banner timeout toward Asterisk.
    pub connect_timeout: Duration,
    /// `logintimeout` (new): AMI login plus FullyBooted timeout toward Asterisk.
    pub login_timeout: Duration,
    /// `pinginterval` (new): idle time before a keepalive Ping to Asterisk.
    pub ping_interval: Duration,
    /// `pingtimeout` (new): deadline for the Ping reply; a miss is a disconnect.
    pub ping_timeout: Duration,
    /// `actiontimeout` (new): how long a forwarded action may wait for its final answer.
    pub action_timeout: Duration,
    /// `originatetimeout` (new): how long an async Originate's route waits for OriginateResponse.
    pub originate_timeout: Duration,
    /// `originatemargin` (new): added to a synchronous Originate's `Timeout` before the proxy
    /// gives up waiting for its `OriginateResponse`.
    pub originate_margin: Duration,
    /// `actionsessions` (new): AMI sessions per server that carry actions (1: the event session
    /// only; more: extra logins with `Events: off`).
    pub action_sessions: usize,
    /// `authfaildelay` (new): delay before a failed client login is answered and closed.
    pub auth_fail_delay: Duration,
    /// TLS and other 1.x keys parsed and kept for the TLS/permissions work.
    pub tls: TlsConfig,
    /// `proxykey` (1.x): accepted and kept.
    pub proxy_key: Option<Secret>,
    /// `httplistenport` (new): a port on `listenaddress` for the HTTP front.
    pub http_listen_port: Option<u16>,
    /// HTTP front settings (AJAM sessions, detection on the AMI port, body cap).
    pub http: HttpConfig,
    /// `adminlisten` (new): address of the admin HTTP listener (`/metrics`, `/healthz`,
    /// `/readyz`); off when unset.
    pub admin_listen: Option<std::net::SocketAddr>,
    /// `readyshare` (new): share of servers that must be logged in for `/readyz` to say ready.
    pub ready_share: f64,
    /// `shutdowngrace` (new): how long shutdown waits for clients and servers to finish.
    pub shutdown_grace: Duration,
    /// `authlimit` (new): failed logins allowed per (client address, user name) per minute
    /// before that user is locked out from that address (0 = no limit).
    pub auth_limit: u32,
    /// `authlimitaddress` (new): failed logins allowed per client address per minute, all user
    /// names together, before every login from it is refused (0 = no limit).
    pub auth_limit_address: u32,
    /// `authlimitexempt` (new): networks whose addresses skip the `authlimitaddress` ceiling
    /// (not the per-user lock-out).
    pub auth_limit_exempt: Vec<ipnet::IpNet>,
    /// `openproxylists` (new): `ListSessions` and `ListServers` answer every logged-in user, as
    /// in 1.x, instead of `adminusers` only.
    pub open_proxy_lists: bool,
    /// `authtimeout` (new): seconds a client may stay connected without logging in (0 = no limit).
    pub auth_timeout: Duration,
    /// `adminusers` (new): users allowed to run `AddServer` and `DropServer`.
    pub admin_users: Vec<String>,
    /// `beaconconfig` (new): the Beacon reporting file (relative to this file's directory;
    /// default `beacon.conf` next to it; [`Config::load`] makes it that path). A missing file
    /// means Beacon reporting is off. Beacon reads it (`beacon::report::BeaconConfig::for_proxy`).
    pub beacon_config: Option<PathBuf>,
    /// Where this configuration and the users came from (set by the binary); SIGHUP re-reads
    /// them.
    pub sources: Option<(PathBuf, PathBuf)>,
    /// The users file's users (loaded from `-u`, not from this file). The server hands them to
    /// the hub at start (`Hub::users`, swapped by reloads): the running proxy's configuration
    /// holds none.
    pub users: Users,
}

/// Settings of the HTTP front (all new keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// `httpsessiontimeout`: an AJAM session (`mansession_id` cookie) idle this long is closed
    /// (Asterisk's `httptimeout`, default 60 s; also the cookie's Max-Age and the longest
    /// `WaitEvent`).
    pub session_timeout: Duration,
    /// `httpmaxsessions`: AJAM sessions open at once; beyond it, logins get 503.
    pub max_sessions: usize,
    /// `httpeventqueue`: events an AJAM session keeps for `WaitEvent`; the oldest go first.
    pub event_queue: usize,
    /// `httpdetecttimeout` (ms): how long a new connection on the AMI port may stay silent
    /// before it is taken for an AMI client (HTTP clients speak first); 0 turns HTTP on the AMI
    /// port off.
    pub detect_timeout: Duration,
    /// `httpmaxbody` (bytes): the largest request body accepted (413 beyond).
    pub max_body: usize,
    /// `httpallowedorigins`: browser origins (`https://crm.example.com`) allowed to send actions
    /// and open WebSockets besides the proxy's own pages (a reverse proxy's public name, a web
    /// app of yours).
    pub allowed_origins: Vec<String>,
    /// `httpprefix`: a path prefix in front of every HTTP path (`asterisk` serves
    /// `/asterisk/rawman`, as Asterisk's `http.conf` `prefix`); empty: none. Kept without
    /// slashes at either end.
    pub prefix: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            session_timeout: Duration::from_secs(60),
            max_sessions: 1000,
            event_queue: 1000,
            detect_timeout: Duration::from_millis(100),
            max_body: 64 * 1024,
            allowed_origins: Vec::new(),
            prefix: String::new(),
        }
    }
}

/// One Asterisk server (`host = host, port, user, secret, events, use_ssl[, name]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Name used by `Server:` routing and added to every message; the host as written unless a
    /// 7th field names it (or `host:port` when two lines share a host).
    pub name: String,
    /// Host name or address.
    pub host: String,
    /// AMI port.
    pub port: u16,
    /// AMI user name.
    pub username: String,
    /// AMI secret.
    pub secret: Secret,
    /// `Events:` sent at login (`on`, `off`, or a class list).
    pub events: String,
    /// TLS toward this server.
    pub use_ssl: bool,
}

/// How events carrying a proxy-issued ActionID are routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AutoFilter {
    /// Events go to every client whose filters allow them.
    Off,
    /// Events carrying a proxy-issued ActionID go only to the client that sent the action.
    #[default]
    On,
    /// As `On` (1.x's prefixing variant; isolation is always on in 2.x).
    Unique,
}

/// What happens to a client whose event queue overflows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LagPolicy {
    /// Send `Event: ProxyClientLagged` and close the connection.
    #[default]
    Disconnect,
    /// Drop the events it missed (never responses) and count them.
    Drop,
}

/// TLS-related keys (1.x names), used by the TLS work.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// `acceptencryptedconnection`.
    pub accept_encrypted: bool,
    /// `acceptunencryptedconnection` (defaults to yes in 2.x; 1.x closed every plain client).
    pub accept_unencrypted: bool,
    /// `certfile`: PEM with key and certificate.
    pub cert_file: Option<PathBuf>,
    /// `sslclienthellotimeout`: how long the main port waits for a client's first byte to tell
    /// TLS from plain AMI (only when `acceptencryptedconnection = yes`).
    pub client_hello_timeout: Duration,
    /// `tlscert` (new): PEM certificate chain (instead of `certfile`).
    pub cert: Option<PathBuf>,
    /// `tlskey` (new): PEM private key (instead of `certfile`).
    pub key: Option<PathBuf>,
    /// `tlslistenport` (new): a TLS-only port on `listenaddress`.
    pub listen_port: Option<u16>,
    /// `tlshandshaketimeout` (new): deadline of a client's TLS handshake.
    pub handshake_timeout: Duration,
    /// `tlscafile` (new): PEM CA certificates trusted for `use_ssl` servers, besides the system's.
    pub ca_file: Option<PathBuf>,
    /// `tlsinsecure` (new): names of `use_ssl` servers whose certificate is not verified.
    pub insecure_servers: Vec<String>,
}

/// Why a configuration or users file was rejected. Every variant names the file; line-level
/// ones name the line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A line is not `key = value` (or `user=secret,...`).
    #[error("{}:{line}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A value does not fit its key.
    #[error("{}:{line}: invalid value for {key}: {value:?} ({reason})", path.display())]
    InvalidValue {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The key.
        key: String,
        /// The value (secrets masked).
        value: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A problem with the file as a whole.
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The users file is wrong.
    #[error(transparent)]
    Users(#[from] UsersError),
}

/// Something in a configuration file that is accepted but deserves a look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The file.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// What to look at.
    pub message: String,
}

impl ConfigWarning {
    /// A key the file does not know (a misspelling, usually): `--check-config` fails on it.
    pub fn is_unknown_key(&self) -> bool {
        self.message.starts_with("unknown key ")
    }
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
    }
}

#[cfg(test)]
mod tests;
