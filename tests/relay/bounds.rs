//! What a session may hold, whatever shape a client gives its frames (issue 10): frames waiting
//! before the upstream opens count their bookkeeping, not just their payload.

use std::time::Duration;

use fake_upstream::Script;

use crate::common::*;

/// Empty frames sent before the upstream opens are not free: with MAX_MESSAGE_SIZE=1024 the
/// pre-open queue is full after 16 of them (64 bytes each), and the 17th ends the session with
/// `client_queue_overflow` and close 1008; nothing reaches the upstream.
#[actix_web::test]
async fn empty_frames_before_the_upstream_opens_fill_the_queue() {
    let h = start(
        Script {
            handshake_delay: Duration::from_secs(2),
            ..Script::echo()
        },
        &[("MAX_MESSAGE_SIZE", "1024")],
    )
    .await;
    let (_, mut ws) = connect_with(&format!("{}/v1/realtime", h.base), &["realtime"], &[])
        .await
        .expect("upgrade succeeds");
    for _ in 0..17 {
        send_text(&mut ws, "").await;
    }
    let event = expect_failure(&mut ws, "client_queue_overflow", 1008).await;
    assert_message_contains(&event, "1024");
    assert!(h.fake.recorder().messages().is_empty());
    h.stop().await;
}
