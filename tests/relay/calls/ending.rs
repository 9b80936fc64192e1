//! Every way the relay ends a call, each a hangup upstream with the server key: the session's
//! `MAX_SESSION_DURATION`, a spent budget, a drain, a sideband the relay cannot keep; and the
//! client's own hangup, passed through for the call's owner only.

use fake_upstream::{Script, TestPeer};

use super::*;

/// Waits for the fake to record a hangup of `call_id` sent with the server key.
async fn hung_up_upstream(h: &Harness, call_id: &str) {
    let hangup = h
        .fake
        .recorder()
        .wait_for_hangup(call_id, T)
        .await
        .expect("a hangup upstream");
    assert_eq!(
        hangup.authorization.as_deref(),
        Some(format!("Bearer {TEST_KEY}").as_str())
    );
}

/// A call at `MAX_SESSION_DURATION` is hung up upstream; its slot is freed and counted as
/// `session_max_duration`.
#[actix_web::test]
async fn max_session_duration_hangs_the_call_up() {
    let h = relay(&[("MAX_SESSION_DURATION", "1000")]).await;
    let (peer, call_id) = connected_call(&h, "").await;
    hung_up_upstream(&h, &call_id).await;
    let s = stats::wait_until(&h.http(), "the call's end", |s| s["active_sessions"] == 0).await;
    assert_eq!(s["closed_by_reason"]["session_max_duration"], 1, "{s}");
    assert_eq!(s["sessions_by_transport"]["webrtc"], 0, "{s}");
    peer.close().await;
    h.stop().await;
}

/// A response that spends the daily token budget ends the call after its `response.done`: the
/// relay hangs it up, and the next call is refused with 429 `budget_exceeded`.
#[actix_web::test]
async fn a_spent_budget_hangs_the_call_up() {
    let h = relay(&[("DAILY_TOKEN_BUDGET", "10")]).await;
    let (peer, call_id) = connected_call(&h, "").await;
    h.fake
        .call_respond(&call_id)
        .await
        .expect("the call is open");
    hung_up_upstream(&h, &call_id).await;
    let s = stats::wait_until(&h.http(), "the call's end", |s| s["active_sessions"] == 0).await;
    assert_eq!(s["closed_by_reason"]["budget_exceeded"], 1, "{s}");
    let next = TestPeer::offer().await;
    offer(&h.http(), "", Some(ALICE), &next)
        .await
        .refused(429, "budget_exceeded");
    peer.close().await;
    h.stop().await;
}

/// Stopping the relay (a drain) hangs up its live calls before it exits.
#[actix_web::test]
async fn a_drain_hangs_calls_up() {
    let h = relay(&[]).await;
    let (peer, call_id) = connected_call(&h, "").await;
    let report = timed("the drain", h.relay.drain()).await;
    assert_eq!((report.sessions, report.cut), (1, 0));
    stop_relay(h.relay).await;
    let hangup = h
        .fake
        .recorder()
        .wait_for_hangup(&call_id, T)
        .await
        .expect("a hangup upstream");
    assert_eq!(hangup.call_id, call_id);
    peer.close().await;
    stop_fake(h.fake).await;
}

/// A call whose sideband the upstream refuses is not left running unmetered: the relay hangs it
/// up at once (the client already had its 201).
#[actix_web::test]
async fn a_call_without_a_sideband_is_hung_up() {
    let mut script = Script::demo();
    script.reject_status = Some(503);
    let fake = start_fake(script).await;
    let relay = start_relay(config(&fake.url(), &[("RELAY_TOKENS", TOKENS)])).await;
    let peer = TestPeer::offer().await;
    let answered = offer(&http(&relay), "", Some(ALICE), &peer).await;
    let call_id = answered.call_id();
    fake.recorder()
        .wait_for_hangup(&call_id, T)
        .await
        .expect("a hangup upstream");
    let s = stats::wait_until(&http(&relay), "the call's end", |s| {
        s["active_sessions"] == 0
    })
    .await;
    assert_eq!(s["closed_by_reason"]["upstream_rejected"], 1, "{s}");
    peer.close().await;
    stop_relay(relay).await;
    stop_fake(fake).await;
}

/// `POST /v1/realtime/calls/{id}/hangup` is passed upstream for the identity that made the call
/// (200), and is 404 `call_not_found` for another client, for no credential 401, and for the
/// owner once the call is over; the relay does not hang up a second time.
#[actix_web::test]
async fn the_owner_alone_hangs_up() {
    let h = relay(&[]).await;
    let (peer, call_id) = connected_call(&h, "").await;
    hang_up(&h.http(), &call_id, Some(BOB))
        .await
        .refused(404, "call_not_found");
    hang_up(&h.http(), &call_id, None)
        .await
        .refused(401, "unauthorized");
    assert!(h.fake.recorder().hangups().is_empty());
    let mine = hang_up(&h.http(), &call_id, Some(ALICE)).await;
    assert_eq!(mine.status.as_u16(), 200, "{}", mine.body);
    hung_up_upstream(&h, &call_id).await;
    let s = stats::wait_until(&h.http(), "the call's end", |s| s["active_sessions"] == 0).await;
    assert_eq!(s["closed_by_reason"]["client_closed"], 1, "{s}");
    hang_up(&h.http(), &call_id, Some(ALICE))
        .await
        .refused(404, "call_not_found");
    assert_eq!(h.fake.recorder().hangups().len(), 1, "one hangup upstream");
    peer.close().await;
    h.stop().await;
}

/// A quiet call whose sideband answers the relay's heartbeat pings is kept: after several
/// heartbeat intervals with no event at all (a deliberate wait), it is still live and was never
/// hung up.
#[actix_web::test]
async fn a_quiet_call_with_a_live_sideband_is_kept() {
    let h = relay(&[("HEARTBEAT_INTERVAL", "100")]).await;
    let (peer, call_id) = connected_call(&h, "").await;
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let s = stats::get(&h.http()).await;
    assert_eq!(s["sessions_by_transport"]["webrtc"], 1, "{s}");
    assert!(h.fake.recorder().hangups().is_empty());
    assert!(h.fake.open_calls().contains(&call_id));
    peer.close().await;
    h.stop().await;
}
