//! The container kit: conf/container-entrypoint (environment overrides, HEALTHCHECK) and the
//! configuration inlined in conf/compose.yaml.

use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::support::*;

fn repo(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

#[tokio::test]
async fn the_entrypoint_applies_the_environment_and_its_healthcheck_asks_healthz() {
    let sim = sim().await;
    let dir = std::env::temp_dir().join(format!("astmanproxy-it-entrypoint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The file says port 1234 and no admin listener; the environment overrides both.
    std::fs::write(
        dir.join("astmanproxy.conf"),
        format!("host = {}, {}, admin, adminpass, on, off\nlistenport = 1234\n", sim.addr().ip(), sim.addr().port()),
    )
    .unwrap();
    std::fs::write(dir.join("astmanproxy.users"), "alice=alicepw\n").unwrap();
    let entrypoint = repo("conf/container-entrypoint");
    let mut child = Command::new(&entrypoint)
        .env("ASTMANPROXY_BIN", env!("CARGO_BIN_EXE_astmanproxy"))
        .env("ASTMANPROXY_CONFIG", dir.join("astmanproxy.conf"))
        .env("ASTMANPROXY_USERS", dir.join("astmanproxy.users"))
        .env("TMPDIR", &dir)
        .env("ASTMANPROXY_LISTEN_ADDRESS", "127.0.0.1")
        .env("ASTMANPROXY_LISTEN_PORT", "0")
        .env("ASTMANPROXY_ADMIN_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (mut ami, mut admin) = (None, None);
    tokio::time::timeout(WAIT, async {
        while ami.is_none() || admin.is_none() {
            let line = lines.next_line().await.unwrap().expect("the proxy exited");
            if let Some(rest) = line.split("listening on ").nth(1) {
                ami = Some(rest.trim().parse::<std::net::SocketAddr>().unwrap());
            }
            if let Some(rest) = line.split("on http://").nth(1) {
                admin = Some(rest.trim().parse::<std::net::SocketAddr>().unwrap());
            }
        }
    })
    .await
    .expect("no listening lines");
    let (ami, admin) = (ami.unwrap(), admin.unwrap());
    assert_ne!(ami.port(), 1234, "ASTMANPROXY_LISTEN_PORT was not applied");
    wait_ready(ami, None).await;
    let health = |admin: String| {
        let entrypoint = entrypoint.clone();
        async move {
            Command::new(entrypoint)
                .arg("healthcheck")
                .env("ASTMANPROXY_ADMIN_LISTEN", admin)
                .stderr(Stdio::null())
                .status()
                .await
                .unwrap()
                .success()
        }
    };
    assert!(health(format!("0.0.0.0:{}", admin.port())).await, "healthcheck failed on a running proxy");
    child.kill().await.unwrap();
    child.wait().await.unwrap();
    assert!(!health(format!("0.0.0.0:{}", admin.port())).await, "healthcheck passed with no proxy");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_compose_files_proxy_configuration_loads() {
    let compose: serde_json::Value =
        serde_norway::from_str(&std::fs::read_to_string(repo("conf/compose.yaml")).unwrap()).unwrap();
    let text = compose["configs"]["astmanproxy.conf"]["content"].as_str().expect("inline astmanproxy.conf");
    let (cfg, warnings) = astmanproxy::config::Config::parse(text, Path::new("compose.yaml")).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!((cfg.servers[0].host.as_str(), cfg.servers[0].port), ("sim", 5038));
    // The simulator's login (ampbench sim).
    assert_eq!((cfg.servers[0].username.as_str(), cfg.servers[0].secret.expose()), ("admin", "adminpass"));
    let entry = compose["services"]["sim"]["build"]["target"].as_str();
    assert_eq!(entry, Some("sim"));
}
