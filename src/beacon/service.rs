//! Beacon as a service of the proxy: it keeps the data gathered per server (a cache per server, kept for a minute),
//! starts the reporters, and answers its two actions through the hub's extensions
//! ([`crate::extension`]): the core never names Beacon.

use std::sync::Arc;

use astmanproxy_handlers::{Message, RawValue};

use super::cache::REFRESH;
use super::data::{show_server_events, Posting, ServerData};
use super::gather;
use super::report::{self, task, BeaconConfig, Board};
use crate::extension::{Answer, Caller, Extension};
use crate::hub::Hub;
use crate::upstream::UpstreamHandle;
use astmanproxy_beacon_wire::clock::Clock;

/// The Beacon service of one running proxy.
pub struct Beacon {
    hub: Hub,
    reporting: task::Reporting,
}

/// What the service starts with: `beacon.conf` ([`BeaconConfig::for_proxy`]) and the board the
/// reporters fill (empty at start; a test may keep a clone to watch it).
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// The Beacon configuration.
    pub config: BeaconConfig,
    /// The reporters' live state.
    pub board: Board,
}

impl Beacon {
    /// Starts the service: registers its actions on `hub` and starts reporting when
    /// `beacon.conf` asks for it.
    pub fn start(hub: &Hub, setup: Setup, clock: Arc<dyn Clock>) -> Arc<Beacon> {
        let reporting = task::Reporting { config: Arc::new(setup.config), board: setup.board, cache: Arc::default() };
        let beacon = Arc::new(Beacon { hub: hub.clone(), reporting });
        hub.extensions().register(beacon.clone());
        beacon.start_reporting(clock);
        beacon
    }

    /// Starts reporting when the configuration asks for it, after saying loudly (WARN) what is
    /// sent where and how often; otherwise logs that nothing is sent. Loads the state file into
    /// the board first, so that a restart keeps its server ids.
    fn start_reporting(self: &Arc<Self>, clock: Arc<dyn Clock>) {
        let (service, hub) = (self, &self.hub);
        let beacon = &service.reporting.config;
        if !beacon.sending() {
            let why = if beacon.enabled { "no target configured" } else { "enabled = no" };
            tracing::info!("Beacon reporting is off ({why}): usage data is only gathered on request, never sent");
            return;
        }
        let board = &service.reporting.board;
        match report::state::load(&beacon.state_file) {
            Ok(loaded) => board.load(loaded),
            Err(e) => tracing::warn!("Beacon state not loaded, servers will register again: {e}"),
        }
        let servers: Vec<String> = hub.servers().iter().map(|s| s.name().to_string()).collect();
        for target in &beacon.targets {
            let via = target.proxy.as_ref().map(|p| format!(" via proxy {}", p.masked())).unwrap_or_default();
            let start =
                target.start_time.map(|t| format!(", from {} local time", t.format("%H:%M"))).unwrap_or_default();
            tracing::warn!(
                target = %target.name,
                "Beacon reporting is ON: every {} minutes{start} (plus up to {} s jitter), each Asterisk server's \
                 usage data (Asterisk version, module list with status and support level, startup and reload times, \
                 active and processed calls, OS name and machine{}) is sent to {}{via}; servers now: [{}]; state in {}",
                target.interval.as_secs() / 60,
                target.jitter.as_secs(),
                beacon.private_name.as_ref().map(|n| format!(", private name {n:?}")).unwrap_or_default(),
                target.url,
                servers.join(", "),
                beacon.state_file.display(),
            );
            if !target.verify_cert {
                tracing::warn!(target = %target.name, "verify_cert = no: the certificate of {} is NOT verified", target.url);
            }
        }
        let (watch_hub, reporting) = (hub.clone(), service.reporting.clone());
        hub.spawn_background(move |_| task::watch_servers(watch_hub, reporting, clock));
    }

    /// The reporter state of `server` at the first target (what `BeaconShowServer` shows); empty
    /// while reporting is off or before the first report.
    fn posting(&self, server: &str) -> Posting {
        let urls: Vec<&str> = self.reporting.config.targets.iter().map(|t| t.url.as_str()).collect();
        self.reporting.board.first(&urls, server).map(|e| Posting::from_entry(&e)).unwrap_or_default()
    }

    /// The hub the service works on.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The server's data, from the cache when fresh enough, else gathered now.
    ///
    /// # Errors
    /// The server is down or does not answer.
    pub async fn data_for(&self, server: &UpstreamHandle) -> Result<ServerData, gather::GatherError> {
        if let Some(data) = self.reporting.cache.get(server.name(), REFRESH) {
            return Ok(data);
        }
        let data = gather::gather(server).await?;
        self.reporting.cache.store(server.name(), data.clone());
        Ok(data)
    }

    /// `Action: BeaconShowServer`: the data of every server (or of `Server`) the caller may ask.
    async fn show_server(&self, message: &Message, caller: Caller<'_>, id: Option<&RawValue>) -> Vec<Message> {
        let servers = match message.get("Server") {
            Some(name) => match self.hub.server(Some(name)) {
                Some(s) => vec![s],
                None => {
                    return vec![Message::response_with_id("Error", id, Some(&format!("Unknown server {name}")))];
                }
            },
            None => self.hub.servers(),
        };
        let mut data = Vec::with_capacity(servers.len());
        for server in servers {
            let mut probe = Message::new().with("Action", "BeaconShowServer");
            if caller.policy.check_action(&mut probe, server.name()).is_err() {
                continue;
            }
            match self.data_for(&server).await {
                Ok(mut d) => {
                    d.posting = self.posting(server.name());
                    data.push(d)
                }
                Err(e) => tracing::info!(server = %server.name(), "no Beacon data: {e}"),
            }
        }
        show_server_events(&data, id)
    }

    /// `Action: BeaconShowConfiguration`: the running Beacon configuration (proxy passwords
    /// masked).
    fn show_configuration(&self, id: Option<&RawValue>) -> Vec<Message> {
        let mut answer = Message::response_with_id("Success", id, None);
        for (key, value) in self.reporting.config.describe() {
            answer.push(key, value);
        }
        vec![answer]
    }
}

impl Extension for Beacon {
    fn names(&self) -> &[&'static str] {
        &["BeaconShowServer", "BeaconShowConfiguration"]
    }

    fn answer<'a>(&'a self, action: &'a Message, caller: Caller<'a>) -> Answer<'a> {
        Box::pin(async move {
            let id = action.get_value("ActionID");
            let name = action.action().unwrap_or_default().trim();
            if name.eq_ignore_ascii_case("BeaconShowConfiguration") {
                self.show_configuration(id.as_ref())
            } else {
                self.show_server(action, caller, id.as_ref()).await
            }
        })
    }
}
