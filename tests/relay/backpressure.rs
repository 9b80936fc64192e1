//! Slow peers: a client that stops reading while the upstream streams is closed and counted,
//! with the relay holding at most a bounded amount for it meanwhile; a client that is merely
//! behind when its session ends still gets everything up to the close frame.

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

/// A client that is behind in reading and still sending when its session ends keeps the close
/// grace: it goes on sending for 2 s without reading, then reads slowly (over about 2.5 s, still
/// sending), and gets every delta the relay took for it, in order, then the `error` event and
/// the close frame, with no reset first. With actix-web's default 1 s client disconnect timeout
/// the relay reset the connection while the tail was still queued for the client.
#[actix_web::test]
async fn slow_reader_still_sending_gets_its_final_events() {
    use futures_util::StreamExt;
    let h = start(
        Script::with_mode(Mode::Stream {
            message_bytes: 4 * 1024,
            interval: None,
            count: None,
        }),
        &[("MAX_SESSION_DURATION", "1000")],
    )
    .await;
    let (_, mut ws) = connect_with(&format!("{}/realtime", h.base), &["realtime"], &[])
        .await
        .expect("upgrade");
    // The client reads nothing: the relay fills the kernel buffers, then stops reading the
    // upstream; at MAX_SESSION_DURATION the session ends and its upstream is closed.
    h.fake
        .recorder()
        .wait_closes(1, T)
        .await
        .expect("the session is ended");
    let stats = stats::wait_until(&h.http(), "the session's end", |s| {
        s["active_sessions"] == 0
    })
    .await;
    let relayed = stats["upstream_to_client"]["messages"]
        .as_u64()
        .expect("messages");
    let mut sender = Sender::default();
    let sending_until = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < sending_until {
        sender.send(&mut ws).await;
        // Deliberate pacing of the sender (not a readiness wait).
        tokio::time::sleep(SEND_EVERY).await;
    }
    // A slow reader: the frames spread over READING, one send every SEND_EVERY meanwhile.
    let reading_from = tokio::time::Instant::now();
    let mut read = 0u32;
    let mut deltas = 0u64;
    let mut error = None;
    let mut others = Vec::new();
    let ending = loop {
        let frame = match tokio::time::timeout(T, ws.next()).await {
            Err(_) => break format!("nothing more within {T:?}"),
            Ok(None) => break "the connection ended without a close frame".to_string(),
            Ok(Some(Err(e))) => break format!("the connection failed: {e}"),
            Ok(Some(Ok(frame))) => frame,
        };
        read += 1;
        match frame {
            awc::ws::Frame::Text(b) => {
                let v: serde_json::Value = serde_json::from_slice(&b).expect("JSON");
                if v["type"] == "response.output_audio.delta" {
                    deltas += 1;
                    let id = v["event_id"].as_str().expect("event_id");
                    let n: u64 = id["event_s".len()..].parse().expect("a sequence number");
                    assert_eq!(n, deltas, "a delta is missing before {id}");
                } else if v["type"] == "error" && v["error"]["code"] != "session_expiring" {
                    error = Some(v);
                } else {
                    others.push(v["type"].as_str().unwrap_or_default().to_string());
                }
            }
            awc::ws::Frame::Close(reason) => break format!("close {reason:?}"),
            _ => {}
        }
        // Deliberate pacing of the reader (not a readiness wait).
        let due = reading_from + READING * read / relayed.max(1) as u32;
        tokio::time::sleep_until(due).await;
        sender.send(&mut ws).await;
    };
    eprintln!(
        "relayed {relayed} messages; the client sent {} after the end, then read {deltas} \
         deltas and {others:?} in {:?}, then: {ending}",
        sender.sent,
        reading_from.elapsed()
    );
    let error = error.unwrap_or_else(|| panic!("no error event before: {ending}"));
    assert_eq!(error["error"]["code"], "session_max_duration", "{error}");
    assert!(ending.starts_with("close"), "{ending}");
    // `relayed` counts `session.created` too, and at most one delta the reader held when the
    // session ended was counted but not delivered.
    assert!(
        deltas + 2 >= relayed,
        "{deltas} deltas of {relayed} relayed"
    );
    h.stop().await;
}

/// How often the slow reader's client sends a small event.
const SEND_EVERY: Duration = Duration::from_millis(20);
/// How long the slow reader takes over the frames the relay holds for it: longer than actix-web's
/// default 1 s disconnect timeout, well within the session's 5 s close grace.
const READING: Duration = Duration::from_millis(2500);

/// A client that keeps sending small events, at most one per [`SEND_EVERY`].
#[derive(Default)]
struct Sender {
    sent: u32,
    last: Option<tokio::time::Instant>,
}

impl Sender {
    /// Sends one event unless one went out less than [`SEND_EVERY`] ago. The relay may no longer
    /// be reading, so a send that fails or stalls is not waited on.
    async fn send(&mut self, ws: &mut Ws) {
        use futures_util::SinkExt;
        let now = tokio::time::Instant::now();
        if self.last.is_some_and(|last| now - last < SEND_EVERY) {
            return;
        }
        self.last = Some(now);
        let event = r#"{"type":"input_audio_buffer.append","audio":"AAAA"}"#;
        let sent = tokio::time::timeout(
            Duration::from_millis(200),
            ws.send(awc::ws::Message::Text(event.into())),
        );
        if let Ok(Ok(())) = sent.await {
            self.sent += 1;
        }
    }
}
