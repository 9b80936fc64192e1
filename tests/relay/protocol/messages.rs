//! Messages both ways: order, type and bytes kept, 5 MiB messages, fragments reassembled, and
//! what a client sends before the upstream is open.

use std::time::Duration;

use actix_web::web::Bytes;
use awc::ws::{Frame, Message};
use fake_upstream::{Frame as Got, Script};

use super::send;
use crate::common::*;

/// Text of `len` bytes that is not one repeated character, so a shifted or dropped chunk shows.
fn varied_text(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/";
    (0..len)
        .map(|i| ALPHABET[(i * 7 + i / 61) % ALPHABET.len()] as char)
        .collect()
}

fn varied_bytes(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
        .collect()
}

/// 100 numbered messages, alternating text and binary, reach the upstream and come back in
/// order, each unchanged and of its own type.
#[actix_web::test]
async fn text_and_binary_flow_both_ways_in_order() {
    let h = start(Script::echo(), &[]).await;
    let mut ws = connect(&h, "/v1/realtime").await;
    let expected: Vec<Got> = (0..100)
        .map(|i| {
            if i % 2 == 0 {
                Got::Text(format!(r#"{{"type":"t","n":{i},"s":"héllo €{i}"}}"#))
            } else {
                let mut b = format!("bin-{i}-").into_bytes();
                b.extend([0u8, 0xff, 0x80, i as u8]);
                Got::Binary(b)
            }
        })
        .collect();
    for msg in &expected {
        let out = match msg {
            Got::Text(t) => Message::Text(t.clone().into()),
            Got::Binary(b) => Message::Binary(Bytes::from(b.clone())),
        };
        send(&mut ws, out).await;
    }
    for (i, want) in expected.iter().enumerate() {
        let got = match next_frame(&mut ws).await {
            Frame::Text(b) => Got::Text(String::from_utf8(b.to_vec()).expect("UTF-8")),
            Frame::Binary(b) => Got::Binary(b.to_vec()),
            other => panic!("message {i}: expected data, got {other:?}"),
        };
        assert_eq!(&got, want, "message {i} came back changed or out of order");
    }
    let received = h
        .fake
        .recorder()
        .wait_messages(100, T)
        .await
        .expect("upstream got all");
    let frames: Vec<Got> = received.into_iter().map(|r| r.frame).collect();
    assert_eq!(
        frames, expected,
        "upstream saw them changed or out of order"
    );
    h.stop().await;
}

/// A 5 MiB text message and a 5 MiB binary message round trip byte-identical.
#[actix_web::test]
async fn five_mib_messages_both_ways() {
    const SIZE: usize = 5 * 1024 * 1024;
    let h = start(Script::echo(), &[]).await;
    let mut ws = connect(&h, "/v1/realtime").await;

    let text = varied_text(SIZE);
    send(&mut ws, Message::Text(text.clone().into())).await;
    match next_frame(&mut ws).await {
        Frame::Text(b) => {
            assert_eq!(b.len(), SIZE);
            assert!(b == text.as_bytes(), "5 MiB text came back changed");
        }
        other => panic!("expected the text back, got {:?}", frame_kind(&other)),
    }

    let binary = varied_bytes(SIZE);
    send(&mut ws, Message::Binary(Bytes::from(binary.clone()))).await;
    match next_frame(&mut ws).await {
        Frame::Binary(b) => {
            assert_eq!(b.len(), SIZE);
            assert!(b == binary, "5 MiB binary came back changed");
        }
        other => panic!("expected the binary back, got {:?}", frame_kind(&other)),
    }

    let received = h.fake.recorder().wait_messages(2, T).await.expect("both");
    assert!(
        received[0].frame == Got::Text(text),
        "upstream got other text"
    );
    assert!(
        received[1].frame == Got::Binary(binary),
        "upstream got other bytes"
    );
    h.stop().await;
}

/// Debug output for a frame without dumping megabytes.
fn frame_kind(frame: &Frame) -> String {
    match frame {
        Frame::Text(b) => format!("Text({} bytes)", b.len()),
        Frame::Binary(b) => format!("Binary({} bytes)", b.len()),
        other => format!("{other:?}"),
    }
}

/// Sends `items` as continuation frames, one after another.
async fn send_fragments(ws: &mut Ws, items: [actix_ws::Item; 3]) {
    for item in items {
        send(ws, Message::Continuation(item)).await;
    }
}

/// A text message sent as FirstText/Continue/Last fragments reaches the upstream as one message.
#[actix_web::test]
async fn fragmented_text_is_reassembled() {
    use actix_ws::Item;
    let h = start(Script::echo(), &[]).await;
    let mut ws = connect(&h, "/v1/realtime").await;
    let parts = [
        r#"{"type":"conversation.item.create","#,
        r#""note":"é€"#,
        r#"","n":7}"#,
    ];
    send_fragments(
        &mut ws,
        [
            Item::FirstText(Bytes::from_static(parts[0].as_bytes())),
            Item::Continue(Bytes::from_static(parts[1].as_bytes())),
            Item::Last(Bytes::from_static(parts[2].as_bytes())),
        ],
    )
    .await;
    let whole = parts.concat();
    let received = h.fake.recorder().wait_messages(1, T).await.expect("one");
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].frame, Got::Text(whole.clone()));
    let echoed = next_json(&mut ws).await;
    assert_eq!(
        echoed,
        serde_json::from_str::<serde_json::Value>(&whole).unwrap()
    );
    h.stop().await;
}

/// A binary message sent as FirstBinary/Continue/Last fragments reaches the upstream as one.
#[actix_web::test]
async fn fragmented_binary_is_reassembled() {
    use actix_ws::Item;
    let h = start(Script::echo(), &[]).await;
    let mut ws = connect(&h, "/v1/realtime").await;
    let chunks: [&'static [u8]; 3] = [&[0, 1, 2, 0xff], &[3, 4], &[0x80, 5]];
    send_fragments(
        &mut ws,
        [
            Item::FirstBinary(Bytes::from_static(chunks[0])),
            Item::Continue(Bytes::from_static(chunks[1])),
            Item::Last(Bytes::from_static(chunks[2])),
        ],
    )
    .await;
    let whole = chunks.concat();
    let received = h.fake.recorder().wait_messages(1, T).await.expect("one");
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].frame, Got::Binary(whole.clone()));
    match next_frame(&mut ws).await {
        Frame::Binary(b) => assert_eq!(&b[..], &whole[..]),
        other => panic!("expected the binary echo, got {other:?}"),
    }
    h.stop().await;
}

/// Messages sent right after the 101, while the upstream handshake is still pending, are
/// delivered to the upstream in order once it opens, after `session.created` reaches the client.
#[actix_web::test]
async fn early_messages_are_queued_and_delivered_in_order() {
    let h = start(
        Script {
            handshake_delay: Duration::from_millis(800),
            ..Script::echo()
        },
        &[],
    )
    .await;
    let (_, mut ws) = connect_with(&format!("{}/v1/realtime", h.base), &["realtime"], &[])
        .await
        .expect("upgrade succeeds");
    let early = ["early-1", "early-2", "early-3"]
        .map(|id| format!(r#"{{"type":"session.update","event_id":"{id}"}}"#));
    for text in &early {
        send_text(&mut ws, text).await;
    }
    // The dial has reached the fake, which holds it for 800 ms: the three messages above were
    // all sent before the upstream was open.
    h.fake
        .recorder()
        .wait_handshakes(1, T)
        .await
        .expect("dial started");
    assert_eq!(
        h.fake.recorder().open_connections(),
        0,
        "upstream already open"
    );

    assert_eq!(next_json(&mut ws).await["type"], "session.created");
    for id in ["early-1", "early-2", "early-3"] {
        assert_eq!(next_json(&mut ws).await["event_id"], id);
    }
    let received = h.fake.recorder().wait_messages(3, T).await.expect("three");
    let frames: Vec<Got> = received.into_iter().map(|r| r.frame).collect();
    assert_eq!(frames, early.map(Got::Text).to_vec());
    h.stop().await;
}

/// More than MAX_MESSAGE_SIZE bytes sent before the upstream opens ends the session with
/// `client_queue_overflow` and close 1008, not a silent drop.
#[actix_web::test]
async fn pre_open_queue_overflow_is_reported() {
    let h = start(
        Script {
            handshake_delay: Duration::from_secs(2),
            ..Script::echo()
        },
        &[("MAX_MESSAGE_SIZE", "65536")],
    )
    .await;
    let (_, mut ws) = connect_with(&format!("{}/v1/realtime", h.base), &["realtime"], &[])
        .await
        .expect("upgrade succeeds");
    let chunk = format!(
        r#"{{"type":"input_audio_buffer.append","audio":"{}"}}"#,
        "A".repeat(30_000)
    );
    for _ in 0..3 {
        send_text(&mut ws, &chunk).await;
    }
    let event = expect_failure(&mut ws, "client_queue_overflow", 1008).await;
    assert_message_contains(&event, "65536");
    assert!(h.fake.recorder().messages().is_empty());
    h.stop().await;
}
