//! Before the upgrade: a plain GET on a WebSocket path is told to upgrade (426), and an Origin
//! outside ALLOWED_ORIGINS is refused (403) before anything is dialed.

use awc::error::WsClientError;
use fake_upstream::Script;

use super::{raw_get, raw_upgrade, APP, EVIL};
use crate::common::*;

/// A plain GET (no upgrade) on /, /realtime and /v1/realtime answers 426 with a JSON hint.
#[actix_web::test]
async fn plain_get_on_websocket_paths_is_426() {
    let h = start(Script::echo(), &[]).await;
    for path in ["/", "/realtime", "/v1/realtime"] {
        let res = raw_get(h.relay.local_addr(), path).await;
        assert_eq!(res.status, 426, "{path}: {}", res.body);
        let v = res.json();
        assert!(
            v.to_string().to_lowercase().contains("websocket"),
            "{path}: {v}"
        );
    }
    assert!(h.fake.recorder().handshakes().is_empty());
    h.stop().await;
}

/// An Origin in ALLOWED_ORIGINS is admitted.
#[actix_web::test]
async fn allowed_origin_is_admitted() {
    let h = start(Script::echo(), &[("ALLOWED_ORIGINS", APP)]).await;
    let (res, mut ws) = connect_with(
        &format!("{}/realtime", h.base),
        &["realtime"],
        &[("Origin", APP)],
    )
    .await
    .expect("upgrade succeeds");
    assert_eq!(res.status().as_u16(), 101);
    assert_eq!(next_json(&mut ws).await["type"], "session.created");
    h.stop().await;
}

/// An Origin not in ALLOWED_ORIGINS gets HTTP 403 with JSON before the upgrade, and nothing is dialed.
#[actix_web::test]
async fn forbidden_origin_is_403_json_and_never_dials() {
    let h = start(Script::echo(), &[("ALLOWED_ORIGINS", APP)]).await;
    let url = format!("{}/realtime", h.base);
    match connect_with(&url, &["realtime"], &[("Origin", EVIL)]).await {
        Err(WsClientError::InvalidResponseStatus(s)) => assert_eq!(s.as_u16(), 403),
        Err(e) => panic!("expected a 403, got {e:?}"),
        Ok(_) => panic!("a forbidden origin was upgraded"),
    }
    let res = raw_upgrade(&format!("{}/realtime", h.http()), Some(EVIL)).await;
    assert_eq!(res.status, 403, "{}", res.body);
    let v = res.json();
    assert_eq!(v["error"]["code"], "origin_not_allowed", "{v}");

    // An admitted session afterwards proves the fake is reachable; it must be the only dial.
    let (_, mut ws) = connect_with(&url, &["realtime"], &[("Origin", APP)])
        .await
        .expect("upgrade succeeds");
    assert_eq!(next_json(&mut ws).await["type"], "session.created");
    assert_eq!(h.fake.recorder().handshakes().len(), 1);
    h.stop().await;
}

/// With an origin list, a client that sends no Origin (SDK, native app) is admitted by default.
#[actix_web::test]
async fn missing_origin_is_admitted_by_default() {
    let h = start(Script::echo(), &[("ALLOWED_ORIGINS", APP)]).await;
    let _ws = connect(&h, "/v1/realtime").await;
    h.stop().await;
}

/// With ALLOW_MISSING_ORIGIN=false, a client that sends no Origin gets 403.
#[actix_web::test]
async fn missing_origin_is_refused_when_not_allowed() {
    let h = start(
        Script::echo(),
        &[("ALLOWED_ORIGINS", APP), ("ALLOW_MISSING_ORIGIN", "false")],
    )
    .await;
    match connect_with(&format!("{}/realtime", h.base), &["realtime"], &[]).await {
        Err(WsClientError::InvalidResponseStatus(s)) => assert_eq!(s.as_u16(), 403),
        Err(e) => panic!("expected a 403, got {e:?}"),
        Ok(_) => panic!("a client without Origin was upgraded"),
    }
    let res = raw_upgrade(&format!("{}/realtime", h.http()), None).await;
    assert_eq!(res.status, 403);
    assert_eq!(res.json()["error"]["code"], "origin_not_allowed");
    assert!(h.fake.recorder().handshakes().is_empty());
    h.stop().await;
}
