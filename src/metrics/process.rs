//! The `process_*` metrics, read from `/proc/self` at scrape time (Linux only).

use prometheus_client::registry::Registry;

#[cfg(target_os = "linux")]
pub fn register(registry: &mut Registry) {
    registry.register_collector(Box::new(linux::Process));
}

#[cfg(not(target_os = "linux"))]
pub fn register(_registry: &mut Registry) {}

#[cfg(target_os = "linux")]
mod linux {
    use prometheus_client::collector::Collector;
    use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
    use prometheus_client::metrics::counter::ConstCounter;
    use prometheus_client::metrics::gauge::ConstGauge;

    /// Figures of this process; a figure that cannot be read is left out.
    #[derive(Debug, Default, PartialEq)]
    pub struct Figures {
        pub cpu_seconds: Option<f64>,
        pub resident_bytes: Option<i64>,
        pub virtual_bytes: Option<i64>,
        pub start_time_seconds: Option<f64>,
        pub open_fds: Option<i64>,
        pub max_fds: Option<i64>,
    }

    /// Parses `/proc/self/stat` (`stat`) with the boot time from `/proc/stat` (`btime`).
    pub fn from_stat(stat: &str, boot_time: Option<f64>, ticks: f64, page: i64) -> Figures {
        let mut f = Figures::default();
        // The command name (field 2) is in parentheses and may hold spaces; the fields
        // after it start at field 3 (state).
        let Some((_, after)) = stat.rsplit_once(')') else { return f };
        let fields: Vec<&str> = after.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
        if let (Some(user), Some(system)) = (field(14), field(15)) {
            f.cpu_seconds = Some((user + system) as f64 / ticks);
        }
        if let (Some(start), Some(boot)) = (field(22), boot_time) {
            f.start_time_seconds = Some(boot + start as f64 / ticks);
        }
        f.virtual_bytes = field(23).and_then(|v| i64::try_from(v).ok());
        f.resident_bytes = field(24).and_then(|v| i64::try_from(v).ok()).map(|p| p.saturating_mul(page));
        f
    }

    fn read() -> Figures {
        let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as f64;
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten().unwrap_or(4096);
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse::<f64>().ok()));
        let mut f = match std::fs::read_to_string("/proc/self/stat") {
            Ok(stat) => from_stat(&stat, boot, ticks, page),
            Err(_) => Figures::default(),
        };
        f.open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as i64);
        f.max_fds = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .ok()
            .map(|(soft, _)| i64::try_from(soft).unwrap_or(i64::MAX));
        f
    }

    #[derive(Debug)]
    pub struct Process;

    impl Collector for Process {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            let f = read();
            if let Some(v) = f.cpu_seconds {
                let c = ConstCounter::new(v);
                c.encode(encoder.encode_descriptor(
                    "process_cpu_seconds",
                    "Total user and system CPU time spent in seconds",
                    None,
                    c.metric_type(),
                )?)?;
            }
            let gauges = [
                ("process_resident_memory_bytes", "Resident memory size in bytes", f.resident_bytes),
                ("process_virtual_memory_bytes", "Virtual memory size in bytes", f.virtual_bytes),
                ("process_open_fds", "Number of open file descriptors", f.open_fds),
                ("process_max_fds", "Maximum number of open file descriptors", f.max_fds),
            ];
            for (name, help, value) in gauges {
                if let Some(v) = value {
                    let g = ConstGauge::new(v);
                    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
                }
            }
            if let Some(v) = f.start_time_seconds {
                let g = ConstGauge::new(v);
                g.encode(encoder.encode_descriptor(
                    "process_start_time_seconds",
                    "Start time of the process since the Unix epoch in seconds",
                    None,
                    g.metric_type(),
                )?)?;
            }
            Ok(())
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn stat_fields_with_a_spaced_command_name() {
            // Fields 3.. of a real /proc/self/stat, the name holding spaces and a `)`.
            let stat = "4242 (astman (proxy) x) S 1 4242 4242 0 -1 4194560 3000 0 0 0 250 50 0 0 20 0 \
                        9 0 1000 123456789 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
            let f = from_stat(stat, Some(1_700_000_000.0), 100.0, 4096);
            assert_eq!(f.cpu_seconds, Some(3.0));
            assert_eq!(f.start_time_seconds, Some(1_700_000_010.0));
            assert_eq!(f.virtual_bytes, Some(123_456_789));
            assert_eq!(f.resident_bytes, Some(2048 * 4096));
            assert_eq!(from_stat("garbage", None, 100.0, 4096), Figures::default());
        }

        #[test]
        fn this_process_has_figures() {
            let f = read();
            assert!(f.resident_bytes.unwrap() > 0);
            assert!(f.open_fds.unwrap() > 0);
            assert!(f.start_time_seconds.unwrap() > 1_000_000_000.0);
            assert!(f.cpu_seconds.unwrap() >= 0.0);
        }
    }
}
