use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn dir(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn files(rel: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir(rel)).unwrap().map(|e| e.unwrap().path()).collect();
    out.sort();
    assert!(!out.is_empty(), "no files in {rel}");
    out
}

#[test]
fn every_shipped_and_valid_file_loads() {
    for path in files("conf").into_iter().chain(files("tests/fixtures/config/valid")) {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_string();
        if ext != "conf" && ext != "users" {
            continue; // the systemd unit, the Containerfile, packaging scripts
        }
        if path.file_name().is_some_and(|n| n == "beacon.conf") {
            // The Beacon file has its own format; the sample must send nothing.
            let (beacon, warnings) =
                crate::beacon::report::BeaconConfig::load(&path, true).unwrap_or_else(|e| panic!("{e}"));
            assert!(warnings.is_empty(), "{}: {warnings:?}", path.display());
            assert!(!beacon.sending(), "the shipped beacon.conf must be disabled");
            continue;
        }
        if ext == "users" {
            Users::load(&path).unwrap_or_else(|e| panic!("{e}"));
        } else {
            let (cfg, warnings) = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(warnings.is_empty(), "{}: {warnings:?}", path.display());
            assert!(!cfg.servers.is_empty(), "{}", path.display());
        }
    }
}

#[test]
fn every_invalid_file_fails_naming_file_and_line() {
    for path in files("tests/fixtures/config/invalid") {
        let err = Config::load(&path).expect_err(&path.display().to_string()).to_string();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        assert!(err.contains(&name), "{err}");
        assert!(err.contains(&format!("{name}:")), "no line in {err}");
    }
}

#[test]
fn a_1x_file_keeps_its_meaning_and_its_case() {
    let (cfg, _) = Config::load(&dir("tests/fixtures/config/valid/1x-verbatim.conf")).unwrap();
    assert_eq!(cfg.servers.len(), 2);
    let s = &cfg.servers[1];
    assert_eq!((s.name.as_str(), s.host.as_str(), s.port), ("10.0.0.2", "10.0.0.2", 5038));
    assert_eq!(s.secret.expose(), "Other Secret");
    assert_eq!(s.events, "off");
    assert!(s.use_ssl);
    assert_eq!(cfg.listen_address.to_string(), "0.0.0.0");
    assert_eq!(cfg.asterisk_write_timeout, Duration::from_millis(100));
    assert_eq!(cfg.max_retries, 10);
    assert_eq!(cfg.retry_interval, Duration::from_secs(2));
    assert!(!cfg.auth_required);
    assert_eq!(cfg.autofilter, AutoFilter::Unique);
    assert_eq!(cfg.force_banner.as_deref(), Some("Asterisk Call Manager/1.1"));
    assert_eq!(cfg.proc_user.as_deref(), Some("asterisk"));
    assert_eq!(cfg.proxy_key, None);
    assert!(cfg.tls.accept_encrypted);
}

#[test]
fn the_beacon_file_sits_next_to_the_main_file_or_where_beaconconfig_says() {
    let beacon = |cfg: &Config| crate::beacon::report::BeaconConfig::for_proxy(cfg, true).map(|(b, _)| b);
    let (cfg, _) = Config::load(&dir("conf/astmanproxy.conf")).unwrap();
    let b = beacon(&cfg).unwrap();
    assert_eq!(b.source.as_deref(), Some(dir("conf/beacon.conf").as_path()));
    assert!(!b.sending());
    let tmp = std::env::temp_dir().join(format!("astmanproxy-beaconconfig-{}", std::process::id()));
    std::fs::create_dir_all(tmp.join("b")).unwrap();
    std::fs::write(tmp.join("main.conf"), "host = h, 1, u, s, on, off\nbeaconconfig = b/my-beacon.conf\n").unwrap();
    let (cfg, warnings) = Config::load(&tmp.join("main.conf")).unwrap();
    assert!(beacon(&cfg).unwrap().source.is_none(), "missing file: off");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].line, 2);
    std::fs::write(tmp.join("b/my-beacon.conf"), "[general]\nenabled = yes\nstatefile = s.json\n[t]\nurl = http://x\n")
        .unwrap();
    let (cfg, _) = Config::load(&tmp.join("main.conf")).unwrap();
    let err = beacon(&cfg).unwrap_err().to_string();
    assert!(err.contains("my-beacon.conf:5: invalid value for url"), "{err}");
    std::fs::write(
        tmp.join("b/my-beacon.conf"),
        "[general]\nenabled = yes\nstatefile = s.json\n[t]\nurl = https://x\n",
    )
    .unwrap();
    let (cfg, _) = Config::load(&tmp.join("main.conf")).unwrap();
    let b = beacon(&cfg).unwrap();
    assert!(b.sending());
    assert_eq!(b.state_file, tmp.join("b/s.json"));
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn defaults_are_sane() {
    let (cfg, warnings) = Config::parse("", Path::new("empty.conf")).unwrap();
    assert!(warnings.is_empty());
    assert_eq!(cfg.listen_address.to_string(), "127.0.0.1");
    assert_eq!(cfg.listen_port, 1234);
    assert!(cfg.auth_required);
    assert!(cfg.log_file.is_none() && cfg.proc_user.is_none());
    assert!(cfg.tls.accept_unencrypted);
}

#[test]
fn names_and_duplicates() {
    let (cfg, _) = Config::load(&dir("tests/fixtures/config/valid/named-servers.conf")).unwrap();
    assert_eq!(cfg.servers[0].name, "Main");
    assert_eq!(cfg.servers[1].name, "pbx.example.com");
    assert_eq!(cfg.servers[1].events, "system,call");
    assert_eq!(cfg.lag_policy, LagPolicy::Drop);
    let (cfg, _) = Config::parse("host = a, 1, u, s, on, off\nhost = a, 2, u, s, on, off\n", Path::new("x")).unwrap();
    assert_eq!(cfg.servers[1].name, "a:2");
}

#[test]
fn unknown_keys_warn_with_file_and_line() {
    let (_, warnings) = Config::parse("listenport = 1\nfrobnicate = yes\n", Path::new("my.conf")).unwrap();
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].to_string(), "my.conf:2: unknown key \"frobnicate\" ignored");
}

#[test]
fn errors_never_show_the_secret() {
    let err = Config::parse("host = h, notaport, user, TopSecret, on, off\n", Path::new("s.conf")).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("s.conf:1: invalid value for host"), "{text}");
    assert!(!text.contains("TopSecret"), "{text}");
}

#[test]
fn listenport_error_reads_well() {
    let err = Config::parse("listenport = abc\n", Path::new("conf/astmanproxy.conf")).unwrap_err();
    assert_eq!(err.to_string(), "conf/astmanproxy.conf:1: invalid value for listenport: \"abc\" (not a port number)");
}

#[test]
fn charset_rule() {
    let path = Path::new("charset.conf");
    let host = "host = pbx1, 5038, admin, pw, on, off\n";
    let (cfg, _) = Config::parse(host, path).unwrap();
    assert_eq!(cfg.limits.charset, astmanproxy_handlers::Charset::Latin1);
    let (cfg, _) = Config::parse(&format!("{host}charset = utf8-lossy\n"), path).unwrap();
    assert_eq!(cfg.limits.charset, astmanproxy_handlers::Charset::Utf8Lossy);
    let err = Config::parse(&format!("{host}charset = koi8-r\n"), path).unwrap_err().to_string();
    assert!(err.contains("charset.conf:2") && err.contains("latin1, utf8-lossy"), "{err}");
}

#[test]
fn login_limits_and_proxy_lists() {
    let (cfg, warnings) = Config::parse("", Path::new("empty.conf")).unwrap();
    assert!(warnings.is_empty());
    assert_eq!((cfg.auth_limit, cfg.auth_limit_address), (10, 100));
    assert!(cfg.auth_limit_exempt.is_empty() && !cfg.open_proxy_lists);
    assert_eq!(cfg.auth_fail_delay, Duration::from_millis(1000));
    let text = "authlimitaddress = 0\nauthlimitexempt = 10.1.2.3/8, 127.0.0.1, ::1/128\nopenproxylists = yes\n";
    let (cfg, warnings) = Config::parse(text, Path::new("l.conf")).unwrap();
    assert_eq!(cfg.auth_limit_address, 0);
    let nets: Vec<String> = cfg.auth_limit_exempt.iter().map(ToString::to_string).collect();
    assert_eq!(nets, ["10.0.0.0/8", "127.0.0.1/32", "::1/128"]);
    assert!(cfg.open_proxy_lists);
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].to_string().starts_with("l.conf:3: openproxylists = yes: ListSessions"), "{}", warnings[0]);
    let err = Config::parse("authlimitexempt = 10.0.0.0/8, intranet\n", Path::new("e.conf")).unwrap_err();
    assert!(err.to_string().starts_with("e.conf:1: invalid value for authlimitexempt: \"intranet\""), "{err}");
    assert!(Config::parse("authlimitaddress = many\n", Path::new("e.conf")).is_err());
    assert!(Config::parse("openproxylists = perhaps\n", Path::new("e.conf")).is_err());
}

#[test]
fn reconnect_and_backlog_defaults() {
    let (cfg, _) = Config::parse("", Path::new("empty.conf")).unwrap();
    assert_eq!(cfg.retry_max, Duration::from_secs(5));
    assert_eq!(cfg.listen_backlog, 4096);
    let (cfg, _) = Config::parse("listenbacklog = 65535\nretrymax = 30\n", Path::new("x.conf")).unwrap();
    assert_eq!((cfg.listen_backlog, cfg.retry_max), (65535, Duration::from_secs(30)));
}

#[test]
fn a_bad_backlog_is_an_error() {
    for bad in ["0", "-1", "many", "2147483648"] {
        let err = Config::parse(&format!("listenbacklog = {bad}\n"), Path::new("b.conf")).unwrap_err();
        assert!(err.to_string().starts_with("b.conf:1: invalid value for listenbacklog"), "{err}");
    }
}

#[test]
fn a_duplicate_server_names_its_line_and_the_first() {
    let text = "listenport = 1\nhost = a, 1, u, s, on, off\n\nhost = A, 1, u, s, on, off\n";
    let err = Config::parse(text, Path::new("d.conf")).unwrap_err().to_string();
    assert_eq!(err, "d.conf:4: Asterisk server A:1 is configured twice (first at line 2)");
    let text = "host = a, 1, u, s, on, off, x\nhost = b, 1, u, s, on, off, a:2\nhost = a, 2, u, s, on, off, x\n";
    let err = Config::parse(text, Path::new("n.conf")).unwrap_err().to_string();
    assert!(err.starts_with("n.conf:3: two servers are named"), "{err}");
}

#[test]
fn an_unknown_key_gets_a_suggestion() {
    let (_, warnings) = Config::parse("listenprot = 5038\nlogfle = /x\nzzz = 1\n", Path::new("k.conf")).unwrap();
    let shown: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "k.conf:1: unknown key \"listenprot\" ignored; did you mean listenport?",
            "k.conf:2: unknown key \"logfle\" ignored; did you mean logfile?",
            "k.conf:3: unknown key \"zzz\" ignored",
        ]
    );
    assert!(warnings.iter().all(ConfigWarning::is_unknown_key));
}

#[test]
fn every_suggested_key_is_known() {
    for key in parse::KNOWN_KEYS {
        // A known key either parses or fails on its value; it is never "unknown".
        if let Ok((_, warnings)) = Config::parse(&format!("{key} = \n"), Path::new("k.conf")) {
            assert!(!warnings.iter().any(ConfigWarning::is_unknown_key), "{key}: {warnings:?}");
        }
    }
}

#[test]
fn an_events_list_written_with_commas_names_the_events_field() {
    // The old message blamed use_ssl ("use_ssl is not on or off") for `system,call`.
    for line in ["host = h, 5038, u, s, system,call, off", "host = h, 5038, u, s, system,call,log, off, name"] {
        let err = Config::parse(&format!("{line}\n"), Path::new("e.conf")).unwrap_err().to_string();
        assert!(err.starts_with("e.conf:1: invalid value for host"), "{err}");
        assert!(err.contains("events field") && err.contains("`system|call`"), "{err}");
    }
    let (cfg, _) = Config::parse("host = h, 5038, u, s, system|call, off\n", Path::new("e.conf")).unwrap();
    assert_eq!(cfg.servers[0].events, "system,call");
    // A use_ssl that is simply wrong says so, without the class-list hint.
    let err = Config::parse("host = h, 5038, u, s, on, 2\n", Path::new("e.conf")).unwrap_err().to_string();
    assert!(err.contains("field 6 (use_ssl) is `2`, not on or off") && !err.contains("events field"), "{err}");
}

#[test]
fn actionsessions_and_originatemargin() {
    let (cfg, _) = Config::parse("", Path::new("x")).unwrap();
    assert_eq!((cfg.action_sessions, cfg.originate_margin), (2, std::time::Duration::from_millis(5000)));
    let (cfg, _) = Config::parse("actionsessions = 1\noriginatemargin = 250\n", Path::new("x")).unwrap();
    assert_eq!((cfg.action_sessions, cfg.originate_margin), (1, std::time::Duration::from_millis(250)));
    for bad in ["0", "17", "many"] {
        let err = Config::parse(&format!("actionsessions = {bad}\n"), Path::new("x.conf")).unwrap_err().to_string();
        assert!(err.contains("x.conf:1") && err.contains("actionsessions"), "{err}");
    }
}
