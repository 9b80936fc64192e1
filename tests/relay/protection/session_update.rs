//! ALLOWED_MODELS on the models a client picks after the upgrade: a `session.update` naming a
//! transcription model (GA or beta-era shape) or a session model outside the list is answered
//! with `model_not_allowed` and not forwarded; the session goes on, and an allowed update passes.

use std::time::Duration;

use super::*;

const ALLOWED: &str = "gpt-realtime-mini,gpt-4o-mini-transcribe";

/// The client messages the upstream received, as JSON.
fn received(fake: &FakeUpstream) -> Vec<Value> {
    fake.recorder()
        .messages()
        .iter()
        .map(|m| m.json().expect("JSON"))
        .collect()
}

/// A GA `session.update` whose `session.audio.input.transcription.model` is not listed gets a
/// `model_not_allowed` error event and never reaches the upstream; the same update with a listed
/// model is forwarded, on the same session.
#[actix_web::test]
async fn ga_transcription_model_outside_the_list_is_refused() {
    let h = start(Script::echo(), &[("ALLOWED_MODELS", ALLOWED)]).await;
    let mut ws = connect(&h, "/v1/realtime").await;
    let update = |model: &str, id: &str| {
        format!(
            r#"{{"type":"session.update","event_id":"{id}","session":{{"type":"realtime","audio":{{"input":{{"transcription":{{"model":"{model}"}}}}}}}}}}"#
        )
    };
    send_text(&mut ws, &update("gpt-4o-transcribe", "refused")).await;
    let error = next_json(&mut ws).await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["error"]["code"], "model_not_allowed", "{error}");
    assert_message_contains(&error, "\"gpt-4o-transcribe\"");
    send_text(&mut ws, &update("gpt-4o-mini-transcribe", "allowed")).await;
    let echo = next_json(&mut ws).await;
    assert_eq!(echo["event_id"], "allowed", "{echo}");
    let got = received(&h.fake);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["event_id"], "allowed");
    h.stop().await;
}

/// The beta-era shape (`session.input_audio_transcription.model`, also in
/// `transcription_session.update`) and `session.model` are held to the list the same way, and so
/// is an update sent before the upstream opened.
#[actix_web::test]
async fn beta_shape_and_session_model_are_refused_too() {
    let h = start(Script::echo(), &[("ALLOWED_MODELS", ALLOWED)]).await;
    let mut ws = connect(&h, "/v1/realtime").await;
    for (i, update) in [
        r#"{"type":"session.update","session":{"input_audio_transcription":{"model":"whisper-1"}}}"#,
        r#"{"type":"transcription_session.update","session":{"input_audio_transcription":{"model":"whisper-1"}}}"#,
        r#"{"type":"session.update","session":{"model":"gpt-realtime"}}"#,
    ]
    .into_iter()
    .enumerate()
    {
        send_text(&mut ws, update).await;
        let error = next_json(&mut ws).await;
        assert_eq!(error["error"]["code"], "model_not_allowed", "{i}: {error}");
    }
    send_text(&mut ws, r#"{"type":"x","event_id":"still-open"}"#).await;
    assert_eq!(next_json(&mut ws).await["event_id"], "still-open");
    assert_eq!(received(&h.fake).len(), 1, "{:?}", received(&h.fake));
    h.stop().await;

    // Before the upstream opens: queued, then refused rather than forwarded.
    let mut slow = Script::echo();
    slow.handshake_delay = Duration::from_millis(300);
    let h = start(slow, &[("ALLOWED_MODELS", ALLOWED)]).await;
    let (_, mut ws) = connect_with(&format!("{}/v1/realtime", h.base), &["realtime"], &[])
        .await
        .expect("upgrade");
    send_text(
        &mut ws,
        r#"{"type":"session.update","session":{"model":"gpt-realtime"}}"#,
    )
    .await;
    send_text(&mut ws, r#"{"type":"x","event_id":"after"}"#).await;
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.push(next_json(&mut ws).await);
    }
    assert!(
        seen.iter()
            .any(|e| e["error"]["code"] == "model_not_allowed"),
        "{seen:?}"
    );
    assert!(seen.iter().any(|e| e["event_id"] == "after"), "{seen:?}");
    let got = received(&h.fake);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["event_id"], "after");
    h.stop().await;
}

/// Without ALLOWED_MODELS every update is forwarded untouched.
#[actix_web::test]
async fn without_a_list_updates_pass() {
    let h = start(Script::echo(), &[]).await;
    let mut ws = connect(&h, "/v1/realtime").await;
    let update = r#"{"type":"session.update","event_id":"u","session":{"model":"anything","audio":{"input":{"transcription":{"model":"whisper-1"}}}}}"#;
    send_text(&mut ws, update).await;
    assert_eq!(next_json(&mut ws).await["event_id"], "u");
    assert_eq!(received(&h.fake).len(), 1);
    h.stop().await;
}
