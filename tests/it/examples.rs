//! The example configurations in `conf/examples/` load as shipped, and say what they claim.

use std::path::PathBuf;

use astmanproxy::config::{Config, Users};

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("conf/examples").join(name)
}

fn load(name: &str) -> Config {
    let (cfg, warnings) = Config::load(&example(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(warnings.is_empty(), "{name}: {warnings:?}");
    cfg
}

fn names(cfg: &Config) -> Vec<&str> {
    cfg.servers.iter().map(|s| s.name.as_str()).collect()
}

#[test]
fn every_example_loads() {
    let mut seen = 0;
    for entry in std::fs::read_dir(example("")).unwrap() {
        let path = entry.unwrap().path();
        match path.extension().and_then(|e| e.to_str()) {
            Some("conf") => {
                Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
            Some("users") => {
                Users::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
            _ => continue,
        }
        seen += 1;
    }
    assert!(seen >= 6, "only {seen} examples");
}

#[test]
fn the_examples_say_what_they_claim() {
    let sim = load("simulator.conf");
    assert_eq!(names(&sim), ["sim"]);
    assert_eq!(sim.servers[0].port, 5038);
    assert_eq!(sim.admin_users, ["demo"]);
    assert!(Users::load(&example("simulator.users")).unwrap().get("demo").is_some());

    let multi = load("multi-server.conf");
    assert_eq!(names(&multi), ["london", "paris", "berlin"]);
    assert!(multi.servers[2].use_ssl, "berlin is reached over TLS");

    let tls = load("tls.conf");
    assert!(tls.tls.accept_encrypted && tls.tls.accept_unencrypted);
    assert!(tls.servers[0].use_ssl);
    assert!(tls.tls.ca_file.is_some() && tls.tls.cert.is_some() && tls.tls.key.is_some());

    let users = Users::load(&example("wallboard.users")).unwrap();
    assert!(users.get("ops").is_some() && users.get("wallboard").is_some());

    let rp = load("reverse-proxy.conf");
    assert_eq!(rp.http.allowed_origins, ["https://pbx-api.example.com"]);
    assert_eq!(rp.http.prefix, "asterisk");
}
