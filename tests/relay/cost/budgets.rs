//! Daily budgets in dollars behave like the token budgets: the session that spends one ends
//! after its response with `budget_exceeded` (1008) naming the budget, and new sessions are
//! refused; a client's own budget comes from its tokens-file entry (TOML or JSON) or its JWT.

use fake_upstream::Script;
use openai_realtime_relay::{config::Secret, protection::identity::mint_jwt};
use serde_json::json;

use super::*;

const JWT_SECRET: &str = "jwt-secret-for-tests-0123456789abcdef";

/// Alice spends $0.00068 in two responses, past a budget of $0.0005: her session ends with
/// `budget_exceeded` naming `words`, and a new session of hers is refused.
async fn alice_overspends(h: &Harness, alice: &str, words: &str) {
    let mut ws = session(h, "/", Some(alice)).await;
    respond(&mut ws).await;
    respond(&mut ws).await;
    let error = expect_failure(&mut ws, "budget_exceeded", 1008).await;
    assert_message_contains(&error, words);
    let (_, mut again) = connect_with(
        &format!("{}/", h.base),
        &[],
        &[("Authorization", &format!("Bearer {alice}"))],
    )
    .await
    .expect("upgrade");
    expect_failure(&mut again, "budget_exceeded", 1008).await;
}

/// CLIENT_DAILY_USD_BUDGET=0.0005: alice is cut after the response that spends it and refused
/// afterwards; bob, with the same budget unspent, is admitted.
#[actix_web::test]
async fn client_usd_budget_ends_and_refuses_that_client() {
    let prices = scratch("pricing.toml", PRICES);
    let h = start(
        Script::demo(),
        &[
            ("PRICING_FILE", prices.to_str().expect("utf-8")),
            ("RELAY_TOKENS", "alice:tok-alice-1,bob:tok-bob-2"),
            ("CLIENT_DAILY_USD_BUDGET", "0.0005"),
        ],
    )
    .await;
    alice_overspends(&h, "tok-alice-1", "per-client daily USD").await;
    let mut bob = session(&h, "/", Some("tok-bob-2")).await;
    respond(&mut bob).await;
    let s = stats::get(&h.http()).await;
    assert_eq!(s["usage"]["client_daily_usd_budget"], 0.0005, "{s}");
    assert_eq!(
        identity(&s, "token:alice")["usage"]["cost_nano_usd"],
        2 * RESPONSE_NANO
    );
    assert_eq!(s["rejected_by_reason"]["budget_exceeded"], 1, "{s}");
    h.stop().await;
}

/// DAILY_USD_BUDGET=0.0005 is relay-wide: once alice spends it, bob is refused too.
#[actix_web::test]
async fn global_usd_budget_refuses_everyone() {
    let prices = scratch("pricing.toml", PRICES);
    let h = start(
        Script::demo(),
        &[
            ("PRICING_FILE", prices.to_str().expect("utf-8")),
            ("RELAY_TOKENS", "alice:tok-alice-1,bob:tok-bob-2"),
            ("DAILY_USD_BUDGET", "0.0005"),
        ],
    )
    .await;
    alice_overspends(&h, "tok-alice-1", "relay-wide daily USD").await;
    let (_, mut bob) = connect_with(
        &format!("{}/", h.base),
        &[],
        &[("Authorization", "Bearer tok-bob-2")],
    )
    .await
    .expect("upgrade");
    let error = expect_failure(&mut bob, "budget_exceeded", 1008).await;
    assert_message_contains(&error, "relay-wide daily USD");
    h.stop().await;
}

/// A TOML tokens file gives alice her own budget of $0.0005 (bob has none); a JSON one works
/// the same.
#[actix_web::test]
async fn tokens_file_carries_a_client_budget() {
    let prices = scratch("pricing.toml", PRICES);
    let toml = scratch(
        "tokens.toml",
        "[[clients]]\nname = \"alice\"\ntoken = \"tok-alice-1\"\ndaily_usd_budget = 0.0005\n\
         policy = \"support\"\n\n[[clients]]\nname = \"bob\"\ntoken = \"tok-bob-2\"\n",
    );
    let json = scratch(
        "tokens.json",
        r#"{"clients":[{"name":"alice","token":"tok-alice-1","daily_usd_budget":0.0005},{"name":"bob","token":"tok-bob-2"}]}"#,
    );
    for file in [toml, json] {
        let h = start(
            Script::demo(),
            &[
                ("PRICING_FILE", prices.to_str().expect("utf-8")),
                ("RELAY_TOKENS_FILE", file.to_str().expect("utf-8")),
            ],
        )
        .await;
        alice_overspends(&h, "tok-alice-1", "per-client daily USD").await;
        let mut bob = session(&h, "/", Some("tok-bob-2")).await;
        respond(&mut bob).await;
        respond(&mut bob).await;
        respond(&mut bob).await;
        close(&mut bob).await;
        h.stop().await;
    }
}

/// A JWT's `budget_usd` claim is its holder's own daily budget.
#[actix_web::test]
async fn jwt_budget_usd_claim_is_the_client_budget() {
    let prices = scratch("pricing.toml", PRICES);
    let h = start(
        Script::demo(),
        &[
            ("PRICING_FILE", prices.to_str().expect("utf-8")),
            ("RELAY_JWT_SECRET", JWT_SECRET),
        ],
    )
    .await;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 600;
    let token = mint_jwt(
        &Secret::new(JWT_SECRET),
        &json!({"sub": "alice", "exp": exp, "budget_usd": 0.0005}),
    );
    alice_overspends(&h, &token, "per-client daily USD").await;
    let unlimited = mint_jwt(&Secret::new(JWT_SECRET), &json!({"sub": "bob", "exp": exp}));
    let mut bob = session(&h, "/", Some(&unlimited)).await;
    for _ in 0..3 {
        respond(&mut bob).await;
    }
    h.stop().await;
}
