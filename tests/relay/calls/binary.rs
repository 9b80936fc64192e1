//! A call through the relay binary as an operator runs it (`--demo`, whose built-in fake has a
//! WebRTC peer in test builds): the call's own `opened` and `closed` log lines, with its
//! transport, call id and usage, and neither the client's token nor a key.

use fake_upstream::TestPeer;

use super::*;
use crate::common::child::Process;

/// A demo relay logs a call's `opened` line and, after the client's hangup, its `closed` line
/// with `transport=webrtc`, the call id, the reason and the response's tokens; no line holds
/// the client's token.
#[actix_web::test]
async fn a_call_has_its_own_log_lines() {
    let mut p = Process::spawn(
        "call-log-lines",
        &["--demo"],
        &[
            ("PORT", "0"),
            ("HOST", "127.0.0.1"),
            ("RELAY_TOKENS", TOKENS),
        ],
    );
    let http = format!("http://{}", p.listening().await);
    let peer = TestPeer::offer().await;
    let answered = offer(&http, "", Some(ALICE), &peer).await;
    let call_id = answered.call_id();
    peer.answer(&answered.body).await;
    peer.opened().await;
    let opened = p.wait_line("opened").await;
    assert!(opened.contains(&call_id), "{opened}");
    peer.send(r#"{"type":"response.create"}"#).await;
    let done = peer.until_done().await;
    let total = done.last().expect("response.done")["response"]["usage"]["total_tokens"]
        .as_u64()
        .expect("usage");
    stats::wait_until(&http, "the call's usage", |s| {
        s["usage"]["today"]["total_tokens"].as_u64() == Some(total)
    })
    .await;
    let hung = hang_up(&http, &call_id, Some(ALICE)).await;
    assert_eq!(hung.status.as_u16(), 200, "{}", hung.body);
    let closed = p.wait_line("transport=webrtc").await;
    for part in [
        "closed",
        call_id.as_str(),
        "reason=client_closed",
        "identity=token:alice",
        &format!("total_tokens={total}"),
    ] {
        assert!(closed.contains(part), "{part} not in {closed}");
    }
    peer.close().await;
    let lines = p.kill().await;
    assert!(lines.iter().all(|l| !l.contains(ALICE)), "{lines:#?}");
}
