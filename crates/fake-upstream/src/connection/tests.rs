//! A connection's behaviour over a real WebSocket: echo, how client and fake closes are
//! recorded, the scripted faults (close, drop, stop reading), and message sizes.

use super::*;
use crate::test_client::{connect, next_frame, next_json, send, T};
use crate::{FakeUpstream, Frame, Script};
use awc::ws::{self, CloseCode, CloseReason};
use futures_util::SinkExt;

/// Echo mode returns each text and binary frame byte for byte, and records both in order.
#[actix_web::test]
async fn echo_returns_frames_unchanged() {
    let fake = FakeUpstream::start(Script::echo()).await.unwrap();
    let (_, mut framed) = connect(&fake.url()).await;
    assert_eq!(next_json(&mut framed).await["type"], "session.created");

    let text = r#"{"type":"input_audio_buffer.append","event_id":"evt_42","audio":"AAAA"}"#;
    send(&mut framed, ws::Message::Text(text.into())).await;
    match next_frame(&mut framed).await {
        Some(Ok(ws::Frame::Text(got))) => assert_eq!(&got[..], text.as_bytes()),
        other => panic!("expected the text back, got {other:?}"),
    }
    let bin = Bytes::from_static(&[0, 159, 146, 150, 255]);
    send(&mut framed, ws::Message::Binary(bin.clone())).await;
    match next_frame(&mut framed).await {
        Some(Ok(ws::Frame::Binary(got))) => assert_eq!(got, bin),
        other => panic!("expected the binary back, got {other:?}"),
    }

    let got = fake.recorder().wait_messages(2, T).await.unwrap();
    assert_eq!(got[0].connection, 1);
    assert_eq!(got[0].frame, Frame::Text(text.to_owned()));
    assert_eq!(got[1].frame, Frame::Binary(bin.to_vec()));
    fake.stop().await;
}

/// A client's Close frame is recorded with its code and reason, and answered with the same code.
#[actix_web::test]
async fn client_close_is_recorded_and_echoed() {
    let fake = FakeUpstream::start(Script::silent()).await.unwrap();
    let (_, mut framed) = connect(&fake.url()).await;
    assert_eq!(next_json(&mut framed).await["type"], "session.created");
    assert_eq!(fake.recorder().open_connections(), 1);
    let reason = CloseReason {
        code: CloseCode::Away,
        description: Some("bye".into()),
    };
    send(&mut framed, ws::Message::Close(Some(reason))).await;
    match next_frame(&mut framed).await {
        Some(Ok(ws::Frame::Close(Some(r)))) => assert_eq!(r.code, CloseCode::Away),
        other => panic!("expected a close echo, got {other:?}"),
    }
    let closes = fake.recorder().wait_closes(1, T).await.unwrap();
    assert_eq!(closes[0].code, Some(1001));
    assert_eq!(closes[0].reason, "bye");
    assert!(!closes[0].abrupt);
    assert_eq!(fake.recorder().open_connections(), 0);
    fake.stop().await;
}

/// A client that goes away without a Close frame is recorded as abrupt.
#[actix_web::test]
async fn vanished_client_is_abrupt() {
    let fake = FakeUpstream::start(Script::silent()).await.unwrap();
    let (_, mut framed) = connect(&fake.url()).await;
    assert_eq!(next_json(&mut framed).await["type"], "session.created");
    drop(framed);
    let closes = fake.recorder().wait_closes(1, T).await.unwrap();
    assert!(closes[0].abrupt);
    assert_eq!(closes[0].code, None);
    fake.stop().await;
}

/// close_after_open sends session.created, then a Close with the scripted code and reason.
#[actix_web::test]
async fn close_after_open_sends_the_scripted_close() {
    let fake = FakeUpstream::start(Script {
        close_after_open: Some((4000, "invalid_request_error.beta_api_shape_disabled".into())),
        ..Script::demo()
    })
    .await
    .unwrap();
    let (_, mut framed) = connect(&fake.url()).await;
    assert_eq!(next_json(&mut framed).await["type"], "session.created");
    match next_frame(&mut framed).await {
        Some(Ok(ws::Frame::Close(Some(r)))) => {
            assert_eq!(u16::from(r.code), 4000);
            assert_eq!(
                r.description.as_deref(),
                Some("invalid_request_error.beta_api_shape_disabled")
            );
        }
        other => panic!("expected a close, got {other:?}"),
    }
    let _ = framed
        .send(ws::Message::Close(Some(CloseCode::from(4000).into())))
        .await;
    let closes = fake.recorder().wait_closes(1, T).await.unwrap();
    assert!(!closes[0].abrupt);
    if closes[0].code.is_none() {
        assert!(closes[0].reason.contains("4000"), "{:?}", closes[0]);
    }
    fake.stop().await;
}

/// drop_after_open ends the connection after session.created with no Close frame.
#[actix_web::test]
async fn drop_after_open_sends_no_close() {
    let fake = FakeUpstream::start(Script {
        drop_after_open: true,
        ..Script::echo()
    })
    .await
    .unwrap();
    let (_, mut framed) = connect(&fake.url()).await;
    assert_eq!(next_json(&mut framed).await["type"], "session.created");
    match next_frame(&mut framed).await {
        None | Some(Err(_)) => {}
        Some(Ok(frame)) => panic!("expected the connection to end, got {frame:?}"),
    }
    let closes = fake.recorder().wait_closes(1, T).await.unwrap();
    assert!(closes[0].abrupt);
    fake.stop().await;
}

/// With record_messages off, messages are still echoed and counted but not kept.
#[actix_web::test]
async fn unrecorded_messages_are_counted_only() {
    let fake = FakeUpstream::start(Script {
        record_messages: false,
        ..Script::echo()
    })
    .await
    .unwrap();
    let (_, mut framed) = connect(&fake.url()).await;
    assert_eq!(next_json(&mut framed).await["type"], "session.created");
    for text in ["one", "two"] {
        send(&mut framed, ws::Message::Text(text.into())).await;
        match next_frame(&mut framed).await {
            Some(Ok(ws::Frame::Text(got))) => assert_eq!(&got[..], text.as_bytes()),
            other => panic!("expected the echo, got {other:?}"),
        }
    }
    assert_eq!(fake.recorder().message_count(), 2);
    assert!(fake.recorder().messages().is_empty());
    fake.stop().await;
}

/// Messages far above the 64 KiB actix default are accepted, recorded and echoed whole.
#[actix_web::test]
async fn large_messages_are_accepted() {
    let fake = FakeUpstream::start(Script::echo()).await.unwrap();
    let connecting = awc::Client::new()
        .ws(fake.url())
        .max_frame_size(4 * 1024 * 1024)
        .connect();
    let (_, mut framed) = tokio::time::timeout(T, connecting).await.unwrap().unwrap();
    assert_eq!(next_json(&mut framed).await["type"], "session.created");
    let big = format!(
        r#"{{"type":"x","audio":"{}"}}"#,
        "A".repeat(3 * 1024 * 1024)
    );
    send(&mut framed, ws::Message::Text(big.clone().into())).await;
    match next_frame(&mut framed).await {
        Some(Ok(ws::Frame::Text(got))) => assert_eq!(got.len(), big.len()),
        other => panic!(
            "expected the big message back, got {:?}",
            other.map(|r| r.is_ok())
        ),
    }
    let got = fake.recorder().wait_messages(1, T).await.unwrap();
    assert_eq!(got[0].frame, Frame::Text(big));
    fake.stop().await;
}

/// frames_after_open follow session.created byte for byte and in order, JSON or not.
#[actix_web::test]
async fn frames_after_open_are_sent_unchanged() {
    let frames = vec![
        "hello".to_owned(),
        String::new(),
        r#"{"type":5}"#.to_owned(),
    ];
    let fake = FakeUpstream::start(Script {
        frames_after_open: frames.clone(),
        ..Script::echo()
    })
    .await
    .unwrap();
    let (_, mut framed) = connect(&fake.url()).await;
    assert_eq!(next_json(&mut framed).await["type"], "session.created");
    for want in &frames {
        match next_frame(&mut framed).await {
            Some(Ok(ws::Frame::Text(got))) => assert_eq!(&got[..], want.as_bytes()),
            other => panic!("expected {want:?}, got {other:?}"),
        }
    }
    // Then the script's mode goes on as usual.
    send(&mut framed, ws::Message::Text("after".into())).await;
    match next_frame(&mut framed).await {
        Some(Ok(ws::Frame::Text(got))) => assert_eq!(&got[..], b"after"),
        other => panic!("expected the echo, got {other:?}"),
    }
    fake.stop().await;
}

/// With stop_reading nothing the client sends is read, and a client that goes away is
/// still noticed (recorded as abrupt).
#[actix_web::test]
async fn stop_reading_reads_nothing_and_notices_the_end() {
    let fake = FakeUpstream::start(Script {
        stop_reading: true,
        ..Script::echo()
    })
    .await
    .unwrap();
    let (_, mut framed) = connect(&fake.url()).await;
    assert_eq!(next_json(&mut framed).await["type"], "session.created");
    send(&mut framed, ws::Message::Text("unread".into())).await;
    drop(framed);
    let closes = fake.recorder().wait_closes(1, T).await.unwrap();
    assert!(closes[0].abrupt, "{:?}", closes[0]);
    assert_eq!(fake.recorder().message_count(), 0);
    fake.stop().await;
}
