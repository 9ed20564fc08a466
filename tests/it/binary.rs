//! The real binary, started with the 1.x flags, as a user would.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::support::*;

/// The real binary, started with `-c conf -u users` plus `extra` arguments; its log lines are
/// forwarded to the returned channel.
pub struct Binary {
    pub child: tokio::process::Child,
    pub addr: std::net::SocketAddr,
    pub log: tokio::sync::mpsc::UnboundedReceiver<String>,
}

/// Starts the binary and waits for its "listening on" line.
pub async fn start_binary(conf: &std::path::Path, users: &std::path::Path, extra: &[&str]) -> Binary {
    let mut args = vec!["-c", conf.to_str().unwrap(), "-u", users.to_str().unwrap()];
    args.extend_from_slice(extra);
    start_binary_with(&args).await
}

/// Starts the binary with `args` and waits for its "listening on" line (the proxy's, or the
/// Beacon collector's).
pub async fn start_binary_with(args: &[&str]) -> Binary {
    let mut child = Command::new(env!("CARGO_BIN_EXE_astmanproxy"))
        .args(args)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("listening on ").nth(1) {
                return rest.trim().parse::<std::net::SocketAddr>().unwrap();
            }
        }
        panic!("the binary exited without listening");
    })
    .await
    .unwrap();
    // Keep draining its log so it never blocks on a full pipe.
    let (tx, log) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send(line);
        }
    });
    Binary { child, addr, log }
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
    let host = |sim: &astmanproxy::sim::AmiSim, name: &str| {
        format!("host = 127.0.0.1, {}, admin, adminpass, on, off, {name}\n", sim.addr().port())
    };
    let base = "listenaddress = 127.0.0.1\nlistenport = 0\nretryinterval = 1\n";
    std::fs::write(&conf, format!("{}{base}", host(&sim1, "one"))).unwrap();
    std::fs::write(&users, "alice=alicepw\n").unwrap();
    let Binary { mut child, addr, log: mut log_rx } = start_binary(&conf, &users, &[]).await;
    let pid = Pid::from_raw(child.id().unwrap() as i32);
    wait_ready(addr, None).await;
    let mut alice = AmiClient::login(addr, "alice", "alicepw").await;

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
    // The first server was not touched: still one login.
    assert_eq!(sim1.login_count(), 1);

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
    if !nix::unistd::geteuid().is_root() || nix::unistd::User::from_name("nobody").ok().flatten().is_none() {
        eprintln!("skipped: needs root and a `nobody` user");
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
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
