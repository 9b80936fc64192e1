//! MAX_SESSION_DURATION: a warning first, then the end, each reaching the client as an event;
//! for anonymous and for token clients alike.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use awc::ws::Frame;
use fake_upstream::Script;
use openai_realtime_relay::config::{Config, ConfigError, KeyPolicy};
use serde_json::Value;

use crate::{
    common::*,
    protection::{admitted, with_tokens, Style, BOB},
};

/// A session at its MAX_SESSION_DURATION is warned with `session_expiring` (halfway, for limits
/// under two minutes), keeps working after the warning, and is then ended with
/// `session_max_duration` and close 1000; its upstream is closed with it.
#[actix_web::test]
async fn session_is_warned_then_ended_at_its_max_duration() {
    let h = start(Script::echo(), &[("MAX_SESSION_DURATION", "1500")]).await;
    let mut ws = connect(&h, "/realtime").await;
    let warning = next_json(&mut ws).await;
    assert_eq!(warning["type"], "error", "{warning}");
    assert_eq!(warning["error"]["code"], "session_expiring", "{warning}");
    // Still relaying after the warning.
    send_text(&mut ws, r#"{"type":"x","event_id":"after-warning"}"#).await;
    assert_eq!(next_json(&mut ws).await["event_id"], "after-warning");
    expect_failure(&mut ws, "session_max_duration", 1000).await;
    let closes = h
        .fake
        .recorder()
        .wait_closes(1, T)
        .await
        .expect("upstream closed");
    assert!(!closes[0].abrupt, "{closes:?}");
    let stats = stats::get(&h.http()).await;
    assert_eq!(
        stats["closed_by_reason"]["session_max_duration"], 1,
        "{stats}"
    );
    h.stop().await;
}

/// Without MAX_SESSION_DURATION (the default) nothing is scheduled: a session outlives what
/// would have been a short limit (a deliberate wait, not a readiness wait).
#[actix_web::test]
async fn no_limit_by_default() {
    let h = start(Script::echo(), &[]).await;
    let mut ws = connect(&h, "/realtime").await;
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    send_text(&mut ws, r#"{"type":"x","event_id":"still-here"}"#).await;
    assert_eq!(next_json(&mut ws).await["event_id"], "still-here");
    h.stop().await;
}

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
