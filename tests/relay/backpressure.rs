//! Slow peers: a client that stops reading while the upstream streams is closed and counted,
//! with the relay holding at most a bounded amount for it meanwhile.

use std::time::Duration;

use fake_upstream::{Mode, Script};

use crate::common::*;

/// A relay with 200 ms heartbeats before an upstream that streams `count` audio deltas of
/// `message_bytes` as fast as the socket takes them (`None`: until the client is gone).
async fn streaming(message_bytes: usize, count: Option<u64>) -> Harness {
    start(
        Script::with_mode(Mode::Stream {
            message_bytes,
            interval: None,
            count,
        }),
        &[("HEARTBEAT_INTERVAL", "200")],
    )
    .await
}

/// A client that never reads while the upstream streams audio as fast as it can: the relay
/// stops reading the upstream (backpressure), the client misses its heartbeats, and the session
/// is closed as `client_too_slow`, its upstream closed with it.
#[actix_web::test]
async fn client_that_stops_reading_is_closed_and_counted() {
    let h = streaming(64 * 1024, None).await;
    // Connect and never read again.
    let (_, ws) = connect_with(&format!("{}/realtime", h.base), &["realtime"], &[])
        .await
        .expect("upgrade");
    let closes = h
        .fake
        .recorder()
        .wait_closes(1, T)
        .await
        .expect("the stalled session's upstream is closed");
    assert_eq!(closes.len(), 1);
    let stats = stats::get(&h.http()).await;
    assert_eq!(stats["closed_by_reason"]["client_too_slow"], 1, "{stats}");
    assert_eq!(stats["active_sessions"], 0, "{stats}");
    // The relay did not buffer the stream: it relayed far less than the fake could produce in
    // the time it took (the kernel buffers and a bounded queue are all that held data).
    let relayed = stats["upstream_to_client"]["bytes"]
        .as_u64()
        .expect("bytes");
    assert!(relayed < 256 * 1024 * 1024, "relayed {relayed} bytes");
    drop(ws);
    h.stop().await;
}

/// A slow but live client is not cut off: it reads slowly, answers pings, and receives every
/// message in order.
#[actix_web::test]
async fn slow_reader_that_keeps_up_eventually_gets_everything() {
    let h = streaming(16 * 1024, Some(200)).await;
    let mut ws = connect(&h, "/realtime").await;
    let mut seen = 0;
    while seen < 200 {
        let v = next_json(&mut ws).await;
        assert_eq!(v["type"], "response.output_audio.delta");
        seen += 1;
        if seen % 20 == 0 {
            // Deliberately slow reader (not a readiness wait).
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let stats = stats::get(&h.http()).await;
    assert_eq!(stats["active_sessions"], 1, "{stats}");
    h.stop().await;
}

/// After a stalled client's session is ended, the relay does not keep its connection (and the
/// bytes queued for it) alive: the kernel drops it once writes have gone unacknowledged for
/// three heartbeat intervals, so the client, when it finally reads, finds the connection gone
/// instead of the relay's close frame.
#[actix_web::test]
async fn stalled_client_connection_is_dropped_not_kept() {
    use futures_util::StreamExt;
    let h = streaming(64 * 1024, None).await;
    let (_, mut ws) = connect_with(&format!("{}/realtime", h.base), &["realtime"], &[])
        .await
        .expect("upgrade");
    h.fake
        .recorder()
        .wait_closes(1, T)
        .await
        .expect("the stalled session is ended");
    // Deliberate: let the 600 ms TCP user timeout pass while still not reading.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut saw_close = false;
    let ended = tokio::time::timeout(T, async {
        while let Some(frame) = ws.next().await {
            match frame {
                Ok(awc::ws::Frame::Close(_)) => saw_close = true,
                Ok(_) => {}
                Err(_) => break,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection should end, not stay open");
    assert!(
        !saw_close,
        "the relay kept the stalled connection until the client read again"
    );
    h.stop().await;
}
