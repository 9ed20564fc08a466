//! Who may use the HTTP front: HTTP Digest as Asterisk asks for it, the front under
//! `httpprefix`, and requests from other sites' pages (cross-site request forgery) against
//! `httpallowedorigins`.

use std::net::SocketAddr;

use crate::ajam::{exchange, get, http_proxy, Answer};

/// A Digest exchange for `path` as curl makes it: the 401 challenge, then the answer with the
/// right secret and with a wrong one.
async fn digest_exchange(addr: SocketAddr, path: &str) -> (Answer, Answer) {
    use astmanproxy::http::digest;
    let first = get(addr, path, None).await;
    assert_eq!(first.status, 401);
    let challenge = first.header("www-authenticate").to_string();
    assert!(challenge.starts_with("Digest realm=\"asterisk\"") && challenge.contains("qop=\"auth\""), "{challenge}");
    let nonce = challenge.split("nonce=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let ask = |secret: &str| {
        let response = digest::client_response("alice", secret, "GET", path, &nonce, "00000001", "c0ffee");
        let header = format!(
            "Authorization: Digest username=\"alice\", realm=\"asterisk\", nonce=\"{nonce}\", uri=\"{path}\", \
             response=\"{response}\", qop=auth, nc=00000001, cnonce=\"c0ffee\"\r\n"
        );
        let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\n{header}Connection: close\r\n\r\n");
        async move { exchange(addr, &request).await }
    };
    (ask("alicepw").await, ask("wrong").await)
}

#[tokio::test]
async fn digest_authentication_on_amxml_as_asterisk_asks_for_it() {
    let (_sim, _proxy, addr) = http_proxy(|_| {}).await;
    let (ok, wrong) = digest_exchange(addr, "/amxml?action=Ping&actionid=d").await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.body.contains("ping='Pong'") && ok.body.contains("actionid='d'"), "{}", ok.body);
    assert_eq!(wrong.status, 401);
}

/// `httpprefix = asterisk` serves the front under `/asterisk/`, as Asterisk's `http.conf`
/// `prefix` does (a reverse proxy publishing it under a path): AJAM, Digest over the full path,
/// the live page; the bare paths are not found.
#[tokio::test]
async fn the_http_front_under_a_prefix() {
    let (_sim, _proxy, addr) = http_proxy(|cfg| cfg.http.prefix = "asterisk".to_string()).await;
    let login = get(addr, "/asterisk/rawman?action=login&username=alice&secret=alicepw", None).await;
    assert_eq!(login.status, 200, "{}", login.body);
    let ping = get(addr, "/asterisk/rawman?action=ping", Some(&login.cookie())).await;
    assert!(ping.body.contains("Ping: Pong"), "{}", ping.body);
    assert_eq!(get(addr, "/rawman?action=ping", Some(&login.cookie())).await.status, 404);
    assert_eq!(get(addr, "/asteriskrawman?action=ping", None).await.status, 404);
    let (ok, wrong) = digest_exchange(addr, "/asterisk/amxml?action=Ping&actionid=d").await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(wrong.status, 401);
    let page = get(addr, "/asterisk/", None).await;
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").starts_with("text/html"), "{}", page.header("content-type"));
}

#[tokio::test]
async fn requests_from_another_sites_pages_are_refused() {
    let (_sim, _proxy, addr) = http_proxy(|_| {}).await;
    let login = get(addr, "/rawman?action=login&username=alice&secret=alicepw", None).await;
    // Browsers never add the cookie to a request another site's page makes.
    assert!(login.header("set-cookie").ends_with("; HttpOnly; SameSite=Strict"), "{}", login.header("set-cookie"));
    let cookie = login.cookie();
    // alice:alicepw
    let basic = "Authorization: Basic YWxpY2U6YWxpY2Vwdw==\r\n";
    // A form on another site posting to the proxy: the browser adds the session cookie or the
    // Basic credentials it keeps, and an Origin (or Sec-Fetch-Site) naming the other site.
    let form = "action=Originate&Channel=PJSIP/premium&Exten=1&Context=x&Priority=1&ActionID=o";
    for (path, credentials, site) in [
        ("/rawman", format!("Cookie: {cookie}\r\n"), "Origin: http://evil.example\r\n"),
        ("/", basic.to_string(), "Origin: http://evil.example\r\n"),
        ("/json", basic.to_string(), "Origin: null\r\n"),
        ("/mxml", format!("Cookie: {cookie}\r\n"), "Sec-Fetch-Site: cross-site\r\n"),
        ("/rawman", format!("Cookie: {cookie}\r\n"), "Sec-Fetch-Site: same-site\r\n"),
    ] {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\n{credentials}{site}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        );
        let answer = exchange(addr, &request).await;
        assert_eq!(answer.status, 403, "{path} {site}: {}", answer.body);
    }
    // The proxy's own page, and clients that are not browsers, are served.
    for site in ["Origin: http://t\r\n", "Sec-Fetch-Site: same-origin\r\n", "Sec-Fetch-Site: none\r\n", ""] {
        let request =
            format!("GET /rawman?action=Ping&ActionID=s HTTP/1.1\r\nHost: t\r\nCookie: {cookie}\r\n{site}Connection: close\r\n\r\n");
        let answer = exchange(addr, &request).await;
        assert!(answer.body.contains("Ping: Pong"), "{site}: {}", answer.body);
    }
}

#[tokio::test]
async fn origins_listed_in_httpallowedorigins_may_send_actions() {
    let (_sim, _proxy, addr) =
        http_proxy(|cfg| cfg.http.allowed_origins = vec!["https://crm.example".to_string()]).await;
    let ask = |origin: &'static str| {
        let request = format!(
            "GET /?Action=Ping&ActionID=o HTTP/1.1\r\nHost: t\r\nAuthorization: Basic YWxpY2U6YWxpY2Vwdw==\r\n\
             Origin: {origin}\r\nSec-Fetch-Site: cross-site\r\nConnection: close\r\n\r\n"
        );
        async move { exchange(addr, &request).await }
    };
    let listed = ask("https://crm.example").await;
    assert!(listed.body.contains("Ping: Pong"), "{}", listed.body);
    assert_eq!(ask("https://other.example").await.status, 403);
}
