//! Transcription usage reported as a duration (`"usage":{"type":"duration","seconds":..}`) is
//! counted: as audio seconds in /stats (today, per model, per identity) and in
//! `relay_audio_seconds_total{model}`, never as tokens.

use super::*;

const DURATION_EVENT: &str = r#"{"type":"conversation.item.input_audio_transcription.completed","event_id":"event_1","item_id":"item_1","content_index":0,"transcript":"Hello.","usage":{"type":"duration","seconds":2.4}}"#;

/// Two duration-billed transcriptions from the upstream (the echo fake sends back what the
/// client sent) add up to 4.8 audio seconds in /stats and /metrics, and no tokens.
#[actix_web::test]
async fn duration_usage_lands_in_stats_and_metrics() {
    let h = start(Script::echo(), &[]).await;
    let mut ws = connect(&h, "/v1/realtime").await;
    for _ in 0..2 {
        send_text(&mut ws, DURATION_EVENT).await;
        let echo = next_json(&mut ws).await;
        assert_eq!(echo["usage"]["type"], "duration", "{echo}");
    }
    // RecordUsage reaches the registry before the event reaches the client, and the registry
    // answers /stats in order: no waiting needed.
    let s = stats::get(&h.http()).await;
    let usage = &s["usage"];
    assert_eq!(usage["today"]["audio_seconds"], 4.8, "{s}");
    assert_eq!(usage["lifetime"]["audio_seconds"], 4.8, "{s}");
    assert_eq!(usage["today"]["total_tokens"], 0, "{s}");
    assert_eq!(
        usage["by_model"]["gpt-realtime-mini"]["audio_seconds"], 4.8,
        "{s}"
    );
    assert_eq!(
        usage["by_identity"][0]["usage"]["audio_seconds"], 4.8,
        "{s}"
    );

    let (status, text) = get(&format!("{}/metrics", h.http()), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        prom::sample(
            &text,
            r#"relay_audio_seconds_total{model="gpt-realtime-mini"}"#
        ),
        Some(4.8),
        "{text}"
    );
    assert_eq!(
        prom::sample(
            &text,
            r#"relay_tokens_total{model="gpt-realtime-mini",kind="input_audio"}"#
        ),
        Some(0.0)
    );
    h.stop().await;
}
