//! The console's panels after a push-to-talk turn: the event log's type filter and expanded rows
//! (audio elided), the session editor, the microphone meter while talking, and gap-free
//! playback of the answer.

use fake_upstream::Script;

use crate::{common, Browser};

#[actix_web::test]
async fn the_log_the_session_editor_and_the_meter_work() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let h = common::start(Script::demo(), &[("CONSOLE", "true")]).await;
    let r = browser
        .run("panels", &format!("{}/console", h.http()), None)
        .await;
    h.stop().await;

    // The filter leaves only response.done rows; one expanded shows its JSON.
    let filtered = r["filtered"].as_array().expect("filtered rows");
    assert!(!filtered.is_empty(), "{r:#}");
    assert!(filtered.iter().all(|t| t == "response.done"), "{r:#}");
    assert!(r["hiddenCount"].as_u64() > Some(0), "{r:#}");
    let done: serde_json::Value =
        serde_json::from_str(r["expandedJson"].as_str().expect("JSON")).expect("valid JSON");
    assert_eq!(done["type"], "response.done", "{r:#}");

    // An audio delta's JSON has its payload elided.
    let audio = r["audioJson"].as_str().expect("audio JSON");
    let audio: serde_json::Value = serde_json::from_str(audio).expect("valid JSON");
    let delta = audio["delta"].as_str().expect("delta");
    assert!(delta.contains("bytes of audio elided"), "{r:#}");
    assert!(delta.len() < 64, "{r:#}");

    // The session editor: the update carries the instructions and voice, the echo brings the
    // instructions back.
    let text = "Answer like a pirate, from the session editor.";
    assert_eq!(r["sentUpdate"]["type"], "session.update", "{r:#}");
    assert_eq!(r["sentUpdate"]["session"]["instructions"], text, "{r:#}");
    assert_eq!(
        r["sentUpdate"]["session"]["audio"]["output"]["voice"], "marin",
        "{r:#}"
    );
    assert_eq!(r["echoed"]["session"]["instructions"], text, "{r:#}");
    assert_eq!(r["instructionsField"], text, "{r:#}");

    // The meter moved while the space bar was held; the answer played without gaps.
    let stats = &r["stats"];
    assert!(stats["meterPeak"].as_f64() > Some(0.0), "{r:#}");
    assert!(stats["samplesScheduled"].as_u64() > Some(0), "{r:#}");
    assert_eq!(stats["playbackGaps"], 0, "{r:#}");
    assert!(stats["lastError"].is_null(), "{r:#}");
}
