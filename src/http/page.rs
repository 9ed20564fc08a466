//! `GET /` without an `Action` parameter: the live events page (`page.html`, embedded).
//!
//! One self-contained HTML file (no build step, nothing loaded from elsewhere): it logs in over
//! `/ws`, lists the servers and their state, shows a filtered, bounded log of live events and
//! sends actions. Its inline script and style are allowed by their SHA-256 hashes in a
//! restrictive `Content-Security-Policy`, computed once from the embedded file, so no other
//! script can run in the page.

use std::sync::OnceLock;

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{header, Response};
use sha2::{Digest, Sha256};

/// The page, as served.
pub const PAGE: &str = include_str!("page.html");

/// Whether a `GET /` is for the page: no query parameters at all. A query (`?Action=Ping`, or
/// parameters without an `Action`, which get `400 missing Action parameter`) is for the 1.x
/// action handler.
pub fn wants_page(query: Option<&str>) -> bool {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes()).next().is_none()
}

/// The page with its security headers.
pub fn handle() -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(PAGE.as_bytes())));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, header::HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, header::HeaderValue::from_static("DENY"));
    if let Ok(v) = header::HeaderValue::from_str(csp()) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    r
}

/// The page's `Content-Security-Policy`: nothing but its own inline script and style (by hash)
/// and WebSocket connections to this origin.
pub fn csp() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        let script = inline_hashes(PAGE, "script");
        let style = inline_hashes(PAGE, "style");
        format!(
            "default-src 'none'; script-src {script}; style-src {style}; connect-src 'self'; img-src 'self' data:; \
             form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
        )
    })
}

/// `'sha256-...'` for the content of every `<tag>` element of `html` (`'none'` without one).
fn inline_hashes(html: &str, tag: &str) -> String {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut hashes = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find(&open) {
        let body = &rest[start + open.len()..];
        let Some(end) = body.find(&close) else { break };
        let digest = Sha256::digest(&body.as_bytes()[..end]);
        hashes.push(format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(digest)));
        rest = &body[end + close.len()..];
    }
    if hashes.is_empty() {
        "'none'".to_string()
    } else {
        hashes.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_or_action() {
        assert!(wants_page(None));
        assert!(wants_page(Some("")));
        assert!(!wants_page(Some("ActionID=x")));
        assert!(!wants_page(Some("Action=Ping")));
        assert!(!wants_page(Some("a=1&action=Ping")));
    }

    #[test]
    fn csp_allows_only_the_embedded_script_and_style() {
        let csp = csp();
        assert!(csp.starts_with("default-src 'none'; script-src 'sha256-"), "{csp}");
        assert!(csp.contains("style-src 'sha256-"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(inline_hashes("<p>", "script"), "'none'");
        // The known hash of an empty script.
        assert_eq!(
            inline_hashes("<script></script>", "script"),
            "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"
        );
    }

    #[test]
    fn page_has_no_external_resources() {
        for bad in ["src=\"http", "href=\"http", "//cdn", "@import", "<script src"] {
            assert!(!PAGE.contains(bad), "page.html has {bad}");
        }
    }
}
