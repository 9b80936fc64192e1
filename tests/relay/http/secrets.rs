//! The server key in no response the relay gives, whatever the endpoint or refusal.

use awc::http::Method;
use fake_upstream::Script;

use super::{raw_get, raw_upgrade, request, APP, EVIL};
use crate::common::*;

/// The server key appears in no response body or header: health, stats, metrics, 426, 403, 404.
#[actix_web::test]
async fn key_is_in_no_response() {
    let h = start(Script::echo(), &[("ALLOWED_ORIGINS", APP)]).await;
    // A session first, so the counters and tables have something in them.
    let mut ws = connect(&h, "/realtime").await;
    send_text(&mut ws, r#"{"type":"session.update","event_id":"k1"}"#).await;
    assert_eq!(next_json(&mut ws).await["event_id"], "k1");

    let http = h.http();
    let responses = [
        (
            request(Method::GET, &format!("{http}/health"), &[("Origin", APP)]).await,
            200,
        ),
        (
            request(Method::GET, &format!("{http}/stats"), &[]).await,
            200,
        ),
        (
            request(Method::GET, &format!("{http}/metrics"), &[]).await,
            200,
        ),
        (raw_get(h.relay.local_addr(), "/realtime").await, 426),
        (
            raw_upgrade(&format!("{http}/realtime"), Some(EVIL)).await,
            403,
        ),
        (
            request(Method::GET, &format!("{http}/nope"), &[]).await,
            404,
        ),
        (
            request(
                Method::OPTIONS,
                &format!("{http}/health"),
                &[("Origin", APP), ("Access-Control-Request-Method", "GET")],
            )
            .await,
            204,
        ),
        (
            request(
                Method::OPTIONS,
                &format!("{http}/stats"),
                &[("Origin", APP), ("Access-Control-Request-Method", "GET")],
            )
            .await,
            405,
        ),
    ];
    for (res, status) in responses {
        assert_eq!(res.status, status, "{}", res.body);
        assert!(status == 204 || !res.body.is_empty(), "empty {status} body");
        let all = res.everything();
        assert!(!all.contains(TEST_KEY), "key leaked: {all}");
        assert!(!all.contains("SERVERKEY"), "key leaked: {all}");
    }
    h.stop().await;
}
