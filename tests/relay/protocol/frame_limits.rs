//! Memory no frame can inflate: a frame whose header announces more than `MAX_MESSAGE_SIZE` is
//! refused (close 1009 alone) as soon as its header is read, on the client's side and the
//! upstream's, and a client message may have at most `MAX_MESSAGE_SIZE / 64` fragments (at least
//! 1,024). The memory tests run the relay binary as a child and read its peak resident memory
//! (`VmHWM`) from `/proc` before and after.

use fake_upstream::Script;

use super::raw::{self, *};
use crate::common::{child::Process, stats::wait_until, *};

/// How much a child relay's peak memory may grow while a test floods it: generous, so only
/// buffering what the flood announces (hundreds of MiB) fails it.
const GROWTH_BOUND_KIB: u64 = 50 * 1024;
/// What each flood sends after its header, unless the relay stops it first.
const FLOOD: usize = 256 << 20;
/// A refusal from a header comes within this (the flood would take longer to buffer).
const PROMPTLY: std::time::Duration = std::time::Duration::from_secs(5);

/// A client header announcing 1 TiB, then a few bytes: close 1009 alone, at once.
#[actix_web::test]
async fn client_frame_announcing_too_much_is_refused_from_its_header() {
    let h = start(Script::echo(), &[("MAX_MESSAGE_SIZE", "1048576")]).await;
    let mut client = RawClient::connect(&h.relay.local_addr().to_string()).await;
    client
        .send(&[header(FIN | BINARY, 1 << 40), b"abc".to_vec()].concat())
        .await;
    let (code, reason) = client.close_alone().await;
    assert_eq!((code, reason.as_str()), (1009, "message_too_large"));
    wait_until(&h.http(), "the ending", |s| {
        s["closed_by_reason"]["client_message_too_large"] == 1
    })
    .await;
    h.stop().await;
}

/// A message of `MAX_MESSAGE_SIZE / 64` fragments (here the floor, 1,024) is relayed whole; one
/// more fragment gets close 1009 alone.
#[actix_web::test]
async fn messages_may_have_a_bounded_number_of_fragments() {
    let h = start(Script::echo(), &[("MAX_MESSAGE_SIZE", "65536")]).await;
    let mut client = RawClient::connect(&h.relay.local_addr().to_string()).await;
    client.send(&one_byte_fragments(1024)).await;
    let received = h
        .fake
        .recorder()
        .wait_messages(1, T)
        .await
        .expect("the message of 1,024 fragments is forwarded");
    assert_eq!(
        received[0].frame,
        fake_upstream::Frame::Binary(vec![b'x'; 1024])
    );
    let echo = client.next().await.expect("the echo");
    assert_eq!(echo.payload, vec![b'x'; 1024]);
    client.send(&one_byte_fragments(1025)).await;
    let (code, reason) = client.close_alone().await;
    assert_eq!((code, reason.as_str()), (1009, "message_too_large"));
    wait_until(&h.http(), "the ending", |s| {
        s["closed_by_reason"]["client_message_too_large"] == 1
    })
    .await;
    assert_eq!(h.fake.recorder().messages().len(), 1);
    h.stop().await;
}

/// A client header announcing 1 TiB, then 256 MiB: the child relay closes with 1009 and its peak
/// memory does not follow the flood.
#[actix_web::test]
async fn a_huge_client_frame_costs_no_memory() {
    let fake = start_fake(Script::echo()).await;
    let (relay, addr) = child_relay("huge-client-frame", &fake.url(), 1 << 20).await;
    let mut client = RawClient::connect(&addr).await;
    let before = relay.peak_kib();
    let ending = client
        .flood(&header(FIN | BINARY, 1 << 40), FLOOD, PROMPTLY)
        .await;
    assert_grew_less(&relay, before, "a 1 TiB client frame");
    assert_eq!(ending, Ending::Close(1009, "message_too_large".into()));
    drop(relay);
    stop_fake(fake).await;
}

/// A 4 MiB message in 4,194,304 one-byte fragments (28 MiB on the wire): refused with 1009 past
/// 65,536 fragments, and the child relay's peak memory stays far below what four million
/// fragments would cost.
#[actix_web::test]
async fn one_byte_fragments_cost_no_memory() {
    let fake = start_fake(Script::echo()).await;
    let (relay, addr) = child_relay("one-byte-fragments", &fake.url(), 4 << 20).await;
    let mut client = RawClient::connect(&addr).await;
    let before = relay.peak_kib();
    let ending = client.flood(&one_byte_fragments(4 << 20), 0, T).await;
    assert_grew_less(&relay, before, "a message of 1-byte fragments");
    assert_eq!(ending, Ending::Close(1009, "message_too_large".into()));
    drop(relay);
    stop_fake(fake).await;
}

/// An upstream header announcing 1 TiB, then 256 MiB: the client gets 1009 and the child relay's
/// peak memory does not follow the flood.
#[actix_web::test]
async fn a_huge_upstream_frame_costs_no_memory() {
    let script = raw::Script {
        bytes: unmasked_header(FIN | TEXT, 1 << 40),
        zeros: FLOOD,
    };
    let upstream = RawUpstream::start(script).await;
    let (relay, addr) = child_relay("huge-upstream-frame", &upstream.url, 1 << 20).await;
    let before = relay.peak_kib();
    let (_, mut ws) = connect_with(&format!("ws://{addr}/v1/realtime"), &[], &[])
        .await
        .expect("upgrade succeeds");
    // Promptly: well before the flood could have been read.
    let ended = tokio::time::timeout(PROMPTLY, expect_close(&mut ws)).await;
    assert_grew_less(&relay, before, "a 1 TiB upstream frame");
    let (error, close) = ended.expect("the relay closes promptly");
    let error = error.expect("an error event");
    assert_eq!(
        error["error"]["code"], "upstream_message_too_large",
        "{error}"
    );
    assert_eq!(close.map(|c| u16::from(c.code)), Some(1009));
}

/// The relay binary with `MAX_MESSAGE_SIZE=max` in front of `upstream`, and its address.
async fn child_relay(test: &str, upstream: &str, max: usize) -> (Process, String) {
    let max = max.to_string();
    let mut relay = Process::spawn(
        test,
        &[],
        &[
            ("OPENAI_API_KEY", TEST_KEY),
            ("OPENAI_API_URL", upstream),
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("MAX_MESSAGE_SIZE", max.as_str()),
        ],
    );
    let addr = relay.listening().await;
    (relay, addr)
}

/// Asserts the child's peak memory grew less than [`GROWTH_BOUND_KIB`] since `before`.
fn assert_grew_less(relay: &Process, before: u64, what: &str) {
    let after = relay.peak_kib();
    let grown = after.saturating_sub(before);
    eprintln!("{what}: peak memory {before} KiB -> {after} KiB (+{grown} KiB)");
    assert!(
        grown < GROWTH_BOUND_KIB,
        "{what} grew the relay's peak memory by {grown} KiB"
    );
}
