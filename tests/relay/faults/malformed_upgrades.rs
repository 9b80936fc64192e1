//! Upgrade requests no WebSocket client should send, written by hand on raw TCP to the relay:
//! garbage, a missing key, the wrong version or method, no `Connection: upgrade`, a NUL or a bare
//! CR in a header, oversized headers, HTTP/1.0. Each gets a 4xx (or a closed connection), never a
//! 101, none becomes a session, and the relay keeps serving `/health` and new sessions.

use fake_upstream::Script;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::common::*;

/// How the relay answered a raw HTTP request.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// A status line with this code (the head is kept for the failure message).
    Status(u16, String),
    /// The connection closed with no answer.
    Closed,
}

/// Writes `request` on a fresh connection to `addr` and reads the answer's head.
async fn answer(addr: &str, request: &[u8]) -> Answer {
    let mut tcp = timed("the TCP connect", TcpStream::connect(addr))
        .await
        .expect("connect to the relay");
    // The relay may answer and close before taking all of a request it refuses.
    let _ = timed("the request's write", tcp.write_all(request)).await;
    let mut head = Vec::new();
    let mut chunk = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match timed("the relay's answer", tcp.read(&mut chunk)).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok());
    match status {
        Some(code) => Answer::Status(code, head),
        None if head.is_empty() => Answer::Closed,
        None => panic!("not an HTTP answer: {head:?}"),
    }
}

/// An upgrade request for `/realtime` with `method`, `version` and `lines` (header lines, each
/// ending in CRLF), valid unless those make it otherwise.
fn upgrade(method: &str, version: &str, lines: &str) -> Vec<u8> {
    format!("{method} /realtime HTTP/{version}\r\nHost: 127.0.0.1\r\n{lines}\r\n").into_bytes()
}

/// The header lines of a valid upgrade.
const VALID: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
                     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

/// Asserts `request` gets `expected` from the relay at `addr`: never a 101.
async fn assert_answer(addr: &str, what: &str, request: &[u8], expected: Option<u16>) {
    let got = answer(addr, request).await;
    match (&got, expected) {
        (Answer::Status(code, _), Some(want)) if *code == want => {}
        (Answer::Closed, None) => {}
        _ => panic!("{what}: expected {expected:?} (None: closed), got {got:?}"),
    }
}

/// After malformed requests, the relay at `h` still answers `/health` and opens a session, and
/// none of them became a session.
async fn still_serving(h: &Harness) {
    let (status, body) = get(&format!("{}/health", h.http()), &[]).await;
    assert_eq!(status, 200, "{body}");
    let stats = stats::get(&h.http()).await;
    assert_eq!(stats["total_sessions"], 0, "{stats}");
    let mut ws = connect(h, "/realtime").await;
    close(&mut ws).await;
}

/// Malformed upgrade requests on raw TCP get the HTTP layer's or the relay's 4xx, never a 101:
/// garbage (400), no `Sec-WebSocket-Key` (400), version 8 (426), `POST` (405), `Upgrade` without
/// `Connection: upgrade` (400), a NUL or a bare CR in a header (400), 200 KiB of headers (431);
/// and the relay still serves `/health` and a session.
#[actix_web::test]
async fn malformed_upgrades_are_refused_with_4xx() {
    let h = start(Script::echo(), &[]).await;
    let addr = h.relay.local_addr().to_string();
    let no_key = VALID.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
    let version_8 = VALID.replace("Version: 13", "Version: 8");
    let no_connection = VALID.replace("Connection: Upgrade\r\n", "");
    let huge = format!("{VALID}X-Padding: {}\r\n", "a".repeat(200 * 1024));
    let cases: [(&str, Vec<u8>, Option<u16>); 8] = [
        (
            "garbage",
            b"\x16\x03\x01 GARBAGE \xff\r\n\r\n".to_vec(),
            Some(400),
        ),
        ("no key", upgrade("GET", "1.1", &no_key), Some(400)),
        ("version 8", upgrade("GET", "1.1", &version_8), Some(426)),
        ("POST", upgrade("POST", "1.1", VALID), Some(405)),
        (
            "no Connection",
            upgrade("GET", "1.1", &no_connection),
            Some(400),
        ),
        (
            "NUL",
            upgrade("GET", "1.1", &format!("{VALID}X-Bad: a\0b\r\n")),
            Some(400),
        ),
        (
            "CR",
            upgrade("GET", "1.1", &format!("{VALID}X-Bad: a\rb\r\n")),
            Some(400),
        ),
        (
            "200 KiB of headers",
            upgrade("GET", "1.1", &huge),
            Some(431),
        ),
    ];
    for (what, request, expected) in &cases {
        assert_answer(&addr, what, request, *expected).await;
    }
    still_serving(&h).await;
    h.stop().await;
}

/// A 64 KiB request header is refused (431), as Node's HTTP server (16 KiB) and Nginx (8 KiB by
/// default) refuse it, rather than upgraded.
#[actix_web::test]
async fn a_64_kib_header_is_refused() {
    let h = start(Script::echo(), &[]).await;
    let addr = h.relay.local_addr().to_string();
    let big = format!("{VALID}X-Padding: {}\r\n", "a".repeat(64 * 1024));
    assert_answer(
        &addr,
        "a 64 KiB header",
        &upgrade("GET", "1.1", &big),
        Some(431),
    )
    .await;
    still_serving(&h).await;
    h.stop().await;
}

/// An HTTP/1.0 upgrade request is refused with 400: RFC 6455 §4.2.1 requires HTTP/1.1 or later.
#[actix_web::test]
async fn an_http_1_0_upgrade_is_refused() {
    let h = start(Script::echo(), &[]).await;
    let addr = h.relay.local_addr().to_string();
    assert_answer(&addr, "HTTP/1.0", &upgrade("GET", "1.0", VALID), Some(400)).await;
    still_serving(&h).await;
    h.stop().await;
}
