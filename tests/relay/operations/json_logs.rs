//! `LOG_FORMAT=json`: every line an object with the session's fields, and no secret in any.

use serde_json::Value;

use super::session;
use crate::common::{child::Process, *};

/// The client's `session.update`, carrying a prompt that must never be logged.
const SESSION_UPDATE: &str = r#"{"type":"session.update","event_id":"u1","session":{"instructions":"SYSTEMPROMPT-SECRET-42"}}"#;

/// Runs the binary with `--demo LOG_FORMAT=json DEBUG=true` and a key, plays one session (an
/// `Authorization` header, a forwarded-for address, `session.update`, `response.create` through
/// to `response.done`, a close), sends SIGTERM, and returns every line it wrote, each parsed.
async fn json_logged_session(test: &str) -> (Vec<String>, Vec<Value>) {
    let mut p = Process::spawn(
        test,
        &["--demo"],
        &[
            ("PORT", "0"),
            ("HOST", "127.0.0.1"),
            ("LOG_FORMAT", "json"),
            ("DEBUG", "true"),
            ("OPENAI_API_KEY", "sk-test-JSONSECRET"),
        ],
    );
    let addr = p.listening().await;
    let mut ws = session(
        &format!("ws://{addr}/v1/realtime?model=gpt-realtime"),
        &[
            ("Authorization", "Bearer sk-client-AUTHSECRET"),
            ("X-Forwarded-For", "203.0.113.50"),
        ],
    )
    .await;
    send_text(&mut ws, SESSION_UPDATE).await;
    assert_eq!(next_json(&mut ws).await["type"], "session.updated");
    send_text(&mut ws, r#"{"type":"response.create","event_id":"r1"}"#).await;
    let mut n = 0;
    while next_json(&mut ws).await["type"] != "response.done" {
        n += 1;
        assert!(n < 500, "no response.done");
    }
    close(&mut ws).await;
    p.wait_line("session=1 closed").await;
    drop(ws);
    p.signal("TERM");
    let (status, lines) = p.exit().await;
    assert_eq!(status.code(), Some(0), "{lines:#?}");
    let records = lines
        .iter()
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            assert!(v.is_object(), "not an object: {l}");
            for key in ["timestamp", "level", "target", "message"] {
                assert!(v[key].is_string(), "no {key}: {l}");
            }
            v
        })
        .collect();
    (lines, records)
}

/// The debug lines with event types, as `(direction, type)`.
fn event_types(records: &[Value]) -> Vec<(String, String)> {
    records
        .iter()
        .filter(|r| r["target"] == "openai_realtime_relay::events" && r["level"] == "DEBUG")
        .map(|r| {
            (
                r["direction"].as_str().unwrap_or_default().to_string(),
                r["type"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// LOG_FORMAT=json with DEBUG=true: every line is a JSON object; the session's open and close
/// lines carry its fields, debug lines the client's event types; no key, prompt or Authorization.
#[actix_web::test]
async fn json_logs_carry_fields_and_no_secrets() {
    let (lines, records) = json_logged_session("json-logs").await;
    let text = lines.join("\n");
    for secret in [
        "JSONSECRET",
        "SYSTEMPROMPT-SECRET-42",
        "AUTHSECRET",
        "Authorization",
        "authorization",
    ] {
        assert!(!text.contains(secret), "{secret} was logged: {text}");
    }

    let session_line = |word: &str| {
        records
            .iter()
            .find(|r| {
                r["target"] == "openai_realtime_relay::session"
                    && r["message"].as_str().is_some_and(|m| m.contains(word))
            })
            .unwrap_or_else(|| panic!("no {word:?} line: {text}"))
    };
    let opened = session_line(" opened ");
    assert_eq!(opened["session"], 1, "{opened}");
    assert_eq!(opened["client"], "203.0.113.50", "{opened}");
    assert_eq!(opened["model"], "gpt-realtime", "{opened}");
    assert_eq!(opened["level"], "INFO", "{opened}");

    let closed = session_line(" closed ");
    assert_eq!(closed["session"], 1, "{closed}");
    assert_eq!(closed["level"], "INFO", "{closed}");
    assert_eq!(closed["client"], "203.0.113.50", "{closed}");
    assert_eq!(closed["model"], "gpt-realtime", "{closed}");
    assert_eq!(closed["reason"], "client_closed", "{closed}");
    assert_eq!(closed["code"], 1000, "{closed}");
    assert!(closed["duration_ms"].is_u64(), "{closed}");
    assert_eq!(closed["client_to_upstream_messages"], 2, "{closed}");
    let sent = SESSION_UPDATE.len() + r#"{"type":"response.create","event_id":"r1"}"#.len();
    assert_eq!(closed["client_to_upstream_bytes"], sent, "{closed}");
    assert!(
        closed["upstream_to_client_messages"].as_u64() > Some(2),
        "{closed}"
    );
    assert!(
        closed["upstream_to_client_bytes"].as_u64() > Some(0),
        "{closed}"
    );

    let types = event_types(&records);
    let client_types: Vec<&str> = types
        .iter()
        .filter(|(d, _)| d == "client_to_upstream")
        .map(|(_, t)| t.as_str())
        .collect();
    assert_eq!(
        client_types,
        ["session.update", "response.create"],
        "{text}"
    );
    assert_eq!(
        types
            .iter()
            .filter(|(d, _)| d == "upstream_to_client")
            .count() as u64,
        closed["upstream_to_client_messages"].as_u64().unwrap_or(0),
        "one debug line per upstream message: {text}"
    );
    assert!(
        records.iter().any(|r| r["message"]
            .as_str()
            .is_some_and(|m| m.contains("stopped: 0 session(s) at shutdown, 0 cut"))),
        "{text}"
    );
}

/// With DEBUG=true the type logged for an upstream event is its top-level `type`, also when a
/// nested object with a `type` comes first (the demo server's JSON has sorted keys).
#[actix_web::test]
async fn debug_logs_the_top_level_event_type() {
    let (lines, records) = json_logged_session("json-event-types").await;
    let upstream: Vec<String> = event_types(&records)
        .into_iter()
        .filter(|(d, _)| d == "upstream_to_client")
        .map(|(_, t)| t)
        .collect();
    let text = lines.join("\n");
    assert_eq!(
        upstream.first().map(String::as_str),
        Some("session.created"),
        "{text}"
    );
    assert_eq!(
        upstream.get(1).map(String::as_str),
        Some("session.updated"),
        "{text}"
    );
    assert_eq!(
        upstream.last().map(String::as_str),
        Some("response.done"),
        "{text}"
    );
    for t in &upstream {
        assert!(
            t.starts_with("session.")
                || t.starts_with("response.")
                || t.starts_with("conversation."),
            "{t:?} is not a Realtime server event type: {upstream:?}"
        );
    }
}
