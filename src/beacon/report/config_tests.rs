use std::path::Path;
use std::time::Duration;

use super::*;

fn parse(text: &str) -> Result<(BeaconConfig, Vec<ConfigWarning>), ConfigError> {
    BeaconConfig::parse(text, Path::new("beacon.conf"), true)
}

#[test]
fn defaults_send_nothing() {
    let (cfg, warnings) = parse("").unwrap();
    assert!(!cfg.enabled && !cfg.sending() && cfg.targets.is_empty() && warnings.is_empty());
    let (cfg, _) = parse("[t]\nurl = https://collector.example/api/v1/\n").unwrap();
    assert!(!cfg.sending(), "enabled defaults to no");
    let t = &cfg.targets[0];
    assert_eq!(t.url, "https://collector.example/api/v1");
    assert_eq!(t.interval, Duration::from_secs(360 * 60));
    assert!(t.verify_cert && t.start_time.is_none() && t.proxy.is_none());
    let (cfg, _) = parse("[general]\nenabled = yes\n").unwrap();
    assert!(cfg.enabled && !cfg.sending(), "no target: nothing is sent");
}

#[test]
fn general_and_target_keys() {
    let text = "[general]\nenabled = yes\nprivate_name = Lab\nstatefile = /tmp/b.json\n\n[mine]\n\
                url = https://b.example:8443/api/v1\ninterval = 120\nstart_time = 03:30\nverify_cert = no\n\
                ca_path = /etc/ca.pem\njitter = 0\ntimeout = 5\nproxy = u:p@proxy.example:3128\n";
    let (cfg, warnings) = parse(text).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(cfg.sending());
    assert_eq!(cfg.private_name.as_deref(), Some("Lab"));
    assert_eq!(cfg.state_file, Path::new("/tmp/b.json"));
    let t = &cfg.targets[0];
    assert_eq!((t.name.as_str(), t.url.as_str()), ("mine", "https://b.example:8443/api/v1"));
    assert_eq!(t.interval, Duration::from_secs(7200));
    assert_eq!(t.start_time, NaiveTime::from_hms_opt(3, 30, 0));
    assert!(!t.verify_cert);
    assert_eq!(t.ca_path.as_deref(), Some(Path::new("/etc/ca.pem")));
    assert_eq!((t.jitter, t.timeout), (Duration::ZERO, Duration::from_secs(5)));
    let shown = cfg.render();
    assert!(shown.contains("Proxy: u:********@proxy.example:3128"), "{shown}");
    assert!(!shown.contains(":p@"), "{shown}");
    assert!(cfg.describe().contains(&("Target1Proxy".to_string(), "u:********@proxy.example:3128".to_string())));
}

#[test]
fn interval_is_clamped_up_and_bounded() {
    let (cfg, warnings) = parse("[t]\nurl = https://x\ninterval = 30\n").unwrap();
    assert_eq!(cfg.targets[0].interval, Duration::from_secs(3600));
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].to_string(), "beacon.conf:3: interval 30 is under 60 minutes; using 60");
    let err = parse("[t]\nurl = https://x\ninterval = 2880\n").unwrap_err().to_string();
    assert!(err.starts_with("beacon.conf:3: invalid value for interval: \"2880\""), "{err}");
    assert!(parse("[t]\nurl = https://x\ninterval = 2879\n").is_ok());
    assert!(parse("[t]\nurl = https://x\ninterval = soon\n").is_err());
}

#[test]
fn only_https_urls() {
    let err = parse("[general]\n[t]\nurl = http://collector.example/api\n").unwrap_err().to_string();
    assert!(err.starts_with("beacon.conf:3: invalid value for url"), "{err}");
    assert!(err.contains("HTTPS only"), "{err}");
    assert!(parse("[t]\nurl = ftp://x\n").is_err());
    assert!(parse("[t]\nurl = not a url\n").is_err());
    let err = parse("[t]\ninterval = 60\n").unwrap_err().to_string();
    assert_eq!(err, "beacon.conf:1: target [t] has no url");
    let err = parse("[t]\nurl = https://a\n[T]\nurl = https://b\n").unwrap_err().to_string();
    assert!(err.starts_with("beacon.conf:3:"), "{err}");
    let err = parse("[a]\nurl = https://x/\n[b]\nurl = https://x\n").unwrap_err().to_string();
    assert_eq!(err, "beacon.conf:3: target [b] has the url of [a]");
}

#[test]
fn proxy_forms() {
    let p = ProxySetting::parse("user:pa:ss@10.0.0.1:3128").unwrap();
    assert_eq!((p.host.as_str(), p.port), ("10.0.0.1", 3128));
    let (user, pass) = p.auth.clone().unwrap();
    assert_eq!((user.as_str(), pass.expose()), ("user", "pa:ss"));
    assert_eq!(p.masked(), "user:********@10.0.0.1:3128");
    let p = ProxySetting::parse("proxy.example:8080").unwrap();
    assert_eq!((p.host.as_str(), p.port, p.auth.is_none()), ("proxy.example", 8080, true));
    assert!(ProxySetting::parse("u:p@host").is_err());
    assert!(ProxySetting::parse("u:p@:80").is_err());
    assert!(ProxySetting::parse("host:port").is_err());
    let err = parse("[t]\nurl = https://x\nproxy = u:TopSecret@h:nope\n").unwrap_err().to_string();
    assert!(err.starts_with("beacon.conf:3: invalid value for proxy"), "{err}");
    assert!(!err.contains("TopSecret"), "{err}");
}

#[test]
fn start_time_forms() {
    let (cfg, _) = parse("[t]\nurl = https://x\nstart_time = 23:59\n").unwrap();
    assert_eq!(cfg.targets[0].start_time, NaiveTime::from_hms_opt(23, 59, 0));
    for bad in ["24:00", "3", "03:60", "noon"] {
        let err = parse(&format!("[t]\nurl = https://x\nstart_time = {bad}\n")).unwrap_err().to_string();
        assert!(err.starts_with("beacon.conf:3: invalid value for start_time"), "{bad}: {err}");
    }
}

#[test]
fn dev_mode_refuses_the_public_server() {
    let text = "[general]\nenabled = yes\n[asterisk]\nurl = public\n";
    let err = parse(text).unwrap_err().to_string();
    assert!(err.starts_with("beacon.conf:4:") && err.contains("dev mode"), "{err}");
    // Disabled: nothing would be sent, so the sample file can name it.
    assert!(parse("[asterisk]\nurl = public\n").is_ok());
    let (cfg, _) = BeaconConfig::parse(text, Path::new("beacon.conf"), false).unwrap();
    assert_eq!(cfg.targets[0].url, PUBLIC_URL);
    // The public host under any path, in any case, or as a fully qualified name (trailing dot).
    for url in [
        "https://beacon.asterisk.org/api/v2",
        "https://BEACON.Asterisk.org/api/v1",
        "https://beacon.asterisk.org./api/v1",
        "https://beacon.asterisk.org:443/",
    ] {
        let err = parse(&format!("[general]\nenabled = yes\n[asterisk]\nurl = {url}\n")).unwrap_err().to_string();
        assert!(err.starts_with("beacon.conf:4:") && err.contains("dev mode"), "{url}: {err}");
    }
    assert!(parse("[general]\nenabled = yes\n[t]\nurl = https://beacon.asterisk.org.example/api\n").is_ok());
}

#[test]
fn dev_mode_clients_refuse_the_public_host_however_written() {
    for url in
        ["https://beacon.asterisk.org/api/v1", "https://beacon.asterisk.org./api/v1", "https://Beacon.Asterisk.Org.."]
    {
        let err = super::super::send::Sender::new(&Target::new("t", url), true).unwrap_err();
        assert!(matches!(err, super::super::send::SendError::DevMode), "{url}: {err}");
    }
}

#[test]
fn syntax_errors_and_unknown_keys() {
    let err = parse("[general]\nenabled\n").unwrap_err().to_string();
    assert!(err.starts_with("beacon.conf:2:"), "{err}");
    let (_, warnings) = parse("[general]\ncolour = red\n").unwrap();
    assert_eq!(warnings[0].to_string(), "beacon.conf:2: unknown key \"colour\" ignored");
    assert!(BeaconConfig::load(Path::new("/nonexistent/beacon.conf"), true).unwrap().0 == BeaconConfig::default());
}

#[test]
fn file_names_are_relative_to_the_file_and_ca_path_is_read() {
    let dir = std::env::temp_dir().join(format!("astmanproxy-beacon-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("beacon.conf");
    std::fs::write(&path, "[general]\nenabled = yes\nstatefile = s.json\n[t]\nurl = https://x\nca_path = ca.pem\n")
        .unwrap();
    let err = BeaconConfig::load(&path, true).unwrap_err().to_string();
    assert!(err.contains("beacon.conf: target [t]: ca_path") && err.contains("ca.pem"), "{err}");
    std::fs::write(dir.join("ca.pem"), "not a certificate\n").unwrap();
    assert!(BeaconConfig::load(&path, true).is_err());
    let (cfg, _) = BeaconConfig::parse(&std::fs::read_to_string(&path).unwrap(), &path, true).unwrap();
    assert_eq!(cfg.state_file, dir.join("s.json"));
    assert_eq!(cfg.targets[0].ca_path.as_deref(), Some(dir.join("ca.pem").as_path()));
    let _ = std::fs::remove_dir_all(&dir);
}
