mod common;
use common::*;
use openai_realtime_relay::fake_upstream::Script;

/// A browser-style client gets `realtime` selected and talks to the upstream through the relay.
#[actix_web::test]
async fn echo_round_trip() {
    let h = start(Script::echo(), &[]).await;
    let mut ws = connect(&h, "/realtime?model=gpt-realtime").await;
    send_text(
        &mut ws,
        r#"{"type":"input_audio_buffer.append","event_id":"e1","audio":"AAAA"}"#,
    )
    .await;
    let v = next_json(&mut ws).await;
    assert_eq!(v["event_id"], "e1");
    let hs = h
        .fake
        .recorder()
        .wait_handshakes(1, T)
        .await
        .expect("handshake");
    assert_eq!(
        hs[0].header("authorization"),
        Some(format!("Bearer {TEST_KEY}").as_str())
    );
    assert_eq!(hs[0].path_and_query, "/v1/realtime?model=gpt-realtime");
    h.stop().await;
}
