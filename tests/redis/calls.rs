//! WebRTC calls across instances: a live call holds a shared slot like a WebSocket session, and
//! its usage, read off its sideband, lands in the shared ledger.

use fake_upstream::TestPeer;

use super::instances::*;
use crate::common::{calls::offer, T};

/// MAX_CONNECTIONS_PER_CLIENT=1 over two instances: a call made through A fills the client's
/// one slot, so a WebSocket session on B is refused `too_many_connections`; a response on the call
/// is counted from A's sideband into the ledger B reads (`/stats?scope=cluster`).
#[actix_web::test]
async fn a_call_holds_a_shared_slot_and_spends_the_shared_ledger() {
    let Some((redis, fake)) = redis_and_fake("calls").await else {
        return;
    };
    let env = [("MAX_CONNECTIONS_PER_CLIENT", "1")];
    let a = Instance::start("redis-calls-a", &fake.url(), &redis.url(), &env).await;
    let b = Instance::start("redis-calls-b", &fake.url(), &redis.url(), &env).await;
    let peer = TestPeer::offer().await;
    let call_id = offer(&a.http(), "", None, &peer).await.call_id();
    refused(&b.url(), None, "too_many_connections").await;
    fake.call_respond(&call_id).await.expect("the call is open");
    let cluster = b
        .wait_cluster("the call's usage in the shared ledger", T, |s| {
            today_tokens(s) > 0
        })
        .await;
    assert_eq!(cluster["live_sessions"], 1, "{cluster}");
    peer.close().await;
}
