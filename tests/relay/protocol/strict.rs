//! A client that breaks the WebSocket protocol gets the connection failed (RFC 6455 §7.1.7): a
//! close frame alone, 1002 for a protocol error and 1007 for text that is not UTF-8, never an
//! `error` event first, and the session is counted as `client_protocol_error` or
//! `client_invalid_utf8`. Each test sends one shape of the Autobahn testsuite's case groups by
//! hand on a raw socket: 2.5 (a ping over 125 bytes), 3.* (reserved bits), 4.* (reserved opcodes),
//! 5.* (fragmentation), 6.* (UTF-8), 7.3.* (close payloads), 7.5.1 (a close reason that is not
//! UTF-8) and 7.9.* (close codes that must not be sent).

use fake_upstream::Script;

use super::raw::*;
use crate::common::{stats::wait_until, *};

/// Opens a session through the relay in front of an echo upstream, sends `bytes`, and asserts
/// the relay answers with the close frame alone, `code`, and counts the session under `label`.
async fn fails_with(bytes: &[u8], code: u16, label: &str) {
    let h = start(Script::echo(), &[]).await;
    let addr = h.relay.local_addr().to_string();
    let mut client = RawClient::connect(&addr).await;
    client.send(bytes).await;
    let (got, reason) = client.close_alone().await;
    assert_eq!(got, code, "close reason {reason:?}");
    wait_until(&h.http(), label, |s| s["closed_by_reason"][label] == 1).await;
    h.stop().await;
}

/// Reserved bits (3.*): close 1002 alone, not a dropped connection counted as `client_gone`.
#[actix_web::test]
async fn reserved_bits_fail_the_connection() {
    fails_with(
        &frame(FIN | 0x40 | TEXT, b"{}"),
        1002,
        "client_protocol_error",
    )
    .await;
}

/// An unmasked client frame: close 1002 alone.
#[actix_web::test]
async fn unmasked_frames_fail_the_connection() {
    fails_with(&[FIN | TEXT, 2, b'{', b'}'], 1002, "client_protocol_error").await;
}

/// Reserved opcodes, data (3) and control (11) (4.1.*, 4.2.*): close 1002 alone.
#[actix_web::test]
async fn reserved_opcodes_fail_the_connection() {
    fails_with(&frame(FIN | 0x3, b""), 1002, "client_protocol_error").await;
    fails_with(&frame(FIN | 0xB, b"x"), 1002, "client_protocol_error").await;
}

/// A ping of 126 bytes (2.5) and a fragmented ping (5.1): close 1002 alone.
#[actix_web::test]
async fn bad_control_frames_fail_the_connection() {
    fails_with(
        &frame(FIN | PING, &[b'p'; 126]),
        1002,
        "client_protocol_error",
    )
    .await;
    fails_with(&frame(PING, b"p"), 1002, "client_protocol_error").await;
}

/// A continuation with no message started (5.9), and a new message inside a fragmented one
/// (5.18): close 1002 alone.
#[actix_web::test]
async fn fragments_out_of_order_fail_the_connection() {
    fails_with(&frame(FIN, b"orphan"), 1002, "client_protocol_error").await;
    let nested = [frame(TEXT, b"one"), frame(FIN | TEXT, b"two")].concat();
    fails_with(&nested, 1002, "client_protocol_error").await;
}

/// Text that is not UTF-8, in one frame and in fragments (6.*): close 1007 alone, not a dropped
/// connection counted as `client_gone`.
#[actix_web::test]
async fn invalid_utf8_text_fails_the_connection_with_1007() {
    let bad = [0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xED, 0xA0, 0x80];
    fails_with(&frame(FIN | TEXT, &bad), 1007, "client_invalid_utf8").await;
    let fragmented = [frame(TEXT, &bad[..4]), frame(FIN, &bad[4..])].concat();
    fails_with(&fragmented, 1007, "client_invalid_utf8").await;
}

/// Bad close payloads: one byte (7.3.2), a reason of 124 bytes (7.3.6), a reason that is not
/// UTF-8 (7.5.1): close 1002 alone.
#[actix_web::test]
async fn bad_close_payloads_fail_the_connection() {
    fails_with(&frame(FIN | CLOSE, &[0x03]), 1002, "client_protocol_error").await;
    let long = close_payload(1000, &[b'r'; 124]);
    fails_with(&frame(FIN | CLOSE, &long), 1002, "client_protocol_error").await;
    let not_utf8 = close_payload(1000, &[0xCE, 0xBA, 0xED, 0xA0, 0x80]);
    fails_with(
        &frame(FIN | CLOSE, &not_utf8),
        1002,
        "client_protocol_error",
    )
    .await;
}

/// Close codes a peer must not send (7.9.*): close 1002 alone.
#[actix_web::test]
async fn invalid_close_codes_fail_the_connection() {
    for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        fails_with(
            &frame(FIN | CLOSE, &close_payload(code, b"")),
            1002,
            "client_protocol_error",
        )
        .await;
    }
}

/// What the client sent before the violation, in the same write, still reaches the upstream.
#[actix_web::test]
async fn messages_before_the_violation_are_forwarded() {
    let h = start(Script::echo(), &[]).await;
    let mut client = RawClient::connect(&h.relay.local_addr().to_string()).await;
    let hello = br#"{"type":"input_audio_buffer.clear"}"#;
    let bytes = [frame(FIN | TEXT, hello), frame(FIN | 0x40 | TEXT, b"{}")].concat();
    client.send(&bytes).await;
    let received = h
        .fake
        .recorder()
        .wait_messages(1, T)
        .await
        .expect("the message before the bad frame is forwarded");
    assert_eq!(
        received[0].frame,
        fake_upstream::Frame::Text(String::from_utf8_lossy(hello).into_owned())
    );
    // The echo of it may come before the close; the close is 1002 all the same.
    let code = loop {
        let frame = client.next().await.expect("a close frame");
        if frame.opcode() == CLOSE {
            break u16::from_be_bytes([frame.payload[0], frame.payload[1]]);
        }
        assert_eq!(frame.payload, hello, "only the echo comes before the close");
    };
    assert_eq!(code, 1002);
    h.stop().await;
}
