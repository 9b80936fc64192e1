//! MAX_SESSION_DURATION: a warning first, then the end, each reaching the client as an event.
mod common;

use common::*;
use fake_upstream::Script;

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
    let (_, stats) = get(&format!("{}/stats", h.http()), &[]).await;
    let stats: serde_json::Value = serde_json::from_str(&stats).expect("json");
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
