//! `/health`, `/stats` and `/metrics` on the public listener: what each reports after a known
//! exchange, in which format and order.

use awc::{http::Method, ws::Frame};
use fake_upstream::Script;

use super::request;
use crate::common::{poll::poll, *};

/// Reads the next frame's raw text (answering pings on the way).
async fn next_text(ws: &mut Ws) -> String {
    match next_frame(ws).await {
        Frame::Text(b) => String::from_utf8(b.to_vec()).expect("UTF-8"),
        other => panic!("expected text, got {other:?}"),
    }
}

/// GET /health is 200 JSON with status, uptime, live and max connections, and the version.
#[actix_web::test]
async fn health_reports_status_connections_and_version() {
    let h = start(Script::echo(), &[("MAX_CONNECTIONS", "7")]).await;
    let _ws = connect(&h, "/realtime").await;
    let res = request(Method::GET, &format!("{}/health", h.http()), &[]).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert!(
        res.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        res.headers
    );
    let v = res.json();
    assert_eq!(v["status"], "ok", "{v}");
    assert!(v["uptime_seconds"].is_u64(), "{v}");
    assert_eq!(v["connections"]["active"], 1, "{v}");
    assert_eq!(v["connections"]["max"], 7, "{v}");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"), "{v}");
    h.stop().await;
}

/// GET /stats counts sessions, messages and bytes per direction for a known echo exchange.
#[actix_web::test]
async fn stats_match_a_known_exchange() {
    let h = start(Script::echo(), &[]).await;
    let (_, mut ws) = connect_with(&format!("{}/realtime", h.base), &["realtime"], &[])
        .await
        .expect("upgrade");
    let created = next_text(&mut ws).await;
    assert!(created.contains("session.created"), "{created}");
    let sent: Vec<String> = (0..3)
        .map(|i| format!(r#"{{"type":"conversation.item.create","event_id":"s{i}"}}"#))
        .collect();
    for text in &sent {
        send_text(&mut ws, text).await;
        assert_eq!(&next_text(&mut ws).await, text);
    }
    let sent_bytes: usize = sent.iter().map(String::len).sum();

    let res = request(Method::GET, &format!("{}/stats", h.http()), &[]).await;
    assert_eq!(res.status, 200, "{}", res.body);
    let s = res.json();
    assert_eq!(s["active_sessions"], 1, "{s}");
    assert_eq!(s["total_sessions"], 1, "{s}");
    assert_eq!(s["rejected_sessions"], 0, "{s}");
    assert!(s["rejected_by_reason"].is_object(), "{s}");
    assert!(s["closed_by_reason"].is_object(), "{s}");
    assert_eq!(s["client_to_upstream"]["messages"], 3, "{s}");
    assert_eq!(s["client_to_upstream"]["bytes"], sent_bytes, "{s}");
    assert_eq!(s["upstream_to_client"]["messages"], 4, "{s}");
    assert_eq!(
        s["upstream_to_client"]["bytes"],
        created.len() + sent_bytes,
        "{s}"
    );
    assert_eq!(s["upstream_connect_failures"], 0, "{s}");
    assert!(s["uptime_seconds"].is_u64(), "{s}");

    close(&mut ws).await;
    h.fake
        .recorder()
        .wait_closes(1, T)
        .await
        .expect("upstream closed");
    let s = stats::wait_until(&h.http(), "no active session", |s| {
        s["active_sessions"] == 0
    })
    .await;
    assert_eq!(s["active_sessions"], 0, "{s}");
    assert_eq!(s["closed_by_reason"]["client_closed"], 1, "{s}");
    h.stop().await;
}

/// GET /metrics is Prometheus text with every relay series, counting a finished session.
#[actix_web::test]
async fn metrics_expose_every_series_after_a_session() {
    let h = start(Script::echo(), &[]).await;
    let mut ws = connect(&h, "/realtime").await;
    let text = r#"{"type":"response.create","event_id":"m1"}"#;
    for _ in 0..2 {
        send_text(&mut ws, text).await;
        assert_eq!(next_json(&mut ws).await["event_id"], "m1");
    }
    close(&mut ws).await;
    h.fake
        .recorder()
        .wait_closes(1, T)
        .await
        .expect("upstream closed");

    let url = format!("{}/metrics", h.http());
    let url = url.as_str();
    let res = poll("relay_sessions_active at 0")
        .until(|| async move {
            let res = request(Method::GET, url, &[]).await;
            match prom::sample(&res.body, "relay_sessions_active") {
                Some(0.0) => Ok(res),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    assert_eq!(res.status, 200);
    assert!(
        res.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain") && c.contains("version=0.0.4")),
        "{:?}",
        res.headers
    );
    let m = &res.body;
    let c2u = r#"{direction="client_to_upstream"}"#;
    let u2c = r#"{direction="upstream_to_client"}"#;
    assert_eq!(prom::sample(m, "relay_sessions_active"), Some(0.0), "{m}");
    assert_eq!(
        prom::sample(m, "relay_sessions_opened_total"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        prom::sample(m, r#"relay_sessions_closed_total{reason="client_closed"}"#),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        prom::sample(
            m,
            r#"relay_sessions_rejected_total{reason="capacity_exceeded"}"#
        ),
        Some(0.0),
        "{m}"
    );
    // Reasons that only ever refuse a session have rejection series, no closed-session ones.
    for refusal in ["capacity_exceeded", "unauthorized", "model_not_allowed"] {
        let closed = format!(r#"relay_sessions_closed_total{{reason="{refusal}"}}"#);
        assert_eq!(prom::sample(m, &closed), None, "{m}");
    }
    assert_eq!(
        prom::sample(m, r#"relay_sessions_closed_total{reason="client_gone"}"#),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        prom::sample(m, &format!("relay_messages_total{c2u}")),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        prom::sample(m, &format!("relay_bytes_total{c2u}")),
        Some((2 * text.len()) as f64),
        "{m}"
    );
    // session.created plus two echoes.
    assert_eq!(
        prom::sample(m, &format!("relay_messages_total{u2c}")),
        Some(3.0),
        "{m}"
    );
    assert!(
        prom::sample(m, &format!("relay_bytes_total{u2c}")).is_some_and(|b| b > 0.0),
        "{m}"
    );
    assert_eq!(
        prom::kind(m, "relay_upstream_connect_seconds").as_deref(),
        Some("histogram"),
        "{m}"
    );
    assert_eq!(
        prom::sample(m, "relay_upstream_connect_seconds_count"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        prom::sample(m, r#"relay_upstream_connect_seconds_bucket{le="+Inf"}"#),
        Some(1.0),
        "{m}"
    );
    h.stop().await;
}

/// /stats keeps one key order from request to request: maps come out sorted by key.
#[actix_web::test]
async fn stats_keep_a_stable_key_order() {
    let h = start(Script::echo(), &[]).await;
    let mut sockets = Vec::new();
    for model in ["m-delta", "m-alpha", "m-charlie", "m-bravo", "m-echo"] {
        sockets.push(connect(&h, &format!("/realtime?model={model}")).await);
    }
    let url = format!("{}/stats", h.http());
    let keys = |body: &str| -> Vec<String> {
        let stats: serde_json::Value = serde_json::from_str(body).expect("JSON");
        stats["sessions_by_model"]
            .as_object()
            .expect("an object")
            .keys()
            .cloned()
            .collect()
    };
    let (url, keys) = (url.as_str(), &keys);
    let first = poll("five models in /stats")
        .until(|| async move {
            let res = request(Method::GET, url, &[]).await;
            match keys(&res.body) {
                k if k.len() == 5 => Ok(res),
                k => Err(format!("{k:?}")),
            }
        })
        .await;
    let order = keys(&first.body);
    assert_eq!(
        order,
        ["m-alpha", "m-bravo", "m-charlie", "m-delta", "m-echo"]
    );
    for _ in 0..5 {
        let again = request(Method::GET, url, &[]).await;
        assert_eq!(keys(&again.body), order);
        let top: Vec<String> = serde_json::from_str::<serde_json::Value>(&again.body)
            .expect("JSON")
            .as_object()
            .expect("object")
            .keys()
            .cloned()
            .collect();
        let first_top: Vec<String> = serde_json::from_str::<serde_json::Value>(&first.body)
            .expect("JSON")
            .as_object()
            .expect("object")
            .keys()
            .cloned()
            .collect();
        assert_eq!(top, first_top);
    }
    for mut ws in sockets {
        close(&mut ws).await;
    }
    h.stop().await;
}

/// With client tokens on and neither ADMIN_TOKEN nor ADMIN_PORT, /stats and /metrics answer
/// this host (200) but a client forwarded by a trusted proxy from elsewhere gets 403
/// `admin_loopback_only`; with ADMIN_TOKEN set, the token is what decides, from anywhere.
#[actix_web::test]
async fn admin_data_stays_on_this_host_when_tokens_are_on() {
    let far = [("X-Forwarded-For", "203.0.113.9")];
    let h = start(Script::echo(), &[("RELAY_TOKENS", "a:tok-admin-test-1")]).await;
    for path in ["/stats", "/metrics"] {
        let url = format!("{}{path}", h.http());
        assert_eq!(request(Method::GET, &url, &[]).await.status, 200, "{path}");
        let res = request(Method::GET, &url, &far).await;
        assert_eq!(res.status, 403, "{path}: {}", res.body);
        assert_eq!(res.json()["error"]["code"], "admin_loopback_only", "{path}");
    }
    h.stop().await;

    let h = start(
        Script::echo(),
        &[
            ("RELAY_TOKENS", "a:tok-admin-test-1"),
            ("ADMIN_TOKEN", "admin-token-test-0123"),
        ],
    )
    .await;
    let url = format!("{}/stats", h.http());
    assert_eq!(request(Method::GET, &url, &far).await.status, 401);
    let with_token = [
        ("X-Forwarded-For", "203.0.113.9"),
        ("Authorization", "Bearer admin-token-test-0123"),
    ];
    assert_eq!(request(Method::GET, &url, &with_token).await.status, 200);
    h.stop().await;
}

/// Without client tokens (an open relay) nothing changes: /stats answers a forwarded client.
#[actix_web::test]
async fn open_relay_admin_data_is_not_loopback_only() {
    let h = start(Script::echo(), &[]).await;
    let url = format!("{}/stats", h.http());
    let res = request(Method::GET, &url, &[("X-Forwarded-For", "203.0.113.9")]).await;
    assert_eq!(res.status, 200, "{}", res.body);
    h.stop().await;
}
