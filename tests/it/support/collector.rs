//! The harness of the collector tests (and the reporter's end-to-end ones): a collector served on 127.0.0.1:0,
//! and the checks of every answer against `docs/beacon-openapi.yaml`.

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};

use astmanproxy_beacon_wire::clock::ManualClock;
use astmanproxy_collector::{self as collector, Collector, CollectorConfig, CollectorError};
use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

pub use super::pki::Pki;
use super::WAIT;

/// The OpenAPI document, as JSON.
pub static SPEC: LazyLock<Value> = LazyLock::new(|| {
    // Relative to this file: the proxy's tests and the collector crate's tests both include it.
    let text = include_str!("../../../docs/beacon-openapi.yaml");
    serde_norway::from_str(text).unwrap()
});

/// Follows a local `$ref` (`#/components/...`) of the spec.
pub fn resolve(v: &Value) -> &Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => SPEC.pointer(r.trim_start_matches('#')).unwrap_or_else(|| panic!("dangling $ref {r}")),
        None => v,
    }
}

/// Validates `instance` against `schema` (a schema object of the spec, possibly a `$ref`), with
/// the spec's components in scope and formats checked.
pub fn validate(schema: &Value, instance: &Value) -> Result<(), String> {
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": SPEC["components"],
        "allOf": [schema],
    });
    let validator = jsonschema::options().should_validate_formats(true).build(&root).map_err(|e| e.to_string())?;
    let errors: Vec<String> =
        validator.iter_errors(instance).map(|e| format!("{e} at {}", e.instance_path())).collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Checks one answer against the spec's description of `method route`.
pub fn check_against_spec(
    route: &str,
    method: &Method,
    status: StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &Value,
) {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert_eq!(content_type, "application/json", "{method} {route} {status}");
    let op = &SPEC["paths"][route][method.as_str().to_lowercase()];
    if !op.is_object() {
        // Not an operation of the API: only a documented Error may come back.
        assert!(matches!(status.as_u16(), 404 | 405), "{method} {route}: {status} for an undocumented operation");
        return validate(&json!({"$ref": "#/components/schemas/Error"}), body).unwrap();
    }
    let code = status.as_str();
    let response = resolve(
        op["responses"].get(code).unwrap_or_else(|| panic!("{method} {route}: status {code} is not in the spec")),
    );
    if let Some(documented) = response.get("headers").and_then(Value::as_object) {
        for (name, h) in documented {
            if h["required"] == json!(true) {
                assert!(headers.contains_key(name.as_str()), "{method} {route} {code}: header {name} missing");
            }
        }
    }
    let schema = &response["content"]["application/json"]["schema"];
    assert!(schema.is_object(), "{method} {route} {code}: no JSON schema in the spec");
    if let Err(e) = validate(schema, body) {
        panic!("{method} {route} {code}: the answer does not fit the spec: {e}\n{body:#}");
    }
}

/// One answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

/// A collector served on 127.0.0.1:0 until dropped.
pub struct Running {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<Result<(), CollectorError>>,
}

impl Running {
    pub async fn start(pki: &Pki, config: CollectorConfig, clock: &ManualClock) -> Running {
        let collector = Collector::open(config, Arc::new(clock.clone())).unwrap();
        let tls = collector::tls_config(&pki.path("cert.pem"), &pki.path("key.pem")).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(collector::serve(collector, listener, tls, async {
            let _ = stopped.await;
        }));
        Running { addr, client: pki.client(), stop: Some(stop), task }
    }

    /// Sends `body` (JSON value, or raw text) and checks the answer against the spec's `route`.
    pub async fn call(&self, method: Method, route: &str, path: &str, body: Option<Body>) -> Answer {
        let url = format!("https://{}{path}", self.addr);
        let mut req = self.client.request(method.clone(), url);
        let mut sent = None;
        match body {
            Some(Body::Json(v)) => {
                req = req.json(&v);
                sent = Some(v);
            }
            Some(Body::Raw(text)) => req = req.header("content-type", "application/json").body(text),
            None => {}
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path} {status}: not JSON ({e}): {text}"));
        check_against_spec(route, &method, status, &headers, &body);
        // What the collector accepted is a body the spec describes.
        if let (Some(sent), true) = (sent, status.is_success()) {
            let schema = &SPEC["paths"][route][method.as_str().to_lowercase()]["requestBody"]["content"]
                ["application/json"]["schema"];
            validate(schema, &sent).unwrap_or_else(|e| panic!("{method} {route}: accepted a body off the spec: {e}"));
        }
        Answer { status, headers, body }
    }

    pub async fn register(&self, server: Value) -> Answer {
        self.call(Method::POST, "/servers", "/servers", Some(Body::Json(server))).await
    }

    pub async fn update(&self, id: &str, token: Option<&str>, server: Value) -> Answer {
        let path = match token {
            Some(t) => format!("/servers/{id}?tokenId={t}"),
            None => format!("/servers/{id}"),
        };
        self.call(Method::PUT, "/servers/{serverId}", &path, Some(Body::Json(server))).await
    }

    pub async fn stats(&self, query: &str) -> Answer {
        self.call(Method::GET, "/stats", &format!("/stats{query}"), None).await
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(WAIT, &mut self.task).await.unwrap().unwrap().unwrap();
    }
}

/// A request body.
pub enum Body {
    /// Serialized by reqwest.
    Json(Value),
    /// Sent as is, as `application/json`.
    Raw(String),
}

pub fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-01T08:00:00Z").unwrap().with_timezone(&Utc)
}

pub fn config(pki: &Pki) -> CollectorConfig {
    CollectorConfig { db: pki.path("collector.db"), ..CollectorConfig::default() }
}

/// A report as the reporter sends it.
pub fn server(version: &str, os: &str, modules: &[&str], private_name: Option<&str>) -> Value {
    let modules: Vec<Value> = modules
        .iter()
        .map(|m| json!({"name": m, "description": "d", "status": "Running", "support_level": "core"}))
        .collect();
    let mut v = json!({
        "asterisk": {
            "version": {"name": version, "number": 221_001},
            "modules": modules,
            "stats": {"run_time": {"startup_time": "2026-11-22 10:39:23", "last_reload_time": "2026-11-22 10:39:23"},
                      "calls": {"active": 1, "processed": 7}},
        },
        "operating_system": {"sys_name": os, "release": "", "version": "", "machine": "x86_64"},
    });
    if let Some(name) = private_name {
        v["private_name"] = json!(name);
    }
    v
}

pub fn token_of(a: &Answer) -> (String, String) {
    (a.body["id"].as_str().unwrap().to_string(), a.body["issued"].as_str().unwrap().to_string())
}
