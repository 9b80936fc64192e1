//! Graceful drain: in-process through `Relay::drain`, and in the binary on SIGTERM, with a
//! second signal that does not wait.

use std::cell::Cell;

use fake_upstream::{Mode, Script};
use openai_realtime_relay::DrainReport;
use serde_json::Value;

use super::{expect_upgrade_refused, poll_once, session};
use crate::common::{child::Process, poll::poll, *};

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
        let stats = stats::get(&h.http()).await;
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
    h.stop().await;
}

/// A client that arrives just after the last session ended still gets the promised 503
/// `server_shutting_down`, not a refused connection: the drain keeps listening for a moment.
#[actix_web::test]
async fn a_late_upgrade_during_a_short_drain_gets_503() {
    let h = start(Script::echo(), &[]).await;
    let mut a = connect(&h, "/realtime").await;
    let url = format!("{}/realtime", h.base);
    let late = async {
        expect_failure(&mut a, "server_shutting_down", 1012).await;
        // The only session is gone: the drain has nothing left to wait for.
        expect_upgrade_refused(&url, 503).await;
    };
    let (report, ()) = futures_util::join!(timed("the drain", h.relay.drain()), late);
    assert_eq!(report.sessions, 1);
    h.stop().await;
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
    let (http, previous) = (h.http(), Cell::new(u64::MAX));
    let (http, previous) = (http.as_str(), &previous);
    let relayed = poll("over a MiB relayed toward the client, then no more")
        .until(|| async move {
            let stats = stats::get(http).await;
            let relayed = stats["upstream_to_client"]["bytes"].as_u64().unwrap_or(0);
            if relayed > 1024 * 1024 && relayed == previous.replace(relayed) {
                Ok(relayed)
            } else {
                Err(format!("{relayed} bytes"))
            }
        })
        .await;
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
    h.stop().await;
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
