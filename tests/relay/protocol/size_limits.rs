//! MAX_MESSAGE_SIZE, each way: an oversized message ends the session with 1009 and is not
//! forwarded.

use fake_upstream::{Mode, Script};

use crate::common::*;

/// A client message over MAX_MESSAGE_SIZE gets `message_too_large` and close 1009, and is not
/// forwarded.
#[actix_web::test]
async fn oversized_client_message_is_refused() {
    let h = start(Script::echo(), &[("MAX_MESSAGE_SIZE", "65536")]).await;
    let mut ws = connect(&h, "/v1/realtime").await;
    send_text(&mut ws, &"A".repeat(100_000)).await;
    let event = expect_failure(&mut ws, "message_too_large", 1009).await;
    assert_message_contains(&event, "65536");
    // The relay closes the upstream when the session ends; by then nothing was forwarded.
    h.fake
        .recorder()
        .wait_closes(1, T)
        .await
        .expect("upstream closed");
    assert!(h.fake.recorder().messages().is_empty());
    h.stop().await;
}

/// An upstream message over MAX_MESSAGE_SIZE gets `upstream_message_too_large` and close 1009.
#[actix_web::test]
async fn oversized_upstream_message_is_refused() {
    let h = start(
        Script::with_mode(Mode::Stream {
            message_bytes: 100_000,
            interval: None,
            count: Some(1),
        }),
        &[("MAX_MESSAGE_SIZE", "65536")],
    )
    .await;
    let mut ws = connect(&h, "/v1/realtime").await;
    let event = expect_failure(&mut ws, "upstream_message_too_large", 1009).await;
    assert_message_contains(&event, "65536");
    h.stop().await;
}
