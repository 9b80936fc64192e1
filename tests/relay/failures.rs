//! Every failure a client can see: an OpenAI-shaped `error` event, then a close frame with a
//! meaningful code (issue 2, "Failures the client can see"), and the counters that record them.

use std::time::Duration;

use awc::ws::{Frame, Message};
use fake_upstream::Script;
use futures_util::{SinkExt, StreamExt};

use crate::common::{poll::poll, *};

/// A `ws://` URL on 127.0.0.1 where nothing listens: bind port 0, note the port, let it go.
fn unreachable_url() -> String {
    format!("ws://127.0.0.1:{}/v1/realtime", tools::free_port())
}

/// Opens a client WebSocket to the relay without waiting for `session.created`.
async fn open(base: &str) -> Ws {
    let (_, ws) = connect_with(&format!("{base}/realtime"), &["realtime"], &[])
        .await
        .expect("upgrade succeeds");
    ws
}

/// A fake upstream that answers every upgrade with `status`, and a relay in front of it.
async fn rejecting(status: u16) -> Harness {
    let mut script = Script::echo();
    script.reject_status = Some(status);
    start(script, &[]).await
}

/// Opens a session through a relay whose upstream answered with HTTP `status`, and asserts it
/// ends with `code` and `close_code` and a message that names the status; returns the error.
async fn refused_for_status(
    h: &Harness,
    status: u16,
    code: &str,
    close_code: u16,
) -> serde_json::Value {
    let mut ws = open(&h.base).await;
    let error = expect_failure(&mut ws, code, close_code).await;
    assert_message_contains(&error, &status.to_string());
    error
}

/// With MAX_CONNECTIONS=1: one session admitted, a second refused (`capacity_exceeded`, 1013),
/// then the first closed by its client and its upstream closed, so the slot is on its way back.
async fn refuse_one_then_close_the_first() -> Harness {
    let h = start(Script::echo(), &[("MAX_CONNECTIONS", "1")]).await;
    let mut first = connect(&h, "/realtime").await;
    let mut refused = open(&h.base).await;
    expect_failure(&mut refused, "capacity_exceeded", 1013).await;
    close(&mut first).await;
    h.fake
        .recorder()
        .wait_closes(1, T)
        .await
        .expect("upstream closed");
    h
}

/// What a raw read (one that never answers pings) saw.
enum Raw {
    Ping,
    Other(Frame),
    /// The stream ended or failed without a close frame.
    Ended,
}

/// The next frame as it arrives; pings are reported, not answered.
async fn raw_next(ws: &mut Ws) -> Raw {
    match tokio::time::timeout(T, ws.next())
        .await
        .expect("no frame within the timeout")
    {
        Some(Ok(Frame::Ping(_))) => Raw::Ping,
        Some(Ok(frame)) => Raw::Other(frame),
        Some(Err(_)) | None => Raw::Ended,
    }
}

/// An upstream nobody listens on gives `upstream_unavailable` and close 1011.
#[actix_web::test]
async fn unreachable_upstream_is_upstream_unavailable() {
    let relay = start_relay(config(&unreachable_url(), &[])).await;
    let mut ws = open(&format!("ws://{}", relay.local_addr())).await;
    let error = expect_failure(&mut ws, "upstream_unavailable", 1011).await;
    assert_eq!(error["type"], "error");
    stop_relay(relay).await;
}

/// An upstream slower than UPSTREAM_CONNECT_TIMEOUT gives `upstream_timeout` and close 1013.
#[actix_web::test]
async fn slow_upstream_handshake_is_upstream_timeout() {
    let mut script = Script::echo();
    script.handshake_delay = Duration::from_secs(3);
    let h = start(script, &[("UPSTREAM_CONNECT_TIMEOUT", "300")]).await;
    let mut ws = open(&h.base).await;
    let started = std::time::Instant::now();
    expect_failure(&mut ws, "upstream_timeout", 1013).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the timeout fired only after the upstream's 3 s delay ({:?})",
        started.elapsed()
    );
    h.stop().await;
}

/// Upstream 401 and 403 give `upstream_auth_failed` (1011); the message names the status, not the key.
#[actix_web::test]
async fn upstream_401_and_403_are_auth_failed() {
    for status in [401u16, 403] {
        let h = rejecting(status).await;
        let error = refused_for_status(&h, status, "upstream_auth_failed", 1011).await;
        assert!(!error.to_string().contains(TEST_KEY), "{error}");
        assert!(!error.to_string().contains("SERVERKEY"), "{error}");
        // The relay did present its key: the refusal is about the key, not a missing header.
        let hs = h.fake.recorder().wait_handshakes(1, T).await.expect("dial");
        assert_eq!(
            hs[0].header("authorization"),
            Some(format!("Bearer {TEST_KEY}").as_str())
        );
        h.stop().await;
    }
}

/// Upstream 429 gives `upstream_rate_limited` and close 1013.
#[actix_web::test]
async fn upstream_429_is_rate_limited() {
    let h = rejecting(429).await;
    refused_for_status(&h, 429, "upstream_rate_limited", 1013).await;
    h.stop().await;
}

/// Any other upstream status (500) gives `upstream_rejected` and close 1011, naming the status.
#[actix_web::test]
async fn upstream_500_is_rejected() {
    let h = rejecting(500).await;
    refused_for_status(&h, 500, "upstream_rejected", 1011).await;
    h.stop().await;
}

/// Over MAX_CONNECTIONS the registry refuses before any dial (`capacity_exceeded`, 1013).
#[actix_web::test]
async fn capacity_refusal_happens_before_any_dial() {
    let h = start(Script::echo(), &[("MAX_CONNECTIONS", "1")]).await;
    let _first = connect(&h, "/realtime").await;
    let mut second = open(&h.base).await;
    let error = expect_failure(&mut second, "capacity_exceeded", 1013).await;
    assert_message_contains(&error, "1");
    assert_eq!(
        h.fake.recorder().handshakes().len(),
        1,
        "the refused session must not dial the upstream"
    );
    h.stop().await;
}

/// A session that ends gives its slot back: after the only session closes, a new one is admitted.
#[actix_web::test]
async fn closed_session_releases_its_slot() {
    let h = refuse_one_then_close_the_first().await;

    // The slot is released by an async message: try again until a session is admitted.
    let base = h.base.as_str();
    poll("a session admitted after the only one closed")
        .until(|| async move {
            let mut ws = open(base).await;
            let first = next_json(&mut ws).await;
            match first["type"].as_str() {
                Some("session.created") => Ok(()),
                _ => {
                    assert_eq!(first["error"]["code"], "capacity_exceeded", "{first}");
                    Err(first.to_string())
                }
            }
        })
        .await;
    h.stop().await;
}

/// With HEARTBEAT_INTERVAL=200 ms the relay pings its clients.
#[actix_web::test]
async fn clients_receive_heartbeat_pings() {
    let h = start(Script::echo(), &[("HEARTBEAT_INTERVAL", "200")]).await;
    let mut ws = connect(&h, "/realtime").await;
    let mut pings = 0;
    while pings < 2 {
        match raw_next(&mut ws).await {
            Raw::Ping => pings += 1,
            Raw::Other(frame) => panic!("unexpected frame {frame:?}"),
            Raw::Ended => panic!("the session ended while waiting for pings"),
        }
    }
    h.stop().await;
}

/// A client that never answers pings is closed (`heartbeat_timeout`, 1001) and its upstream with it.
#[actix_web::test]
async fn client_missing_heartbeats_is_closed_with_its_upstream() {
    let h = start(Script::echo(), &[("HEARTBEAT_INTERVAL", "200")]).await;
    let mut ws = connect(&h, "/realtime").await;
    let mut pings = 0;
    let mut error = None;
    let close = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match raw_next(&mut ws).await {
                Raw::Ping => pings += 1,
                Raw::Other(Frame::Text(b)) => {
                    let v: serde_json::Value = serde_json::from_slice(&b).expect("JSON");
                    assert_eq!(v["type"], "error", "{v}");
                    error = Some(v);
                }
                Raw::Other(Frame::Close(reason)) => return Some(reason),
                Raw::Other(frame) => panic!("unexpected frame {frame:?}"),
                Raw::Ended => return None,
            }
        }
    })
    .await
    .expect("a client that ignores pings was not closed within 25 heartbeat periods");
    assert!(pings >= 2, "closed after only {pings} pings");
    let close = close
        .expect("a close frame, not a bare drop")
        .expect("close code");
    assert_eq!(u16::from(close.code), 1001, "{close:?}");
    let error = error.expect("an error event before the close");
    assert_eq!(error["error"]["code"], "heartbeat_timeout", "{error}");

    let closes = h
        .fake
        .recorder()
        .wait_closes(1, T)
        .await
        .expect("upstream closed");
    assert!(
        !closes[0].abrupt,
        "the upstream got no close frame: {:?}",
        closes[0]
    );
    assert_eq!(closes[0].reason, "heartbeat_timeout", "{:?}", closes[0]);
    h.stop().await;
}

/// A client that answers pings survives many heartbeat periods.
#[actix_web::test]
async fn client_answering_pings_survives() {
    let h = start(Script::echo(), &[("HEARTBEAT_INTERVAL", "200")]).await;
    let mut ws = connect(&h, "/realtime").await;
    // Deliberately stay quiet for 6 heartbeat periods (1.2 s), answering every ping.
    let quiet_until = tokio::time::Instant::now() + Duration::from_millis(1200);
    let mut pings = 0;
    loop {
        match tokio::time::timeout_at(quiet_until, ws.next()).await {
            Err(_) => break,
            Ok(Some(Ok(Frame::Ping(p)))) => {
                pings += 1;
                timed("a pong", ws.send(Message::Pong(p)))
                    .await
                    .expect("pong sent");
            }
            Ok(Some(Ok(Frame::Pong(_)))) => {}
            Ok(other) => panic!("the session ended while answering pings: {other:?}"),
        }
    }
    assert!(pings >= 4, "only {pings} pings in 6 heartbeat periods");
    send_text(&mut ws, r#"{"type":"ping.check","event_id":"alive"}"#).await;
    let echo = next_json(&mut ws).await;
    assert_eq!(echo["event_id"], "alive");
    assert_eq!(h.fake.recorder().closes().len(), 0);
    h.stop().await;
}

/// No data for INACTIVITY_TIMEOUT ends the session (`session_idle_timeout`, 1000); pongs do not count.
#[actix_web::test]
async fn idle_session_is_evicted_even_while_answering_pings() {
    let h = start(
        Script::echo(),
        &[("INACTIVITY_TIMEOUT", "300"), ("HEARTBEAT_INTERVAL", "100")],
    )
    .await;
    let mut ws = connect(&h, "/realtime").await;
    let mut pongs = 0;
    let mut error = None;
    let close = loop {
        let frame = tokio::time::timeout(T, ws.next())
            .await
            .expect("an idle session was not evicted")
            .expect("stream ended without a close frame")
            .expect("frame decodes");
        match frame {
            Frame::Ping(p) => {
                timed("a pong", ws.send(Message::Pong(p)))
                    .await
                    .expect("pong sent");
                pongs += 1;
            }
            Frame::Text(b) => {
                error = Some(serde_json::from_slice::<serde_json::Value>(&b).expect("JSON"))
            }
            Frame::Close(reason) => break reason,
            other => panic!("unexpected frame {other:?}"),
        }
    };
    assert!(
        pongs >= 2,
        "only {pongs} pongs sent: the test proves nothing about pongs"
    );
    let error = error.expect("an error event before the close");
    assert_eq!(error["error"]["type"], "relay_error", "{error}");
    assert_eq!(error["error"]["code"], "session_idle_timeout", "{error}");
    assert_eq!(u16::from(close.expect("close code").code), 1000);
    h.fake
        .recorder()
        .wait_closes(1, T)
        .await
        .expect("upstream closed");
    h.stop().await;
}

/// A session that sends data every 100 ms is not evicted by a 300 ms idle timeout.
#[actix_web::test]
async fn active_session_is_not_evicted() {
    let h = start(
        Script::echo(),
        &[("INACTIVITY_TIMEOUT", "300"), ("HEARTBEAT_INTERVAL", "100")],
    )
    .await;
    let mut ws = connect(&h, "/realtime").await;
    // Paced sends over ~1 s (more than three idle timeouts); each echo is read back.
    let mut every = tokio::time::interval(Duration::from_millis(100));
    for i in 0..11 {
        every.tick().await;
        send_text(
            &mut ws,
            &format!(r#"{{"type":"keepalive","event_id":"k{i}"}}"#),
        )
        .await;
        let echo = next_json(&mut ws).await;
        assert_eq!(echo["event_id"], format!("k{i}"), "{echo}");
    }
    assert_eq!(
        h.fake.recorder().closes().len(),
        0,
        "the upstream was closed"
    );
    h.stop().await;
}

/// /stats counts capacity refusals, upstream connect failures and closes by reason.
#[actix_web::test]
async fn stats_count_failures() {
    let h = refuse_one_then_close_the_first().await;

    let mut script = Script::echo();
    script.reject_status = Some(500);
    h.fake.set_script(script);
    let base = h.base.as_str();
    poll("the slot released, for a session the upstream rejects")
        .until(|| async move {
            let mut ws = open(base).await;
            let (error, _) = expect_close(&mut ws).await;
            let error = error.expect("an error event");
            match error["error"]["code"].as_str() {
                Some("upstream_rejected") => Ok(()),
                _ => {
                    assert_eq!(error["error"]["code"], "capacity_exceeded", "{error}");
                    Err(error.to_string())
                }
            }
        })
        .await;

    // The failed session's release is async too.
    let s = stats::wait_until(&h.http(), "upstream_rejected closed", |s| {
        s["closed_by_reason"]["upstream_rejected"].as_u64() == Some(1)
    })
    .await;
    assert!(
        s["rejected_by_reason"]["capacity_exceeded"].as_u64() >= Some(1),
        "{s}"
    );
    assert!(s["rejected_sessions"].as_u64() >= Some(1), "{s}");
    assert!(s["upstream_connect_failures"].as_u64() >= Some(1), "{s}");
    assert_eq!(s["closed_by_reason"]["client_closed"], 1, "{s}");
    assert_eq!(s["closed_by_reason"]["upstream_rejected"], 1, "{s}");
    assert_eq!(s["active_sessions"], 0, "{s}");
    h.stop().await;
}
