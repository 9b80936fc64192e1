//! `GET /stats`, the relay's JSON view of itself, as the tests read it: once, the live sessions
//! (`?sessions=true`), or again and again until a condition holds (the registry hears of a
//! session's end by message, so `/stats` may lag the socket a moment).

use serde_json::Value;

use super::{get_json, poll::poll};

/// `GET {http}/stats`; panics unless it answers 200 with JSON.
pub async fn get(http: &str) -> Value {
    let (status, stats) = get_json(&format!("{http}/stats"), &[]).await;
    assert_eq!(status, 200, "{stats}");
    stats
}

/// `GET {http}/stats?sessions=true`: the same, with the list of live sessions.
pub async fn with_sessions(http: &str) -> Value {
    let (status, stats) = get_json(&format!("{http}/stats?sessions=true"), &[]).await;
    assert_eq!(status, 200, "{stats}");
    stats
}

/// The live sessions `GET {http}/stats?sessions=true` lists, in id order.
pub async fn sessions(http: &str) -> Vec<Value> {
    let stats = with_sessions(http).await;
    stats["sessions"]
        .as_array()
        .unwrap_or_else(|| panic!("/stats?sessions=true has no sessions list: {stats}"))
        .clone()
}

/// `GET {http}/stats` again until `holds` is true of it (within [`super::T`]); returns it.
pub async fn wait_until(http: &str, what: &str, holds: impl Fn(&Value) -> bool) -> Value {
    let holds = &holds;
    poll(format!("/stats with {what}"))
        .until(|| async move {
            let stats = get(http).await;
            if holds(&stats) {
                Ok(stats)
            } else {
                Err(stats.to_string())
            }
        })
        .await
}
