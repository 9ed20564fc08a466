//! The binary under systemd: `Type=notify` readiness.

use std::process::Stdio;

use tokio::process::Command;

use crate::support::*;

#[tokio::test]
async fn the_binary_tells_systemd_it_is_ready_once_listening() {
    let sim = sim().await;
    let dir = std::env::temp_dir().join(format!("astmanproxy-it-notify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (conf, users, socket) = (dir.join("a.conf"), dir.join("a.users"), dir.join("notify.sock"));
    std::fs::write(
        &conf,
        format!(
            "host = {}, {}, admin, adminpass, on, off\nlistenaddress = 127.0.0.1\nlistenport = 0\n",
            sim.addr().ip(),
            sim.addr().port()
        ),
    )
    .unwrap();
    std::fs::write(&users, "alice=alicepw\n").unwrap();
    let _ = std::fs::remove_file(&socket);
    // What systemd does for Type=notify: a datagram socket named by NOTIFY_SOCKET.
    let notify = tokio::net::UnixDatagram::bind(&socket).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_astmanproxy"))
        .args(["-c", conf.to_str().unwrap(), "-u", users.to_str().unwrap(), "-f"])
        .env("NOTIFY_SOCKET", &socket)
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(WAIT, notify.recv(&mut buf)).await.expect("no READY=1 from the proxy").unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(text.lines().any(|l| l == "READY=1"), "{text:?}");
    // Ready means the first server attempt is under way: the simulator sees the proxy's login.
    eventually("the proxy logs in to the simulator", || async { sim.login_count() >= 1 }).await;
    child.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
