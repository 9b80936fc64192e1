//! WebRTC calls through the relay (issue 14), against the fake upstream's real WebRTC peer and a
//! webrtc-rs client peer standing in for the browser (`fake_upstream::TestPeer`; the real
//! Chromium runs in `tests/browser`): the call's creation and what goes upstream (`create`), its
//! sideband's metering and policy (`sideband`), every way the relay ends a call (`ending`), the
//! refusals (`refusals`), and attaching a WebSocket to a call's events (`attach`).

mod attach;
mod binary;
mod create;
mod ending;
mod refusals;
mod sideband;

use fake_upstream::{Script, TestPeer};

pub(crate) use crate::common::calls::*;
use crate::common::{poll::poll, *};

pub(crate) const ALICE: &str = "tok-alice-call-1";
pub(crate) const BOB: &str = "tok-bob-call-2";
pub(crate) const TOKENS: &str = "alice:tok-alice-call-1,bob:tok-bob-call-2";

/// A relay with `extra` (and alice's and bob's tokens) in front of the fake.
pub(crate) async fn relay(extra: &[(&str, &str)]) -> Harness {
    let mut vars = vec![("RELAY_TOKENS", TOKENS)];
    vars.extend_from_slice(extra);
    start(Script::demo(), &vars).await
}

/// A relay whose session policy pins `instructions` and locks them (file in a directory named
/// after `test`).
pub(crate) async fn relay_with_policy(test: &str, instructions: &str) -> Harness {
    let dir = std::env::temp_dir().join(format!("{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("policy.toml");
    let policy = format!(
        "[policies.default]\nlocked = [\"instructions\"]\n\
         [policies.default.session]\ntype = \"realtime\"\ninstructions = {instructions:?}\n"
    );
    std::fs::write(&file, policy).expect("policy file");
    relay(&[("SESSION_POLICY_FILE", file.to_str().expect("path"))]).await
}

/// A call alice makes through `h` with `query`, connected: the peer has the answer and its data
/// channel is open. Returns the peer and the call's id.
pub(crate) async fn connected_call(h: &Harness, query: &str) -> (TestPeer, String) {
    let peer = TestPeer::offer().await;
    let answered = offer(&h.http(), query, Some(ALICE), &peer).await;
    let call_id = answered.call_id();
    peer.answer(&answered.body).await;
    peer.opened().await;
    (peer, call_id)
}

/// `POST …/calls/{call_id}/hangup` on the relay with `token`.
pub(crate) async fn hang_up(http: &str, call_id: &str, token: Option<&str>) -> Answered {
    post(
        http,
        &format!("/v1/realtime/calls/{call_id}/hangup"),
        token,
        "application/json",
        String::new(),
    )
    .await
}
