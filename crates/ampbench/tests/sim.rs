//! The `ampbench` tool as a user runs it.

use tokio::process::Command;

/// How long the tool may take to give up.
const WAIT: std::time::Duration = std::time::Duration::from_secs(10);

#[tokio::test]
async fn sim_on_a_busy_port_says_so_and_exits_non_zero() {
    // The port is held by this listener for the whole test.
    let busy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = busy.local_addr().unwrap();
    let out = tokio::time::timeout(
        WAIT,
        Command::new(env!("CARGO_BIN_EXE_ampbench")).args(["sim", "--listen", &addr.to_string()]).output(),
    )
    .await
    .expect("ampbench sim must exit when it cannot listen")
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("ampbench sim: cannot listen on {addr}")), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    drop(busy);
}
