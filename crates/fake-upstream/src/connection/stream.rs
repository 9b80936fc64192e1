//! The streamer of [`crate::Mode::Stream`]: fixed-size audio deltas at a pace, spawned by the
//! connection after `session.created` and aborted when the connection ends.

use std::time::Duration;

use actix_ws::Session;

/// Sends `response.output_audio.delta` events of about `message_bytes` each until `count` is
/// reached or the client is gone. Sending waits on the session's bounded queue, so the pace
/// follows the socket when `interval` is None.
pub(super) async fn stream_deltas(
    mut session: Session,
    message_bytes: usize,
    interval: Option<Duration>,
    count: Option<u64>,
) {
    const HEAD: &str = r#"{"type":"response.output_audio.delta","event_id":"event_s"#;
    const MIDDLE: &str = r#"","response_id":"resp_stream","item_id":"item_stream","output_index":0,"content_index":0,"delta":""#;
    const TAIL: &str = r#""}"#;
    let fixed = HEAD.len() + 20 + MIDDLE.len() + TAIL.len();
    let padding = "A".repeat(message_bytes.saturating_sub(fixed).max(4));
    let mut ticker = interval.map(|every| {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker
    });
    let mut sent: u64 = 0;
    while count.is_none_or(|count| sent < count) {
        if let Some(ticker) = ticker.as_mut() {
            ticker.tick().await;
        }
        sent += 1;
        // A fixed-width counter keeps every message the same size.
        let text = format!("{HEAD}{sent:020}{MIDDLE}{padding}{TAIL}");
        if session.text(text).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::test_client::{connect, next_frame, next_json, send, T};
    use crate::{FakeUpstream, Mode, Script};
    use actix_web::web::Bytes;
    use awc::ws;
    use futures_util::StreamExt;
    use serde_json::Value;
    use std::time::Duration;

    /// Stream mode sends exactly `count` audio deltas of about `message_bytes` each.
    #[actix_web::test]
    async fn stream_sends_sized_deltas() {
        let fake = FakeUpstream::start(Script::with_mode(Mode::Stream {
            message_bytes: 1000,
            interval: Some(Duration::from_millis(1)),
            count: Some(3),
        }))
        .await
        .unwrap();
        let (_, mut framed) = connect(&fake.url()).await;
        assert_eq!(next_json(&mut framed).await["type"], "session.created");
        for _ in 0..3 {
            match next_frame(&mut framed).await {
                Some(Ok(ws::Frame::Text(bytes))) => {
                    assert_eq!(bytes.len(), 1000);
                    let event: Value = serde_json::from_slice(&bytes).unwrap();
                    assert_eq!(event["type"], "response.output_audio.delta");
                }
                other => panic!("expected a delta, got {other:?}"),
            }
        }
        send(&mut framed, ws::Message::Ping(Bytes::from_static(b"p"))).await;
        match tokio::time::timeout(T, framed.next()).await.unwrap() {
            Some(Ok(ws::Frame::Pong(p))) => assert_eq!(&p[..], b"p"),
            other => panic!("expected only a pong after the count, got {other:?}"),
        }
        fake.stop().await;
    }
}
