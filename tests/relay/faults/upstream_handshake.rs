//! An upstream that never finishes opening a session: it accepts TCP and never answers the
//! upgrade, or upgrades and then never sends `session.created`, with and without a warm pool in
//! front of it. The client gets `upstream_timeout` or a working session of its own, `/health`
//! answers throughout, and the slot comes back.

use std::{cell::Cell, rc::Rc, time::Duration};

use awc::ws::{Frame, Message};
use fake_upstream::Script;
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncReadExt;

use super::upstream::{assert_healthy, metric};
use crate::common::*;

/// A TCP listener that accepts one connection and holds it without a byte of answer; the
/// socket comes out of the returned channel once accepted.
async fn silent_listener() -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Receiver<tokio::net::TcpStream>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("address");
    let (tx, rx) = tokio::sync::oneshot::channel();
    actix_web::rt::spawn(async move {
        if let Ok(Ok((socket, _))) = tokio::time::timeout(T, listener.accept()).await {
            let _ = tx.send(socket);
        }
        // The listener stays bound (its backlog still completes handshakes) until T passes.
        tokio::time::sleep(T).await;
    });
    (addr, rx)
}

/// An upstream that accepts TCP and never answers the upgrade: the client gets
/// `upstream_timeout` (1013) after UPSTREAM_CONNECT_TIMEOUT, `/health` answers while it waits,
/// the slot comes back (a second session is admitted), and the relay lets go of the socket.
#[actix_web::test]
async fn upstream_that_never_answers_the_handshake_times_out() {
    let (addr, accepted) = silent_listener().await;
    let relay = start_relay(config(
        &format!("ws://{addr}/v1/realtime"),
        &[
            ("UPSTREAM_CONNECT_TIMEOUT", "1000"),
            ("MAX_CONNECTIONS", "1"),
        ],
    ))
    .await;
    let http = http(&relay);
    let base = format!("ws://{}/realtime", relay.local_addr());
    assert_healthy(&http).await;

    let (_, mut ws) = connect_with(&base, &["realtime"], &[])
        .await
        .expect("upgrade");
    let mut upstream = timed("the relay's dial", accepted).await.expect("dialed");
    // While the dial hangs, the admin endpoint answers, again and again, until the session ends.
    let waiting = Rc::new(Cell::new(true));
    let answered_meanwhile = {
        let waiting = waiting.clone();
        let http = http.clone();
        async move {
            let mut answered = 0;
            loop {
                assert_healthy(&http).await;
                answered += 1;
                if !waiting.get() {
                    return answered;
                }
                // Pacing between probes, not a wait for readiness.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let failure = async {
        let error = expect_failure(&mut ws, "upstream_timeout", 1013).await;
        waiting.set(false);
        error
    };
    let (error, answered) = tokio::join!(failure, answered_meanwhile);
    assert_message_contains(&error, "1000 ms");
    eprintln!("/health answered {answered} times while the dial hung");

    stats::wait_until(&http, "the timed-out session gone", |s| {
        s["active_sessions"] == 0 && s["closed_by_reason"]["upstream_timeout"] == 1
    })
    .await;
    // The relay gave up on the socket: after its upgrade request, the stream ends.
    let mut request = Vec::new();
    timed(
        "the relay to close the hung socket",
        upstream.read_to_end(&mut request),
    )
    .await
    .expect("read");
    let request = String::from_utf8_lossy(&request);
    assert!(request.starts_with("GET /v1/realtime?"), "{request}");
    // The slot is free: with MAX_CONNECTIONS=1 the next session is admitted (and dials; the
    // listener's backlog holds its connection, unanswered, so it times out the same way).
    let (_, mut again) = connect_with(&base, &["realtime"], &[])
        .await
        .expect("upgrade");
    expect_failure(&mut again, "upstream_timeout", 1013).await;
    assert_healthy(&http).await;
    stop_relay(relay).await;
}

/// An upstream that answers the upgrade with 101 and then never sends `session.created`: the
/// relay does not wait for that event (only pooled sockets do), so the session is open, quiet
/// and usable: no error and no close for three connect timeouts, and messages pass both ways.
#[actix_web::test]
async fn upstream_that_upgrades_but_never_sends_session_created_stays_open() {
    let h = start(
        Script {
            send_session_created: false,
            ..Script::echo()
        },
        &[
            ("UPSTREAM_CONNECT_TIMEOUT", "500"),
            ("HEARTBEAT_INTERVAL", "200"),
        ],
    )
    .await;
    let (_, mut ws) = connect_with(&format!("{}/realtime", h.base), &["realtime"], &[])
        .await
        .expect("upgrade");
    h.fake
        .recorder()
        .wait_handshakes(1, T)
        .await
        .expect("the relay dialed");
    // Deliberately quiet for three connect timeouts, answering the relay's pings.
    let quiet_until = tokio::time::Instant::now() + Duration::from_millis(1500);
    loop {
        match tokio::time::timeout_at(quiet_until, ws.next()).await {
            Err(_) => break,
            Ok(Some(Ok(Frame::Ping(p)))) => {
                timed("a pong", ws.send(Message::Pong(p)))
                    .await
                    .expect("pong sent");
            }
            Ok(Some(Ok(Frame::Pong(_)))) => {}
            Ok(other) => panic!("the quiet session got {other:?}"),
        }
    }
    let s = stats::get(&h.http()).await;
    assert_eq!(s["active_sessions"], 1, "{s}");
    send_text(
        &mut ws,
        r#"{"type":"session.update","event_id":"still_here"}"#,
    )
    .await;
    let echo = next_json(&mut ws).await;
    assert_eq!(echo["event_id"], "still_here", "{echo}");
    let got = h
        .fake
        .recorder()
        .wait_messages(1, T)
        .await
        .expect("relayed");
    assert_eq!(got[0].json().expect("JSON")["event_id"], "still_here");
    close(&mut ws).await;
    h.stop().await;
}

/// A warm pool before an upstream that upgrades and never sends `session.created`: a warm socket
/// waits UPSTREAM_CONNECT_TIMEOUT for that event, then is closed and dialed again on the pool's
/// tick, so the pool stays empty; a client misses it and gets a socket of its own, which works.
#[actix_web::test]
async fn warm_pool_before_an_upstream_without_session_created_stays_empty() {
    let h = start(
        Script {
            send_session_created: false,
            ..Script::echo()
        },
        &[
            ("WORKERS", "1"),
            ("UPSTREAM_POOL_SIZE", "1"),
            ("UPSTREAM_POOL_MAX_IDLE", "400"),
            ("UPSTREAM_CONNECT_TIMEOUT", "300"),
        ],
    )
    .await;
    let http = h.http();
    let warm = r#"relay_upstream_pool_warm{model="gpt-realtime-mini"}"#;
    // Two warm sockets given up and closed by the relay, a third dialed.
    let closes = h.fake.recorder().wait_closes(2, T).await.expect("given up");
    assert!(closes.iter().all(|c| c.abrupt), "{closes:?}");
    h.fake
        .recorder()
        .wait_handshakes(3, T)
        .await
        .expect("redialed");
    assert_eq!(metric(&http, warm).await, 0.0);

    let (_, mut ws) = connect_with(&format!("{}/realtime", h.base), &["realtime"], &[])
        .await
        .expect("upgrade");
    send_text(&mut ws, r#"{"type":"session.update","event_id":"own"}"#).await;
    let echo = next_json(&mut ws).await;
    assert_eq!(echo["event_id"], "own", "{echo}");
    let misses = r#"relay_upstream_pool_misses_total{model="gpt-realtime-mini"}"#;
    assert_eq!(metric(&http, misses).await, 1.0);
    assert_eq!(metric(&http, warm).await, 0.0);
    close(&mut ws).await;
    h.stop().await;
}
