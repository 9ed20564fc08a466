//! `GET /stats`: aggregates over the servers seen in a window, that never expose one server.
//!
//! Only counts leave the collector: servers in total, by Asterisk version, by running module, by
//! operating system name and by machine. No server id, private name, call count or time is
//! ever part of the answer. Every group with fewer than `min_group` servers is folded into one
//! `"other"` group, so a rare version or module cannot point at one installation. Empty values
//! count as `"unknown"`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use astmanproxy_beacon_wire::wire::ServerReport;

/// The name of the group that small groups are folded into.
pub const OTHER: &str = "other";
/// The name of the group of empty values.
pub const UNKNOWN: &str = "unknown";

/// One group of an aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// The version, module or OS name (or `"other"`, `"unknown"`).
    pub name: String,
    /// How many servers are in it.
    pub servers: u64,
}

/// The answer to `GET /stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsReport {
    /// The window asked for, in days.
    pub days: u32,
    /// Its start: servers last seen at or after this time are counted.
    pub since: DateTime<Utc>,
    /// The smallest group shown by name.
    pub min_group: u64,
    /// Servers seen in the window.
    pub servers: u64,
    /// By `asterisk.version.name`, largest first.
    pub asterisk_versions: Vec<Group>,
    /// By module name: servers running it (status `Running`, or no status given).
    pub modules: Vec<Group>,
    /// By `operating_system.sys_name`.
    pub operating_systems: Vec<Group>,
    /// By `operating_system.machine`.
    pub machines: Vec<Group>,
}

/// What `/stats` counts of one report, kept in the database beside it so that a scan reads a
/// few short columns instead of whole reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// `asterisk.version.name`, trimmed.
    pub version: String,
    /// `operating_system.sys_name`, trimmed.
    pub os: String,
    /// `operating_system.machine`, trimmed.
    pub machine: String,
    /// The names of the running modules (status `Running`, or none given), sorted, each once,
    /// one a line; names with control characters are left out.
    pub modules: String,
}

impl Facts {
    /// The facts of `r`.
    pub fn of(r: &ServerReport) -> Facts {
        let running: BTreeSet<&str> = r
            .asterisk
            .modules
            .iter()
            .filter(|m| m.status.is_empty() || m.status.eq_ignore_ascii_case("running"))
            .map(|m| m.name.trim())
            .filter(|n| !n.is_empty() && !n.chars().any(char::is_control))
            .collect();
        Facts {
            version: r.asterisk.version.name.trim().to_string(),
            os: r.operating_system.sys_name.trim().to_string(),
            machine: r.operating_system.machine.trim().to_string(),
            modules: running.into_iter().collect::<Vec<_>>().join("\n"),
        }
    }
}

/// Counts servers one at a time (no more than one server's facts are held at once).
#[derive(Debug, Default)]
pub struct Aggregator {
    servers: u64,
    versions: HashMap<String, u64>,
    modules: HashMap<String, u64>,
    systems: HashMap<String, u64>,
    machines: HashMap<String, u64>,
    /// Servers running at least one module that is folded into `"other"` (a second pass, see
    /// [`Aggregator::add_folded`]): a server with three rare modules is one server there.
    module_other: u64,
}

fn bump(map: &mut HashMap<String, u64>, key: &str) {
    let key = if key.trim().is_empty() { UNKNOWN } else { key.trim() };
    match map.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            map.insert(key.to_string(), 1);
        }
    }
}

impl Aggregator {
    /// Counts one server from its stored facts (`modules`: one name a line).
    pub fn add(&mut self, version: &str, os: &str, machine: &str, modules: &str) {
        self.servers += 1;
        bump(&mut self.versions, version);
        bump(&mut self.systems, os);
        bump(&mut self.machines, machine);
        for name in modules.lines().filter(|n| !n.trim().is_empty()) {
            bump(&mut self.modules, name);
        }
    }

    /// Counts one server from its facts.
    pub fn add_facts(&mut self, f: &Facts) {
        self.add(&f.version, &f.os, &f.machine, &f.modules);
    }

    /// After every server was added: the module names [`Aggregator::finish`] folds into
    /// `"other"` at `min_group`.
    pub fn folded_modules(&self, min_group: u64) -> HashSet<String> {
        self.modules
            .iter()
            .filter(|(name, n)| **n < min_group || *name == OTHER)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The second pass: counts one server (its `modules`, one name a line) in the modules'
    /// `"other"` group when it runs any of `folded`.
    pub fn add_folded(&mut self, modules: &str, folded: &HashSet<String>) {
        if !folded.is_empty() && modules.lines().any(|n| folded.contains(n.trim())) {
            self.module_other += 1;
        }
    }

    /// The answer, with groups under `min_group` servers folded.
    pub fn finish(self, days: u32, since: DateTime<Utc>, min_group: u64) -> StatsReport {
        StatsReport {
            days,
            since,
            min_group,
            servers: self.servers,
            asterisk_versions: fold(self.versions, min_group),
            modules: fold_servers(self.modules, min_group, self.module_other),
            operating_systems: fold(self.systems, min_group),
            machines: fold(self.machines, min_group),
        }
    }
}

/// Aggregates `reports` (the latest report of each server seen since `since`).
pub fn aggregate(days: u32, since: DateTime<Utc>, min_group: u64, reports: &[ServerReport]) -> StatsReport {
    let mut a = Aggregator::default();
    let facts: Vec<Facts> = reports.iter().map(Facts::of).collect();
    for f in &facts {
        a.add_facts(f);
    }
    let folded = a.folded_modules(min_group);
    for f in &facts {
        a.add_folded(&f.modules, &folded);
    }
    a.finish(days, since, min_group)
}

/// [`fold`] for groups that a server can be in several of (modules): `"other"` is
/// `other_servers`, the servers in any folded group, not the sum of the folded groups.
fn fold_servers(groups: HashMap<String, u64>, min_group: u64, other_servers: u64) -> Vec<Group> {
    let mut out = fold(groups, min_group);
    if let Some(other) = out.last_mut().filter(|g| g.name == OTHER) {
        other.servers = other_servers;
    }
    out
}

/// Folds the groups under `min_group` servers into `"other"`; largest first, then by name, with
/// `"other"` last.
fn fold(groups: HashMap<String, u64>, min_group: u64) -> Vec<Group> {
    let mut other = 0;
    let mut out: Vec<Group> = Vec::with_capacity(groups.len());
    for (name, servers) in groups {
        if servers < min_group || name == OTHER {
            other += servers;
        } else {
            out.push(Group { name, servers });
        }
    }
    out.sort_by(|a, b| b.servers.cmp(&a.servers).then_with(|| a.name.cmp(&b.name)));
    if other > 0 {
        out.push(Group { name: OTHER.to_string(), servers: other });
    }
    out
}

/// Recent `/stats` answers by window, so that a burst of requests scans the database once.
#[derive(Debug, Default)]
pub struct Cache {
    answers: Mutex<HashMap<u32, (Instant, Bytes)>>,
}

impl Cache {
    /// The answer for `days` computed less than `ttl` ago.
    pub fn get(&self, days: u32, ttl: Duration) -> Option<Bytes> {
        let answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
        answers.get(&days).filter(|(at, _)| at.elapsed() < ttl).map(|(_, body)| body.clone())
    }

    /// Keeps `body` as the answer for `days`, and forgets answers older than `ttl`.
    pub fn put(&self, days: u32, body: Bytes, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let mut answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
        answers.retain(|_, (at, _)| at.elapsed() < ttl);
        answers.insert(days, (Instant::now(), body));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use astmanproxy_beacon_wire::wire::ModuleInfo;

    fn report(version: &str, os: &str, modules: &[(&str, &str)]) -> ServerReport {
        let mut r = ServerReport::default();
        r.asterisk.version.name = version.into();
        r.operating_system.sys_name = os.into();
        r.asterisk.modules = modules
            .iter()
            .map(|(n, s)| ModuleInfo { name: (*n).into(), status: (*s).into(), ..ModuleInfo::default() })
            .collect();
        r
    }

    #[test]
    fn small_groups_fold_into_other() {
        let m = [("chan_pjsip.so", "Running"), ("app_queue.so", "Not Running"), ("chan_pjsip.so", "Running")];
        let mut reports: Vec<_> = (0..3).map(|_| report("22.1.0", "Linux", &m)).collect();
        reports.push(report("18.0.0", "FreeBSD", &[("app_rare.so", "")]));
        reports.push(report("", "Linux", &[]));
        let s = aggregate(30, DateTime::default(), 3, &reports);
        assert_eq!(s.servers, 5);
        let g = |name: &str, servers| Group { name: name.into(), servers };
        assert_eq!(s.asterisk_versions, vec![g("22.1.0", 3), g(OTHER, 2)]);
        assert_eq!(s.operating_systems, vec![g("Linux", 4), g(OTHER, 1)]);
        // Counted once per server, only when running; app_queue (not running) is absent.
        assert_eq!(s.modules, vec![g("chan_pjsip.so", 3), g(OTHER, 1)]);
        assert_eq!(s.machines, vec![g(UNKNOWN, 5)]);
        let all = aggregate(30, DateTime::default(), 1, &reports);
        assert!(all.asterisk_versions.contains(&g(UNKNOWN, 1)));
        assert!(aggregate(30, DateTime::default(), 3, &[]).modules.is_empty());
    }

    #[test]
    fn the_other_module_group_counts_servers_not_modules() {
        let common = [("chan_pjsip.so", "Running")];
        let mut reports: Vec<_> = (0..3).map(|_| report("22.1.0", "Linux", &common)).collect();
        // One server with three rare modules, one with a module literally named "other".
        reports.push(report("22.1.0", "Linux", &[("chan_pjsip.so", ""), ("a.so", ""), ("b.so", ""), ("c.so", "")]));
        reports.push(report("22.1.0", "Linux", &[("other", "")]));
        let s = aggregate(30, DateTime::default(), 3, &reports);
        assert_eq!(s.servers, 5);
        let g = |name: &str, servers| Group { name: name.into(), servers };
        assert_eq!(s.modules, vec![g("chan_pjsip.so", 4), g(OTHER, 2)]);
    }

    #[test]
    fn facts_keep_running_module_names_once() {
        let r = report(
            " 22.1.0 ",
            "Linux",
            &[("b.so", "Running"), ("a.so", ""), ("b.so", "Running"), ("x\ny", ""), ("c.so", "Not Running")],
        );
        let f = Facts::of(&r);
        assert_eq!(f.version, "22.1.0");
        assert_eq!(f.modules, "a.so\nb.so");
    }

    #[test]
    fn the_cache_keeps_answers_for_its_time() {
        let cache = Cache::default();
        let ttl = Duration::from_secs(3600);
        assert!(cache.get(30, ttl).is_none());
        cache.put(30, Bytes::from_static(b"a"), ttl);
        assert_eq!(cache.get(30, ttl).as_deref(), Some(&b"a"[..]));
        assert!(cache.get(7, ttl).is_none());
        assert!(cache.get(30, Duration::ZERO).is_none());
        cache.put(7, Bytes::from_static(b"b"), Duration::ZERO);
        assert!(cache.get(7, ttl).is_none());
    }
}
