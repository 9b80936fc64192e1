//! The demo server's behaviour over a real WebSocket: what it answers to each client event,
//! what it hears in appended audio, and how a response streams and ends.

use super::hearing::tests::tone;
use super::pcm::Decoder;
use super::reply::NOTE;
use crate::test_client::{connect, next_frame, next_json, of, send, send_all, until_done, T};
use crate::FakeUpstream;
use crate::Script;
use awc::ws;
use serde_json::Value;

/// Demo mode announces the requested model and answers response.create with deltas, then
/// response.done carrying usage.
#[actix_web::test]
async fn demo_streams_a_response_with_usage() {
    let fake = FakeUpstream::start(Script::demo()).await.unwrap();
    let (_, mut framed) = connect(&format!("{}?model=gpt-realtime", fake.url())).await;
    let created = next_json(&mut framed).await;
    assert_eq!(created["type"], "session.created");
    assert_eq!(created["session"]["model"], "gpt-realtime");
    assert_eq!(created["session"]["type"], "realtime");
    assert!(created["event_id"].as_str().unwrap().starts_with("event_"));

    let update =
        r#"{"type":"session.update","session":{"type":"realtime","instructions":"Be brief."}}"#;
    send(&mut framed, ws::Message::Text(update.into())).await;
    let updated = next_json(&mut framed).await;
    assert_eq!(updated["type"], "session.updated");
    assert_eq!(updated["session"]["instructions"], "Be brief.");

    send(
        &mut framed,
        ws::Message::Text(r#"{"type":"response.create"}"#.into()),
    )
    .await;
    let mut types = Vec::new();
    let done = loop {
        let event = next_json(&mut framed).await;
        let kind = event["type"].as_str().unwrap().to_owned();
        types.push(kind.clone());
        if kind == "response.done" {
            break event;
        }
        assert!(types.len() < 50, "no response.done in {types:?}");
    };
    assert_eq!(types[0], "response.created");
    let audio = types
        .iter()
        .filter(|t| *t == "response.output_audio.delta")
        .count();
    let said = types
        .iter()
        .filter(|t| *t == "response.output_audio_transcript.delta")
        .count();
    assert!(audio >= 2 && said >= 2, "{types:?}");
    let usage = &done["response"]["usage"];
    assert_eq!(usage["total_tokens"], 32);
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(usage["input_tokens"].as_u64().unwrap() + usage["output_tokens"].as_u64().unwrap())
    );
    assert_eq!(usage["input_token_details"]["cached_tokens"], 0);
    assert_eq!(usage["output_token_details"]["audio_tokens"], 15);

    send(
        &mut framed,
        ws::Message::Text(r#"{"type":"bogus.kind","event_id":"e1"}"#.into()),
    )
    .await;
    let error = next_json(&mut framed).await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_eq!(error["error"]["event_id"], "e1");
    fake.stop().await;
}

/// drop_after_deltas ends the connection without a Close frame right after that many deltas
/// of a response, all of which arrive first.
#[actix_web::test]
async fn drop_after_deltas_cuts_the_response() {
    let fake = FakeUpstream::start(Script {
        drop_after_deltas: Some(3),
        ..Script::demo()
    })
    .await
    .unwrap();
    let (_, mut framed) = connect(&fake.url()).await;
    assert_eq!(next_json(&mut framed).await["type"], "session.created");
    send(
        &mut framed,
        ws::Message::Text(r#"{"type":"response.create"}"#.into()),
    )
    .await;
    let mut deltas = Vec::new();
    loop {
        match next_frame(&mut framed).await {
            Some(Ok(ws::Frame::Text(bytes))) => {
                let event: Value = serde_json::from_slice(&bytes).unwrap();
                let kind = event["type"].as_str().unwrap().to_owned();
                assert_ne!(kind, "response.done");
                if kind.ends_with(".delta") {
                    deltas.push(kind);
                }
            }
            None | Some(Err(_)) => break,
            Some(Ok(frame)) => panic!("expected the connection to end, got {frame:?}"),
        }
    }
    assert_eq!(
        deltas,
        [
            "response.output_audio.delta",
            "response.output_audio_transcript.delta",
            "response.output_audio.delta"
        ]
    );
    let closes = fake.recorder().wait_closes(1, T).await.unwrap();
    assert!(closes[0].abrupt, "{:?}", closes[0]);
    assert!(
        closes[0].reason.contains("after 3 deltas"),
        "{:?}",
        closes[0]
    );
    fake.stop().await;
}

/// An append of `audio` (base64 PCM16).
fn append(audio: &str) -> String {
    format!(r#"{{"type":"input_audio_buffer.append","audio":"{audio}"}}"#)
}

/// The session update that turns server VAD off (push-to-talk).
const NO_VAD: &str =
    r#"{"type":"session.update","session":{"audio":{"input":{"turn_detection":null}}}}"#;

/// Push-to-talk: a commit of 1.0 s of appended audio is transcribed as "(1.0 seconds of
/// audio)", and the next response.create answers with six chime notes (6 x 4800 samples of
/// audible PCM16), "I heard 1.0 seconds of audio." and usage of 10 audio tokens in.
#[actix_web::test]
async fn committed_audio_is_answered_with_a_chime() {
    let fake = FakeUpstream::start(Script::demo()).await.unwrap();
    let (_, mut framed) = connect(&fake.url()).await;
    assert_eq!(next_json(&mut framed).await["type"], "session.created");
    let events = [
        NO_VAD.to_owned(),
        append(&tone(0.5, 1.0)),
        append(&tone(0.5, 1.0)),
        r#"{"type":"input_audio_buffer.commit"}"#.to_owned(),
        r#"{"type":"response.create"}"#.to_owned(),
    ];
    send_all(&mut framed, &events).await;
    let events = until_done(&mut framed).await;
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(
        &types[..5],
        [
            "session.updated",
            "input_audio_buffer.committed",
            "conversation.item.added",
            "conversation.item.done",
            "conversation.item.input_audio_transcription.completed"
        ],
        "{types:?}"
    );
    assert_eq!(events[4]["transcript"], "(1.0 seconds of audio)");
    assert_eq!(events[4]["item_id"], events[1]["item_id"]);
    let mut samples = Vec::new();
    for delta in of(&events, "response.output_audio.delta") {
        Decoder::default().feed(delta["delta"].as_str().unwrap(), |s| samples.push(s));
    }
    assert_eq!(samples.len(), 6 * NOTE);
    let energy: f64 = samples.iter().map(|s| f64::from(*s).powi(2)).sum();
    assert!((energy / samples.len() as f64).sqrt() > 1000.0, "too quiet");
    let said = of(&events, "response.output_audio_transcript.done");
    assert_eq!(said[0]["transcript"], "I heard 1.0 seconds of audio.");
    let usage = &events.last().unwrap()["response"]["usage"];
    assert_eq!(usage["input_token_details"]["audio_tokens"], 10);
    assert_eq!(usage["output_token_details"]["audio_tokens"], 24);

    // The answer is used up: the next response.create gets the greeting.
    send_all(&mut framed, &[r#"{"type":"response.create"}"#.to_owned()]).await;
    let events = until_done(&mut framed).await;
    assert_eq!(
        events.last().unwrap()["response"]["usage"]["total_tokens"],
        32
    );
    fake.stop().await;
}

/// Server VAD (the demo session's default): silence sets nothing off; a second of tone
/// followed by 600 ms of quiet gives speech_started, speech_stopped, committed, the
/// transcription and a response, all for the same item and without a response.create.
#[actix_web::test]
async fn server_vad_answers_a_tone_not_silence() {
    let fake = FakeUpstream::start(Script::demo()).await.unwrap();
    let (_, mut framed) = connect(&fake.url()).await;
    assert_eq!(next_json(&mut framed).await["type"], "session.created");
    let silence = [append(&tone(1.0, 0.0)), append(&tone(1.0, 0.0))];
    send_all(&mut framed, &silence).await;
    // A clear is answered in order, so nothing before its answer means silence set off nothing.
    send_all(
        &mut framed,
        &[r#"{"type":"input_audio_buffer.clear"}"#.to_owned()],
    )
    .await;
    assert_eq!(
        next_json(&mut framed).await["type"],
        "input_audio_buffer.cleared"
    );

    let speech = [
        append(&tone(0.2, 0.0)),
        append(&tone(1.0, 1.0)),
        append(&tone(0.6, 0.0)),
    ];
    send_all(&mut framed, &speech).await;
    let events = until_done(&mut framed).await;
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(
        &types[..4],
        [
            "input_audio_buffer.speech_started",
            "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed",
            "conversation.item.added"
        ],
        "{types:?}"
    );
    assert_eq!(events[0]["audio_start_ms"], 2200);
    assert_eq!(events[1]["audio_end_ms"], 3200);
    let item = &events[0]["item_id"];
    assert!(events[1..4]
        .iter()
        .all(|e| e["item_id"] == *item || e["item"]["id"] == *item));
    let heard = of(
        &events,
        "conversation.item.input_audio_transcription.completed",
    );
    assert_eq!(heard[0]["transcript"], "(1.0 seconds of audio)");
    let said = of(&events, "response.output_audio_transcript.done");
    assert_eq!(said[0]["transcript"], "I heard 1.0 seconds of audio.");
    fake.stop().await;
}

/// A user text message is echoed by the next response, as audio with its transcript or,
/// when asked for text only, as text, with its text counted as input tokens.
#[actix_web::test]
async fn text_messages_are_echoed() {
    let fake = FakeUpstream::start(Script::demo()).await.unwrap();
    let (_, mut framed) = connect(&fake.url()).await;
    assert_eq!(next_json(&mut framed).await["type"], "session.created");
    let message = r#"{"type":"conversation.item.create","item":{"type":"message","role":"user","content":[{"type":"input_text","text":"Is anybody there?"}]}}"#;
    let events = [
        message.to_owned(),
        r#"{"type":"response.create"}"#.to_owned(),
    ];
    send_all(&mut framed, &events).await;
    let events = until_done(&mut framed).await;
    let said = of(&events, "response.output_audio_transcript.done");
    assert_eq!(said[0]["transcript"], "You said: Is anybody there?");
    assert_eq!(of(&events, "response.output_audio.delta").len(), 5);
    let usage = &events.last().unwrap()["response"]["usage"];
    assert_eq!(usage["input_token_details"]["text_tokens"], 15);

    let text_only = r#"{"type":"response.create","response":{"output_modalities":["text"]}}"#;
    send_all(&mut framed, &[message.to_owned(), text_only.to_owned()]).await;
    let events = until_done(&mut framed).await;
    let text = of(&events, "response.output_text.done");
    assert_eq!(text[0]["text"], "You said: Is anybody there?");
    assert!(of(&events, "response.output_audio.delta").is_empty());
    fake.stop().await;
}
