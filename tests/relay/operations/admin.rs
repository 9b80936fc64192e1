//! `ADMIN_TOKEN` in front of `/stats` and `/metrics`, and `ADMIN_PORT` moving them to a listener
//! of their own.

use fake_upstream::Script;
use serde_json::Value;

use super::expect_upgrade_refused;
use crate::common::*;

/// With ADMIN_TOKEN, /stats and /metrics answer 401 JSON without the bearer or with a wrong one,
/// 200 with it; /health needs none; no response body contains the token.
#[actix_web::test]
async fn admin_token_guards_stats_and_metrics() {
    const TOKEN: &str = "adm-tok";
    let h = start(Script::echo(), &[("ADMIN_TOKEN", TOKEN)]).await;
    let mut bodies = Vec::new();
    for path in ["/stats", "/metrics"] {
        let url = format!("{}{path}", h.http());
        for headers in [
            &[][..],
            &[("Authorization", "Bearer nope")][..],
            &[("Authorization", "Bearer adm-tokX")][..],
            &[("Authorization", "Bearer adm-to")][..],
            &[("Authorization", "adm-tok")][..],
            &[("Authorization", "Basic adm-tok")][..],
        ] {
            let (status, body) = get(&url, headers).await;
            assert_eq!(status, 401, "{path} {headers:?}: {body}");
            let v: Value = serde_json::from_str(&body).expect("401 body is JSON");
            assert_eq!(v["error"]["code"], "unauthorized", "{body}");
            bodies.push(body);
        }
        let (status, body) = get(&url, &[("Authorization", "Bearer adm-tok")]).await;
        assert_eq!(status, 200, "{path}: {body}");
        bodies.push(body);
    }
    let (_, metrics) = get(
        &format!("{}/metrics", h.http()),
        &[("Authorization", "Bearer adm-tok")],
    )
    .await;
    assert!(metrics.contains("relay_sessions_active"), "{metrics}");
    let (status, body) = get(&format!("{}/health", h.http()), &[]).await;
    assert_eq!(status, 200, "{body}");
    bodies.push(body);
    for body in &bodies {
        assert!(!body.contains(TOKEN), "the token leaked: {body}");
    }
    h.stop().await;
}

/// With ADMIN_PORT=0, /stats and /metrics move to the admin listener (404 on the public one);
/// /health answers on both; WebSockets are served on the public listener only.
#[actix_web::test]
async fn admin_port_moves_stats_and_metrics() {
    let h = start(
        Script::echo(),
        &[("ADMIN_PORT", "0"), ("ADMIN_HOST", "127.0.0.1")],
    )
    .await;
    let admin = h.relay.admin_addr().expect("an admin listener");
    assert_ne!(admin, h.relay.local_addr());
    assert!(admin.ip().is_loopback(), "{admin}");
    let public = h.http();
    let admin_http = format!("http://{admin}");

    let mut ws = connect(&h, "/realtime").await;
    send_text(&mut ws, r#"{"type":"session.update","event_id":"p1"}"#).await;
    assert_eq!(next_json(&mut ws).await["event_id"], "p1");

    for path in ["/stats", "/metrics"] {
        let (status, body) = get(&format!("{public}{path}"), &[]).await;
        assert_eq!(status, 404, "public {path}: {body}");
        let (status, body) = get(&format!("{admin_http}{path}"), &[]).await;
        assert_eq!(status, 200, "admin {path}: {body}");
    }
    let stats = stats::get(&admin_http).await;
    assert_eq!(stats["active_sessions"], 1, "{stats}");
    for base in [&public, &admin_http] {
        let (status, body) = get(&format!("{base}/health"), &[]).await;
        assert_eq!(status, 200, "{base}/health: {body}");
    }
    for path in ["/", "/realtime", "/v1/realtime"] {
        expect_upgrade_refused(&format!("ws://{admin}{path}"), 404).await;
    }
    assert_eq!(
        h.fake.recorder().handshakes().len(),
        1,
        "an upgrade on the admin listener must not dial"
    );
    h.stop().await;
}

/// Without ADMIN_TOKEN, the admin listener answers only `Host` values that are IP literals,
/// `localhost` or listed in ADMIN_HOSTNAMES (421 `admin_host_not_allowed` otherwise), so a web
/// page that rebinds its own name to the relay's address cannot read it; with ADMIN_TOKEN the
/// token decides.
#[actix_web::test]
async fn admin_listener_answers_only_known_hosts() {
    let h = start(
        Script::echo(),
        &[("ADMIN_PORT", "0"), ("ADMIN_HOSTNAMES", "Relay.Internal")],
    )
    .await;
    let admin = h.relay.admin_addr().expect("an admin listener");
    let port = admin.port();
    for path in ["/stats", "/metrics"] {
        let url = format!("http://{admin}{path}");
        for host in [
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
            format!("relay.internal:{port}"),
            "localhost".to_string(),
        ] {
            let (status, body) = get(&url, &[("Host", &host)]).await;
            assert_eq!(status, 200, "{path} Host {host}: {body}");
        }
        for host in [
            format!("evil.example:{port}"),
            "rebind.attacker.test".into(),
        ] {
            let (status, body) = get(&url, &[("Host", &host)]).await;
            assert_eq!(status, 421, "{path} Host {host}: {body}");
            assert!(body.contains("admin_host_not_allowed"), "{body}");
        }
    }
    h.stop().await;

    let h = start(
        Script::echo(),
        &[("ADMIN_PORT", "0"), ("ADMIN_TOKEN", "adm-tok-hosts")],
    )
    .await;
    let admin = h.relay.admin_addr().expect("an admin listener");
    let (status, body) = get(
        &format!("http://{admin}/stats"),
        &[
            ("Host", "monitoring.example"),
            ("Authorization", "Bearer adm-tok-hosts"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    h.stop().await;
}
