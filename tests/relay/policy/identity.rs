//! A policy per identity: the JWT `policy` claim names it, a token without one gets `default`,
//! and a claim naming a policy the file does not define is refused before any upstream dial.

use openai_realtime_relay::{config::Secret, protection::identity::mint_jwt};
use serde_json::json;

use super::*;

const JWT_SECRET: &str = "jwt-secret-for-policy-tests-0123456789";

/// A JWT for `sub`, valid for ten minutes, with `policy` when given.
fn token(sub: &str, policy: Option<&str>) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        + 600;
    let mut claims = json!({"sub": sub, "exp": exp});
    if let Some(p) = policy {
        claims["policy"] = json!(p);
    }
    mint_jwt(&Secret::new(JWT_SECRET), &claims)
}

/// Opens a session presenting `token` the way a server SDK does.
async fn open(h: &Harness, token: &str) -> Ws {
    let bearer = format!("Bearer {token}");
    let (_, ws) = connect_with(
        &format!("{}/v1/realtime", h.base),
        &[],
        &[("Authorization", bearer.as_str())],
    )
    .await
    .expect("upgrade");
    ws
}

/// `default` hides the instructions and strips them from updates; `open`, named by a JWT's
/// `policy` claim, neither hides nor locks them, so the same upstream's `session.created` shows
/// its own prompt and a client update reaches it whole. An unknown name is `invalid_request`.
#[actix_web::test]
async fn jwt_policy_claim_picks_the_policy() {
    let toml = format!(
        "{}\n[policies.open]\n",
        default_policy(
            r#"locked = ["instructions"]
hidden = ["instructions"]"#
        )
    );
    let h = start_with(
        Script::demo(),
        &toml,
        &[
            ("RELAY_JWT_SECRET", JWT_SECRET),
            ("AUTH_FAILURES_PER_MINUTE", "0"),
        ],
    )
    .await;
    let mut plain = open(&h, &token("alice", None)).await;
    let created = next_of(&mut plain, "session.created").await;
    assert_eq!(created["session"].get("instructions"), None, "{created}");

    let mut open_ws = open(&h, &token("bob", Some("open"))).await;
    let created = next_of(&mut open_ws, "session.created").await;
    assert_eq!(
        created["session"]["instructions"], "You are a demo voice on a fake upstream.",
        "{created}"
    );
    send_text(
        &mut open_ws,
        r#"{"type":"session.update","event_id":"mine","session":{"type":"realtime","instructions":"Mine."}}"#,
    )
    .await;
    let updated = next_of(&mut open_ws, "session.updated").await;
    assert_eq!(updated["session"]["instructions"], "Mine.", "{updated}");
    let got = received(&h.fake);
    let mine = got
        .iter()
        .find(|e| e["event_id"] == "mine")
        .expect("forwarded");
    assert_eq!(mine["session"]["instructions"], "Mine.");
    // Only the default policy pins anything.
    assert_eq!(
        got.iter()
            .filter(|e| e["event_id"] == "relay_policy")
            .count(),
        1,
        "{got:?}"
    );

    let mut unknown = open(&h, &token("carol", Some("missing"))).await;
    let error = expect_failure(&mut unknown, "invalid_request", 1008).await;
    assert_message_contains(&error, "\"missing\"");
    assert_eq!(h.fake.recorder().handshakes().len(), 2);
    h.stop().await;
}

/// A tokens-file entry's `policy` applies to its client: alice's entry names `open`, so her
/// `session.created` shows the upstream's prompt, while bob (no policy in his entry) gets
/// `default`, which hides it.
#[actix_web::test]
async fn tokens_file_entry_picks_the_policy() {
    let toml = format!(
        "{}\n[policies.open]\n",
        default_policy(r#"hidden = ["instructions"]"#)
    );
    let tokens = std::env::temp_dir().join(format!(
        "relay-test-policy-tokens-{}.toml",
        std::process::id()
    ));
    std::fs::write(
        &tokens,
        "[[clients]]\nname = \"alice\"\ntoken = \"tok-alice-policy\"\npolicy = \"open\"\n\n\
         [[clients]]\nname = \"bob\"\ntoken = \"tok-bob-policy\"\n",
    )
    .expect("write the tokens file");
    let h = start_with(
        Script::demo(),
        &toml,
        &[("RELAY_TOKENS_FILE", tokens.to_str().expect("utf-8"))],
    )
    .await;
    let mut alice = open(&h, "tok-alice-policy").await;
    let created = next_of(&mut alice, "session.created").await;
    assert_eq!(
        created["session"]["instructions"], "You are a demo voice on a fake upstream.",
        "{created}"
    );
    let mut bob = open(&h, "tok-bob-policy").await;
    let created = next_of(&mut bob, "session.created").await;
    assert_eq!(created["session"].get("instructions"), None, "{created}");
    h.stop().await;
    let _ = std::fs::remove_file(&tokens);
}
