//! The relay binary treated roughly: killed with SIGKILL and started again on the same usage state
//! file, and drained by SIGTERM while fifty clients have messages in flight. Each child runs with
//! a cleared environment in a fresh directory; every wait is bounded and polls a condition, never
//! a sleep. Starting it with random configuration is `config_fuzz`.

use std::{
    cell::Cell,
    time::{Duration, Instant},
};

use awc::ws::{Frame, Message};
use fake_upstream::Script;
use futures_util::{future::join_all, SinkExt, StreamExt};
use openai_realtime_relay::protection::usage::Ledger;
use serde_json::Value;

use super::clients::child_relay;
use crate::common::{poll::poll, tools::TempDir, *};

/// Opens a session at `addr` and waits for `session.created`.
async fn session(addr: &str) -> Ws {
    let (_, mut ws) = connect_with(&format!("ws://{addr}/v1/realtime"), &["realtime"], &[])
        .await
        .expect("upgrade succeeds");
    let first = next_json(&mut ws).await;
    assert_eq!(first["type"], "session.created", "{first}");
    ws
}

/// Sends `response.create` and returns the `total_tokens` of its `response.done`.
async fn respond(ws: &mut Ws) -> u64 {
    send_text(ws, r#"{"type":"response.create"}"#).await;
    for _ in 0..100 {
        let event = next_json(ws).await;
        assert_ne!(event["type"], "error", "{event}");
        if event["type"] == "response.done" {
            let total = &event["response"]["usage"]["total_tokens"];
            return total
                .as_u64()
                .unwrap_or_else(|| panic!("no usage: {event}"));
        }
    }
    panic!("no response.done in 100 events");
}

/// Today's and lifetime `total_tokens` in the `/stats` of the relay at `addr`.
async fn usage(addr: &str) -> (u64, u64) {
    let stats = stats::get(&format!("http://{addr}")).await;
    let total = |period: &str| {
        stats["usage"][period]["total_tokens"]
            .as_u64()
            .unwrap_or_else(|| panic!("no usage.{period}: {stats}"))
    };
    (total("today"), total("lifetime"))
}

/// A relay killed with SIGKILL loses at most what it counted since its last save: after usage
/// the state file holds, and one response more, `kill -9`; a new relay on the same
/// USAGE_STATE_FILE starts (the stale lock file does not stop it) and reports at least what the
/// file held and at most what was counted, today and lifetime, and counts on from there.
#[actix_web::test]
async fn usage_saved_before_a_kill_9_survives_it() {
    let dir = TempDir::new("faults-kill9");
    let file = dir.path().join("usage.json");
    let file_env = file.to_str().expect("UTF-8 temp path");
    let fake = start_fake(Script::demo()).await;
    let env = [("USAGE_STATE_FILE", file_env)];
    let (first, addr) = child_relay("faults-kill9-first", &fake.url(), &env).await;

    let mut counted = 0;
    for _ in 0..3 {
        let mut ws = session(&addr).await;
        counted += respond(&mut ws).await;
        close(&mut ws).await;
    }
    assert!(counted > 0, "the demo upstream reported no usage");
    // A save announces itself nowhere: poll the file (saved every 2 s while running).
    let path = &file;
    let saved = poll("the three responses saved to the state file")
        .until(|| async move {
            match Ledger::load(path) {
                Ok(l) if l.all.total_tokens == counted => Ok(l),
                Ok(l) => Err(format!("{l:?}")),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
    assert_eq!(saved.lifetime.total_tokens, counted, "{saved:?}");
    // One response more, and the kill right after it is counted: it may or may not be saved.
    let mut ws = session(&addr).await;
    counted += respond(&mut ws).await;
    let http = format!("http://{addr}");
    stats::wait_until(&http, "the fourth response counted", |s| {
        s["usage"]["today"]["total_tokens"] == counted
    })
    .await;
    first.kill().await;
    drop(ws);
    assert!(
        file.with_extension("json.lock").exists(),
        "the killed relay's lock file is left on disk"
    );

    let (second, addr) = child_relay("faults-kill9-second", &fake.url(), &env).await;
    let (today, lifetime) = usage(&addr).await;
    eprintln!(
        "kill -9: saved {} tokens, counted {counted}, restored {today} today, {lifetime} lifetime",
        saved.all.total_tokens
    );
    for restored in [today, lifetime] {
        assert!(
            (saved.all.total_tokens..=counted).contains(&restored),
            "restored {restored}, saved {}, counted {counted}",
            saved.all.total_tokens
        );
    }
    let mut ws = session(&addr).await;
    let more = respond(&mut ws).await;
    let http = format!("http://{addr}");
    stats::wait_until(&http, "usage counted on from the restored total", |s| {
        s["usage"]["today"]["total_tokens"] == today + more
            && s["usage"]["lifetime"]["total_tokens"] == lifetime + more
    })
    .await;
    close(&mut ws).await;
    second.finish().await;
    stop_fake(fake).await;
}

/// Sessions open when the drain begins.
const DRAINED: usize = 50;
/// Messages each drained client keeps in flight.
const WINDOW: usize = 4;
/// Echoes every client must have had back before the signal: traffic is flowing.
const BEFORE_SIGNAL: usize = 10;
/// The drain's `SHUTDOWN_TIMEOUT`, and what the process may take beyond it to exit.
const SHUTDOWN_MS: u64 = 5_000;
const EXIT_MARGIN: Duration = Duration::from_secs(5);

/// Message `n` of drained client `client`.
fn numbered(client: usize, n: usize) -> String {
    format!(r#"{{"type":"conversation.item.create","event_id":"c{client}-m{n}"}}"#)
}

/// One client of the drain: keeps [`WINDOW`] numbered messages in flight, checks each echo is
/// the next one (none lost before it, none twice), and returns once the relay has sent
/// `server_shutting_down` and close 1012; panics if the connection ends any other way.
async fn busy_client(addr: &str, client: usize, echoed: &Cell<usize>) {
    let mut ws = session(addr).await;
    let (mut sent, mut told) = (0, false);
    loop {
        while !told && sent < echoed.get() + WINDOW {
            let text = numbered(client, sent);
            // A write racing the relay's close may fail; what the client reads is what counts.
            match tokio::time::timeout(T, ws.send(Message::Text(text.into()))).await {
                Ok(Ok(())) => sent += 1,
                _ => break,
            }
        }
        let frame = tokio::time::timeout(T, ws.next()).await;
        let frame = match frame {
            Ok(Some(Ok(frame))) => frame,
            other => panic!(
                "client {client} was cut without a close after {} echoes (told: {told}): {other:?}",
                echoed.get()
            ),
        };
        match frame {
            Frame::Text(bytes) => {
                let event: Value = serde_json::from_slice(&bytes).expect("JSON");
                if event["type"] == "error" {
                    assert!(!told, "client {client}: a second error event: {event}");
                    assert_eq!(event["error"]["code"], "server_shutting_down", "{event}");
                    told = true;
                } else {
                    assert_eq!(
                        String::from_utf8_lossy(&bytes),
                        numbered(client, echoed.get()),
                        "client {client}: an echo lost, doubled or out of order"
                    );
                    echoed.set(echoed.get() + 1);
                }
            }
            Frame::Close(reason) => {
                assert!(told, "client {client}: a close without the error event");
                let code = reason.map(|r| u16::from(r.code));
                assert_eq!(code, Some(1012), "client {client}");
                return;
            }
            Frame::Ping(p) => {
                let _ = tokio::time::timeout(T, ws.send(Message::Pong(p))).await;
            }
            _ => {}
        }
    }
}

/// SIGTERM while 50 clients each keep messages in flight through the binary: every client gets
/// `server_shutting_down` and close 1012 (none is cut without them), the echoes before them are
/// each the next message (none doubled), every upstream is closed with 1001, and the process
/// exits 0 within SHUTDOWN_TIMEOUT plus a margin, having cut no session.
#[actix_web::test]
async fn sigterm_under_load_tells_every_client() {
    let fake = start_fake(Script::echo()).await;
    let shutdown = SHUTDOWN_MS.to_string();
    let (relay, addr) = child_relay(
        "faults-drain",
        &fake.url(),
        &[("SHUTDOWN_TIMEOUT", &shutdown)],
    )
    .await;
    let echoed: Vec<Cell<usize>> = (0..DRAINED).map(|_| Cell::new(0)).collect();
    let clients = join_all(
        echoed
            .iter()
            .enumerate()
            .map(|(n, e)| busy_client(&addr, n, e)),
    );
    let (echoed, process) = (&echoed, &relay);
    let signal = async {
        poll("traffic flowing in every session")
            .until(|| async move {
                let slowest = echoed.iter().map(Cell::get).min().unwrap_or(0);
                if slowest >= BEFORE_SIGNAL {
                    Ok(())
                } else {
                    Err(format!("the slowest client has {slowest} echoes"))
                }
            })
            .await;
        process.signal("TERM");
        Instant::now()
    };
    let (_, signalled) = futures_util::join!(clients, signal);
    let total: usize = echoed.iter().map(Cell::get).sum();

    let closes = fake
        .recorder()
        .wait_closes(DRAINED, T)
        .await
        .expect("every upstream is closed");
    for c in &closes {
        assert!(!c.abrupt, "an upstream dropped without a close: {c:?}");
        assert_eq!(c.code, Some(1001), "{c:?}");
    }
    let (status, lines) = relay.exit().await;
    let took = signalled.elapsed();
    eprintln!("drain under load: {total} echoes before the signal's close; exited in {took:?}");
    let text = lines.join("\n");
    assert_eq!(status.code(), Some(0), "{text}");
    assert!(
        took < Duration::from_millis(SHUTDOWN_MS) + EXIT_MARGIN,
        "exited {took:?} after SIGTERM"
    );
    let stopped = format!("stopped: {DRAINED} session(s) at shutdown, 0 cut");
    assert!(text.contains(&stopped), "{text}");
    stop_fake(fake).await;
}
