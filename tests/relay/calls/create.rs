//! A call made through the relay: what the client gets (201, the SDP answer, `Location`), what
//! goes upstream (the offer as a form with the server key, the session the relay decides), the
//! sideband the relay opens, and how `/stats` and `/metrics` show the call.

use fake_upstream::TestPeer;

use super::*;

/// A client's offer becomes a call: 201 with the upstream's SDP answer and
/// `Location: /v1/realtime/calls/rtc_…`, the browser-side peer connects and gets
/// `session.created` with the URL's model on its data channel; the upstream got a multipart form
/// with the server key (never the client's token) and a session naming the model.
#[actix_web::test]
async fn an_offer_becomes_a_call_with_the_server_key() {
    let h = relay(&[]).await;
    let peer = TestPeer::offer().await;
    let answered = offer(&h.http(), "model=gpt-realtime", Some(ALICE), &peer).await;
    let call_id = answered.call_id();
    assert!(answered.body.starts_with("v=0"), "{}", answered.body);
    assert!(
        answered.headers.contains("content-type: application/sdp"),
        "{}",
        answered.headers
    );
    for secret in [TEST_KEY, ALICE] {
        assert!(!answered.headers.contains(secret) && !answered.body.contains(secret));
    }
    peer.answer(&answered.body).await;
    peer.opened().await;
    let created = peer.next_json().await;
    assert_eq!(created["type"], "session.created", "{created}");
    assert_eq!(created["session"]["model"], "gpt-realtime", "{created}");

    let calls = h
        .fake
        .recorder()
        .wait_for_calls(1, T)
        .await
        .expect("a call upstream");
    let upstream = &calls[0];
    assert_eq!(upstream.call_id, call_id);
    assert_eq!(
        upstream.authorization.as_deref(),
        Some(format!("Bearer {TEST_KEY}").as_str())
    );
    assert!(
        upstream.content_type.starts_with("multipart/form-data"),
        "{}",
        upstream.content_type
    );
    assert_eq!(
        upstream.session,
        serde_json::json!({"type": "realtime", "model": "gpt-realtime"})
    );
    assert_eq!(upstream.offer.trim_end(), peer.offer.trim_end());
    peer.close().await;
    h.stop().await;
}

/// Right after the call is created the relay opens its sideband at `?call_id=` with the server
/// key; `/stats?sessions=true` lists the call as a session with `"transport":"webrtc"` and its
/// call id, `sessions_by_transport` and `relay_sessions_active_by_transport` count it.
#[actix_web::test]
async fn the_call_is_a_session_with_a_sideband() {
    let h = relay(&[]).await;
    let (peer, call_id) = connected_call(&h, "").await;
    let sideband = poll("the relay's sideband upstream")
        .until(|| async {
            let handshakes = h.fake.recorder().handshakes();
            handshakes
                .into_iter()
                .find(|s| s.path_and_query.contains(&format!("call_id={call_id}")))
                .ok_or_else(|| "no sideband yet".to_string())
        })
        .await;
    assert_eq!(
        sideband.header("authorization"),
        Some(format!("Bearer {TEST_KEY}").as_str())
    );
    let sessions = stats::sessions(&h.http()).await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["transport"], "webrtc", "{sessions:?}");
    assert_eq!(sessions[0]["call_id"], call_id.as_str(), "{sessions:?}");
    assert_eq!(sessions[0]["identity"], "token:alice", "{sessions:?}");
    assert_eq!(sessions[0]["model"], "gpt-realtime-mini", "{sessions:?}");
    let s = stats::get(&h.http()).await;
    assert_eq!(s["sessions_by_transport"]["webrtc"], 1, "{s}");
    assert_eq!(s["sessions_by_transport"]["websocket"], 0, "{s}");
    let (_, metrics) = get(&format!("{}/metrics", h.http()), &[]).await;
    let series = r#"relay_sessions_active_by_transport{transport="webrtc"}"#;
    assert_eq!(prom::sample(&metrics, series), Some(1.0), "{metrics}");
    peer.close().await;
    h.stop().await;
}

/// The session sent with the offer carries the policy's pinned fields, and the model last (a
/// pinned `model` cannot replace the call's).
#[actix_web::test]
async fn the_offer_carries_the_pinned_session() {
    let h = relay_with_policy("relay-call-policy", "Answer in French.").await;
    let (peer, _call_id) = connected_call(&h, "model=gpt-realtime").await;
    let calls = h
        .fake
        .recorder()
        .wait_for_calls(1, T)
        .await
        .expect("a call");
    assert_eq!(
        calls[0].session,
        serde_json::json!({"type": "realtime", "instructions": "Answer in French.", "model": "gpt-realtime"})
    );
    peer.close().await;
    h.stop().await;
}

/// The offer also works at `/realtime/calls`, and a relay client secret is a credential for it:
/// the call is alice's (the secret's identity) and its model the secret's.
#[actix_web::test]
async fn a_client_secret_makes_a_call_on_the_short_path() {
    let h = relay(&[]).await;
    let minted = post(
        &h.http(),
        "/v1/realtime/client_secrets",
        Some(ALICE),
        "application/json",
        r#"{"session":{"type":"realtime","model":"gpt-realtime"}}"#.into(),
    )
    .await;
    assert_eq!(minted.status.as_u16(), 200, "{}", minted.body);
    let secret: serde_json::Value = serde_json::from_str(&minted.body).expect("JSON");
    let secret = secret["value"].as_str().expect("value").to_string();
    assert!(!secret.starts_with("ek_"), "{secret}");
    let peer = TestPeer::offer().await;
    let answered = post(
        &h.http(),
        "/realtime/calls",
        Some(&secret),
        "application/sdp",
        peer.offer.clone(),
    )
    .await;
    answered.call_id();
    let sessions = stats::sessions(&h.http()).await;
    assert_eq!(sessions[0]["identity"], "token:alice", "{sessions:?}");
    assert_eq!(sessions[0]["model"], "gpt-realtime", "{sessions:?}");
    let calls = h
        .fake
        .recorder()
        .wait_for_calls(1, T)
        .await
        .expect("a call");
    assert_eq!(calls[0].session["model"], "gpt-realtime");
    assert!(!format!("{:?}", calls[0].authorization).contains(&secret));
    peer.close().await;
    h.stop().await;
}
