//! A WebSocket attached to a call's events (`?call_id=`): the owner's alone, relayed to an
//! upstream sideband of that call, and not counted twice.

use super::*;

/// The owner attaches with `?call_id=`: the relay dials the upstream at `?call_id=` with the
/// server key, the attached client sees the call's `response.done`, and the call's usage is
/// counted once (by the call's own sideband), not again for the attached socket.
#[actix_web::test]
async fn the_owner_attaches_and_usage_counts_once() {
    let h = relay(&[]).await;
    let (peer, call_id) = connected_call(&h, "").await;
    let headers = [("Authorization", format!("Bearer {ALICE}"))];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let url = format!("{}/v1/realtime?call_id={call_id}", h.base);
    let (_, mut ws) = connect_with(&url, &["realtime"], &headers)
        .await
        .expect("the upgrade");
    // Two sidebands now: the call's and the attached client's.
    poll("the attached sideband")
        .until(|| async {
            let n = h
                .fake
                .recorder()
                .handshakes()
                .iter()
                .filter(|s| s.path_and_query.contains(&format!("call_id={call_id}")))
                .count();
            if n == 2 {
                Ok(())
            } else {
                Err(format!("{n} sidebands"))
            }
        })
        .await;
    h.fake
        .call_respond(&call_id)
        .await
        .expect("the call is open");
    let done = loop {
        let event = next_json(&mut ws).await;
        if event["type"] == "response.done" {
            break event;
        }
    };
    let total = done["response"]["usage"]["total_tokens"]
        .as_u64()
        .expect("usage");
    let s = stats::wait_until(&h.http(), "the call's usage", |s| {
        s["usage"]["today"]["total_tokens"].as_u64() == Some(total)
    })
    .await;
    assert_eq!(s["active_sessions"], 2, "{s}");
    // A second response: still counted once each.
    h.fake
        .call_respond(&call_id)
        .await
        .expect("the call is open");
    stats::wait_until(&h.http(), "two responses' usage", |s| {
        s["usage"]["today"]["total_tokens"].as_u64() == Some(2 * total)
    })
    .await;
    close(&mut ws).await;
    peer.close().await;
    h.stop().await;
}

/// Another client cannot attach to alice's call: `invalid_request`, and nothing is dialed.
#[actix_web::test]
async fn another_client_cannot_attach() {
    let h = relay(&[]).await;
    let (peer, call_id) = connected_call(&h, "").await;
    let before = h.fake.recorder().handshakes().len();
    let headers = [("Authorization", format!("Bearer {BOB}"))];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let url = format!("{}/v1/realtime?call_id={call_id}", h.base);
    let (_, mut ws) = connect_with(&url, &["realtime"], &headers)
        .await
        .expect("the upgrade");
    expect_failure(&mut ws, "invalid_request", 1008).await;
    assert_eq!(h.fake.recorder().handshakes().len(), before);
    peer.close().await;
    h.stop().await;
}
