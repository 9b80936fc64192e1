//! Protecting the key and the bill (issue 5): client tokens (`tokens`) and JWTs (`jwt`) presented
//! the way the SDKs present a key (an `Authorization` header, or the browser's
//! `openai-insecure-api-key.<token>` subprotocol), per-client connection and rate limits and the
//! model allowlist (`limits`), usage read off upstream `response.done` into `/metrics` and
//! `/stats` (`usage`), daily budgets and the cut-off that waits for the response in flight
//! (`budgets`), the usage state file (`state_file`) and the faults its ledger must survive, one
//! relay per file among them (`ledger_faults`), the `OpenAI-Safety-Identifier` header
//! (`safety_identifier`) and its key (`safety_secret`), and SIGHUP token reload and logs in the
//! binary (`binary`). Issue 10's smaller holes: ALLOWED_MODELS on `session.update`
//! (`session_update`; the URL's model and intent are in `protocol::query`), audio billed by
//! duration (`audio_usage`), IPv6 clients keyed by their /64 (`addresses`), JWT audience and
//! issuer (`jwt_claims`), failed authentication throttled and refusal lines collapsed
//! (`auth_throttle`), and only the relay's own pings answered counting (`liveness`).
//! `MAX_SESSION_DURATION` is pinned in `session_duration`. Issue 14's relay client secrets: the
//! endpoint that mints them (`client_secrets`) and the sessions they open (`client_secret_sessions`). Every refusal is checked for its code,
//! its close code and that nothing was dialed upstream; every credential for never reaching the
//! upstream or the logs.

mod addresses;
mod audio_usage;
mod auth_throttle;
mod binary;
mod budgets;
mod client_secret_sessions;
mod client_secrets;
mod jwt;
mod jwt_claims;
mod ledger_faults;
mod limits;
mod liveness;
mod safety_identifier;
mod safety_secret;
mod session_update;
mod state_file;
mod tokens;
mod usage;

use std::{
    collections::BTreeMap,
    time::{SystemTime, UNIX_EPOCH},
};

use awc::{http::header, ClientResponse};
use fake_upstream::{FakeUpstream, Handshake, Script};
use serde_json::Value;

use crate::common::*;

const ALICE: &str = "tok-alice-123";
pub(crate) const BOB: &str = "tok-bob-456";
const TOKENS: &str = "alice:tok-alice-123,bob:tok-bob-456";
const JWT_SECRET: &str = "jwt-secret-for-tests-0123456789abcdef";

/// How a client presents its credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// A server SDK: `Authorization: Bearer <token>`, no subprotocol.
    Sdk,
    /// A browser: subprotocols `realtime` and `openai-insecure-api-key.<token>`.
    Browser,
}

const STYLES: [Style; 2] = [Style::Sdk, Style::Browser];

/// Opens a WebSocket to `base` + `path` presenting `token` (if any) in `style`. A browser-style
/// upgrade must select exactly `realtime`, never the credential subprotocol.
async fn open(base: &str, path: &str, style: Style, token: Option<&str>) -> (ClientResponse, Ws) {
    let url = format!("{base}{path}");
    let bearer = token.map(|t| format!("Bearer {t}"));
    let offered = token.map(|t| format!("openai-insecure-api-key.{t}"));
    let (res, ws) = match style {
        Style::Sdk => {
            let headers: Vec<(&str, &str)> = bearer
                .as_deref()
                .map(|b| ("Authorization", b))
                .into_iter()
                .collect();
            connect_with(&url, &[], &headers).await
        }
        Style::Browser => {
            let mut protocols = vec!["realtime"];
            protocols.extend(offered.as_deref());
            connect_with(&url, &protocols, &[]).await
        }
    }
    .unwrap_or_else(|e| panic!("{style:?} upgrade to {url} failed: {e}"));
    let selected = res
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .map(|v| v.to_str().expect("ASCII").to_string());
    match style {
        Style::Sdk => assert_eq!(selected, None, "no subprotocol was offered"),
        Style::Browser => assert_eq!(selected.as_deref(), Some("realtime"), "{res:?}"),
    }
    if let Some(t) = token {
        for (name, value) in res.headers() {
            let value = String::from_utf8_lossy(value.as_bytes());
            assert!(!value.contains(t), "the 101 echoes the token in {name}");
        }
    }
    (res, ws)
}

/// Starts the demo upstream and a relay with RELAY_TOKENS (alice and bob) and `extra` on top.
pub(crate) async fn with_tokens(extra: &[(&str, &str)]) -> Harness {
    let mut env = vec![("RELAY_TOKENS", TOKENS)];
    env.extend_from_slice(extra);
    start(Script::demo(), &env).await
}

/// Opens a session that must be admitted: its first event is the upstream's `session.created`.
pub(crate) async fn admitted(base: &str, path: &str, style: Style, token: Option<&str>) -> Ws {
    let (_, mut ws) = open(base, path, style, token).await;
    let first = next_json(&mut ws).await;
    assert_eq!(first["type"], "session.created", "{style:?}: {first}");
    ws
}

/// Opens a session that must be refused with `code` and close 1008; returns the error event.
async fn refused(base: &str, path: &str, style: Style, token: Option<&str>, code: &str) -> Value {
    let (_, mut ws) = open(base, path, style, token).await;
    let error = expect_failure(&mut ws, code, 1008).await;
    if let Some(t) = token {
        assert!(
            !error.to_string().contains(t),
            "the token is echoed: {error}"
        );
    }
    error
}

/// Sends `response.create` and returns every event up to and including `response.done`.
async fn respond(ws: &mut Ws) -> Vec<Value> {
    send_text(ws, r#"{"type":"response.create"}"#).await;
    let mut events = Vec::new();
    loop {
        let event = next_json(ws).await;
        let done = event["type"] == "response.done";
        assert_ne!(event["type"], "error", "{event}");
        events.push(event);
        if done {
            return events;
        }
        assert!(events.len() < 100, "no response.done in {events:?}");
    }
}

/// `usage.by_identity` from /stats as identity → billable total_tokens.
fn by_identity(stats: &Value) -> BTreeMap<String, u64> {
    stats["usage"]["by_identity"]
        .as_array()
        .expect("by_identity is a list")
        .iter()
        .map(|e| {
            (
                e["identity"].as_str().expect("identity").to_string(),
                e["usage"]["total_tokens"].as_u64().expect("total_tokens"),
            )
        })
        .collect()
}

/// Asserts the upstream saw exactly `n` upgrade requests, none carrying a client credential,
/// each with the server key.
fn assert_dials(fake: &FakeUpstream, n: usize) -> Vec<Handshake> {
    let hs = fake.recorder().handshakes();
    assert_eq!(hs.len(), n, "upstream dials: {hs:#?}");
    for h in &hs {
        assert_eq!(
            h.header("authorization"),
            Some(format!("Bearer {TEST_KEY}").as_str()),
            "{h:?}"
        );
        for secret in [ALICE, BOB] {
            for (name, value) in &h.headers {
                assert!(!value.contains(secret), "{name} carries a client token");
            }
            for p in &h.protocols_offered {
                assert!(
                    !p.contains(secret),
                    "offered protocol {p} carries a client token"
                );
            }
            assert!(!h.path_and_query.contains(secret), "{}", h.path_and_query);
        }
        assert!(
            !h.protocols_offered
                .iter()
                .any(|p| p.starts_with("openai-insecure-api-key")),
            "{h:?}"
        );
    }
    hs
}

/// Waits until the upstream has seen `n` upgrade requests, then asserts it saw exactly `n`.
async fn dials(fake: &FakeUpstream, n: usize) -> Vec<Handshake> {
    fake.recorder()
        .wait_handshakes(n, T)
        .await
        .unwrap_or_else(|_| panic!("fewer than {n} upstream dials"));
    assert_dials(fake, n)
}

/// A unix time `delta` seconds from now.
fn unix_in(delta: i64) -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    now + delta
}
