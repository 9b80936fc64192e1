//! `CLIENT_DAILY_TOKEN_BUDGET`, `DAILY_TOKEN_BUDGET` and the budgets in dollars held once across
//! instances: a budget spent through one instance refuses new sessions on the others and ends
//! their live sessions of that budget (after the response in flight), within the 2 s each instance
//! takes to read today's totals.

use std::time::{Duration, Instant};

use awc::ws::Frame;
use fake_upstream::Script;
use serde_json::Value;

use super::instances::*;
use crate::common::{assert_message_contains, expect_failure, next_frame, next_json, send_text};

/// CLIENT_DAILY_TOKEN_BUDGET=20: one 32-token response of alice's through A spends her budget;
/// her idle session on B then ends with `budget_exceeded` + 1008 ("per-client"), a new alice
/// session is refused on both instances, and bob, live and new, is unaffected.
#[actix_web::test]
async fn client_budget_spent_through_one_instance_holds_on_the_other() {
    let Some((redis, fake)) = redis_and_fake("client-budget").await else {
        return;
    };
    let env = [
        ("RELAY_TOKENS", TOKENS),
        ("CLIENT_DAILY_TOKEN_BUDGET", "20"),
    ];
    let a = Instance::start("redis-client-budget-a", &fake.url(), &redis.url(), &env).await;
    let b = Instance::start("redis-client-budget-b", &fake.url(), &redis.url(), &env).await;
    let mut alice_on_b = admitted(&b.url(), Some(ALICE)).await;
    let mut bob_on_b = admitted(&b.url(), Some(BOB)).await;

    let mut alice_on_a = admitted(&a.url(), Some(ALICE)).await;
    respond(&mut alice_on_a).await;
    let spent_at = Instant::now();
    expect_failure(&mut alice_on_a, "budget_exceeded", 1008).await;

    let error = expect_failure(&mut alice_on_b, "budget_exceeded", 1008).await;
    eprintln!(
        "alice's session on B ended {:?} after her budget was spent through A",
        spent_at.elapsed()
    );
    assert_message_contains(&error, "per-client");
    for instance in [&a, &b] {
        refused(&instance.url(), Some(ALICE), "budget_exceeded").await;
    }
    // Bob's session still relays (a response would spend his own 20 tokens: an update instead).
    send_text(
        &mut bob_on_b,
        r#"{"type":"session.update","session":{"instructions":"hi"}}"#,
    )
    .await;
    let updated = next_json(&mut bob_on_b).await;
    assert_eq!(updated["type"], "session.updated", "{updated}");
    let _bob_again = admitted(&b.url(), Some(BOB)).await;

    let stats = b.cluster().await;
    assert_eq!(
        stats["usage"]["by_identity"],
        serde_json::json!([{"identity": "token:alice", "billable_tokens": 32}]),
        "{stats}"
    );
}

/// DAILY_TOKEN_BUDGET=20 (relay-wide): alice's response through A spends it; bob's idle session
/// on B ends with `budget_exceeded` + 1008 ("relay-wide"), and every client is refused on both.
#[actix_web::test]
async fn global_budget_spent_through_one_instance_holds_on_the_other() {
    let Some((redis, fake)) = redis_and_fake("global-budget").await else {
        return;
    };
    let env = [("RELAY_TOKENS", TOKENS), ("DAILY_TOKEN_BUDGET", "20")];
    let a = Instance::start("redis-global-budget-a", &fake.url(), &redis.url(), &env).await;
    let b = Instance::start("redis-global-budget-b", &fake.url(), &redis.url(), &env).await;
    let mut bob_on_b = admitted(&b.url(), Some(BOB)).await;

    let mut alice_on_a = admitted(&a.url(), Some(ALICE)).await;
    respond(&mut alice_on_a).await;
    expect_failure(&mut alice_on_a, "budget_exceeded", 1008).await;

    let error = expect_failure(&mut bob_on_b, "budget_exceeded", 1008).await;
    assert_message_contains(&error, "relay-wide");
    for instance in [&a, &b] {
        for token in [ALICE, BOB] {
            refused(&instance.url(), Some(token), "budget_exceeded").await;
        }
    }
    assert_eq!(
        fake.recorder().handshakes().len(),
        2,
        "a refusal dialed upstream"
    );
}

/// A session on B streaming a (slow) response when alice's budget is spent through A gets every
/// delta and its `response.done` before its `budget_exceeded` + 1008: the cut-off another
/// instance causes never cuts a response short.
#[actix_web::test]
async fn a_budget_spent_elsewhere_lets_the_response_in_flight_finish() {
    let Some((redis, fake)) = redis_and_fake("budget-in-flight").await else {
        return;
    };
    let env = [
        ("RELAY_TOKENS", TOKENS),
        ("CLIENT_DAILY_TOKEN_BUDGET", "20"),
    ];
    let a = Instance::start("redis-in-flight-a", &fake.url(), &redis.url(), &env).await;
    let b = Instance::start("redis-in-flight-b", &fake.url(), &redis.url(), &env).await;
    // 8 deltas 400 ms apart: longer than the 2 s in which B reads today's totals.
    fake.set_script(Script {
        demo_delta_delay: Duration::from_millis(400),
        ..Script::demo()
    });
    let mut streaming = admitted(&b.url(), Some(ALICE)).await;
    fake.set_script(Script::demo());
    let mut spender = admitted(&a.url(), Some(ALICE)).await;

    send_text(&mut streaming, r#"{"type":"response.create"}"#).await;
    let created = next_json(&mut streaming).await;
    assert_eq!(created["type"], "response.created", "{created}");
    respond(&mut spender).await;
    expect_failure(&mut spender, "budget_exceeded", 1008).await;

    let mut types = Vec::new();
    let (error, close) = loop {
        match next_frame(&mut streaming).await {
            Frame::Text(b) => {
                let v: Value = serde_json::from_slice(&b).expect("JSON");
                if v["type"] == "error" {
                    break (v, next_frame(&mut streaming).await);
                }
                types.push(v["type"].as_str().expect("type").to_string());
            }
            other => panic!("{other:?} before the error event; got {types:?}"),
        }
    };
    assert_eq!(error["error"]["code"], "budget_exceeded", "{error}");
    match close {
        Frame::Close(Some(r)) => assert_eq!(u16::from(r.code), 1008, "{r:?}"),
        other => panic!("expected a close after the error, got {other:?}"),
    }
    let deltas = types.iter().filter(|t| t.ends_with(".delta")).count();
    assert_eq!(deltas, 8, "{types:?}");
    assert_eq!(types.last().map(String::as_str), Some("response.done"));
}

/// CLIENT_DAILY_USD_BUDGET=0.0003, priced by the built-in table (a demo response on
/// gpt-realtime-mini costs $0.000338): one response of alice's through A spends it; her idle
/// session on B ends with `budget_exceeded` naming the dollar budget, and she is refused on
/// both instances.
#[actix_web::test]
async fn usd_budget_spent_through_one_instance_holds_on_the_other() {
    let Some((redis, fake)) = redis_and_fake("usd-budget").await else {
        return;
    };
    let env = [
        ("RELAY_TOKENS", TOKENS),
        ("CLIENT_DAILY_USD_BUDGET", "0.0003"),
    ];
    let a = Instance::start("redis-usd-budget-a", &fake.url(), &redis.url(), &env).await;
    let b = Instance::start("redis-usd-budget-b", &fake.url(), &redis.url(), &env).await;
    let mut alice_on_b = admitted(&b.url(), Some(ALICE)).await;

    let mut alice_on_a = admitted(&a.url(), Some(ALICE)).await;
    respond(&mut alice_on_a).await;
    expect_failure(&mut alice_on_a, "budget_exceeded", 1008).await;

    let error = expect_failure(&mut alice_on_b, "budget_exceeded", 1008).await;
    assert_message_contains(&error, "per-client daily USD");
    for instance in [&a, &b] {
        refused(&instance.url(), Some(ALICE), "budget_exceeded").await;
    }
    let _bob = admitted(&b.url(), Some(BOB)).await;
    let stats = b.cluster().await;
    assert_eq!(stats["usage"]["today"]["cost_nano_usd"], 338_000, "{stats}");
    assert_eq!(stats["usage"]["today"]["cost_usd"], 0.000338, "{stats}");
}
