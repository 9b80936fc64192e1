//! MAX_MESSAGE_SIZE, each way: an oversized message ends the session with 1009 and is not
//! forwarded. (Frames whose header announces too much, and fragments: `frame_limits`.)

use fake_upstream::{Mode, Script};

use crate::common::*;

/// A client message over MAX_MESSAGE_SIZE gets close 1009 `message_too_large` alone (RFC 6455
/// §7.1.7: no `error` event), and is not forwarded.
#[actix_web::test]
async fn oversized_client_message_is_refused() {
    let h = start(Script::echo(), &[("MAX_MESSAGE_SIZE", "65536")]).await;
    let mut ws = connect(&h, "/v1/realtime").await;
    send_text(&mut ws, &"A".repeat(100_000)).await;
    let (event, close) = expect_close(&mut ws).await;
    assert_eq!(event, None, "no error event before the close");
    let close = close.expect("close frame carries a code");
    assert_eq!(u16::from(close.code), 1009, "{close:?}");
    assert_eq!(close.description.as_deref(), Some("message_too_large"));
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
