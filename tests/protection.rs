//! Protecting the key and the bill (issue 5): client tokens and JWTs presented the way the SDKs
//! present a key (an `Authorization` header, or the browser's `openai-insecure-api-key.<token>`
//! subprotocol), per-client connection and rate limits, the model allowlist,
//! `MAX_SESSION_DURATION`, usage read off upstream `response.done` into `/metrics` and `/stats`,
//! daily budgets (and the cut-off that waits for the response in flight), the usage state file,
//! SIGHUP token reload, and the `OpenAI-Safety-Identifier` header. Every refusal is checked for
//! its code, its close code and that nothing was dialed upstream; every credential for never
//! reaching the upstream or the logs.
mod common;

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use awc::{http::header, ws::Frame, ClientResponse};
use common::{child::Process, *};
use fake_upstream::{FakeUpstream, Handshake, Script};
use openai_realtime_relay::{
    config::{Config, ConfigError, KeyPolicy, Secret},
    protection::{identity::mint_jwt, usage::Ledger},
};
use serde_json::{json, Value};

const ALICE: &str = "tok-alice-123";
const BOB: &str = "tok-bob-456";
const TOKENS: &str = "alice:tok-alice-123,bob:tok-bob-456";
const JWT_SECRET: &str = "jwt-secret-for-tests-0123456789abcdef";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// How a client presents its credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
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
async fn with_tokens(extra: &[(&str, &str)]) -> Harness {
    let mut env = vec![("RELAY_TOKENS", TOKENS)];
    env.extend_from_slice(extra);
    start(Script::demo(), &env).await
}

/// Opens a session that must be admitted: its first event is the upstream's `session.created`.
async fn admitted(base: &str, path: &str, style: Style, token: Option<&str>) -> Ws {
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

/// `GET /stats` as JSON.
async fn stats(http: &str) -> Value {
    let (status, body) = get(&format!("{http}/stats"), &[]).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("stats are JSON")
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

/// The value of `name{labels}` in a Prometheus text exposition, whatever the label order.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<&str, &str> = labels.iter().copied().collect();
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix('{')?;
        let (set, value) = rest.split_once("} ")?;
        let got: BTreeMap<&str, &str> = set
            .split(',')
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                Some((k, v.trim_matches('"')))
            })
            .collect();
        (got == want).then(|| value.trim().parse().ok())?
    })
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

/// A temp file path unique to this test; removed on drop.
struct TempPath(PathBuf);

impl TempPath {
    fn new(test: &str) -> TempPath {
        let p = std::env::temp_dir().join(format!(
            "relay-protection-{}-{test}.json",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&p);
        TempPath(p)
    }

    fn as_str(&self) -> &str {
        self.0.to_str().expect("UTF-8 temp path")
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_file(self.0.with_extension("json.tmp"));
    }
}

// ---------------------------------------------------------------------------------------------
// Client tokens
// ---------------------------------------------------------------------------------------------

/// With RELAY_TOKENS, no credential and a wrong credential are `unauthorized` + 1008 in both
/// styles, and nothing is dialed upstream for them.
#[actix_web::test]
async fn tokens_refuse_missing_and_wrong_credentials() {
    let h = with_tokens(&[]).await;
    for style in STYLES {
        let error = refused(&h.base, "/v1/realtime", style, None, "unauthorized").await;
        assert_message_contains(&error, "Authorization: Bearer");
        refused(
            &h.base,
            "/v1/realtime",
            style,
            Some("tok-alice-124"),
            "unauthorized",
        )
        .await;
        // A key-shaped credential is not a pass either.
        refused(
            &h.base,
            "/v1/realtime",
            style,
            Some("sk-proj-someone-elses-key"),
            "unauthorized",
        )
        .await;
    }
    // An admitted session after the refusals: its dial is the first and only one.
    let _ws = admitted(&h.base, "/v1/realtime", Style::Sdk, Some(ALICE)).await;
    dials(&h.fake, 1).await;
    let s = stats(&h.http()).await;
    assert_eq!(s["rejected_by_reason"]["unauthorized"], 6, "{s}");
    h.stop().await;
}

/// A right token is admitted by header and by subprotocol; the 101 selects only `realtime`, the
/// session relays, and the upstream gets the server key and never the client's token.
#[actix_web::test]
async fn tokens_admit_by_header_and_by_subprotocol() {
    let h = with_tokens(&[]).await;
    let mut sdk = admitted(&h.base, "/v1/realtime", Style::Sdk, Some(ALICE)).await;
    let mut browser = admitted(&h.base, "/v1/realtime", Style::Browser, Some(BOB)).await;
    let done = respond(&mut sdk).await;
    assert_eq!(done.last().expect("events")["type"], "response.done");
    respond(&mut browser).await;
    dials(&h.fake, 2).await;

    let s = live_sessions(&h.http()).await;
    let identities: Vec<&str> = s.iter().filter_map(|x| x["identity"].as_str()).collect();
    assert_eq!(identities, ["token:alice", "token:bob"], "{s:?}");
    h.stop().await;
}

/// `/stats?sessions=true` → the live sessions, in id order.
async fn live_sessions(http: &str) -> Vec<Value> {
    let (status, body) = get(&format!("{http}/stats?sessions=true"), &[]).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("JSON");
    v["sessions"].as_array().expect("sessions").clone()
}

// ---------------------------------------------------------------------------------------------
// JWTs
// ---------------------------------------------------------------------------------------------

/// A JWT signed with RELAY_JWT_SECRET, `sub` and a future `exp`, is admitted in both styles and
/// the session's identity is `jwt:<sub>`.
#[actix_web::test]
async fn jwt_with_sub_and_future_exp_is_admitted() {
    let h = start(Script::demo(), &[("RELAY_JWT_SECRET", JWT_SECRET)]).await;
    let secret = Secret::new(JWT_SECRET);
    let mut live = Vec::new();
    for (style, sub) in [(Style::Sdk, "user-1"), (Style::Browser, "user-2")] {
        let token = mint_jwt(&secret, &json!({"sub": sub, "exp": unix_in(600)}));
        let mut ws = admitted(&h.base, "/v1/realtime", style, Some(&token)).await;
        respond(&mut ws).await;
        live.push(ws);
        let hs = h.fake.recorder().handshakes();
        for (name, value) in &hs.last().expect("a dial").headers {
            assert!(!value.contains(&token), "{name} carries the JWT");
        }
    }
    let s = live_sessions(&h.http()).await;
    let identities: Vec<&str> = s.iter().filter_map(|x| x["identity"].as_str()).collect();
    assert_eq!(identities, ["jwt:user-1", "jwt:user-2"], "{s:?}");
    dials(&h.fake, 2).await;
    h.stop().await;
}

/// An expired JWT and one signed with another secret are `unauthorized` + 1008, with no dial.
#[actix_web::test]
async fn expired_or_foreign_jwt_is_unauthorized() {
    let h = start(Script::demo(), &[("RELAY_JWT_SECRET", JWT_SECRET)]).await;
    let secret = Secret::new(JWT_SECRET);
    let expired = mint_jwt(&secret, &json!({"sub": "user-1", "exp": unix_in(-30)}));
    let foreign = mint_jwt(
        &Secret::new("another-secret-that-is-long-enough-000"),
        &json!({"sub": "user-1", "exp": unix_in(600)}),
    );
    for style in STYLES {
        let error = refused(&h.base, "/", style, Some(&expired), "unauthorized").await;
        assert_message_contains(&error, "expired");
        refused(&h.base, "/", style, Some(&foreign), "unauthorized").await;
    }
    let good = mint_jwt(&secret, &json!({"sub": "user-1", "exp": unix_in(600)}));
    let _ws = admitted(&h.base, "/", Style::Sdk, Some(&good)).await;
    dials(&h.fake, 1).await;
    h.stop().await;
}

/// A JWT whose `models` claim is ["gpt-realtime-mini"] may not open gpt-realtime
/// (`model_not_allowed`, 1008, no dial) but may open gpt-realtime-mini.
#[actix_web::test]
async fn jwt_models_claim_restricts_models() {
    let h = start(Script::demo(), &[("RELAY_JWT_SECRET", JWT_SECRET)]).await;
    let token = mint_jwt(
        &Secret::new(JWT_SECRET),
        &json!({"sub": "mini-only", "exp": unix_in(600), "models": ["gpt-realtime-mini"]}),
    );
    for style in STYLES {
        let error = refused(
            &h.base,
            "/v1/realtime?model=gpt-realtime",
            style,
            Some(&token),
            "model_not_allowed",
        )
        .await;
        assert_message_contains(&error, "gpt-realtime");
    }
    let _ws = admitted(
        &h.base,
        "/v1/realtime?model=gpt-realtime-mini",
        Style::Browser,
        Some(&token),
    )
    .await;
    let hs = dials(&h.fake, 1).await;
    assert_eq!(hs[0].path_and_query, "/v1/realtime?model=gpt-realtime-mini");
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------------

/// MAX_CONNECTIONS_PER_CLIENT=1: alice's second session is `too_many_connections` + 1008 with
/// no dial, bob is still admitted, and once alice's first session closes she is admitted again.
#[actix_web::test]
async fn per_client_connection_limit() {
    let h = with_tokens(&[("MAX_CONNECTIONS_PER_CLIENT", "1")]).await;
    let mut first = admitted(&h.base, "/", Style::Sdk, Some(ALICE)).await;
    for style in STYLES {
        let error = refused(&h.base, "/", style, Some(ALICE), "too_many_connections").await;
        assert_message_contains(&error, "1");
    }
    let _bob = admitted(&h.base, "/", Style::Browser, Some(BOB)).await;
    dials(&h.fake, 2).await;

    close(&mut first).await;
    h.fake
        .recorder()
        .wait_closes(1, T)
        .await
        .expect("alice's upstream closed");
    // The slot comes back through an async Release; retry a bounded number of times.
    let mut again = None;
    for _ in 0..50 {
        let (_, mut ws) = open(&h.base, "/", Style::Browser, Some(ALICE)).await;
        let first = next_json(&mut ws).await;
        if first["type"] == "session.created" {
            again = Some(ws);
            break;
        }
        assert_eq!(first["error"]["code"], "too_many_connections", "{first}");
    }
    assert!(
        again.is_some(),
        "alice was not admitted after her session closed"
    );
    dials(&h.fake, 3).await;
    h.stop().await;
}

/// CONNECTION_RATE_PER_CLIENT=2: a client's third new session within the minute is
/// `rate_limited` + 1008 with no dial, in both styles, and one client's bucket is not another's.
#[actix_web::test]
async fn per_client_connection_rate() {
    let h = with_tokens(&[("CONNECTION_RATE_PER_CLIENT", "2")]).await;
    let mut live = Vec::new();
    for (style, token) in [(Style::Sdk, ALICE), (Style::Browser, BOB)] {
        for _ in 0..2 {
            live.push(admitted(&h.base, "/", style, Some(token)).await);
        }
        let error = refused(&h.base, "/", style, Some(token), "rate_limited").await;
        assert_message_contains(&error, "2 per minute");
    }
    // Closing sessions does not give new-session tokens back.
    for ws in &mut live {
        close(ws).await;
    }
    h.fake.recorder().wait_closes(4, T).await.expect("closed");
    refused(&h.base, "/", Style::Sdk, Some(ALICE), "rate_limited").await;
    assert_dials(&h.fake, 4);
    h.stop().await;
}

/// ALLOWED_MODELS=gpt-realtime-mini: gpt-realtime is `model_not_allowed` + 1008 with no dial,
/// gpt-realtime-mini (and the default) is admitted; a client without a credential hears
/// `unauthorized` first.
#[actix_web::test]
async fn allowed_models_refuse_other_models_before_dialing() {
    let h = with_tokens(&[("ALLOWED_MODELS", "gpt-realtime-mini")]).await;
    for style in STYLES {
        refused(
            &h.base,
            "/v1/realtime?model=gpt-realtime",
            style,
            Some(ALICE),
            "model_not_allowed",
        )
        .await;
        refused(
            &h.base,
            "/v1/realtime?model=gpt-realtime",
            style,
            None,
            "unauthorized",
        )
        .await;
    }
    let _a = admitted(
        &h.base,
        "/v1/realtime?model=gpt-realtime-mini",
        Style::Sdk,
        Some(ALICE),
    )
    .await;
    let _b = admitted(&h.base, "/v1/realtime", Style::Browser, Some(BOB)).await;
    let hs = dials(&h.fake, 2).await;
    for h in hs {
        assert_eq!(h.path_and_query, "/v1/realtime?model=gpt-realtime-mini");
    }
    let s = stats(&h.http()).await;
    assert_eq!(s["rejected_by_reason"]["model_not_allowed"], 2, "{s}");
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Session duration
// ---------------------------------------------------------------------------------------------

/// MAX_SESSION_DURATION must be 0 (off) or at least 1000 ms; 999 is refused by name.
#[test]
fn max_session_duration_below_one_second_is_refused() {
    let source = |v: &'static str| -> HashMap<&'static str, &'static str> {
        HashMap::from([("OPENAI_API_KEY", "sk-x"), ("MAX_SESSION_DURATION", v)])
    };
    let errors =
        Config::from_source(&source("999"), KeyPolicy::Required).expect_err("999 ms is too short");
    assert!(
        errors.0.iter().any(|e| matches!(
            e,
            ConfigError::Invalid {
                name: "MAX_SESSION_DURATION",
                ..
            }
        )),
        "{errors}"
    );
    for (ok, expected) in [
        ("0", None),
        ("1000", Some(1000)),
        ("3600000", Some(3_600_000)),
    ] {
        let c = Config::from_source(&source(ok), KeyPolicy::Required).expect("valid");
        assert_eq!(
            c.protection.max_session_duration,
            expected.map(Duration::from_millis)
        );
    }
}

/// A token client's session under MAX_SESSION_DURATION=1200 is warned no earlier than halfway
/// (`session_expiring`) and ended no earlier than the limit (`session_max_duration`, 1000).
#[actix_web::test]
async fn session_is_warned_halfway_then_ended_at_max_duration() {
    let h = with_tokens(&[("MAX_SESSION_DURATION", "1200")]).await;
    let started = Instant::now();
    let mut ws = admitted(&h.base, "/", Style::Browser, Some(BOB)).await;
    let mut errors = Vec::new();
    let close = loop {
        match next_frame(&mut ws).await {
            Frame::Text(b) => {
                let v: Value = serde_json::from_slice(&b).expect("JSON");
                if v["type"] == "error" {
                    let code = v["error"]["code"].as_str().expect("code").to_string();
                    errors.push((code, started.elapsed()));
                }
            }
            Frame::Close(reason) => break reason.expect("a close code"),
            _ => {}
        }
    };
    let took = started.elapsed();
    let codes: Vec<&str> = errors.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(codes, ["session_expiring", "session_max_duration"]);
    assert!(errors[0].1 >= Duration::from_millis(600), "{errors:?}");
    assert_eq!(u16::from(close.code), 1000, "{close:?}");
    assert!(took >= Duration::from_millis(1200), "ended after {took:?}");
    h.fake
        .recorder()
        .wait_closes(1, T)
        .await
        .expect("the upstream is closed too");
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Usage accounting
// ---------------------------------------------------------------------------------------------

/// An upstream `response.done` lands in /stats (today's totals, the identity's, the model's) and
/// in `relay_tokens_total{model,kind}` with the split the upstream reported.
#[actix_web::test]
async fn response_done_usage_lands_in_stats_and_metrics() {
    let h = with_tokens(&[]).await;
    let mut ws = admitted(&h.base, "/", Style::Browser, Some(ALICE)).await;
    let events = respond(&mut ws).await;
    let done = events.last().expect("response.done");
    assert_eq!(done["response"]["usage"]["total_tokens"], 32, "{done}");

    // RecordUsage reaches the registry before response.done reaches the client, and the
    // registry answers /stats in order: no waiting needed.
    let s = stats(&h.http()).await;
    let today = &s["usage"]["today"];
    assert_eq!(today["total_tokens"], 32, "{s}");
    assert_eq!(today["input_tokens"], 12, "{s}");
    assert_eq!(today["output_tokens"], 20, "{s}");
    assert_eq!(today["output_audio"], 15, "{s}");
    assert_eq!(
        by_identity(&s),
        BTreeMap::from([("token:alice".to_string(), 32)])
    );
    assert_eq!(s["usage"]["identities_today"], 1, "{s}");
    assert_eq!(
        s["usage"]["by_model"]["gpt-realtime-mini"]["total_tokens"], 32,
        "{s}"
    );

    let (status, text) = get(&format!("{}/metrics", h.http()), &[]).await;
    assert_eq!(status, 200);
    for (kind, n) in [
        ("input_text", 10.0),
        ("input_audio", 2.0),
        ("input_cached", 0.0),
        ("output_text", 5.0),
        ("output_audio", 15.0),
    ] {
        assert_eq!(
            sample(
                &text,
                "relay_tokens_total",
                &[("model", "gpt-realtime-mini"), ("kind", kind)]
            ),
            Some(n),
            "relay_tokens_total kind={kind}"
        );
    }
    h.stop().await;
}

/// A client-sent `response.done`-shaped message is not usage: it goes upstream and nothing is
/// counted, in /stats or in /metrics.
#[actix_web::test]
async fn client_sent_response_done_does_not_count() {
    let h = with_tokens(&[]).await;
    let forged = r#"{"type":"response.done","response":{"usage":{"total_tokens":999999,"input_tokens":999999,"input_token_details":{"text_tokens":999999}}}}"#;
    for (style, token) in [(Style::Sdk, ALICE), (Style::Browser, BOB)] {
        let mut ws = admitted(&h.base, "/", style, Some(token)).await;
        send_text(&mut ws, forged).await;
        // The demo upstream answers an unknown client event with an error of its own.
        let answer = next_json(&mut ws).await;
        assert_eq!(answer["type"], "error", "{answer}");
        assert_eq!(answer["error"]["type"], "invalid_request_error", "{answer}");
    }
    let got = h
        .fake
        .recorder()
        .wait_messages(2, T)
        .await
        .expect("relayed");
    assert!(got
        .iter()
        .all(|m| m.json().expect("JSON")["type"] == "response.done"));

    let s = stats(&h.http()).await;
    assert_eq!(s["usage"]["today"]["total_tokens"], 0, "{s}");
    assert_eq!(s["usage"]["lifetime"]["total_tokens"], 0, "{s}");
    assert!(by_identity(&s).is_empty(), "{s}");
    let (_, text) = get(&format!("{}/metrics", h.http()), &[]).await;
    for l in text.lines().filter(|l| l.starts_with("relay_tokens_total")) {
        assert!(l.ends_with(" 0"), "{l}");
    }
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Budgets
// ---------------------------------------------------------------------------------------------

/// CLIENT_DAILY_TOKEN_BUDGET=40: alice's second response (64 tokens) is delivered whole, then her
/// session ends with `budget_exceeded` + 1008; a new alice session is refused in both styles
/// with no dial; bob, live and new, is unaffected.
#[actix_web::test]
async fn client_budget_ends_and_refuses_only_that_client() {
    let h = with_tokens(&[("CLIENT_DAILY_TOKEN_BUDGET", "40")]).await;
    let mut bob = alice_overspends(&h, "per-client").await;

    for style in STYLES {
        refused(&h.base, "/", style, Some(ALICE), "budget_exceeded").await;
    }
    respond(&mut bob).await;
    let _bob2 = admitted(&h.base, "/", Style::Sdk, Some(BOB)).await;
    dials(&h.fake, 3).await;

    let s = stats(&h.http()).await;
    assert_eq!(
        by_identity(&s),
        BTreeMap::from([
            ("token:alice".to_string(), 64),
            ("token:bob".to_string(), 32)
        ])
    );
    assert_eq!(s["usage"]["client_daily_token_budget"], 40, "{s}");
    assert_eq!(s["closed_by_reason"]["budget_exceeded"], 1, "{s}");
    assert_eq!(s["rejected_by_reason"]["budget_exceeded"], 2, "{s}");
    h.stop().await;
}

/// With bob's session live, alice spends 64 tokens in two responses, past a budget of 40, and her
/// session ends with `budget_exceeded` + 1008 and a message naming the `scope` of the budget;
/// returns bob's session.
async fn alice_overspends(h: &Harness, scope: &str) -> Ws {
    let bob = admitted(&h.base, "/", Style::Browser, Some(BOB)).await;
    let mut alice = admitted(&h.base, "/", Style::Sdk, Some(ALICE)).await;
    respond(&mut alice).await;
    respond(&mut alice).await;
    let error = expect_failure(&mut alice, "budget_exceeded", 1008).await;
    assert_message_contains(&error, scope);
    bob
}

/// DAILY_TOKEN_BUDGET=40 (relay-wide): once spent, every live session ends with
/// `budget_exceeded` + 1008 and every client is refused, with no dial.
#[actix_web::test]
async fn global_budget_ends_and_refuses_everyone() {
    let h = with_tokens(&[("DAILY_TOKEN_BUDGET", "40")]).await;
    let mut bob = alice_overspends(&h, "relay-wide").await;
    expect_failure(&mut bob, "budget_exceeded", 1008).await;

    for style in STYLES {
        for token in [ALICE, BOB] {
            refused(&h.base, "/", style, Some(token), "budget_exceeded").await;
        }
    }
    assert_dials(&h.fake, 2);
    let s = stats(&h.http()).await;
    assert_eq!(s["usage"]["today"]["total_tokens"], 64, "{s}");
    assert_eq!(s["usage"]["daily_token_budget"], 40, "{s}");
    h.stop().await;
}

/// The cut-off waits for the response in flight: when alice's other session spends her budget
/// while this one is streaming a (slow) response, this one gets every delta and `response.done`
/// before its `budget_exceeded` close.
#[actix_web::test]
async fn budget_cut_off_waits_for_the_response_in_flight() {
    let slow = Script {
        demo_delta_delay: Duration::from_millis(150),
        ..Script::demo()
    };
    let h = start(
        slow,
        &[
            ("RELAY_TOKENS", TOKENS),
            ("CLIENT_DAILY_TOKEN_BUDGET", "40"),
        ],
    )
    .await;
    let mut streaming = admitted(&h.base, "/", Style::Browser, Some(ALICE)).await;
    h.fake.set_script(Script::demo());
    let mut spender = admitted(&h.base, "/", Style::Sdk, Some(ALICE)).await;
    respond(&mut spender).await; // 32 of 40

    send_text(&mut streaming, r#"{"type":"response.create"}"#).await;
    let created = next_json(&mut streaming).await;
    assert_eq!(created["type"], "response.created", "{created}");

    respond(&mut spender).await; // 64: spent while `streaming` has a response in flight
    let cut_at = Instant::now();
    expect_failure(&mut spender, "budget_exceeded", 1008).await;

    let mut types = Vec::new();
    let (error, close) = loop {
        match next_frame(&mut streaming).await {
            Frame::Text(b) => {
                let v: Value = serde_json::from_slice(&b).expect("JSON");
                if v["type"] == "error" {
                    break (v, next_frame(&mut streaming).await);
                }
                types.push(v["type"].as_str().expect("type").to_string());
            }
            other => panic!("{other:?} before the error event; got {types:?}"),
        }
    };
    let done_after = cut_at.elapsed();
    assert_eq!(error["error"]["code"], "budget_exceeded", "{error}");
    match close {
        Frame::Close(Some(r)) => assert_eq!(u16::from(r.code), 1008, "{r:?}"),
        other => panic!("expected a close after the error, got {other:?}"),
    }
    let count = |t: &str| types.iter().filter(|x| *x == t).count();
    assert_eq!(count("response.output_audio.delta"), 4, "{types:?}");
    assert_eq!(
        count("response.output_audio_transcript.delta"),
        4,
        "{types:?}"
    );
    assert_eq!(types.last().map(String::as_str), Some("response.done"));
    // The other session's cut came well before this response finished streaming.
    assert!(
        done_after >= Duration::from_millis(300),
        "the response was not in flight at the cut ({done_after:?})"
    );
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Usage state file
// ---------------------------------------------------------------------------------------------

/// Usage survives a restart: a drained relay saved its ledger to USAGE_STATE_FILE, and a new
/// relay on the same file reports it and enforces the budget with it.
#[actix_web::test]
async fn usage_survives_a_restart() {
    let file = TempPath::new("restart");
    let fake = FakeUpstream::start(Script::demo()).await.expect("fake");
    let relay = start_relay(config(
        &fake.url(),
        &[
            ("RELAY_TOKENS", TOKENS),
            ("USAGE_STATE_FILE", file.as_str()),
        ],
    ))
    .await;
    let base = format!("ws://{}", relay.local_addr());
    let mut ws = admitted(&base, "/", Style::Sdk, Some(ALICE)).await;
    respond(&mut ws).await;
    let report = tokio::time::timeout(T, relay.drain()).await.expect("drain");
    assert_eq!(report.sessions, 1);
    let saved = Ledger::load(&file.0).expect("the drain wrote the state file");
    assert_eq!(saved.all.total_tokens, 32, "{saved:?}");
    tokio::time::timeout(T, relay.stop()).await.expect("stop");

    let relay = start_relay(config(
        &fake.url(),
        &[
            ("RELAY_TOKENS", TOKENS),
            ("USAGE_STATE_FILE", file.as_str()),
            ("CLIENT_DAILY_TOKEN_BUDGET", "32"),
        ],
    ))
    .await;
    let http = format!("http://{}", relay.local_addr());
    let base = format!("ws://{}", relay.local_addr());
    let s = stats(&http).await;
    assert_eq!(s["usage"]["today"]["total_tokens"], 32, "{s}");
    assert_eq!(
        by_identity(&s),
        BTreeMap::from([("token:alice".to_string(), 32)])
    );
    refused(&base, "/", Style::Browser, Some(ALICE), "budget_exceeded").await;
    let _bob = admitted(&base, "/", Style::Browser, Some(BOB)).await;
    dials(&fake, 2).await;
    relay.stop().await;
    fake.stop().await;
}

/// Without any shutdown, the usage state file is written within a few seconds of the usage, so
/// a crash loses at most that much.
#[actix_web::test]
async fn usage_state_file_is_written_while_running() {
    let file = TempPath::new("periodic");
    let h = start(Script::demo(), &[("USAGE_STATE_FILE", file.as_str())]).await;
    let mut ws = admitted(&h.base, "/", Style::Browser, None).await;
    respond(&mut ws).await;
    // A save announces itself nowhere: poll the file, for at most 5 s (the interval is 2 s).
    let deadline = Instant::now() + Duration::from_secs(5);
    let saved = loop {
        if let Ok(l) = Ledger::load(&file.0) {
            if l.all.total_tokens > 0 {
                break l;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no usage saved 5 s after it was recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(saved.all.total_tokens, 32, "{saved:?}");
    assert_eq!(
        saved.by_identity.keys().collect::<Vec<_>>(),
        ["ip:127.0.0.1"]
    );
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Safety identifier
// ---------------------------------------------------------------------------------------------

/// The `openai-safety-identifier` header of each upstream dial, in order.
fn safety_ids(fake: &FakeUpstream) -> Vec<Option<String>> {
    fake.recorder()
        .handshakes()
        .iter()
        .map(|h| h.header("openai-safety-identifier").map(str::to_string))
        .collect()
}

fn is_hex32(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// SAFETY_IDENTIFIER=identity: every dial carries 32 hex digits, the same for two sessions of
/// alice, another for bob, never the identity itself.
#[actix_web::test]
async fn safety_identifier_hashes_the_identity() {
    let h = with_tokens(&[("SAFETY_IDENTIFIER", "identity")]).await;
    let _a1 = admitted(&h.base, "/", Style::Sdk, Some(ALICE)).await;
    let _a2 = admitted(&h.base, "/", Style::Browser, Some(ALICE)).await;
    let _b = admitted(&h.base, "/", Style::Sdk, Some(BOB)).await;
    dials(&h.fake, 3).await;
    let ids: Vec<String> = safety_ids(&h.fake)
        .into_iter()
        .map(|id| id.expect("a safety identifier on every dial"))
        .collect();
    for id in &ids {
        assert!(is_hex32(id), "{id}");
        for word in ["alice", "bob", "token", ALICE, BOB] {
            assert!(!id.contains(word), "{id}");
        }
    }
    assert_eq!(ids[0], ids[1], "alice's two sessions");
    assert_ne!(ids[0], ids[2], "alice and bob");
    h.stop().await;
}

/// SAFETY_IDENTIFIER=address hashes the client address: two identities from one address share
/// it. Off (the default) sends no header.
#[actix_web::test]
async fn safety_identifier_by_address_and_off() {
    let h = with_tokens(&[("SAFETY_IDENTIFIER", "address")]).await;
    let _a = admitted(&h.base, "/", Style::Sdk, Some(ALICE)).await;
    let _b = admitted(&h.base, "/", Style::Browser, Some(BOB)).await;
    dials(&h.fake, 2).await;
    let ids = safety_ids(&h.fake);
    let first = ids[0].clone().expect("a safety identifier");
    assert!(is_hex32(&first), "{first}");
    assert_eq!(ids[1].as_deref(), Some(first.as_str()), "same address");
    h.stop().await;

    let h = with_tokens(&[]).await;
    let _a = admitted(&h.base, "/", Style::Sdk, Some(ALICE)).await;
    dials(&h.fake, 1).await;
    assert_eq!(safety_ids(&h.fake), [None]);
    h.stop().await;
}

/// With a warm pool, a session that needs a safety identifier dials its own upstream (with the
/// header) instead of taking a warm socket opened without one.
#[actix_web::test]
async fn safety_identifier_bypasses_the_warm_pool() {
    let h = with_tokens(&[
        ("SAFETY_IDENTIFIER", "identity"),
        ("UPSTREAM_POOL_SIZE", "1"),
        ("WORKERS", "1"),
    ])
    .await;
    // The pool's own socket: dialed at startup, without a header.
    h.fake
        .recorder()
        .wait_handshakes(1, T)
        .await
        .expect("pool dial");
    let _a = admitted(&h.base, "/", Style::Sdk, Some(ALICE)).await;
    let ids = safety_ids(&h.fake);
    assert_eq!(ids[0], None, "the warm socket is nobody's");
    assert!(
        ids[1..]
            .iter()
            .any(|id| id.as_deref().is_some_and(is_hex32)),
        "the session dialed its own upstream with the header: {ids:?}"
    );
    assert_dials(&h.fake, ids.len());
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The binary: SIGHUP and logs
// ---------------------------------------------------------------------------------------------

/// Starts `--demo` on 127.0.0.1:0 with only PATH and `env` set, in a fresh directory; `files`
/// are written into it first.
fn spawn_demo(test: &str, env: &[(&str, &str)], files: &[(&str, &str)]) -> Process {
    let env: Vec<(&str, &str)> = [("HOST", "127.0.0.1"), ("PORT", "0")]
        .into_iter()
        .chain(env.iter().copied())
        .collect();
    Process::spawn_with_files(test, &["--demo"], &env, files)
}

/// `ws://host:port` from the startup line.
async fn base(p: &mut Process) -> String {
    format!("ws://{}", p.listening().await)
}

/// Rewrites `path` atomically, so the relay never reads half a file.
fn rewrite(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// SIGHUP re-reads RELAY_TOKENS_FILE without dropping sessions: alice's live session keeps
/// working (and its close line carries its tokens), a new alice session is `unauthorized`, bob
/// is admitted.
#[actix_web::test]
async fn sighup_reloads_tokens_without_dropping_sessions() {
    let mut p = spawn_demo(
        "sighup",
        &[("RELAY_TOKENS_FILE", "tokens.txt")],
        &[("tokens.txt", "# team\nalice:tok-alice-123\n")],
    );
    let base = base(&mut p).await;
    let mut alice = admitted(&base, "/", Style::Sdk, Some(ALICE)).await;
    refused(&base, "/", Style::Browser, Some(BOB), "unauthorized").await;

    rewrite(&p.path("tokens.txt"), "bob:tok-bob-456\n");
    p.signal("HUP");
    p.wait_line("SIGHUP: reloaded RELAY_TOKENS_FILE (1 tokens)")
        .await;

    respond(&mut alice).await;
    for style in STYLES {
        refused(&base, "/", style, Some(ALICE), "unauthorized").await;
    }
    let mut bob = admitted(&base, "/", Style::Browser, Some(BOB)).await;
    respond(&mut bob).await;

    close(&mut alice).await;
    let closed = p.wait_line("session=1 closed").await;
    assert!(closed.contains("identity=token:alice"), "{closed}");
    assert!(closed.contains("reason=client_closed"), "{closed}");
    assert!(closed.contains("input_tokens=12"), "{closed}");
    assert!(closed.contains("output_tokens=20"), "{closed}");
    assert!(closed.contains("total_tokens=32"), "{closed}");
    drop(bob);
    let lines = p.finish().await;
    let text = lines.join("\n");
    for secret in [ALICE, BOB] {
        assert!(!text.contains(secret), "{secret} was logged: {text}");
    }
}

/// With DEBUG=true, tokens presented by header and by subprotocol (right, wrong and JWT) never
/// appear in stdout or stderr.
#[actix_web::test]
async fn tokens_never_appear_in_logs() {
    let jwt = mint_jwt(
        &Secret::new(JWT_SECRET),
        &json!({"sub": "user-7", "exp": unix_in(600)}),
    );
    let mut p = spawn_demo(
        "nolog",
        &[
            ("RELAY_TOKENS", TOKENS),
            ("RELAY_JWT_SECRET", JWT_SECRET),
            ("DEBUG", "true"),
        ],
        &[],
    );
    let base = base(&mut p).await;
    let mut a = admitted(&base, "/", Style::Sdk, Some(ALICE)).await;
    let mut b = admitted(&base, "/", Style::Browser, Some(BOB)).await;
    let mut j = admitted(&base, "/", Style::Browser, Some(&jwt)).await;
    for style in STYLES {
        refused(&base, "/", style, Some("tok-wrong-999"), "unauthorized").await;
    }
    respond(&mut a).await;
    respond(&mut b).await;
    respond(&mut j).await;
    close(&mut a).await;
    p.wait_line("session=1 closed").await;
    let lines = p.finish().await;
    let text = lines.join("\n");
    assert!(text.contains("identity=token:bob"), "{text}");
    assert!(text.contains("identity=jwt:user-7"), "{text}");
    let signature = jwt.rsplit('.').next().expect("signature");
    for secret in [
        ALICE,
        BOB,
        "tok-wrong-999",
        JWT_SECRET,
        jwt.as_str(),
        signature,
        "openai-insecure-api-key",
    ] {
        assert!(!text.contains(secret), "{secret} was logged: {text}");
    }
}
