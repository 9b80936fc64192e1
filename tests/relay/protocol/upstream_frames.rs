//! Bad frames from the upstream, written by hand: reserved bits and opcodes end the session as
//! `upstream_protocol_error` (not `upstream_gone`), and a frame whose header announces more than
//! `MAX_MESSAGE_SIZE` is refused as soon as its header is read. The client gets the `error` event
//! and the close, as for every upstream failure.

use super::raw::{unmasked_header, RawUpstream, Script, FIN, TEXT};
use crate::common::{stats::wait_until, *};

/// Starts a relay (with `extra` settings) in front of an upstream that plays `script`, opens a
/// session, and asserts the client gets the `error` event `code` and close `close_code`, and the
/// session is counted under `label`.
async fn upstream_ends_with(script: Script, extra: &[(&str, &str)], code: &str, close_code: u16) {
    let upstream = RawUpstream::start(script).await;
    let relay = start_relay(config(&upstream.url, extra)).await;
    let url = format!("ws://{}/v1/realtime", relay.local_addr());
    let (_, mut ws) = connect_with(&url, &[], &[])
        .await
        .expect("upgrade succeeds");
    expect_failure(&mut ws, code, close_code).await;
    wait_until(&http(&relay), code, |s| s["closed_by_reason"][code] == 1).await;
    stop_relay(relay).await;
}

/// A frame with RSV1 set: `upstream_protocol_error`, close 1011.
#[actix_web::test]
async fn upstream_reserved_bits_are_a_protocol_error() {
    let bytes = [unmasked_header(FIN | 0x40 | TEXT, 2), b"{}".to_vec()].concat();
    let script = Script { bytes, zeros: 0 };
    upstream_ends_with(script, &[], "upstream_protocol_error", 1011).await;
}

/// A frame with a reserved opcode: `upstream_protocol_error`, close 1011.
#[actix_web::test]
async fn upstream_reserved_opcodes_are_a_protocol_error() {
    let script = Script {
        bytes: unmasked_header(FIN | 0x3, 0),
        zeros: 0,
    };
    upstream_ends_with(script, &[], "upstream_protocol_error", 1011).await;
}

/// A header announcing 1 TiB, then a few bytes: refused at once with 1009, not buffered.
#[actix_web::test]
async fn upstream_frame_announcing_too_much_is_refused_from_its_header() {
    let bytes = [unmasked_header(FIN | TEXT, 1 << 40), b"{\"type\":".to_vec()].concat();
    let script = Script { bytes, zeros: 0 };
    let extra = [("MAX_MESSAGE_SIZE", "1048576")];
    upstream_ends_with(script, &extra, "upstream_message_too_large", 1009).await;
}
