//! CORS: the allowed Origin gets `Access-Control-Allow-Origin` on `/health`, and a preflight
//! from it the allow headers; any other Origin gets neither. `/stats` and `/metrics` are admin
//! data: no CORS header and no preflight answer for any Origin.

use awc::http::Method;
use fake_upstream::Script;

use super::{request, APP, EVIL};
use crate::common::*;

/// GET /health from an allowed Origin carries Access-Control-Allow-Origin for it.
#[actix_web::test]
async fn cors_header_for_allowed_origin() {
    let h = start(Script::echo(), &[("ALLOWED_ORIGINS", APP)]).await;
    let url = format!("{}/health", h.http());
    let res = request(Method::GET, &url, &[("Origin", APP)]).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("access-control-allow-origin"), Some(APP));
    let res = request(Method::GET, &url, &[("Origin", EVIL)]).await;
    assert_eq!(res.header("access-control-allow-origin"), None);
    h.stop().await;
}

/// An OPTIONS preflight for /health from an allowed origin is 204 with the allow headers.
#[actix_web::test]
async fn cors_preflight_from_allowed_origin() {
    let h = start(Script::echo(), &[("ALLOWED_ORIGINS", APP)]).await;
    let res = request(
        Method::OPTIONS,
        &format!("{}/health", h.http()),
        &[("Origin", APP), ("Access-Control-Request-Method", "GET")],
    )
    .await;
    assert_eq!(res.status, 204, "{}", res.body);
    assert_eq!(res.header("access-control-allow-origin"), Some(APP));
    assert!(
        res.header("access-control-allow-methods")
            .is_some_and(|m| m.contains("GET")),
        "{:?}",
        res.headers
    );
    assert!(
        res.header("access-control-allow-headers").is_some(),
        "{:?}",
        res.headers
    );
    h.stop().await;
}

/// An OPTIONS preflight for /health from a disallowed origin is refused (403) without
/// Access-Control-Allow-Origin.
#[actix_web::test]
async fn cors_preflight_from_disallowed_origin() {
    let h = start(Script::echo(), &[("ALLOWED_ORIGINS", APP)]).await;
    let res = request(
        Method::OPTIONS,
        &format!("{}/health", h.http()),
        &[("Origin", EVIL), ("Access-Control-Request-Method", "GET")],
    )
    .await;
    assert_eq!(res.status, 403, "{}", res.body);
    assert_eq!(res.header("access-control-allow-origin"), None);
    h.stop().await;
}

/// /stats and /metrics carry no CORS header even for an allowed Origin, and a preflight for
/// them is not answered with one (405): a web page can never read the admin data.
#[actix_web::test]
async fn admin_data_has_no_cors() {
    let h = start(Script::echo(), &[("ALLOWED_ORIGINS", APP)]).await;
    for path in ["/stats", "/metrics"] {
        let url = format!("{}{path}", h.http());
        let res = request(Method::GET, &url, &[("Origin", APP)]).await;
        assert_eq!(res.status, 200, "{path}: {}", res.body);
        assert_eq!(res.header("access-control-allow-origin"), None, "{path}");
        let pre = request(
            Method::OPTIONS,
            &url,
            &[("Origin", APP), ("Access-Control-Request-Method", "GET")],
        )
        .await;
        assert_eq!(pre.status, 405, "{path}: {}", pre.body);
        assert_eq!(pre.header("access-control-allow-origin"), None, "{path}");
        assert_eq!(pre.header("access-control-allow-methods"), None, "{path}");
    }
    h.stop().await;
}
