//! Operations (issue 4): graceful drain in-process and on SIGTERM, a second signal, whom the
//! relay believes about the client's address (`TRUSTED_PROXIES`), `ADMIN_TOKEN` and
//! `ADMIN_PORT`, the `/stats` and `/metrics` extras, the `healthcheck` subcommand, and JSON logs
//! that carry no secret. The binary runs as a child with a cleared environment in a fresh
//! directory; its lines are read from threads with a deadline, never by sleeping.
mod common;

use std::{future::Future, pin::Pin, process::ExitStatus, task::Poll};

use awc::error::WsClientError;
use common::{child::Process, *};
use fake_upstream::{Mode, Script};
use openai_realtime_relay::DrainReport;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Polls `fut` exactly once. `Relay::drain` marks the relay draining and posts `Drain` to the
/// registry on its first poll, then waits for the registry's answer on this thread: polling it
/// once and not again holds the drain open (server still up) while the test looks at it.
async fn poll_once<F: Future>(mut fut: Pin<&mut F>) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await
}

/// GET `url` and parse the body as JSON; returns the status too.
async fn get_json(url: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let (status, body) = get(url, headers).await;
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"));
    (status, json)
}

/// The value of the unlabelled sample `name` in a Prometheus text exposition.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A port on 127.0.0.1 where nothing listens: bind port 0, note the port, let it go.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr").port()
}

/// Connects to `url` with `headers` and waits for `session.created`.
async fn session(url: &str, headers: &[(&str, &str)]) -> Ws {
    let (_, mut ws) = connect_with(url, &["realtime"], headers)
        .await
        .expect("upgrade succeeds");
    let first = next_json(&mut ws).await;
    assert_eq!(first["type"], "session.created", "{first}");
    ws
}

/// Asserts an upgrade attempt is answered with HTTP `status` instead of 101.
async fn expect_upgrade_refused(url: &str, status: u16) {
    match connect_with(url, &["realtime"], &[]).await {
        Err(WsClientError::InvalidResponseStatus(s)) => assert_eq!(s.as_u16(), status, "{url}"),
        Err(other) => panic!("{url}: expected HTTP {status}, got {other:?}"),
        Ok((res, _)) => panic!("{url}: expected HTTP {status}, got {}", res.status()),
    }
}

/// Runs `openai-realtime-relay healthcheck` against 127.0.0.1:`port`; returns its exit status.
async fn healthcheck(test: &str, port: u16) -> (ExitStatus, Vec<String>) {
    let port = port.to_string();
    Process::spawn(
        test,
        &["healthcheck"],
        &[("PORT", &port), ("HOST", "127.0.0.1")],
    )
    .exit()
    .await
}

// ---------------------------------------------------------------------------------------------
// Graceful drain
// ---------------------------------------------------------------------------------------------

/// A drain tells every live client `server_shutting_down` + 1012, closes every upstream, turns
/// /health 503 "draining" and refuses upgrades with 503 while it runs, and reports 2 sessions, 0 cut.
#[actix_web::test]
async fn drain_ends_live_sessions_and_refuses_new_ones() {
    let h = start(Script::echo(), &[("SHUTDOWN_TIMEOUT", "60000")]).await;
    let mut a = connect(&h, "/realtime").await;
    let mut b = connect(&h, "/realtime").await;
    let (status, health) = get_json(&format!("{}/health", h.http()), &[]).await;
    assert_eq!((status, &health["status"]), (200, &Value::from("ok")));

    let report = {
        let mut drain = std::pin::pin!(h.relay.drain());
        assert!(
            poll_once(drain.as_mut()).await.is_pending(),
            "the drain cannot finish before the registry has answered"
        );

        for ws in [&mut a, &mut b] {
            let error = expect_failure(ws, "server_shutting_down", 1012).await;
            assert_eq!(error["type"], "error", "{error}");
        }
        let closes = h.fake.recorder().wait_closes(2, T).await.expect("closes");
        for c in &closes {
            assert!(!c.abrupt, "upstream dropped without a close frame: {c:?}");
            assert_eq!(c.code, Some(1001), "upstream close: {c:?}");
        }

        // The drain has not returned (it is not polled), so the server is still up.
        let (status, health) = get_json(&format!("{}/health", h.http()), &[]).await;
        assert_eq!(status, 503, "{health}");
        assert_eq!(health["status"], "draining", "{health}");
        expect_upgrade_refused(&format!("{}/realtime", h.base), 503).await;
        let (_, stats) = get_json(&format!("{}/stats", h.http()), &[]).await;
        assert_eq!(stats["draining"], true, "{stats}");
        assert_eq!(
            stats["rejected_by_reason"]["server_shutting_down"], 1,
            "{stats}"
        );
        assert_eq!(
            h.fake.recorder().handshakes().len(),
            2,
            "a refused upgrade must not dial"
        );

        tokio::time::timeout(T, drain)
            .await
            .expect("the drain returns once every session is gone")
    };
    assert_eq!(
        report,
        DrainReport {
            sessions: 2,
            cut: 0
        }
    );
    tokio::time::timeout(T, h.stop()).await.expect("stop");
}

/// A client that never reads (its socket full of streamed events) does not hold the drain: with
/// SHUTDOWN_TIMEOUT at ten minutes the drain still returns at once, reporting 1 session, 0 cut.
#[actix_web::test]
async fn drain_is_not_held_by_a_client_that_never_reads() {
    // A session that outlives the drain (so `cut > 0`) cannot be built from outside: a session
    // told to end stops its actor and releases its slot at once, and its goodbye to the client
    // is sent by a detached, bounded task. What can be pinned is the other half of the
    // contract: a drain returns when the sessions are gone, not when SHUTDOWN_TIMEOUT runs out,
    // even for the worst client. The timeout around the await (10 s, far below 600 s) fails
    // the test if the drain waited for SHUTDOWN_TIMEOUT.
    let script = Script::with_mode(Mode::Stream {
        message_bytes: 64 * 1024,
        interval: None,
        count: None,
    });
    let h = start(script, &[("SHUTDOWN_TIMEOUT", "600000")]).await;
    let _stuck = connect(&h, "/realtime").await;
    // From here the client never reads. Poll /stats (no event exists for this) until the relay
    // has pushed over a MiB toward it and the count has stopped growing: the socket is full.
    let (mut relayed, mut previous) = (0, u64::MAX);
    for _ in 0..1000 {
        let (_, stats) = get_json(&format!("{}/stats", h.http()), &[]).await;
        relayed = stats["upstream_to_client"]["bytes"].as_u64().unwrap_or(0);
        if relayed > 1024 * 1024 && relayed == previous {
            break;
        }
        previous = relayed;
    }
    assert!(relayed > 1024 * 1024, "the stream never flowed: {relayed}");

    let report = tokio::time::timeout(T, h.relay.drain())
        .await
        .expect("the drain did not wait for SHUTDOWN_TIMEOUT");
    assert_eq!(
        report,
        DrainReport {
            sessions: 1,
            cut: 0
        }
    );
    h.fake
        .recorder()
        .wait_closes(1, T)
        .await
        .expect("the upstream is closed too");
    tokio::time::timeout(T, h.stop()).await.expect("stop");
}

/// SIGTERM on the binary: the live client gets `server_shutting_down` + 1012, the process exits
/// 0 and logs `stopped: 1 session(s) at shutdown, 0 cut`.
#[actix_web::test]
async fn sigterm_drains_and_exits_zero() {
    let mut p = Process::spawn(
        "sigterm",
        &["--demo"],
        &[
            ("PORT", "0"),
            ("HOST", "127.0.0.1"),
            ("SHUTDOWN_TIMEOUT", "5000"),
        ],
    );
    let addr = p.listening().await;
    let mut ws = session(&format!("ws://{addr}/v1/realtime"), &[]).await;
    p.wait_line("session=1 opened").await;

    p.signal("TERM");
    expect_failure(&mut ws, "server_shutting_down", 1012).await;
    let (status, lines) = p.exit().await;
    assert_eq!(status.code(), Some(0), "{lines:#?}");
    let text = lines.join("\n");
    assert!(
        text.contains("stopped: 1 session(s) at shutdown, 0 cut"),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("session=1 closed") && l.contains("reason=server_shutting_down")),
        "{text}"
    );
}

/// A second signal (SIGINT) while the first (SIGTERM) is still being handled exits at once
/// with status 1, without the drain's `stopped:` line.
#[actix_web::test]
async fn second_signal_exits_at_once() {
    let mut p = Process::spawn(
        "second-signal",
        &["--demo"],
        &[
            ("PORT", "0"),
            ("HOST", "127.0.0.1"),
            ("SHUTDOWN_TIMEOUT", "600000"),
        ],
    );
    let addr = p.listening().await;
    // Sessions end at once when told, so the drain proper cannot be held open from outside.
    // What keeps the process busy after it is the server's graceful stop, which waits for open
    // connections for up to 1 s (`shutdown_timeout(1)` in lib.rs): a client that takes its
    // close frame but keeps the TCP connection open is one. The second signal is sent as soon
    // as the drain has logged its end, inside that second.
    let mut ws = session(&format!("ws://{addr}/v1/realtime"), &[]).await;
    p.signal("TERM");
    expect_failure(&mut ws, "server_shutting_down", 1012).await;
    p.wait_line("drain: all sessions ended").await;
    p.signal("INT");
    let (status, lines) = p.exit().await;
    let text = lines.join("\n");
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(
        text.contains("second shutdown signal: exiting now"),
        "{text}"
    );
    assert!(
        !text.contains("stopped:"),
        "the stop finished first: {text}"
    );
    drop(ws);
}

// ---------------------------------------------------------------------------------------------
// Knowing who the client is
// ---------------------------------------------------------------------------------------------

/// The `client` of each live session in `/stats?sessions=true`, in session order.
async fn clients(http: &str) -> Vec<Value> {
    let (status, stats) = get_json(&format!("{http}/stats?sessions=true"), &[]).await;
    assert_eq!(status, 200, "{stats}");
    stats["sessions"]
        .as_array()
        .unwrap_or_else(|| panic!("no sessions list: {stats}"))
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
    tokio::time::timeout(T, h.stop()).await.expect("stop");
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
    tokio::time::timeout(T, h.stop()).await.expect("stop");
}

// ---------------------------------------------------------------------------------------------
// ADMIN_TOKEN and ADMIN_PORT
// ---------------------------------------------------------------------------------------------

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
    tokio::time::timeout(T, h.stop()).await.expect("stop");
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
    let (_, stats) = get_json(&format!("{admin_http}/stats"), &[]).await;
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
    tokio::time::timeout(T, h.stop()).await.expect("stop");
}

// ---------------------------------------------------------------------------------------------
// /stats and /metrics
// ---------------------------------------------------------------------------------------------

/// /stats counts live sessions by model, reports upstream connect latency percentiles, and
/// `?sessions=true` describes each session with the bytes it carried each way.
#[actix_web::test]
async fn stats_describe_models_latency_and_sessions() {
    let h = start(Script::echo(), &[]).await;
    let (_, before) = get_json(&format!("{}/stats", h.http()), &[]).await;
    assert_eq!(before["upstream_connect_latency"]["samples"], 0, "{before}");
    assert_eq!(
        before["sessions_by_model"],
        serde_json::json!({}),
        "{before}"
    );
    let (_, listed) = get_json(&format!("{}/stats?sessions=true", h.http()), &[]).await;
    assert_eq!(listed["sessions"], serde_json::json!([]), "{listed}");

    let mut a = connect(&h, "/v1/realtime?model=gpt-realtime").await;
    let _b = connect(&h, "/v1/realtime?model=gpt-realtime").await;
    let _c = connect(&h, "/v1/realtime").await;
    let sent = r#"{"type":"conversation.item.create","event_id":"s-1","item":{"type":"message"}}"#;
    send_text(&mut a, sent).await;
    assert_eq!(next_json(&mut a).await["event_id"], "s-1");

    let (status, stats) = get_json(&format!("{}/stats?sessions=true", h.http()), &[]).await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(
        stats["sessions_by_model"],
        serde_json::json!({"gpt-realtime": 2, "gpt-realtime-mini": 1}),
        "{stats}"
    );
    let latency = &stats["upstream_connect_latency"];
    assert!(latency["samples"].as_u64() >= Some(3), "{stats}");
    for p in ["p50_ms", "p95_ms", "p99_ms"] {
        let ms = latency[p]
            .as_f64()
            .unwrap_or_else(|| panic!("{p}: {stats}"));
        assert!(ms >= 0.0, "{p}: {stats}");
    }
    assert!(
        latency["p50_ms"].as_f64() <= latency["p95_ms"].as_f64()
            && latency["p95_ms"].as_f64() <= latency["p99_ms"].as_f64(),
        "{stats}"
    );

    let sessions = stats["sessions"].as_array().expect("sessions list");
    assert_eq!(sessions.len(), 3, "{stats}");
    let first = &sessions[0];
    assert!(first["id"].is_u64(), "{first}");
    assert_eq!(first["client"], "127.0.0.1", "{first}");
    assert_eq!(first["model"], "gpt-realtime", "{first}");
    assert!(first["age_seconds"].is_u64(), "{first}");
    assert!(first["idle_seconds"].is_u64(), "{first}");
    assert_eq!(first["client_to_upstream_bytes"], sent.len(), "{first}");
    // session.created plus the echo of what was sent.
    assert!(
        first["upstream_to_client_bytes"].as_u64() > Some(sent.len() as u64),
        "{first}"
    );
    assert_eq!(sessions[1]["client_to_upstream_bytes"], 0, "{stats}");
    assert_eq!(sessions[2]["model"], "gpt-realtime-mini", "{stats}");
    let ids: Vec<_> = sessions.iter().map(|s| s["id"].as_u64()).collect();
    assert!(ids[0] < ids[1] && ids[1] < ids[2], "{stats}");
    tokio::time::timeout(T, h.stop()).await.expect("stop");
}

/// /metrics has the session-duration and first-upstream-event histograms, which count a
/// finished session, and the process metrics (resident memory, open fds).
#[actix_web::test]
async fn metrics_have_histograms_and_process_metrics() {
    let h = start(Script::echo(), &[]).await;
    let url = format!("{}/metrics", h.http());
    let (_, before) = get(&url, &[]).await;
    assert_eq!(
        sample(&before, "relay_session_duration_seconds_count"),
        Some(0.0),
        "{before}"
    );
    assert_eq!(
        sample(&before, "relay_first_upstream_event_seconds_count"),
        Some(0.0),
        "{before}"
    );
    #[cfg(target_os = "linux")]
    {
        let rss = sample(&before, "process_resident_memory_bytes").expect("rss");
        assert!(rss > 0.0, "{before}");
        let fds = sample(&before, "process_open_fds").expect("open fds");
        assert!(fds > 0.0, "{before}");
        assert!(
            sample(&before, "process_cpu_seconds_total").is_some(),
            "{before}"
        );
    }

    let mut ws = connect(&h, "/realtime").await;
    close(&mut ws).await;
    h.fake.recorder().wait_closes(1, T).await.expect("closed");
    // The release reaches the registry by message; no event tells the test it landed, so poll.
    let mut last = String::new();
    for _ in 0..200 {
        last = get(&url, &[]).await.1;
        if sample(&last, "relay_session_duration_seconds_count") == Some(1.0) {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(
        sample(&last, "relay_session_duration_seconds_count"),
        Some(1.0),
        "{last}"
    );
    assert!(
        sample(&last, "relay_first_upstream_event_seconds_count") >= Some(1.0),
        "{last}"
    );
    assert!(
        last.contains("relay_session_duration_seconds_bucket{le=\"1\"}"),
        "{last}"
    );
    tokio::time::timeout(T, h.stop()).await.expect("stop");
}

// ---------------------------------------------------------------------------------------------
// healthcheck subcommand
// ---------------------------------------------------------------------------------------------

/// `healthcheck` exits 0 against a healthy relay, 1 where nothing listens, 1 while it drains.
#[actix_web::test]
async fn healthcheck_subcommand_follows_health() {
    let h = start(Script::echo(), &[("SHUTDOWN_TIMEOUT", "60000")]).await;
    let port = h.relay.local_addr().port();

    let (status, lines) = healthcheck("hc-ok", port).await;
    assert_eq!(status.code(), Some(0), "{lines:#?}");

    let (status, lines) = healthcheck("hc-nothing", free_port()).await;
    assert_eq!(status.code(), Some(1), "{lines:#?}");

    {
        let mut drain = std::pin::pin!(h.relay.drain());
        assert!(poll_once(drain.as_mut()).await.is_pending());
        let (code, _) = get(&format!("{}/health", h.http()), &[]).await;
        assert_eq!(code, 503);
        let (status, lines) = healthcheck("hc-draining", port).await;
        assert_eq!(status.code(), Some(1), "{lines:#?}");
        assert!(
            lines.join("\n").contains("did not answer 200"),
            "{lines:#?}"
        );
        tokio::time::timeout(T, drain).await.expect("drain");
    }
    tokio::time::timeout(T, h.stop()).await.expect("stop");
}

// ---------------------------------------------------------------------------------------------
// JSON logs
// ---------------------------------------------------------------------------------------------

/// The client's `session.update`, carrying a prompt that must never be logged.
const SESSION_UPDATE: &str = r#"{"type":"session.update","event_id":"u1","session":{"instructions":"SYSTEMPROMPT-SECRET-42"}}"#;

/// Runs the binary with `--demo LOG_FORMAT=json DEBUG=true` and a key, plays one session (an
/// `Authorization` header, a forwarded-for address, `session.update`, `response.create` through
/// to `response.done`, a close), sends SIGTERM, and returns every line it wrote, each parsed.
async fn json_logged_session(test: &str) -> (Vec<String>, Vec<Value>) {
    let mut p = Process::spawn(
        test,
        &["--demo"],
        &[
            ("PORT", "0"),
            ("HOST", "127.0.0.1"),
            ("LOG_FORMAT", "json"),
            ("DEBUG", "true"),
            ("OPENAI_API_KEY", "sk-test-JSONSECRET"),
        ],
    );
    let addr = p.listening().await;
    let mut ws = session(
        &format!("ws://{addr}/v1/realtime?model=gpt-realtime"),
        &[
            ("Authorization", "Bearer sk-client-AUTHSECRET"),
            ("X-Forwarded-For", "203.0.113.50"),
        ],
    )
    .await;
    send_text(&mut ws, SESSION_UPDATE).await;
    assert_eq!(next_json(&mut ws).await["type"], "session.updated");
    send_text(&mut ws, r#"{"type":"response.create","event_id":"r1"}"#).await;
    let mut n = 0;
    while next_json(&mut ws).await["type"] != "response.done" {
        n += 1;
        assert!(n < 500, "no response.done");
    }
    close(&mut ws).await;
    p.wait_line("session=1 closed").await;
    drop(ws);
    p.signal("TERM");
    let (status, lines) = p.exit().await;
    assert_eq!(status.code(), Some(0), "{lines:#?}");
    let records = lines
        .iter()
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            assert!(v.is_object(), "not an object: {l}");
            for key in ["timestamp", "level", "target", "message"] {
                assert!(v[key].is_string(), "no {key}: {l}");
            }
            v
        })
        .collect();
    (lines, records)
}

/// The debug lines with event types, as `(direction, type)`.
fn event_types(records: &[Value]) -> Vec<(String, String)> {
    records
        .iter()
        .filter(|r| r["target"] == "openai_realtime_relay::events" && r["level"] == "DEBUG")
        .map(|r| {
            (
                r["direction"].as_str().unwrap_or_default().to_string(),
                r["type"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// LOG_FORMAT=json with DEBUG=true: every line is a JSON object; the session's open and close
/// lines carry its fields, debug lines the client's event types; no key, prompt or Authorization.
#[actix_web::test]
async fn json_logs_carry_fields_and_no_secrets() {
    let (lines, records) = json_logged_session("json-logs").await;
    let text = lines.join("\n");
    for secret in [
        "JSONSECRET",
        "SYSTEMPROMPT-SECRET-42",
        "AUTHSECRET",
        "Authorization",
        "authorization",
    ] {
        assert!(!text.contains(secret), "{secret} was logged: {text}");
    }

    let session_line = |word: &str| {
        records
            .iter()
            .find(|r| {
                r["target"] == "openai_realtime_relay::session"
                    && r["message"].as_str().is_some_and(|m| m.contains(word))
            })
            .unwrap_or_else(|| panic!("no {word:?} line: {text}"))
    };
    let opened = session_line(" opened ");
    assert_eq!(opened["session"], 1, "{opened}");
    assert_eq!(opened["client"], "203.0.113.50", "{opened}");
    assert_eq!(opened["model"], "gpt-realtime", "{opened}");
    assert_eq!(opened["level"], "INFO", "{opened}");

    let closed = session_line(" closed ");
    assert_eq!(closed["session"], 1, "{closed}");
    assert_eq!(closed["level"], "INFO", "{closed}");
    assert_eq!(closed["client"], "203.0.113.50", "{closed}");
    assert_eq!(closed["model"], "gpt-realtime", "{closed}");
    assert_eq!(closed["reason"], "client_closed", "{closed}");
    assert_eq!(closed["code"], 1000, "{closed}");
    assert!(closed["duration_ms"].is_u64(), "{closed}");
    assert_eq!(closed["client_to_upstream_messages"], 2, "{closed}");
    let sent = SESSION_UPDATE.len() + r#"{"type":"response.create","event_id":"r1"}"#.len();
    assert_eq!(closed["client_to_upstream_bytes"], sent, "{closed}");
    assert!(
        closed["upstream_to_client_messages"].as_u64() > Some(2),
        "{closed}"
    );
    assert!(
        closed["upstream_to_client_bytes"].as_u64() > Some(0),
        "{closed}"
    );

    let types = event_types(&records);
    let client_types: Vec<&str> = types
        .iter()
        .filter(|(d, _)| d == "client_to_upstream")
        .map(|(_, t)| t.as_str())
        .collect();
    assert_eq!(
        client_types,
        ["session.update", "response.create"],
        "{text}"
    );
    assert_eq!(
        types
            .iter()
            .filter(|(d, _)| d == "upstream_to_client")
            .count() as u64,
        closed["upstream_to_client_messages"].as_u64().unwrap_or(0),
        "one debug line per upstream message: {text}"
    );
    assert!(
        records.iter().any(|r| r["message"]
            .as_str()
            .is_some_and(|m| m.contains("stopped: 0 session(s) at shutdown, 0 cut"))),
        "{text}"
    );
}

/// With DEBUG=true the type logged for an upstream event is its top-level `type`, also when a
/// nested object with a `type` comes first (the demo server's JSON has sorted keys).
#[actix_web::test]
async fn debug_logs_the_top_level_event_type() {
    let (lines, records) = json_logged_session("json-event-types").await;
    let upstream: Vec<String> = event_types(&records)
        .into_iter()
        .filter(|(d, _)| d == "upstream_to_client")
        .map(|(_, t)| t)
        .collect();
    let text = lines.join("\n");
    assert_eq!(
        upstream.first().map(String::as_str),
        Some("session.created"),
        "{text}"
    );
    assert_eq!(
        upstream.get(1).map(String::as_str),
        Some("session.updated"),
        "{text}"
    );
    assert_eq!(
        upstream.last().map(String::as_str),
        Some("response.done"),
        "{text}"
    );
    for t in &upstream {
        assert!(
            t.starts_with("session.")
                || t.starts_with("response.")
                || t.starts_with("conversation."),
            "{t:?} is not a Realtime server event type: {upstream:?}"
        );
    }
}
