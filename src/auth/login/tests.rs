use std::path::Path;
use std::time::Duration;

use md5::Digest;
use tokio::time::Instant;

use super::*;

const DELAY: Duration = Duration::from_secs(1);

fn config(auth_required: bool) -> Config {
    Config { auth_required, auth_fail_delay: DELAY, auth_limit_address: 0, ..Config::default() }
}

fn users() -> Arc<Users> {
    let text = "alice=alicepw\n[office]\nsecret = officepw\npermit = 10.0.0.0/8\nwrite = reporting\n";
    Arc::new(Users::parse(text, Path::new("t.users")).unwrap())
}

fn gate<'a>(config: &'a Config, limiter: &'a AuthLimiter) -> Gate<'a> {
    Gate { config, users: users(), limiter, failures: Counter::default() }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_good_secret_grants_the_users_policy() {
    let (cfg, limiter) = (config(true), AuthLimiter::new(3));
    let gate = gate(&cfg, &limiter);
    let grant = login(&gate, "office", ip("10.1.2.3"), Credentials::Basic("officepw")).await.unwrap();
    assert_eq!(grant.user, "office");
    let mut originate = astmanproxy_handlers::Message::new().with("Action", "Originate");
    assert!(grant.policy.check_action(&mut originate, "pbx").is_err(), "write = reporting applies");
    assert_eq!(gate.failures.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn failures_wait_count_and_lock_out_by_one_rule_for_every_transport() {
    let (cfg, limiter) = (config(true), AuthLimiter::new(2));
    let gate = gate(&cfg, &limiter);
    let peer = ip("192.0.2.1");
    let started = Instant::now();
    assert_eq!(login(&gate, "alice", peer, Credentials::AmiSecret("nope")).await.unwrap_err(), LoginError::WrongSecret);
    assert!(started.elapsed() >= DELAY, "a failure is answered after authfaildelay");
    // HTTP Basic counts towards the same limit as AMI: the second failure starts the lock-out.
    assert_eq!(login(&gate, "alice", peer, Credentials::Basic("nope")).await.unwrap_err(), LoginError::WrongSecret);
    let locked = Instant::now();
    let refused = login(&gate, "alice", peer, Credentials::AmiSecret("alicepw")).await.unwrap_err();
    assert_eq!(refused, LoginError::LockedOut(Lockout::User));
    assert!(!refused.is_failure());
    assert_eq!(locked.elapsed(), Duration::ZERO, "a lock-out is answered at once (paused clock)");
    assert_eq!(gate.failures.get(), 3, "failures and refusals are counted");
    // Another address is not locked out.
    assert!(login(&gate, "alice", ip("192.0.2.2"), Credentials::Basic("alicepw")).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn addresses_unknown_users_and_md5() {
    let (cfg, limiter) = (config(true), AuthLimiter::new(0));
    let gate = gate(&cfg, &limiter);
    let outside = ip("192.0.2.1");
    let denied = login(&gate, "office", outside, Credentials::AmiSecret("officepw")).await.unwrap_err();
    assert_eq!(denied, LoginError::AddressDenied);
    let unknown = login(&gate, "mallory", outside, Credentials::AmiSecret("x")).await.unwrap_err();
    assert_eq!(unknown, LoginError::UnknownUser);
    let no_challenge = Credentials::AmiMd5 { challenge: None, key: Some("abc") };
    assert_eq!(login(&gate, "alice", outside, no_challenge).await.unwrap_err(), LoginError::NoChallenge);
    let key = format!("{:x}", md5::Md5::digest("42alicepw"));
    let md5 = Credentials::AmiMd5 { challenge: Some("42"), key: Some(&key) };
    assert!(login(&gate, "alice", outside, md5).await.is_ok());
    assert_eq!(gate.failures.get(), 3);
}

#[tokio::test(start_paused = true)]
async fn an_open_proxy_admits_unknown_names_over_ami_only() {
    let (cfg, limiter) = (config(false), AuthLimiter::new(3));
    let gate = gate(&cfg, &limiter);
    let peer = ip("192.0.2.1");
    let grant = login(&gate, "anyone", peer, Credentials::AmiSecret("")).await.unwrap();
    assert!(grant.policy.is_open());
    assert_eq!(login(&gate, "anyone", peer, Credentials::Basic("")).await.unwrap_err(), LoginError::UnknownUser);
    // A known user's secret is still checked.
    assert_eq!(login(&gate, "alice", peer, Credentials::AmiSecret("x")).await.unwrap_err(), LoginError::WrongSecret);
}

#[tokio::test(start_paused = true)]
async fn digest_stale_nonces_are_no_failures() {
    let (cfg, limiter) = (config(true), AuthLimiter::new(1));
    let gate = gate(&cfg, &limiter);
    let peer = ip("192.0.2.1");
    let uri = "/arawman?action=ping";
    let header = |nonce: String| {
        let response = digest::client_response("alice", "alicepw", "GET", uri, &nonce, "00000001", "c");
        DigestCredentials {
            username: "alice".into(),
            realm: digest::REALM.into(),
            nonce,
            uri: uri.into(),
            response,
            qop: Some("auth".into()),
            nc: Some("00000001".into()),
            cnonce: Some("c".into()),
        }
    };
    let old = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
        - digest::NONCE_LIFETIME.as_secs()
        - 10;
    let stale = header(digest::nonce_issued_at(old));
    let credentials = Credentials::Digest { header: &stale, method: "GET", uri };
    assert_eq!(login(&gate, "alice", peer, credentials).await.unwrap_err(), LoginError::StaleNonce);
    assert_eq!(gate.failures.get(), 0);
    assert_eq!(limiter.check(&cfg, peer, "alice"), None, "a stale nonce does not count (authlimit = 1)");
    let fresh = header(digest::new_nonce());
    assert!(login(&gate, "alice", peer, Credentials::Digest { header: &fresh, method: "GET", uri }).await.is_ok());
    let mut forged = header(digest::new_nonce());
    forged.nonce = "1.deadbeef".into();
    let credentials = Credentials::Digest { header: &forged, method: "GET", uri };
    assert_eq!(login(&gate, "alice", peer, credentials).await.unwrap_err(), LoginError::InvalidNonce);
    assert_eq!(limiter.check(&cfg, peer, "alice"), Some(Lockout::User));
}
