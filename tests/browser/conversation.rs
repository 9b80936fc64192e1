//! A whole conversation in the console: connect, push to talk, a typed message; and the
//! screenshot README shows.

use fake_upstream::Script;

use crate::{common, Browser};

/// In demo mode the page connects, sees `session.created`, and after a second of push to talk
/// shows the user's transcription and the assistant's transcript, plays the answer's audio,
/// answers a typed message, and counts usage, with no error in the browser console.
#[actix_web::test]
async fn push_to_talk_and_text_are_answered_in_the_page() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let h = common::start(Script::demo(), &[("CONSOLE", "true")]).await;
    let shot = std::env::var("RELAY_CONSOLE_SCREENSHOT").ok();
    let r = browser
        .run(
            "conversation",
            &format!("{}/console", h.http()),
            shot.as_deref(),
        )
        .await;
    h.stop().await;

    let stats = &r["stats"];
    assert_eq!(stats["state"], "connected", "{r:#}");
    assert!(stats["samplesSent"].as_u64() >= Some(24_000), "{r:#}");
    assert!(stats["samplesScheduled"].as_u64() > Some(0), "{r:#}");
    assert_eq!(stats["usage"]["responses"], 2, "{r:#}");
    assert!(stats["usage"]["total_tokens"].as_u64() > Some(0), "{r:#}");
    assert!(stats["lastError"].is_null(), "{r:#}");
    assert_eq!(
        r["tokenFieldVisible"], false,
        "no tokens, no token field: {r:#}"
    );
    let types: Vec<&str> = r["eventTypes"]
        .as_array()
        .expect("event types")
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    assert_eq!(types.first(), Some(&"session.created"), "{r:#}");
    for sent in [
        "session.update",
        "input_audio_buffer.clear",
        "input_audio_buffer.append",
        "input_audio_buffer.commit",
        "response.create",
        "conversation.item.create",
    ] {
        assert!(types.contains(&sent), "{sent} not in the log: {r:#}");
    }
    let lines: Vec<(String, String)> = r["transcript"]
        .as_array()
        .expect("transcript")
        .iter()
        .map(|l| {
            (
                l["className"].as_str().unwrap_or_default().to_string(),
                l["text"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let has = |who: &str, part: &str| {
        lines
            .iter()
            .any(|(class, text)| class.split(' ').any(|c| c == who) && text.contains(part))
    };
    assert!(has("user", "seconds of audio)"), "{lines:?}");
    assert!(has("assistant", "I heard "), "{lines:?}");
    assert!(has("user", "hello from chromium"), "{lines:?}");
}
