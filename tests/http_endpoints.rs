//! The relay's HTTP face: `/health`, `/stats`, `/metrics`, the 426 hint on the WebSocket paths,
//! Origin checks before the upgrade, CORS for dashboards, and no key in any response.
mod common;

use awc::{
    error::WsClientError,
    http::{header::HeaderMap, Method},
    ws::Frame,
};
use common::*;
use fake_upstream::Script;

const APP: &str = "https://app.example";
const EVIL: &str = "https://evil.example";

/// A response as the test sees it: status, headers, body.
struct Response {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    /// Every header value and the body, for leak checks.
    fn everything(&self) -> String {
        let mut all = self.body.clone();
        for (name, value) in &self.headers {
            all.push_str(&format!(
                "\n{name}: {}",
                String::from_utf8_lossy(value.as_bytes())
            ));
        }
        all
    }
}

/// Any request, with a timeout around send and body.
async fn request(method: Method, url: &str, headers: &[(&str, &str)]) -> Response {
    let client = awc::Client::default();
    let mut req = client.request(method, url);
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    let mut res = tokio::time::timeout(T, req.send())
        .await
        .expect("request timed out")
        .expect("request succeeds");
    let body = tokio::time::timeout(T, res.body())
        .await
        .expect("body timed out")
        .expect("body");
    Response {
        status: res.status().as_u16(),
        headers: res.headers().clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A WebSocket upgrade request sent as plain HTTP, so a refusal's body can be read.
async fn raw_upgrade(url: &str, origin: Option<&str>) -> Response {
    let mut headers = vec![
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Protocol", "realtime"),
    ];
    if let Some(o) = origin {
        headers.push(("Origin", o));
    }
    request(Method::GET, url, &headers).await
}

/// A GET written by hand over TCP. awc drops the body of any response that carries
/// `Connection: upgrade`, which a 426 must (RFC 9110 15.5.22, RFC 9110 7.8); browsers and curl
/// read it, so the test reads it the way they do.
async fn raw_get(addr: std::net::SocketAddr, path: &str) -> Response {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut tcp = actix_web::rt::net::TcpStream::connect(addr)
            .await
            .expect("connect");
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        tcp.write_all(req.as_bytes()).await.expect("write");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let head = &text[..end];
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .expect("content-length");
                if buf.len() >= end + 4 + length {
                    return (
                        head.to_string(),
                        text[end + 4..end + 4 + length].to_string(),
                    );
                }
            }
            let n = tcp.read(&mut chunk).await.expect("read");
            assert!(n > 0, "connection closed mid-response: {text}");
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    let (head, body) = tokio::time::timeout(T, exchange)
        .await
        .expect("raw GET timed out");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let mut headers = HeaderMap::new();
    for line in lines {
        let (k, v) = line.split_once(':').expect("header line");
        headers.append(
            awc::http::header::HeaderName::from_bytes(k.trim().as_bytes()).expect("name"),
            awc::http::header::HeaderValue::from_str(v.trim()).expect("value"),
        );
    }
    Response {
        status,
        headers,
        body,
    }
}

/// The value of the sample `series` (name plus labels, exactly as exposed) in Prometheus text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

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
    let mut s = s;
    for _ in 0..50 {
        s = request(Method::GET, &format!("{}/stats", h.http()), &[])
            .await
            .json();
        if s["active_sessions"] == 0 {
            break;
        }
    }
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
    let mut res = request(Method::GET, &url, &[]).await;
    for _ in 0..50 {
        if sample(&res.body, "relay_sessions_active") == Some(0.0) {
            break;
        }
        res = request(Method::GET, &url, &[]).await;
    }
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
    assert_eq!(sample(m, "relay_sessions_active"), Some(0.0), "{m}");
    assert_eq!(sample(m, "relay_sessions_opened_total"), Some(1.0), "{m}");
    assert_eq!(
        sample(m, r#"relay_sessions_closed_total{reason="client_closed"}"#),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(
            m,
            r#"relay_sessions_rejected_total{reason="capacity_exceeded"}"#
        ),
        Some(0.0),
        "{m}"
    );
    // Reasons that only ever refuse a session have rejection series, no closed-session ones.
    for refusal in ["capacity_exceeded", "unauthorized", "model_not_allowed"] {
        let closed = format!(r#"relay_sessions_closed_total{{reason="{refusal}"}}"#);
        assert_eq!(sample(m, &closed), None, "{m}");
    }
    assert_eq!(
        sample(m, r#"relay_sessions_closed_total{reason="client_gone"}"#),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        sample(m, &format!("relay_messages_total{c2u}")),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        sample(m, &format!("relay_bytes_total{c2u}")),
        Some((2 * text.len()) as f64),
        "{m}"
    );
    // session.created plus two echoes.
    assert_eq!(
        sample(m, &format!("relay_messages_total{u2c}")),
        Some(3.0),
        "{m}"
    );
    assert!(
        sample(m, &format!("relay_bytes_total{u2c}")).is_some_and(|b| b > 0.0),
        "{m}"
    );
    assert!(
        m.contains("# TYPE relay_upstream_connect_seconds histogram"),
        "{m}"
    );
    assert_eq!(
        sample(m, "relay_upstream_connect_seconds_count"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(m, r#"relay_upstream_connect_seconds_bucket{le="+Inf"}"#),
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
    let mut first = request(Method::GET, &url, &[]).await;
    for _ in 0..50 {
        if keys(&first.body).len() == 5 {
            break;
        }
        first = request(Method::GET, &url, &[]).await;
    }
    let order = keys(&first.body);
    assert_eq!(
        order,
        ["m-alpha", "m-bravo", "m-charlie", "m-delta", "m-echo"]
    );
    for _ in 0..5 {
        let again = request(Method::GET, &url, &[]).await;
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

/// An OPTIONS preflight for /stats from an allowed origin is 204 with the allow headers.
#[actix_web::test]
async fn cors_preflight_from_allowed_origin() {
    let h = start(Script::echo(), &[("ALLOWED_ORIGINS", APP)]).await;
    let res = request(
        Method::OPTIONS,
        &format!("{}/stats", h.http()),
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

/// An OPTIONS preflight from a disallowed origin is refused (403) without Access-Control-Allow-Origin.
#[actix_web::test]
async fn cors_preflight_from_disallowed_origin() {
    let h = start(Script::echo(), &[("ALLOWED_ORIGINS", APP)]).await;
    let res = request(
        Method::OPTIONS,
        &format!("{}/stats", h.http()),
        &[("Origin", EVIL), ("Access-Control-Request-Method", "GET")],
    )
    .await;
    assert_eq!(res.status, 403, "{}", res.body);
    assert_eq!(res.header("access-control-allow-origin"), None);
    h.stop().await;
}

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
                &format!("{http}/stats"),
                &[("Origin", APP), ("Access-Control-Request-Method", "GET")],
            )
            .await,
            204,
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
