//! Usage priced when it is counted: exact dollars in /stats and /metrics, duration billed per
//! minute, unknown models unpriced or priced by the `default` entry.

use fake_upstream::Script;

use super::*;

/// A `response.done` with a known split costs exactly $0.00034 in /stats (today, per identity,
/// per model, as `cost_usd` and `cost_nano_usd`) and in `relay_cost_usd_total{model}`.
#[actix_web::test]
async fn response_cost_lands_in_stats_and_metrics() {
    let prices = scratch("pricing.toml", PRICES);
    let h = start(
        Script::demo(),
        &[("PRICING_FILE", prices.to_str().expect("utf-8"))],
    )
    .await;
    let mut ws = session(&h, "/", None).await;
    respond(&mut ws).await;
    respond(&mut ws).await;

    let s = stats::get(&h.http()).await;
    let today = &s["usage"]["today"];
    assert_eq!(today["cost_nano_usd"], 2 * RESPONSE_NANO, "{s}");
    assert_eq!(today["cost_usd"], 0.00068, "{s}");
    assert_eq!(today["unpriced"], 0, "{s}");
    let model = &s["usage"]["by_model"]["gpt-realtime-mini"];
    assert_eq!(model["cost_nano_usd"], 2 * RESPONSE_NANO, "{s}");
    let mine = identity(&s, "ip:127.0.0.1");
    assert_eq!(mine["usage"]["cost_usd"], 0.00068, "{s}");
    assert_eq!(s["usage"]["unpriced_models"], serde_json::json!([]), "{s}");

    let (status, text) = get(&format!("{}/metrics", h.http()), &[]).await;
    assert_eq!(status, 200);
    let cost = prom::sample(&text, r#"relay_cost_usd_total{model="gpt-realtime-mini"}"#)
        .expect("relay_cost_usd_total");
    assert!((cost - 0.00068).abs() < 1e-12, "{cost}");
    h.stop().await;
}

/// Transcription billed by duration is priced per minute: by the session's model when it has a
/// per-minute price (whisper-1, $0.006), else by the table's [transcription] model ($0.003).
#[actix_web::test]
async fn duration_usage_is_priced_per_minute() {
    let prices = scratch("pricing.toml", PRICES);
    let h = start(
        Script::echo(),
        &[("PRICING_FILE", prices.to_str().expect("utf-8"))],
    )
    .await;
    // The echo fake sends back what the client sent: 60 seconds of duration usage.
    let event = r#"{"type":"conversation.item.input_audio_transcription.completed","item_id":"item_1","content_index":0,"usage":{"type":"duration","seconds":60}}"#;
    for path in ["/v1/realtime?model=whisper-1", "/v1/realtime"] {
        let mut ws = connect(&h, path).await;
        send_text(&mut ws, event).await;
        let echo = next_json(&mut ws).await;
        assert_eq!(echo["usage"]["type"], "duration", "{echo}");
        close(&mut ws).await;
    }
    let s = stats::get(&h.http()).await;
    let by_model = &s["usage"]["by_model"];
    assert_eq!(by_model["whisper-1"]["cost_nano_usd"], 6_000_000, "{s}");
    assert_eq!(
        by_model["gpt-realtime-mini"]["cost_nano_usd"], 3_000_000,
        "{s}"
    );
    assert_eq!(s["usage"]["today"]["cost_usd"], 0.009, "{s}");
    h.stop().await;
}

/// A model the table does not price is counted under its tokens, costs nothing, and shows as
/// unpriced in /stats and /metrics; with a `default` entry it is priced by that entry.
#[actix_web::test]
async fn unknown_model_is_unpriced_or_priced_by_default() {
    let without = scratch("pricing.toml", "[models.gpt-realtime]\ninput_text = 4.0\n");
    let h = start(
        Script::demo(),
        &[("PRICING_FILE", without.to_str().expect("utf-8"))],
    )
    .await;
    let mut ws = session(&h, "/", None).await;
    respond(&mut ws).await;
    let s = stats::get(&h.http()).await;
    assert_eq!(s["usage"]["today"]["total_tokens"], 32, "{s}");
    assert_eq!(s["usage"]["today"]["cost_nano_usd"], 0, "{s}");
    assert_eq!(s["usage"]["today"]["unpriced"], 1, "{s}");
    assert_eq!(
        s["usage"]["unpriced_models"],
        serde_json::json!(["gpt-realtime-mini"]),
        "{s}"
    );
    let (_, text) = get(&format!("{}/metrics", h.http()), &[]).await;
    assert_eq!(
        prom::sample(
            &text,
            r#"relay_unpriced_usage_total{model="gpt-realtime-mini"}"#
        ),
        Some(1.0)
    );
    h.stop().await;

    // Every kind at $1 per 1M: 32 tokens cost $0.000032.
    let with_default = scratch(
        "pricing.json",
        r#"{"default":{"input_text":1,"input_audio":1,"output_text":1,"output_audio":1}}"#,
    );
    let h = start(
        Script::demo(),
        &[("PRICING_FILE", with_default.to_str().expect("utf-8"))],
    )
    .await;
    let mut ws = session(&h, "/", None).await;
    respond(&mut ws).await;
    let s = stats::get(&h.http()).await;
    assert_eq!(s["usage"]["today"]["cost_nano_usd"], 32_000, "{s}");
    assert_eq!(s["usage"]["today"]["unpriced"], 0, "{s}");
    h.stop().await;
}
