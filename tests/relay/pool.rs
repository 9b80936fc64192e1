//! The warm upstream pool: hits, misses, expiry, per-model shelves, replay of `session.created`,
//! and one upstream per client. Every relay here runs one worker (`WORKERS=1`) so the single
//! per-worker pool is the whole pool.

use std::time::Duration;

use fake_upstream::{Frame, Script};

use crate::common::{poll::poll, *};

/// Reads `/metrics` until the sample `series` reaches `want`; bounded by `T`. The pool fills in
/// the background, and its gauge is the only outside view of it.
async fn wait_metric(h: &Harness, series: &str, want: f64) {
    poll(format!("{series} reaching {want}"))
        .until(|| async move {
            let value = prom::sample(&metrics(h).await, series);
            if value == Some(want) {
                Ok(())
            } else {
                Err(format!("{value:?}"))
            }
        })
        .await
}

/// The pool series `relay_upstream_pool_{name}` for `model`, as it stands before its value.
fn pool_series(name: &str, model: &str) -> String {
    format!(r#"relay_upstream_pool_{name}{{model="{model}"}}"#)
}

/// The value of `relay_upstream_pool_{name}` for `model` in one `/metrics` text.
fn pool_metric(body: &str, name: &str, model: &str) -> Option<f64> {
    prom::sample(body, &pool_series(name, model))
}

/// `/metrics` as text.
async fn metrics(h: &Harness) -> String {
    get(&format!("{}/metrics", h.http()), &[]).await.1
}

/// Opens a client to `/realtime` + `query` without reading its first event.
async fn open(h: &Harness, query: &str) -> Ws {
    let (_, ws) = connect_with(&format!("{}/realtime{query}", h.base), &["realtime"], &[])
        .await
        .expect("upgrade");
    ws
}

fn session_id(created: &serde_json::Value) -> String {
    created["session"]["id"]
        .as_str()
        .expect("session.created has a session id")
        .to_string()
}

/// A client gets a pooled upstream: its first event is the `session.created` the pool buffered,
/// from a connection opened before the client arrived, and the hit is counted.
#[actix_web::test]
async fn pooled_session_replays_session_created() {
    let h = start(
        Script::echo(),
        &[("WORKERS", "1"), ("UPSTREAM_POOL_SIZE", "1")],
    )
    .await;
    wait_metric(&h, &pool_series("warm", "gpt-realtime-mini"), 1.0).await;
    let pooled = h
        .fake
        .recorder()
        .wait_handshakes(1, T)
        .await
        .expect("pool dialed");
    assert_eq!(
        pooled[0].path_and_query,
        "/v1/realtime?model=gpt-realtime-mini"
    );

    let mut ws = open(&h, "").await;
    let created = next_json(&mut ws).await;
    assert_eq!(created["type"], "session.created");
    // The fake numbers sessions by connection: the client got connection 1, the pooled one.
    assert_eq!(session_id(&created), "sess_fake000001");
    let body = metrics(&h).await;
    assert_eq!(
        pool_metric(&body, "hits_total", "gpt-realtime-mini"),
        Some(1.0)
    );
    // The session relays as usual over the pooled socket.
    send_text(&mut ws, r#"{"type":"x","event_id":"p1"}"#).await;
    assert_eq!(next_json(&mut ws).await["event_id"], "p1");
    // And a replacement is dialed in the background.
    h.fake
        .recorder()
        .wait_handshakes(2, T)
        .await
        .expect("refill dial");
    h.stop().await;
}

/// With the pool empty (the upstream now refuses new dials), a client for a pooled model misses,
/// dials itself, and the miss is counted.
#[actix_web::test]
async fn empty_pool_is_a_counted_miss() {
    let h = start(
        Script::echo(),
        &[("WORKERS", "1"), ("UPSTREAM_POOL_SIZE", "1")],
    )
    .await;
    wait_metric(&h, &pool_series("warm", "gpt-realtime-mini"), 1.0).await;
    // Slow every later handshake so the refill cannot be ready for the second client.
    let mut slow = Script::echo();
    slow.handshake_delay = Duration::from_millis(500);
    h.fake.set_script(slow);

    let first = connect(&h, "/realtime").await;
    let second = connect(&h, "/realtime").await;
    let body = metrics(&h).await;
    assert_eq!(
        pool_metric(&body, "hits_total", "gpt-realtime-mini"),
        Some(1.0)
    );
    assert_eq!(
        pool_metric(&body, "misses_total", "gpt-realtime-mini"),
        Some(1.0)
    );
    drop((first, second));
    h.stop().await;
}

/// A warm socket older than UPSTREAM_POOL_MAX_IDLE is closed and replaced.
#[actix_web::test]
async fn idle_pooled_sockets_expire_and_are_replaced() {
    let h = start(
        Script::echo(),
        &[
            ("WORKERS", "1"),
            ("UPSTREAM_POOL_SIZE", "1"),
            ("UPSTREAM_POOL_MAX_IDLE", "200"),
        ],
    )
    .await;
    let rec = h.fake.recorder();
    let closes = rec.wait_closes(1, T).await.expect("expired socket closed");
    assert_eq!(closes[0].connection, 1);
    rec.wait_handshakes(2, T).await.expect("replacement dialed");
    wait_metric(&h, &pool_series("expired_total", "gpt-realtime-mini"), 1.0).await;
    h.stop().await;
}

/// Each pooled model has its own shelf: a client gets a socket opened for the model it asked
/// for, never another model's; unpooled models dial fresh.
#[actix_web::test]
async fn pool_is_never_shared_across_models() {
    let h = start(
        Script::echo(),
        &[
            ("WORKERS", "1"),
            ("UPSTREAM_POOL_SIZE", "1"),
            ("UPSTREAM_POOL_MODELS", "gpt-realtime"),
        ],
    )
    .await;
    wait_metric(&h, &pool_series("warm", "gpt-realtime-mini"), 1.0).await;
    wait_metric(&h, &pool_series("warm", "gpt-realtime"), 1.0).await;

    let mut full = open(&h, "?model=gpt-realtime").await;
    let created = next_json(&mut full).await;
    assert_eq!(created["session"]["model"], "gpt-realtime");
    let mut other = open(&h, "?model=gpt-realtime-2").await;
    let created = next_json(&mut other).await;
    assert_eq!(created["session"]["model"], "gpt-realtime-2");
    let body = metrics(&h).await;
    assert_eq!(pool_metric(&body, "hits_total", "gpt-realtime"), Some(1.0));
    assert_eq!(
        pool_metric(&body, "hits_total", "gpt-realtime-mini"),
        Some(0.0)
    );
    h.stop().await;
}

/// Two clients never share one upstream: each gets its own pooled connection, and messages
/// from each arrive on a different upstream connection.
#[actix_web::test]
async fn two_clients_get_two_upstreams() {
    let h = start(
        Script::echo(),
        &[("WORKERS", "1"), ("UPSTREAM_POOL_SIZE", "2")],
    )
    .await;
    wait_metric(&h, &pool_series("warm", "gpt-realtime-mini"), 2.0).await;
    let mut a = open(&h, "").await;
    let mut b = open(&h, "").await;
    let id_a = session_id(&next_json(&mut a).await);
    let id_b = session_id(&next_json(&mut b).await);
    assert_ne!(id_a, id_b);
    send_text(&mut a, r#"{"type":"x","event_id":"from-a"}"#).await;
    send_text(&mut b, r#"{"type":"x","event_id":"from-b"}"#).await;
    assert_eq!(next_json(&mut a).await["event_id"], "from-a");
    assert_eq!(next_json(&mut b).await["event_id"], "from-b");
    let msgs = h
        .fake
        .recorder()
        .wait_messages(2, T)
        .await
        .expect("both relayed");
    let conn_of = |id: &str| {
        msgs.iter()
            .find(|m| matches!(&m.frame, Frame::Text(t) if t.contains(id)))
            .map(|m| m.connection)
            .expect("message recorded")
    };
    assert_ne!(conn_of("from-a"), conn_of("from-b"));
    h.stop().await;
}
