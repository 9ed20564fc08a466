//! The real binary, started with the 1.x flags, as a user would.

use std::time::Duration;

use tokio::process::Command;

use crate::support::*;

pub use crate::support::program::Binary;

/// Starts the binary and waits for its "listening on" line.
pub async fn start_binary(conf: &std::path::Path, users: &std::path::Path, extra: &[&str]) -> Binary {
    let mut args = vec!["-c", conf.to_str().unwrap(), "-u", users.to_str().unwrap()];
    args.extend_from_slice(extra);
    start_binary_with(&args).await
}

/// Starts the binary with `args` and waits for its "listening on" line (the proxy's, or the
/// Beacon collector's).
pub async fn start_binary_with(args: &[&str]) -> Binary {
    start_binary_log(args, Some("info")).await
}

/// [`start_binary_with`] with `RUST_LOG` set to `rust_log` (`None`: unset, so `-d` decides).
pub async fn start_binary_log(args: &[&str], rust_log: Option<&str>) -> Binary {
    crate::support::program::start(env!("CARGO_BIN_EXE_astmanproxy"), args, rust_log).await
}

#[tokio::test]
async fn binary_starts_with_1x_flags_and_serves_clients() {
    let sim = sim().await;
    let dir = std::env::temp_dir().join(format!("astmanproxy-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("astmanproxy.conf");
    let users = dir.join("astmanproxy.users");
    std::fs::write(
        &conf,
        format!(
            "; 1.x style\nhost = {}, {}, admin, adminpass, on, off\nlistenaddress = 127.0.0.1\nlistenport = 0\n\
             retryinterval = 1\nmaxretries = 0\nautofilter = on\nauthrequired = yes\n",
            sim.addr().ip(),
            sim.addr().port()
        ),
    )
    .unwrap();
    std::fs::write(&users, "alice=alicepw\n").unwrap();
    let Binary { mut child, addr, .. } = start_binary(&conf, &users, &["-f"]).await;
    wait_ready(addr, None).await;
    let mut c = AmiClient::login(addr, "alice", "alicepw").await;
    assert_eq!(c.banner, "Asterisk Call Manager/11.0.0");
    let r = c.action("CoreSettings", "cs", &[]).await;
    assert_eq!(r.get("Server"), Some(sim.addr().ip().to_string().as_str()));
    // The Beacon CLI asks the running proxy.
    let out = Command::new(env!("CARGO_BIN_EXE_astmanproxy"))
        .args(["beacon", "show", "server", "--proxy", &addr.to_string(), "--user", "alice"])
        .env("ASTMANPROXY_SECRET", "alicepw")
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for line in
        ["Server ID: ", "Asterisk Information:", "  Version: 22.10.1 (221001)", "Operating System:", "  Name: Linux"]
    {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_astmanproxy"))
        .args(["beacon", "show", "server", "--proxy", &addr.to_string(), "--user", "alice", "--secret", "wrong"])
        .output()
        .await
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("login refused"));
    child.start_kill().unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn binary_rejects_a_bad_config_naming_file_and_line() {
    let dir = std::env::temp_dir().join(format!("astmanproxy-it-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("bad.conf");
    std::fs::write(&conf, "listenport = 1234\nlistenport = notaport\n").unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_astmanproxy")).args(["-c", conf.to_str().unwrap()]).output().await.unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.conf:2"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn sighup_reloads_users_and_servers_and_rejects_a_broken_config() {
    use astmanproxy_handlers::Kind;
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;

    let sim1 = sim().await;
    let sim2 = sim().await;
    let dir = std::env::temp_dir().join(format!("astmanproxy-it-hup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("astmanproxy.conf");
    let users = dir.join("astmanproxy.users");
    let host = |sim: &ami_sim::AmiSim, name: &str| {
        format!("host = 127.0.0.1, {}, admin, adminpass, on, off, {name}\n", sim.addr().port())
    };
    let base = "listenaddress = 127.0.0.1\nlistenport = 0\nretryinterval = 1\n";
    std::fs::write(&conf, format!("{}{base}", host(&sim1, "one"))).unwrap();
    std::fs::write(&users, "alice=alicepw\n").unwrap();
    let Binary { mut child, addr, log: mut log_rx } = start_binary(&conf, &users, &[]).await;
    let pid = Pid::from_raw(child.id().unwrap() as i32);
    wait_ready(addr, None).await;
    let mut alice = AmiClient::login(addr, "alice", "alicepw").await;
    // The event session and the action session (actionsessions = 2, the default).
    eventually("both sessions of server one logged in", || async { sim1.login_count() == 2 }).await;

    // New users file (alice gone, bob in) and a second server.
    std::fs::write(&users, "bob=bobpw\n").unwrap();
    std::fs::write(&conf, format!("{}{}{base}", host(&sim1, "one"), host(&sim2, "two"))).unwrap();
    kill(pid, Signal::SIGHUP).unwrap();
    let closed = alice.recv_until(|m| m.kind() == Kind::Event && m.event() == Some("ProxySessionClosed")).await;
    assert_eq!(closed.get("Message"), Some("User removed by a configuration reload"));
    assert!(alice.is_closed(WAIT).await);
    let mut bob = AmiClient::login(addr, "bob", "bobpw").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let r = bob.action("Ping", "two", &[("Server", "two")]).await;
        if r.get("Ping") == Some("Pong") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "server two never came: {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The first server was not touched: still its two logins.
    assert_eq!(sim1.login_count(), 2);

    // A broken file is rejected; everything keeps running.
    std::fs::write(&conf, "listenport = nope\n").unwrap();
    kill(pid, Signal::SIGHUP).unwrap();
    let rejected = tokio::time::timeout(WAIT, async {
        while let Some(line) = log_rx.recv().await {
            if line.contains("reload rejected") {
                return line;
            }
        }
        String::new()
    })
    .await
    .unwrap();
    assert!(rejected.contains("astmanproxy.conf:1"), "{rejected}");
    assert_eq!(bob.action("Ping", "still", &[("Server", "two")]).await.get("Ping"), Some("Pong"));

    child.start_kill().unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Started as root with `proc_user`, the proxy binds first and then runs as that user.
#[tokio::test]
async fn proc_user_drops_root_after_binding() {
    let Some(nobody) = root_and_nobody() else { return };
    let sim = sim().await;
    let dir = std::env::temp_dir().join(format!("astmanproxy-it-priv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("p.conf");
    let users = dir.join("p.users");
    std::fs::write(
        &conf,
        format!(
            "host = 127.0.0.1, {}, admin, adminpass, on, off\nlistenport = 0\nproc_user = nobody\n",
            sim.addr().port()
        ),
    )
    .unwrap();
    std::fs::write(&users, "alice=alicepw\n").unwrap();
    let Binary { mut child, addr, .. } = start_binary(&conf, &users, &[]).await;
    let pid = child.id().unwrap();
    wait_ready(addr, None).await;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let uids: Vec<u32> = uid_line.split_whitespace().skip(1).map(|u| u.parse().unwrap()).collect();
    assert!(uids.iter().all(|u| *u == nobody.uid.as_raw()), "{uid_line}");
    child.start_kill().unwrap();
    let _ = child.wait().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh directory for one test.
fn test_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("astmanproxy-it-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits until `path` exists and holds a line containing `needle`; returns the file's text.
async fn wait_for_line_in(path: &std::path::Path, needle: &str) -> String {
    let has = || async { std::fs::read_to_string(path).is_ok_and(|t| t.contains(needle)) };
    eventually(&format!("{} getting {needle:?}", path.display()), has).await;
    std::fs::read_to_string(path).unwrap_or_default()
}

/// With `logfile` set, a start-up error (here: the port is taken) is on stderr and in the file.
#[tokio::test]
async fn a_startup_error_with_logfile_is_on_stderr_and_in_the_file() {
    let dir = test_dir("startup-err");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (conf, users, log) = (dir.join("s.conf"), dir.join("s.users"), dir.join("s.log"));
    std::fs::write(&conf, format!("listenaddress = 127.0.0.1\nlistenport = {port}\nlogfile = {}\n", log.display()))
        .unwrap();
    std::fs::write(&users, "alice=alicepw\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_astmanproxy"))
        .args(["-c", conf.to_str().unwrap(), "-u", users.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let needle = format!("cannot listen on 127.0.0.1:{port}");
    assert!(err.contains(&needle), "stderr: {err}");
    let file = std::fs::read_to_string(&log).unwrap();
    assert!(file.contains(&needle), "log file: {file}");
    // An unopenable log file is named.
    std::fs::write(&conf, "listenport = 0\nlogfile = /nonexistent-astmanproxy-dir/x.log\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_astmanproxy"))
        .args(["-c", conf.to_str().unwrap(), "-u", users.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot open log file /nonexistent-astmanproxy-dir/x.log"), "{err}");
    drop(taken);
    let _ = std::fs::remove_dir_all(&dir);
}

async fn check_config(conf: &std::path::Path, users: &std::path::Path, flag: &str) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_astmanproxy"))
        .args([flag, "-c", conf.to_str().unwrap(), "-u", users.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// `--check-config` (`-t`) finds what start-up would trip on, names file and line, and creates
/// no file.
#[tokio::test]
async fn check_config_finds_tls_user_and_key_problems_and_creates_no_file() {
    let dir = test_dir("check");
    let (conf, users, log) = (dir.join("c.conf"), dir.join("c.users"), dir.join("c.log"));
    std::fs::write(&users, "alice=alicepw\n").unwrap();
    std::fs::write(
        &conf,
        format!(
            "host = 127.0.0.1, 5038, admin, pw, on, off\nlistenport = 0\nlogfile = {}\n\
             acceptencryptedconnection = yes\ntlscert = {}\ntlskey = {}\nproc_user = no-such-user-xyz\n\
             listenprot = 5038\n",
            log.display(),
            dir.join("missing-cert.pem").display(),
            dir.join("missing-key.pem").display(),
        ),
    )
    .unwrap();
    let (ok, _, err) = check_config(&conf, &users, "--check-config").await;
    assert!(!ok, "{err}");
    for needle in [
        "c.conf:5: tlscert: ",
        "missing-cert.pem",
        "c.conf:7: proc_user: no such user \"no-such-user-xyz\"",
        "c.conf:8: unknown key \"listenprot\" ignored; did you mean listenport?",
    ] {
        assert!(err.contains(needle), "{needle:?} missing from:\n{err}");
    }
    assert!(!log.exists(), "--check-config created the log file");

    // A certificate with another certificate's key: parsed, but they do not match.
    let a = crate::support::pki::Pki::in_dir(&dir.join("a").tap_mkdir());
    let b = crate::support::pki::Pki::in_dir(&dir.join("b").tap_mkdir());
    let base = format!("host = 127.0.0.1, 5038, admin, pw, on, off\nlistenport = 0\nlogfile = {}\n", log.display());
    std::fs::write(
        &conf,
        format!(
            "{base}acceptencryptedconnection = yes\ntlscert = {}\ntlskey = {}\n",
            a.path("cert.pem").display(),
            b.path("key.pem").display()
        ),
    )
    .unwrap();
    let (ok, _, err) = check_config(&conf, &users, "-t").await;
    assert!(!ok, "a mismatched key passed: {err}");
    assert!(err.contains("c.conf:5: tlscert: TLS configuration"), "{err}");

    // All well: OK, exit 0, still no file.
    std::fs::write(
        &conf,
        format!(
            "{base}acceptencryptedconnection = yes\ntlscert = {}\ntlskey = {}\nproc_user = root\n",
            a.path("cert.pem").display(),
            a.path("key.pem").display()
        ),
    )
    .unwrap();
    let (ok, out, err) = check_config(&conf, &users, "-t").await;
    assert!(ok, "{err}");
    assert!(out.contains("c.conf: OK (1 servers, 1 users)"), "{out}");
    assert!(!log.exists(), "--check-config created the log file");
    let _ = std::fs::remove_dir_all(&dir);
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for std::path::PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

/// logrotate: the log file is moved away, SIGHUP, and the next lines go to a new file at once.
#[tokio::test]
async fn sighup_reopens_the_log_file() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;

    let sim = sim().await;
    let dir = test_dir("logrotate");
    let (conf, users, log) = (dir.join("r.conf"), dir.join("r.users"), dir.join("r.log"));
    std::fs::write(
        &conf,
        format!(
            "host = 127.0.0.1, {}, admin, adminpass, on, off\nlistenaddress = 127.0.0.1\nlistenport = 0\nlogfile = {}\n",
            sim.addr().port(),
            log.display()
        ),
    )
    .unwrap();
    std::fs::write(&users, "alice=alicepw\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_astmanproxy"))
        .args(["-c", conf.to_str().unwrap(), "-u", users.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_for_line_in(&log, "connected and logged in").await;
    let rotated = dir.join("r.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGHUP).unwrap();
    let text = wait_for_line_in(&log, "reload: users 1 -> 1; servers added none, removed none, restarted none").await;
    assert!(text.contains("SIGHUP: reopened log file"), "{text}");
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.contains("listening on") && !old.contains("reload:"), "{old}");
    child.start_kill().unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// `-dd` traces every AMI message in and out, with secrets masked.
#[tokio::test]
async fn dd_traces_ami_messages_with_secrets_masked() {
    let sim = sim().await;
    let dir = test_dir("trace");
    let (conf, users) = (dir.join("t.conf"), dir.join("t.users"));
    std::fs::write(
        &conf,
        format!(
            "host = 127.0.0.1, {}, admin, adminpass, on, off, pbx\nlistenaddress = 127.0.0.1\nlistenport = 0\n",
            sim.addr().port()
        ),
    )
    .unwrap();
    std::fs::write(&users, "alice=alicepw\n").unwrap();
    let args = ["-c", conf.to_str().unwrap(), "-u", users.to_str().unwrap(), "-dd"];
    let Binary { mut child, addr, mut log } = start_binary_log(&args, None).await;
    wait_ready(addr, None).await;
    let mut seen = Vec::new();
    let (mut upstream_login, mut client_login) = (false, false);
    tokio::time::timeout(WAIT, async {
        while !(upstream_login && client_login) {
            let line = log.recv().await.expect("the binary's log ended");
            // Toward Asterisk the login is an MD5 challenge answer (`Key`).
            upstream_login |= line.contains("to Asterisk")
                && line.contains("Action: Login")
                && line.contains("Key: ********")
                && line.contains("addr=127.0.0.1:");
            client_login |=
                line.contains("from client") && line.contains("Username: alice") && line.contains("Secret: ********");
            seen.push(line);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no traced logins in:\n{}", seen.join("\n")));
    assert!(seen.iter().any(|l| l.contains("from Asterisk") && l.contains("Response: Success")));
    for secret in ["adminpass", "alicepw"] {
        assert!(!seen.iter().any(|l| l.contains(secret)), "{secret} in the trace");
    }
    child.start_kill().unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// `-V` prints the version; `-c` works after a subcommand too.
#[tokio::test]
async fn version_flags_and_global_config_flag() {
    for flag in ["-V", "-v", "--version"] {
        let out = Command::new(env!("CARGO_BIN_EXE_astmanproxy")).arg(flag).output().await.unwrap();
        assert!(out.status.success(), "{flag}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("astmanproxy 2."), "{flag}");
    }
    let dir = test_dir("global");
    let conf = dir.join("g.conf");
    std::fs::write(&conf, "listenport = 0\nbeaconconfig = g-beacon.conf\n").unwrap();
    std::fs::write(dir.join("g-beacon.conf"), "[general]\nenabled = no\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_astmanproxy"))
        .args(["beacon", "show", "configuration", "-c", conf.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("g-beacon.conf"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Started as root with `proc_user`, the proxy reads a key only root may read before it drops
/// to that user (1.x layout: key 0600 root).
#[tokio::test]
async fn a_root_only_tls_key_works_with_proc_user() {
    use std::os::unix::fs::PermissionsExt;
    if root_and_nobody().is_none() {
        return;
    }
    let sim = sim().await;
    let dir = test_dir("rootkey");
    let pki = crate::support::pki::Pki::in_dir(&dir);
    std::fs::set_permissions(pki.path("key.pem"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let conf = format!(
        "host = 127.0.0.1, {}, admin, adminpass, on, off\nlistenaddress = 127.0.0.1\nlistenport = 0\n\
         acceptencryptedconnection = yes\ntlscert = {}\ntlskey = {}\nproc_user = nobody\n",
        sim.addr().port(),
        pki.path("cert.pem").display(),
        pki.path("key.pem").display()
    );
    serves_a_ping_as_nobody(&dir, &conf).await;
}

/// Started as root with `proc_user`, the proxy reads a `tlscafile` only root may read before it
/// drops to that user, and verifies a `use_ssl` server with it.
#[tokio::test]
async fn a_root_only_tls_ca_file_works_with_proc_user() {
    use std::os::unix::fs::PermissionsExt;
    if root_and_nobody().is_none() {
        return;
    }
    let sim = sim().await;
    let dir = test_dir("rootca");
    let pki = crate::support::pki::Pki::in_dir(&dir);
    let front = crate::tls::tls_front(&pki, sim.addr()).await;
    std::fs::set_permissions(pki.path("ca.pem"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let conf = format!(
        "host = localhost, {}, admin, adminpass, on, on\nlistenaddress = 127.0.0.1\nlistenport = 0\n\
         tlscafile = {}\nproc_user = nobody\n",
        front.port(),
        pki.path("ca.pem").display()
    );
    serves_a_ping_as_nobody(&dir, &conf).await;
}

/// Starts the binary as root with the configuration `conf` (which drops to `nobody`) and a
/// users file in `dir`, and checks that a client's Ping reaches Asterisk and back.
async fn serves_a_ping_as_nobody(dir: &std::path::Path, conf: &str) {
    use std::os::unix::fs::PermissionsExt;
    let (conf_path, users) = (dir.join("p.conf"), dir.join("p.users"));
    std::fs::write(&conf_path, conf).unwrap();
    std::fs::write(&users, "alice=alicepw\n").unwrap();
    std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o644)).unwrap();
    let Binary { mut child, addr, .. } = start_binary(&conf_path, &users, &[]).await;
    wait_ready(addr, None).await;
    let mut c = AmiClient::login(addr, "alice", "alicepw").await;
    assert_eq!(c.action("Ping", "p", &[]).await.get("Ping"), Some("Pong"));
    child.start_kill().unwrap();
    let _ = child.wait().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// The `nobody` user when this test runs as root (the tests that drop privileges need both);
/// `None`, with a note, otherwise.
fn root_and_nobody() -> Option<nix::unistd::User> {
    let nobody = nix::unistd::User::from_name("nobody").ok().flatten();
    if !nix::unistd::geteuid().is_root() || nobody.is_none() {
        eprintln!("skipped: needs root and a `nobody` user");
        return None;
    }
    nobody
}
