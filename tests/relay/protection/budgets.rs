//! Daily token budgets, per client and relay-wide: the session that spends it ends after its
//! response, later ones are refused, and a response in flight elsewhere is finished first.

use std::time::{Duration, Instant};

use awc::ws::Frame;

use super::*;

/// CLIENT_DAILY_TOKEN_BUDGET=40: alice's second response (64 tokens) is delivered whole, then her
/// session ends with `budget_exceeded` + 1008; a new alice session is refused in both styles
/// with no dial; bob, live and new, is unaffected.
#[actix_web::test]
async fn client_budget_ends_and_refuses_only_that_client() {
    let h = with_tokens(&[("CLIENT_DAILY_TOKEN_BUDGET", "40")]).await;
    let mut bob = alice_overspends(&h, "per-client").await;

    for style in STYLES {
        refused(&h.base, "/", style, Some(ALICE), "budget_exceeded").await;
    }
    respond(&mut bob).await;
    let _bob2 = admitted(&h.base, "/", Style::Sdk, Some(BOB)).await;
    dials(&h.fake, 3).await;

    let s = stats::get(&h.http()).await;
    assert_eq!(
        by_identity(&s),
        BTreeMap::from([
            ("token:alice".to_string(), 64),
            ("token:bob".to_string(), 32)
        ])
    );
    assert_eq!(s["usage"]["client_daily_token_budget"], 40, "{s}");
    assert_eq!(s["closed_by_reason"]["budget_exceeded"], 1, "{s}");
    assert_eq!(s["rejected_by_reason"]["budget_exceeded"], 2, "{s}");
    h.stop().await;
}

/// With bob's session live, alice spends 64 tokens in two responses, past a budget of 40, and her
/// session ends with `budget_exceeded` + 1008 and a message naming the `scope` of the budget;
/// returns bob's session.
async fn alice_overspends(h: &Harness, scope: &str) -> Ws {
    let bob = admitted(&h.base, "/", Style::Browser, Some(BOB)).await;
    let mut alice = admitted(&h.base, "/", Style::Sdk, Some(ALICE)).await;
    respond(&mut alice).await;
    respond(&mut alice).await;
    let error = expect_failure(&mut alice, "budget_exceeded", 1008).await;
    assert_message_contains(&error, scope);
    bob
}

/// DAILY_TOKEN_BUDGET=40 (relay-wide): once spent, every live session ends with
/// `budget_exceeded` + 1008 and every client is refused, with no dial.
#[actix_web::test]
async fn global_budget_ends_and_refuses_everyone() {
    let h = with_tokens(&[("DAILY_TOKEN_BUDGET", "40")]).await;
    let mut bob = alice_overspends(&h, "relay-wide").await;
    expect_failure(&mut bob, "budget_exceeded", 1008).await;

    for style in STYLES {
        for token in [ALICE, BOB] {
            refused(&h.base, "/", style, Some(token), "budget_exceeded").await;
        }
    }
    assert_dials(&h.fake, 2);
    let s = stats::get(&h.http()).await;
    assert_eq!(s["usage"]["today"]["total_tokens"], 64, "{s}");
    assert_eq!(s["usage"]["daily_token_budget"], 40, "{s}");
    h.stop().await;
}

/// The cut-off waits for the response in flight: when alice's other session spends her budget
/// while this one is streaming a (slow) response, this one gets every delta and `response.done`
/// before its `budget_exceeded` close.
#[actix_web::test]
async fn budget_cut_off_waits_for_the_response_in_flight() {
    let slow = Script {
        demo_delta_delay: Duration::from_millis(150),
        ..Script::demo()
    };
    let h = start(
        slow,
        &[
            ("RELAY_TOKENS", TOKENS),
            ("CLIENT_DAILY_TOKEN_BUDGET", "40"),
        ],
    )
    .await;
    let mut streaming = admitted(&h.base, "/", Style::Browser, Some(ALICE)).await;
    h.fake.set_script(Script::demo());
    let mut spender = admitted(&h.base, "/", Style::Sdk, Some(ALICE)).await;
    respond(&mut spender).await; // 32 of 40

    send_text(&mut streaming, r#"{"type":"response.create"}"#).await;
    let created = next_json(&mut streaming).await;
    assert_eq!(created["type"], "response.created", "{created}");

    respond(&mut spender).await; // 64: spent while `streaming` has a response in flight
    let cut_at = Instant::now();
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
    let done_after = cut_at.elapsed();
    assert_eq!(error["error"]["code"], "budget_exceeded", "{error}");
    match close {
        Frame::Close(Some(r)) => assert_eq!(u16::from(r.code), 1008, "{r:?}"),
        other => panic!("expected a close after the error, got {other:?}"),
    }
    let count = |t: &str| types.iter().filter(|x| *x == t).count();
    assert_eq!(count("response.output_audio.delta"), 4, "{types:?}");
    assert_eq!(
        count("response.output_audio_transcript.delta"),
        4,
        "{types:?}"
    );
    assert_eq!(types.last().map(String::as_str), Some("response.done"));
    // The other session's cut came well before this response finished streaming.
    assert!(
        done_after >= Duration::from_millis(300),
        "the response was not in flight at the cut ({done_after:?})"
    );
    h.stop().await;
}
