//! Knowing who the client is: `X-Forwarded-For` and `X-Real-IP`, believed only from
//! `TRUSTED_PROXIES`.

use fake_upstream::Script;
use serde_json::Value;

use super::session;
use crate::common::*;

/// The `client` of each live session in `/stats?sessions=true`, in session order.
async fn clients(http: &str) -> Vec<Value> {
    stats::sessions(http)
        .await
        .iter()
        .map(|s| s["client"].clone())
        .collect()
}

/// With the default TRUSTED_PROXIES (loopback) the right-most untrusted X-Forwarded-For hop is
/// the client, a forged left hop is ignored, and X-Real-IP counts when there is no X-Forwarded-For.
#[actix_web::test]
async fn loopback_proxy_is_believed_about_the_client() {
    let h = start(Script::echo(), &[]).await;
    let url = format!("{}/realtime", h.base);
    let _a = session(&url, &[("X-Forwarded-For", "203.0.113.7")]).await;
    let _b = session(&url, &[("X-Forwarded-For", "6.6.6.6, 198.51.100.9")]).await;
    let _c = session(&url, &[("X-Real-IP", "192.0.2.44")]).await;
    let _d = session(&url, &[]).await;
    let _e = session(
        &url,
        &[
            ("X-Forwarded-For", "198.51.100.20, 127.0.0.1"),
            ("X-Real-IP", "192.0.2.99"),
        ],
    )
    .await;
    assert_eq!(
        clients(&h.http()).await,
        vec![
            "203.0.113.7",
            "198.51.100.9",
            "192.0.2.44",
            "127.0.0.1",
            "198.51.100.20"
        ]
    );
    h.stop().await;
}

/// With TRUSTED_PROXIES=10.0.0.0/8 the loopback peer is not trusted: its X-Forwarded-For and
/// X-Real-IP are ignored and the client is 127.0.0.1.
#[actix_web::test]
async fn untrusted_peer_cannot_spoof_the_client() {
    let h = start(Script::echo(), &[("TRUSTED_PROXIES", "10.0.0.0/8")]).await;
    let url = format!("{}/realtime", h.base);
    let _a = session(&url, &[("X-Forwarded-For", "203.0.113.7")]).await;
    let _b = session(&url, &[("X-Real-IP", "192.0.2.44")]).await;
    assert_eq!(clients(&h.http()).await, vec!["127.0.0.1", "127.0.0.1"]);
    h.stop().await;
}
