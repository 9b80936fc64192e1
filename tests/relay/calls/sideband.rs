//! A call's sideband: usage counted once from `response.done`, and a locked field the browser
//! changed over its data channel re-asserted.

use super::*;

/// A response on the call (asked for over the data channel, which the relay never sees) is
/// counted from the sideband: `/stats` shows its tokens for alice and the call's model, exactly
/// the `response.done` usage the browser saw.
#[actix_web::test]
async fn usage_is_counted_from_the_sideband() {
    let h = relay(&[]).await;
    let (peer, _call_id) = connected_call(&h, "model=gpt-realtime").await;
    assert_eq!(peer.next_json().await["type"], "session.created");
    peer.send(r#"{"type":"response.create"}"#).await;
    let events = peer.until_done().await;
    let done = events.last().expect("response.done");
    let total = done["response"]["usage"]["total_tokens"]
        .as_u64()
        .expect("usage");
    assert!(total > 0, "{done}");
    let s = stats::wait_until(&h.http(), "the call's usage", |s| {
        s["usage"]["today"]["total_tokens"].as_u64() == Some(total)
    })
    .await;
    assert_eq!(
        s["usage"]["by_identity"][0]["identity"], "token:alice",
        "{s}"
    );
    assert_eq!(
        s["usage"]["by_model"]["gpt-realtime"]["total_tokens"], total,
        "{s}"
    );
    let sessions = stats::sessions(&h.http()).await;
    assert!(
        sessions[0]["upstream_to_client_bytes"].as_u64() > Some(0),
        "{sessions:?}"
    );
    peer.close().await;
    h.stop().await;
}

/// With a policy that pins and locks `instructions`, a `session.updated` on the sideband showing
/// other instructions makes the relay send its pinned `session.update` again on the sideband,
/// counted as `reasserted`; an update that keeps them sends nothing.
#[actix_web::test]
async fn a_changed_locked_field_is_reasserted() {
    let h = relay_with_policy("relay-call-drift", "Be brief.").await;
    let (peer, call_id) = connected_call(&h, "").await;
    let kept = serde_json::json!({"type":"session.updated","session":{"instructions":"Be brief."}});
    h.fake
        .call_event(&call_id, kept)
        .await
        .expect("the call is open");
    let changed =
        serde_json::json!({"type":"session.updated","session":{"instructions":"Be verbose."}});
    h.fake
        .call_event(&call_id, changed)
        .await
        .expect("the call is open");
    let events = h
        .fake
        .recorder()
        .wait_for_call_events(&call_id, 1, T)
        .await
        .expect("the relay's update on the sideband");
    let from_sideband: Vec<_> = events
        .iter()
        .filter(|e| e.source == fake_upstream::Source::Sideband)
        .filter_map(|e| e.json())
        .collect();
    assert_eq!(from_sideband.len(), 1, "{from_sideband:?}");
    assert_eq!(from_sideband[0]["type"], "session.update");
    assert_eq!(from_sideband[0]["session"]["instructions"], "Be brief.");
    let (_, metrics) = get(&format!("{}/metrics", h.http()), &[]).await;
    let series =
        r#"relay_policy_actions_total{policy="default",action="reasserted",field="instructions"}"#;
    assert_eq!(prom::sample(&metrics, series), Some(1.0), "{metrics}");
    peer.close().await;
    h.stop().await;
}
