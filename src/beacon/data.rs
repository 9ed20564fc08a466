//! The data Beacon gathers of one server and its AMI rendering.

use serde::Serialize;

use astmanproxy_beacon_wire::wire;
use astmanproxy_handlers::{Message, RawValue};

/// One module line of `module show`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Module {
    /// `app_queue.so`.
    pub name: String,
    /// Its description.
    pub description: String,
    /// `Running`, `Not Running`, ...
    pub status: String,
    /// `core`, `extended`, `deprecated`, ... (empty on versions without the column).
    pub support_level: String,
}

/// What the reporter knows of one server at its first target (empty until it has reported).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Posting {
    /// The id the Beacon server issued.
    pub server_id: String,
    /// The current token.
    pub token_id: String,
    /// When the token was issued (RFC 3339).
    pub token_issued: String,
    /// The last accepted report (RFC 3339).
    pub last_posting: String,
    /// When the next report is due (RFC 3339).
    pub next_posting: String,
}

impl Posting {
    /// From a reporter state entry.
    pub fn from_entry(entry: &super::report::state::Entry) -> Posting {
        let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
            t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).unwrap_or_default()
        };
        Posting {
            server_id: entry.server_id.clone().unwrap_or_default(),
            token_id: entry.token.clone().unwrap_or_default(),
            token_issued: time(entry.token_issued),
            last_posting: time(entry.last_posting),
            next_posting: time(entry.next_posting),
        }
    }
}

/// Everything Beacon knows of one Asterisk server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerData {
    /// Proxy-side server name.
    pub server: String,
    /// `22.10.1`.
    pub version_name: String,
    /// major*10000 + minor*100 + patch (`221001`), 0 when unknown.
    pub version_number: u64,
    /// The modules.
    pub modules: Vec<Module>,
    /// `CoreStartupDate CoreStartupTime`.
    pub startup_time: String,
    /// `CoreReloadDate CoreReloadTime`.
    pub last_reload_time: String,
    /// Active calls.
    pub active_calls: u64,
    /// Calls processed since start.
    pub processed_calls: u64,
    /// OS name from `core show version` (`Linux`).
    pub os_name: String,
    /// Machine from `core show version` (`x86_64`).
    pub os_machine: String,
    /// The reporter's id, token and posting times (not part of the report body).
    pub posting: Posting,
}

impl ServerData {
    /// The report body of DESIGN 7 (`Server` object). Release and version of the OS stay empty:
    /// AMI cannot tell them, and the proxy host's own are never substituted.
    pub fn to_report(&self, id: Option<&str>, private_name: Option<&str>) -> wire::ServerReport {
        wire::ServerReport {
            id: id.map(str::to_owned),
            asterisk: wire::AsteriskInfo {
                version: wire::Version { name: self.version_name.clone(), number: self.version_number },
                modules: self
                    .modules
                    .iter()
                    .map(|m| wire::ModuleInfo {
                        name: m.name.clone(),
                        description: m.description.clone(),
                        status: m.status.clone(),
                        support_level: m.support_level.clone(),
                    })
                    .collect(),
                stats: wire::Stats {
                    run_time: wire::RunTime {
                        startup_time: self.startup_time.clone(),
                        last_reload_time: self.last_reload_time.clone(),
                    },
                    calls: wire::Calls { active: self.active_calls, processed: self.processed_calls },
                },
            },
            operating_system: wire::OperatingSystem {
                sys_name: self.os_name.clone(),
                release: String::new(),
                version: String::new(),
                machine: self.os_machine.clone(),
            },
            private_name: private_name.map(str::to_owned),
        }
    }
}

impl ServerData {
    /// Reads the data back from a `BeaconShowServerResponse` event (what the CLI receives).
    pub fn from_event(m: &Message) -> ServerData {
        let get = |k: &str| m.get(k).unwrap_or_default().to_string();
        let count: usize = m.get("ModuleCount").and_then(|c| c.parse().ok()).unwrap_or(0);
        let modules = (1..=count)
            .map(|n| Module {
                name: get(&format!("Module{n}Name")),
                description: get(&format!("Module{n}Description")),
                status: get(&format!("Module{n}Status")),
                support_level: get(&format!("Module{n}SupportLevel")),
            })
            .collect();
        ServerData {
            server: get("Server"),
            version_name: get("AsteriskVersion"),
            version_number: m.get("AsteriskVersionNumber").and_then(|v| v.parse().ok()).unwrap_or(0),
            modules,
            startup_time: get("StartupTime"),
            last_reload_time: get("LastReloadTime"),
            active_calls: m.get("ActiveCalls").and_then(|v| v.parse().ok()).unwrap_or(0),
            processed_calls: m.get("ProcessedCalls").and_then(|v| v.parse().ok()).unwrap_or(0),
            os_name: get("OperatingSystemName"),
            os_machine: get("OperatingSystemMachine"),
            posting: Posting {
                server_id: get("ServerId"),
                token_id: get("TokenId"),
                token_issued: get("TokenIssuedDate"),
                last_posting: get("LastPosting"),
                next_posting: get("NextPosting"),
            },
        }
    }

    /// The text layout of the res_beacon design's `beacon show server`.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(out, "Server: {}", self.server);
        let p = &self.posting;
        let _ = writeln!(out, "Server ID: {}", p.server_id);
        let _ = writeln!(out, "Token: {}", p.token_id);
        let _ = writeln!(out, "Token Issued: {}", p.token_issued);
        let _ = writeln!(out, "Last Posting: {}", p.last_posting);
        let _ = writeln!(out, "Next Posting: {}", p.next_posting);
        let _ = writeln!(out);
        let _ = writeln!(out, "Asterisk Information:");
        let _ = writeln!(out, "  Version: {} ({})", self.version_name, self.version_number);
        let _ = writeln!(out, "  Startup Time: {}", self.startup_time);
        let _ = writeln!(out, "  Last Reload Time: {}", self.last_reload_time);
        let _ = writeln!(out, "  Active Calls: {}", self.active_calls);
        let _ = writeln!(out, "  Processed Calls: {}", self.processed_calls);
        let _ = writeln!(out, "  Modules ({}):", self.modules.len());
        for m in &self.modules {
            let _ = writeln!(out, "    {:<30} {:<40} {:<12} {}", m.name, m.description, m.status, m.support_level);
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "Operating System:");
        let _ = writeln!(out, "  Name: {}", self.os_name);
        let _ = writeln!(out, "  Release: ");
        let _ = writeln!(out, "  Version: ");
        let _ = writeln!(out, "  Machine: {}", self.os_machine);
        out
    }
}

/// The `Event: BeaconShowServerResponse` of one server.
pub fn show_server_event(data: &ServerData, action_id: Option<&RawValue>) -> Message {
    let mut m = Message::with_capacity(24 + data.modules.len() * 4);
    m.push("Event", "BeaconShowServerResponse");
    if let Some(id) = action_id {
        m.push_value("ActionID", id);
    }
    m.push("Server", &data.server);
    let p = &data.posting;
    m.push("ServerId", &p.server_id);
    m.push("TokenId", &p.token_id);
    m.push("TokenIssuedDate", &p.token_issued);
    m.push("LastPosting", &p.last_posting);
    m.push("NextPosting", &p.next_posting);
    for (i, module) in data.modules.iter().enumerate() {
        let n = i + 1;
        m.push(format!("Module{n}Name"), &module.name);
        m.push(format!("Module{n}Description"), &module.description);
        m.push(format!("Module{n}Status"), &module.status);
        m.push(format!("Module{n}SupportLevel"), &module.support_level);
    }
    m.push("ModuleCount", data.modules.len().to_string());
    m.push("AsteriskVersion", &data.version_name);
    m.push("AsteriskVersionNumber", data.version_number.to_string());
    m.push("StartupTime", &data.startup_time);
    m.push("LastReloadTime", &data.last_reload_time);
    m.push("ActiveCalls", data.active_calls.to_string());
    m.push("ProcessedCalls", data.processed_calls.to_string());
    m.push("OperatingSystemName", &data.os_name);
    m.push("OperatingSystemRelease", "");
    m.push("OperatingSystemVersion", "");
    m.push("OperatingSystemMachine", &data.os_machine);
    m
}

/// The whole EventList answer to `BeaconShowServer`.
pub fn show_server_events(servers: &[ServerData], action_id: Option<&RawValue>) -> Vec<Message> {
    let mut out = Vec::with_capacity(servers.len() + 2);
    let mut start = Message::response_with_id("Success", action_id, None);
    start.insert(if action_id.is_some() { 2 } else { 1 }, "EventList", "start");
    start.push("Message", "Beacon server data will follow");
    out.push(start);
    for data in servers {
        out.push(show_server_event(data, action_id));
    }
    let mut complete = Message::new().with("Event", "BeaconShowServerComplete");
    if let Some(id) = action_id {
        complete.push_value("ActionID", id);
    }
    complete.push("EventList", "Complete");
    complete.push("ListItems", servers.len().to_string());
    out.push(complete);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ServerData {
        ServerData {
            server: "pbx1".into(),
            version_name: "22.10.1".into(),
            version_number: 221_001,
            modules: vec![Module {
                name: "acl".into(),
                description: "Named ACL system".into(),
                status: "Running".into(),
                support_level: "core".into(),
            }],
            startup_time: "2026-11-22 10:39:23".into(),
            last_reload_time: "2026-11-22 10:39:23".into(),
            active_calls: 1,
            processed_calls: 7,
            os_name: "Linux".into(),
            os_machine: "x86_64".into(),
            posting: Posting {
                server_id: "sid".into(),
                token_id: "tok".into(),
                token_issued: "2026-12-01T08:00:00Z".into(),
                last_posting: "2026-12-01T08:00:00Z".into(),
                next_posting: "2026-12-01T14:00:00Z".into(),
            },
        }
    }

    #[test]
    fn report_body_has_the_design_shape() {
        let v = serde_json::to_value(sample().to_report(Some("id1"), None)).unwrap();
        assert_eq!(v["id"], "id1");
        assert_eq!(v["asterisk"]["version"]["number"], 221_001);
        assert_eq!(v["asterisk"]["modules"][0]["support_level"], "core");
        assert_eq!(v["asterisk"]["stats"]["calls"]["processed"], 7);
        assert_eq!(v["asterisk"]["stats"]["run_time"]["startup_time"], "2026-11-22 10:39:23");
        assert_eq!(v["operating_system"]["machine"], "x86_64");
        assert_eq!(v["operating_system"]["release"], "");
        assert!(v["private_name"].is_null());
    }

    #[test]
    fn event_round_trip_and_layout() {
        let data = sample();
        assert_eq!(ServerData::from_event(&show_server_event(&data, Some(&"x".into()))), data);
        let text = data.render();
        for line in [
            "Server ID: sid",
            "Token: tok",
            "Last Posting: 2026-12-01T08:00:00Z",
            "Next Posting: 2026-12-01T14:00:00Z",
            "Asterisk Information:",
            "Operating System:",
            "  Machine: x86_64",
        ] {
            assert!(text.contains(line), "{line}");
        }
    }
}
