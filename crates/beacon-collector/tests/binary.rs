//! The `astmanproxy-collector` binary, started as a user would: it serves a registration over
//! HTTPS on 127.0.0.1:0 and stops on SIGTERM, and refuses a missing certificate by name. The
//! collector's library tests (every route against `docs/beacon-openapi.yaml`) are the proxy's
//! `tests/it/beacon_collector.rs`; this file shares their harness.

use std::time::Duration;

use reqwest::StatusCode;

// The proxy's test harness files this test uses (certificates, the HTTPS client, the program
// starter), shared rather than copied; they find `WAIT` and each other at the crate root.
#[allow(dead_code, unused_imports)]
#[path = "../../../tests/it/support/collector.rs"]
mod collector;
#[allow(dead_code)]
#[path = "../../../tests/it/support/pki.rs"]
mod pki;
#[path = "../../../tests/it/support/program.rs"]
mod program;

use collector::{server, Pki, Running};
use program::Binary;

/// How long any one step may take before the test fails.
const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn binary_serves_a_registration_and_stops_on_sigterm() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;

    let pki = Pki::new("binary");
    let db = pki.path("bin.db");
    let (cert, key) = (pki.path("cert.pem"), pki.path("key.pem"));
    let args = ["--listen", "127.0.0.1:0", "--register-per-hour", "3", "--db"];
    let tls = ["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()];
    let mut args: Vec<&str> = args.to_vec();
    args.push(db.to_str().unwrap());
    args.extend_from_slice(&tls);
    let Binary { mut child, addr, mut log } =
        program::start(env!("CARGO_BIN_EXE_astmanproxy-collector"), &args, Some("info")).await;
    let c = Running { addr, client: pki.client(), stop: None, task: tokio::spawn(async { Ok(()) }) };
    let reg = c.register(server("22.10.1", "Linux", &["chan_pjsip.so"], None)).await;
    assert_eq!(reg.status, StatusCode::CREATED);
    let id = reg.body["server"]["id"].as_str().unwrap();
    assert!(reg.body["token"]["id"].as_str().is_some_and(|t| t.len() >= 32));
    let a = c.update(id, reg.body["token"]["id"].as_str(), server("22.10.2", "Linux", &[], None)).await;
    assert_eq!(a.status, StatusCode::OK);

    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(WAIT, child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status}");
    let mut lines = Vec::new();
    while let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(5), log.recv()).await {
        lines.push(line);
    }
    let log = lines.join("\n");
    assert!(log.contains("SIGTERM received") && log.contains("beacon collector stopped"), "{log}");
    assert!(!log.contains(reg.body["token"]["id"].as_str().unwrap()), "a token reached the log");
    assert!(db.exists());
}

#[tokio::test]
async fn binary_refuses_a_missing_certificate_naming_it() {
    let pki = Pki::new("nocert");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_astmanproxy-collector"))
        .args(["--listen", "127.0.0.1:0", "--tls-cert", "/nonexistent/cert.pem"])
        .arg("--db")
        .arg(pki.path("x.db"))
        .arg("--tls-key")
        .arg(pki.path("key.pem"))
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/cert.pem"), "{err}");
}
