//! Hands-free talk and barge-in: Chromium's fake microphone loops a WAV of a loud tone and
//! silence (`console.mjs` writes it; the default beeps are too faint for the fake's server VAD).

use fake_upstream::Script;
use serde_json::Value;

use crate::{common, Browser};

/// The event types in `r[key]`.
fn types<'a>(r: &'a Value, key: &str) -> Vec<&'a str> {
    r[key]
        .as_array()
        .expect("event types")
        .iter()
        .filter_map(|t| t.as_str())
        .collect()
}

/// Hands-free: the tone is speech to the fake's server VAD, which answers without a button
/// being pressed.
#[actix_web::test]
async fn hands_free_speech_is_answered() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let h = common::start(Script::demo(), &[("CONSOLE", "true")]).await;
    let r = browser
        .run("handsfree", &format!("{}/console", h.http()), None)
        .await;
    h.stop().await;

    let seen = types(&r, "eventTypes");
    for t in [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "response.done",
    ] {
        assert!(seen.contains(&t), "{t} not in the log: {r:#}");
    }
    let sent = types(&r, "sentTypes");
    assert!(!sent.contains(&"input_audio_buffer.commit"), "{r:#}");
    assert!(!sent.contains(&"response.create"), "{r:#}");
    assert!(
        r["stats"]["usage"]["responses"].as_u64() >= Some(1),
        "{r:#}"
    );
    assert!(r["stats"]["lastError"].is_null(), "{r:#}");
}

/// Barge-in: speech while the answer plays stops the playback and truncates the answer.
#[actix_web::test]
async fn speech_during_the_answer_cuts_it_off() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let h = common::start(Script::demo(), &[("CONSOLE", "true")]).await;
    let r = browser
        .run("bargein", &format!("{}/console", h.http()), None)
        .await;
    h.stop().await;

    let stats = &r["stats"];
    assert!(stats["samplesScheduled"].as_u64() > Some(0), "{r:#}");
    assert!(stats["playbackCuts"].as_u64() > Some(0), "{r:#}");
    assert!(
        types(&r, "sentTypes").contains(&"conversation.item.truncate"),
        "{r:#}"
    );
    assert!(
        types(&r, "eventTypes").contains(&"conversation.item.truncated"),
        "{r:#}"
    );
    assert!(stats["lastError"].is_null(), "{r:#}");
}
