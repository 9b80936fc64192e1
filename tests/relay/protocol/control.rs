//! Control frames: closes both ways with their codes and reasons, a client that vanishes, an
//! upstream that drops, and pings answered by the relay.

use std::time::Duration;

use actix_web::web::Bytes;
use awc::ws::{CloseCode, CloseReason, Frame, Message};
use fake_upstream::{Frame as Got, Script};
use futures_util::StreamExt;

use super::send;
use crate::common::{poll::poll, *};

/// How long the relay gets to react to a client leaving, for checks that must be prompt.
const PROMPT: Duration = Duration::from_secs(3);

/// A client close (4001, "bye") reaches the upstream with its code and reason, and the client
/// gets its close answered.
#[actix_web::test]
async fn client_close_code_reaches_upstream() {
    let h = start(Script::echo(), &[]).await;
    let mut ws = connect(&h, "/v1/realtime").await;
    send(
        &mut ws,
        Message::Close(Some(CloseReason {
            code: CloseCode::from(4001),
            description: Some("bye".into()),
        })),
    )
    .await;
    let closes = h
        .fake
        .recorder()
        .wait_closes(1, T)
        .await
        .expect("upstream closed");
    assert_eq!(closes[0].code, Some(4001), "{:?}", closes[0]);
    assert_eq!(closes[0].reason, "bye");
    assert!(!closes[0].abrupt);
    let (error, close) = expect_close(&mut ws).await;
    assert_eq!(error, None, "a client close is not a failure");
    assert_eq!(close.map(|c| u16::from(c.code)), Some(4001));
    h.stop().await;
}

/// Starts an upstream that closes with 4000 and `reason` right after opening, and returns the
/// reason the client's close carried, after asserting it came with code 4000 and no `error`.
async fn upstream_close_reason(reason: &str) -> Option<String> {
    let h = start(
        Script {
            close_after_open: Some((4000, reason.into())),
            ..Script::echo()
        },
        &[],
    )
    .await;
    let mut ws = connect(&h, "/v1/realtime").await;
    let (error, close) = expect_close(&mut ws).await;
    assert_eq!(
        error, None,
        "a clean upstream close is passed on, not an error"
    );
    let close = close.expect("close carries a code");
    assert_eq!(u16::from(close.code), 4000);
    h.stop().await;
    close.description
}

/// An upstream close (4000, beta_api_shape_disabled) reaches the client with the same code and
/// reason and no `error` event.
#[actix_web::test]
async fn upstream_close_code_and_reason_reach_client() {
    let reason = "invalid_request_error.beta_api_shape_disabled";
    assert_eq!(upstream_close_reason(reason).await.as_deref(), Some(reason));
}

/// An upstream that drops without a close frame gives the client an `upstream_gone` event and
/// close 1011 (a lost connection is 1006, which must not go on the wire).
#[actix_web::test]
async fn upstream_drop_is_reported_as_1011() {
    let h = start(
        Script {
            drop_after_open: true,
            ..Script::echo()
        },
        &[],
    )
    .await;
    let mut ws = connect(&h, "/v1/realtime").await;
    expect_failure(&mut ws, "upstream_gone", 1011).await;
    h.stop().await;
}

/// A 123-byte multibyte upstream close reason (the RFC maximum) reaches the client intact.
#[actix_web::test]
async fn maximal_multibyte_close_reason_passes_intact() {
    let reason = "€".repeat(41); // 123 bytes
    assert_eq!(reason.len(), 123);
    assert_eq!(
        upstream_close_reason(&reason).await.as_deref(),
        Some(reason.as_str())
    );
}

/// An upstream close reason over 123 bytes reaches the client cut to at most 123 bytes on a
/// UTF-8 boundary, with the upstream's code and no `error` event.
///
/// End to end only: the fake's actix-ws already cuts reasons it sends (actix-ws 0.4), so the
/// relay's own cut (`close::truncate_utf8`) is pinned by the unit tests in `close/frame.rs`; this
/// pins what the client finally sees.
#[actix_web::test]
async fn overlong_upstream_close_reason_is_cut() {
    // 4-byte characters: 123 bytes would split the 31st, so the cut must back off to 120.
    let reason = "🎧".repeat(40);
    let text = upstream_close_reason(&reason).await.unwrap_or_default();
    assert!(text.len() <= 123, "reason of {} bytes", text.len());
    assert!(
        reason.starts_with(&text),
        "not a prefix on a char boundary: {text:?}"
    );
    assert_eq!(text, "🎧".repeat(30), "cut shorter than needed");
}

/// A client that vanishes without a close frame gets its upstream closed promptly and its slot
/// freed in /stats.
#[actix_web::test]
async fn abrupt_client_drop_closes_upstream_and_frees_slot() {
    let h = start(Script::echo(), &[]).await;
    let ws = connect(&h, "/v1/realtime").await;
    let stats = stats::get(&h.http()).await;
    assert_eq!(stats["active_sessions"], 1, "{stats}");
    drop(ws);
    let closes = h
        .fake
        .recorder()
        .wait_closes(1, PROMPT)
        .await
        .expect("upstream closed within 3 s of the client vanishing");
    assert_eq!(closes.len(), 1);
    assert!(
        !closes[0].abrupt,
        "the relay sent no close frame upstream: {:?}",
        closes[0]
    );
    // The registry hears of the end by message, so /stats may lag the upstream close by a
    // moment: poll briefly (bounded) rather than assume an order.
    let http = h.http();
    let http = http.as_str();
    let stats = poll("the slot freed")
        .within(PROMPT)
        .until(|| async move {
            let stats = stats::get(http).await;
            if stats["active_sessions"] == 0 {
                Ok(stats)
            } else {
                Err(stats.to_string())
            }
        })
        .await;
    assert_eq!(stats["closed_by_reason"]["client_gone"], 1, "{stats}");
    h.stop().await;
}

/// A client's ping is answered by the relay with a pong carrying the same payload.
#[actix_web::test]
async fn client_ping_gets_matching_pong() {
    let h = start(Script::echo(), &[]).await;
    let mut ws = connect(&h, "/v1/realtime").await;
    send(
        &mut ws,
        Message::Ping(Bytes::from_static(b"are-you-there-42")),
    )
    .await;
    let pong = loop {
        let frame = tokio::time::timeout(T, ws.next())
            .await
            .expect("no pong within the timeout")
            .expect("stream ended")
            .expect("frame decodes");
        match frame {
            Frame::Pong(p) => break p,
            Frame::Ping(_) => continue,
            other => panic!("expected a pong, got {other:?}"),
        }
    };
    assert_eq!(&pong[..], b"are-you-there-42");
    // The ping is the relay's to answer, not a data message for the upstream.
    send_text(&mut ws, "after-ping").await;
    let received = h.fake.recorder().wait_messages(1, T).await.expect("one");
    assert_eq!(received[0].frame, Got::Text("after-ping".into()));
    h.stop().await;
}
