//! Usage no client can dodge (issue 10): a client that leaves or closes mid-response is still
//! charged for the response (the relay asks the upstream to cancel and reads its `response.done`
//! before closing), dodging runs into the budget like paying does, and once a budget is spent a
//! new `response.create` is refused rather than forwarded. The demo fake's response reports 32
//! tokens; with `demo_delta_delay` it streams slowly enough to leave in the middle.

use std::time::Duration;

use fake_upstream::{Received, Script};

use crate::common::*;

/// The demo response, one delta every 100 ms (about 0.8 s in all).
fn slow_demo() -> Script {
    Script {
        demo_delta_delay: Duration::from_millis(100),
        ..Script::demo()
    }
}

/// Opens a session, starts a response and reads until its first audio delta.
async fn start_a_response(h: &Harness) -> Ws {
    // `connect` has read `session.created`.
    let mut ws = connect(h, "/realtime").await;
    send_text(&mut ws, r#"{"type":"response.create","event_id":"dodge"}"#).await;
    loop {
        let event = next_json(&mut ws).await;
        assert_ne!(event["type"], "error", "{event}");
        if event["type"] == "response.output_audio.delta" {
            return ws;
        }
    }
}

/// The `response.cancel` events the upstream received.
fn cancels(messages: &[Received]) -> usize {
    messages
        .iter()
        .filter_map(Received::json)
        .filter(|m| m["type"] == "response.cancel")
        .count()
}

/// Three clients drop their TCP connection after the first delta of a response: all three
/// responses are counted (96 tokens), each upstream was asked to cancel, none is unaccounted.
#[actix_web::test]
async fn a_client_that_drops_mid_response_is_still_charged() {
    let h = start(slow_demo(), &[]).await;
    for _ in 0..3 {
        let ws = start_a_response(&h).await;
        drop(ws);
    }
    let s = stats::wait_until(&h.http(), "96 tokens today", |s| {
        s["usage"]["today"]["total_tokens"] == 96
    })
    .await;
    assert_eq!(s["closed_by_reason"]["client_gone"], 3, "{s}");
    h.fake
        .recorder()
        .wait_closes(3, T)
        .await
        .expect("upstreams closed");
    assert_eq!(cancels(&h.fake.recorder().messages()), 3);
    let (_, metrics) = get(&format!("{}/metrics", h.http()), &[]).await;
    assert_eq!(
        prom::sample(&metrics, "relay_unaccounted_responses_total"),
        Some(0.0)
    );
    h.stop().await;
}

/// A client that closes (1000) after the first delta is charged the same way.
#[actix_web::test]
async fn a_client_that_closes_mid_response_is_still_charged() {
    let h = start(slow_demo(), &[]).await;
    let mut ws = start_a_response(&h).await;
    close(&mut ws).await;
    stats::wait_until(&h.http(), "32 tokens today", |s| {
        s["usage"]["today"]["total_tokens"] == 32
    })
    .await;
    h.stop().await;
}

/// CLIENT_DAILY_TOKEN_BUDGET=60: two dodged responses (64 tokens) spend it, and the next
/// session is refused with `budget_exceeded`, exactly as if the client had listened.
#[actix_web::test]
async fn dodging_runs_into_the_budget() {
    let h = start(slow_demo(), &[("CLIENT_DAILY_TOKEN_BUDGET", "60")]).await;
    for _ in 0..2 {
        drop(start_a_response(&h).await);
    }
    stats::wait_until(&h.http(), "64 tokens today", |s| {
        s["usage"]["today"]["total_tokens"] == 64
    })
    .await;
    let (_, mut ws) = connect_with(
        &format!("ws://{}/realtime", h.relay.local_addr()),
        &["realtime"],
        &[],
    )
    .await
    .expect("upgrade succeeds");
    expect_failure(&mut ws, "budget_exceeded", 1008).await;
    h.stop().await;
}

/// Once a budget is spent, a session with a response in flight may finish it, but a new
/// `response.create` (its `type` first or late) gets a `budget_exceeded` error event and never
/// reaches the upstream; the
/// session then ends with `budget_exceeded` after the response in flight.
#[actix_web::test]
async fn a_spent_budget_refuses_new_responses() {
    let h = start(
        Script {
            demo_delta_delay: Duration::from_millis(150),
            ..Script::demo()
        },
        &[("CLIENT_DAILY_TOKEN_BUDGET", "32")],
    )
    .await;
    // The slow session: its response is in flight when the budget is spent.
    let mut slow = start_a_response(&h).await;
    // A fast session of the same client spends the budget (32 tokens).
    h.fake.set_script(Script::demo());
    let mut fast = connect(&h, "/realtime").await;
    send_text(&mut fast, r#"{"type":"response.create","event_id":"fast"}"#).await;
    loop {
        if next_json(&mut fast).await["type"] == "response.done" {
            break;
        }
    }
    expect_failure(&mut fast, "budget_exceeded", 1008).await;

    send_text(&mut slow, r#"{"type":"response.create","event_id":"more"}"#).await;
    // The same with `type` past the first bytes, where a first-bytes look would miss it.
    let late = format!(
        r#"{{"event_id":"late","response":{{"instructions":"{}"}},"type":"response.create"}}"#,
        "x".repeat(200)
    );
    send_text(&mut slow, &late).await;
    let mut refused = 0;
    let mut done = false;
    while !(refused == 2 && done) {
        let event = next_json(&mut slow).await;
        match event["type"].as_str() {
            Some("error") => {
                assert_eq!(event["error"]["code"], "budget_exceeded", "{event}");
                refused += 1;
            }
            Some("response.done") => done = true,
            _ => {}
        }
    }
    expect_failure(&mut slow, "budget_exceeded", 1008).await;
    let creates = h
        .fake
        .recorder()
        .messages()
        .iter()
        .filter_map(Received::json)
        .filter(|m| m["type"] == "response.create")
        .count();
    assert_eq!(creates, 2, "the refused response.create was forwarded");
    h.stop().await;
}
