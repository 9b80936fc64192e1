//! Calls refused, with the WebSocket upgrade's codes as JSON: before anything is sent upstream
//! for the relay's own checks, and mapped to `upstream_*` when the upstream refuses.

use fake_upstream::{CallScript, Script, TestPeer};

use super::*;

/// No credential is 401 `unauthorized` (with `WWW-Authenticate: Bearer`), a wrong one too; a
/// model outside `ALLOWED_MODELS` is 403 `model_not_allowed`; nothing reaches the upstream.
#[actix_web::test]
async fn identity_and_model_refusals() {
    let h = relay(&[("ALLOWED_MODELS", "gpt-realtime-mini")]).await;
    let peer = TestPeer::offer().await;
    let none = offer(&h.http(), "", None, &peer).await;
    none.refused(401, "unauthorized");
    assert!(
        none.headers.contains("www-authenticate: Bearer"),
        "{}",
        none.headers
    );
    offer(&h.http(), "", Some("tok-wrong"), &peer)
        .await
        .refused(401, "unauthorized");
    offer(&h.http(), "model=gpt-realtime", Some(ALICE), &peer)
        .await
        .refused(403, "model_not_allowed");
    assert!(h.fake.recorder().calls().is_empty());
    let s = stats::get(&h.http()).await;
    assert_eq!(s["rejected_by_reason"]["unauthorized"], 2, "{s}");
    assert_eq!(s["rejected_by_reason"]["model_not_allowed"], 1, "{s}");
    h.stop().await;
}

/// At `MAX_CONNECTIONS` (one WebSocket session live) a call is 503 `capacity_exceeded`; a live
/// call holds a slot against WebSocket sessions the same way.
#[actix_web::test]
async fn calls_and_sessions_share_the_capacity() {
    let h = relay(&[("MAX_CONNECTIONS", "1")]).await;
    let headers = [("Authorization", format!("Bearer {ALICE}"))];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (_, mut ws) = connect_with(&format!("{}/realtime", h.base), &["realtime"], &headers)
        .await
        .expect("the upgrade");
    assert_eq!(next_json(&mut ws).await["type"], "session.created");
    let peer = TestPeer::offer().await;
    offer(&h.http(), "", Some(ALICE), &peer)
        .await
        .refused(503, "capacity_exceeded");
    close(&mut ws).await;
    stats::wait_until(&h.http(), "a free slot", |s| s["active_sessions"] == 0).await;
    let (peer, _call_id) = connected_call(&h, "").await;
    let (_, mut second) = connect_with(&format!("{}/realtime", h.base), &["realtime"], &headers)
        .await
        .expect("the upgrade");
    expect_failure(&mut second, "capacity_exceeded", 1013).await;
    peer.close().await;
    h.stop().await;
}

/// What is not an SDP offer is 400 `invalid_request` (a JSON body, text that is no offer, an
/// intent instead of a model).
#[actix_web::test]
async fn malformed_offers() {
    let h = relay(&[]).await;
    post(
        &h.http(),
        "/v1/realtime/calls",
        Some(ALICE),
        "application/json",
        "{}".into(),
    )
    .await
    .refused(400, "invalid_request");
    post(
        &h.http(),
        "/v1/realtime/calls",
        Some(ALICE),
        "application/sdp",
        "hello".into(),
    )
    .await
    .refused(400, "invalid_request");
    let peer = TestPeer::offer().await;
    offer(&h.http(), "intent=transcription", Some(ALICE), &peer)
        .await
        .refused(400, "invalid_request");
    assert!(h.fake.recorder().calls().is_empty());
    h.stop().await;
}

/// The upstream's refusals keep their side: 401 is 502 `upstream_auth_failed`, 429 is 502
/// `upstream_rate_limited`, 500 is 502 `upstream_rejected`; the slot is given back, and the
/// answer never holds the server key.
#[actix_web::test]
async fn upstream_refusals_are_mapped() {
    let h = relay(&[]).await;
    for (status, code) in [
        (401, "upstream_auth_failed"),
        (429, "upstream_rate_limited"),
        (500, "upstream_rejected"),
    ] {
        let mut script = Script::demo();
        script.calls = CallScript {
            reject_status: Some(status),
            ..CallScript::default()
        };
        h.fake.set_script(script);
        let peer = TestPeer::offer().await;
        let answered = offer(&h.http(), "", Some(ALICE), &peer).await;
        answered.refused(502, code);
        assert!(!answered.body.contains(TEST_KEY) && !answered.headers.contains(TEST_KEY));
    }
    let s = stats::wait_until(&h.http(), "no call live", |s| s["active_sessions"] == 0).await;
    assert_eq!(s["closed_by_reason"]["upstream_auth_failed"], 1, "{s}");
    h.stop().await;
}

/// An upstream that does not answer within `UPSTREAM_CONNECT_TIMEOUT` is 504 `upstream_timeout`.
#[actix_web::test]
async fn a_slow_upstream_is_a_gateway_timeout() {
    let h = relay(&[("UPSTREAM_CONNECT_TIMEOUT", "300")]).await;
    let mut script = Script::demo();
    script.calls = CallScript {
        delay: std::time::Duration::from_secs(3),
        ..CallScript::default()
    };
    h.fake.set_script(script);
    let peer = TestPeer::offer().await;
    offer(&h.http(), "", Some(ALICE), &peer)
        .await
        .refused(504, "upstream_timeout");
    h.stop().await;
}

/// A browser's preflight for the calls endpoint is answered for an allowed origin (POST, the
/// Authorization and Content-Type headers) and refused for another.
#[actix_web::test]
async fn the_preflight_is_answered() {
    let h = relay(&[("ALLOWED_ORIGINS", "https://app.example")]).await;
    let ask = |origin: &'static str| {
        awc::Client::default()
            .request(
                awc::http::Method::OPTIONS,
                format!("{}/v1/realtime/calls", h.http()),
            )
            .insert_header(("Origin", origin))
            .insert_header(("Access-Control-Request-Method", "POST"))
            .send()
    };
    let ok = timed("the preflight", ask("https://app.example"))
        .await
        .expect("answer");
    assert_eq!(ok.status().as_u16(), 204);
    let allow = |name: &str| {
        ok.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(allow("access-control-allow-origin"), "https://app.example");
    assert!(allow("access-control-allow-headers").contains("authorization"));
    let other = timed("the preflight", ask("https://evil.example"))
        .await
        .expect("answer");
    assert_eq!(other.status().as_u16(), 403);
    h.stop().await;
}
