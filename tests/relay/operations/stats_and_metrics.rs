//! What `/stats` and `/metrics` add for operators: sessions by model, connect latency, the
//! session list, duration histograms and process metrics.

use fake_upstream::Script;

use crate::common::{poll::poll, *};

/// /stats counts live sessions by model, reports upstream connect latency percentiles, and
/// `?sessions=true` describes each session with the bytes it carried each way.
#[actix_web::test]
async fn stats_describe_models_latency_and_sessions() {
    let h = start(Script::echo(), &[]).await;
    let before = stats::get(&h.http()).await;
    assert_eq!(before["upstream_connect_latency"]["samples"], 0, "{before}");
    assert_eq!(
        before["sessions_by_model"],
        serde_json::json!({}),
        "{before}"
    );
    let listed = stats::sessions(&h.http()).await;
    assert_eq!(listed, Vec::<serde_json::Value>::new(), "{listed:?}");

    let mut a = connect(&h, "/v1/realtime?model=gpt-realtime").await;
    let _b = connect(&h, "/v1/realtime?model=gpt-realtime").await;
    let _c = connect(&h, "/v1/realtime").await;
    let sent = r#"{"type":"conversation.item.create","event_id":"s-1","item":{"type":"message"}}"#;
    send_text(&mut a, sent).await;
    assert_eq!(next_json(&mut a).await["event_id"], "s-1");

    let stats = stats::with_sessions(&h.http()).await;
    assert_eq!(
        stats["sessions_by_model"],
        serde_json::json!({"gpt-realtime": 2, "gpt-realtime-mini": 1}),
        "{stats}"
    );
    let latency = &stats["upstream_connect_latency"];
    assert!(latency["samples"].as_u64() >= Some(3), "{stats}");
    for p in ["p50_ms", "p95_ms", "p99_ms"] {
        let ms = latency[p]
            .as_f64()
            .unwrap_or_else(|| panic!("{p}: {stats}"));
        assert!(ms >= 0.0, "{p}: {stats}");
    }
    assert!(
        latency["p50_ms"].as_f64() <= latency["p95_ms"].as_f64()
            && latency["p95_ms"].as_f64() <= latency["p99_ms"].as_f64(),
        "{stats}"
    );

    let sessions = stats["sessions"].as_array().expect("sessions list");
    assert_eq!(sessions.len(), 3, "{stats}");
    let first = &sessions[0];
    assert!(first["id"].is_u64(), "{first}");
    assert_eq!(first["client"], "127.0.0.1", "{first}");
    assert_eq!(first["model"], "gpt-realtime", "{first}");
    assert!(first["age_seconds"].is_u64(), "{first}");
    assert!(first["idle_seconds"].is_u64(), "{first}");
    assert_eq!(first["client_to_upstream_bytes"], sent.len(), "{first}");
    // session.created plus the echo of what was sent.
    assert!(
        first["upstream_to_client_bytes"].as_u64() > Some(sent.len() as u64),
        "{first}"
    );
    assert_eq!(sessions[1]["client_to_upstream_bytes"], 0, "{stats}");
    assert_eq!(sessions[2]["model"], "gpt-realtime-mini", "{stats}");
    let ids: Vec<_> = sessions.iter().map(|s| s["id"].as_u64()).collect();
    assert!(ids[0] < ids[1] && ids[1] < ids[2], "{stats}");
    h.stop().await;
}

/// /metrics has the session-duration and first-upstream-event histograms, which count a
/// finished session, and the process metrics (resident memory, open fds).
#[actix_web::test]
async fn metrics_have_histograms_and_process_metrics() {
    let h = start(Script::echo(), &[]).await;
    let url = format!("{}/metrics", h.http());
    let (_, before) = get(&url, &[]).await;
    assert_eq!(
        prom::sample(&before, "relay_session_duration_seconds_count"),
        Some(0.0),
        "{before}"
    );
    assert_eq!(
        prom::sample(&before, "relay_first_upstream_event_seconds_count"),
        Some(0.0),
        "{before}"
    );
    #[cfg(target_os = "linux")]
    {
        let rss = prom::sample(&before, "process_resident_memory_bytes").expect("rss");
        assert!(rss > 0.0, "{before}");
        let fds = prom::sample(&before, "process_open_fds").expect("open fds");
        assert!(fds > 0.0, "{before}");
        assert!(
            prom::sample(&before, "process_cpu_seconds_total").is_some(),
            "{before}"
        );
    }

    let mut ws = connect(&h, "/realtime").await;
    close(&mut ws).await;
    h.fake.recorder().wait_closes(1, T).await.expect("closed");
    // The release reaches the registry by message; no event tells the test it landed, so poll.
    let url = url.as_str();
    let last = poll("relay_session_duration_seconds_count at 1")
        .until(|| async move {
            let last = get(url, &[]).await.1;
            match prom::sample(&last, "relay_session_duration_seconds_count") {
                Some(1.0) => Ok(last),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    assert_eq!(
        prom::sample(&last, "relay_session_duration_seconds_count"),
        Some(1.0),
        "{last}"
    );
    assert!(
        prom::sample(&last, "relay_first_upstream_event_seconds_count") >= Some(1.0),
        "{last}"
    );
    assert!(
        prom::sample(&last, r#"relay_session_duration_seconds_bucket{le="1"}"#).is_some(),
        "{last}"
    );
    h.stop().await;
}
