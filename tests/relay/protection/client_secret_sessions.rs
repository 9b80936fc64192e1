//! Sessions opened with a relay client secret (issue 14): the secret is a credential like a
//! token (`openai-insecure-api-key.<secret>` or `Authorization: Bearer`), the session is the
//! minting identity's, dialed with the server key and bound to one model; its narrowing fields
//! are pinned before any client frame and locked; an expired, foreign or revoked secret is
//! refused `unauthorized` without ever being echoed or sent upstream.

use openai_realtime_relay::{config::Secret, protection::identity::mint_client_secret};

use super::{client_secrets::mint, *};

const KEY: &str = "client-secret-key-for-tests-0123456789";

/// Asserts no upstream dial carried `secret` anywhere, and each carried the server key.
fn never_upstream(fake: &FakeUpstream, secret: &str) {
    for h in fake.recorder().handshakes() {
        assert_eq!(
            h.header("authorization"),
            Some(format!("Bearer {TEST_KEY}").as_str()),
            "{h:?}"
        );
        assert!(!h.path_and_query.contains(secret), "{}", h.path_and_query);
        for (name, value) in &h.headers {
            assert!(!value.contains(secret), "{name} carries the client secret");
        }
        for p in &h.protocols_offered {
            assert!(
                !p.contains(secret),
                "offered protocol {p} carries the client secret"
            );
        }
    }
}

/// A secret minted with a relay token opens a session in both styles: `session.created` comes
/// through, the session is the token's identity, the upstream is dialed with the server key and
/// the bound model (the URL has none), and never sees the secret.
#[actix_web::test]
async fn a_secret_opens_a_session_as_its_minter() {
    let h = with_tokens(&[]).await;
    let secret = mint(&h, Some(ALICE), r#"{"session":{"model":"gpt-realtime"}}"#)
        .await
        .value();
    let mut browser = admitted(&h.base, "/v1/realtime", Style::Browser, Some(&secret)).await;
    let _sdk = admitted(&h.base, "/v1/realtime", Style::Sdk, Some(&secret)).await;
    respond(&mut browser).await;
    let hs = dials(&h.fake, 2).await;
    for dial in &hs {
        assert_eq!(
            dial.path_and_query, "/v1/realtime?model=gpt-realtime",
            "{dial:?}"
        );
    }
    never_upstream(&h.fake, &secret);
    let s = stats::sessions(&h.http()).await;
    let identities: Vec<&str> = s.iter().filter_map(|x| x["identity"].as_str()).collect();
    assert_eq!(identities, ["token:alice", "token:alice"], "{s:?}");
    assert!(s.iter().all(|x| x["model"] == "gpt-realtime"), "{s:?}");
    h.stop().await;
}

/// A secret for one model opens only that one: another model or an intent in the URL is
/// `model_not_allowed` (1008, no dial), the same model in the URL is admitted.
#[actix_web::test]
async fn a_secret_is_bound_to_its_model() {
    let h = with_tokens(&[]).await;
    let secret = mint(&h, Some(BOB), r#"{"session":{"model":"gpt-realtime"}}"#)
        .await
        .value();
    for path in [
        "/v1/realtime?model=gpt-realtime-mini",
        "/v1/realtime?intent=transcription",
    ] {
        refused(
            &h.base,
            path,
            Style::Browser,
            Some(&secret),
            "model_not_allowed",
        )
        .await;
    }
    let _ws = admitted(
        &h.base,
        "/v1/realtime?model=gpt-realtime",
        Style::Sdk,
        Some(&secret),
    )
    .await;
    dials(&h.fake, 1).await;
    never_upstream(&h.fake, &secret);
    h.stop().await;
}

/// The secret's session fields reach the upstream as the pinned `session.update` before any
/// client frame; a client `session.update` changing one is rejected (`policy_violation`, the
/// session goes on), one leaving them alone is forwarded; the rejection is counted under the
/// closed labels `client_secret`.
#[actix_web::test]
async fn narrowing_fields_are_pinned_and_locked() {
    let h = with_tokens(&[]).await;
    let body = r#"{"session":{"type":"realtime","instructions":"From the secret.",
        "audio":{"output":{"voice":"cedar"}}}}"#;
    let secret = mint(&h, Some(ALICE), body).await.value();
    let mut ws = admitted(&h.base, "/v1/realtime", Style::Browser, Some(&secret)).await;
    h.fake
        .recorder()
        .wait_messages(1, T)
        .await
        .expect("the pin");
    let pinned = h.fake.recorder().messages()[0].json().expect("JSON");
    assert_eq!(pinned["type"], "session.update", "{pinned}");
    assert_eq!(pinned["event_id"], "relay_policy", "{pinned}");
    assert_eq!(pinned["session"]["type"], "realtime");
    assert_eq!(pinned["session"]["instructions"], "From the secret.");
    assert_eq!(pinned["session"]["audio"]["output"]["voice"], "cedar");
    send_text(
        &mut ws,
        r#"{"type":"session.update","event_id":"mine","session":{"type":"realtime","audio":{"output":{"voice":"alloy"}}}}"#,
    )
    .await;
    let error = loop {
        let event = next_json(&mut ws).await;
        if event["type"] == "error" {
            break event;
        }
    };
    assert_eq!(error["error"]["code"], "policy_violation", "{error}");
    assert_message_contains(&error, "audio.output.voice");
    send_text(
        &mut ws,
        r#"{"type":"session.update","event_id":"fine","session":{"type":"realtime","output_modalities":["text"]}}"#,
    )
    .await;
    let got = h.fake.recorder().wait_messages(2, T).await;
    assert!(got.is_ok());
    let second = h.fake.recorder().messages()[1].json().expect("JSON");
    assert_eq!(
        second["event_id"], "fine",
        "the rejected update never went up: {second}"
    );
    let (_, text) = get(&format!("{}/metrics", h.http()), &[]).await;
    let series = r#"relay_policy_actions_total{policy="client_secret",action="rejected",field="client_secret"}"#;
    assert_eq!(prom::sample(&text, series), Some(1.0), "{text}");
    let pinned =
        r#"relay_policy_actions_total{policy="client_secret",action="pinned",field="session"}"#;
    assert_eq!(prom::sample(&text, pinned), Some(1.0));
    h.stop().await;
}

/// With CLIENT_SECRET_KEY set, a secret signed with it is accepted until `exp` and refused from
/// then on ("expired"), one signed with another key is "not recognised": neither is dialed.
#[actix_web::test]
async fn expired_and_foreign_secrets_are_refused() {
    let h = with_tokens(&[("CLIENT_SECRET_KEY", KEY)]).await;
    let key = Secret::new(KEY);
    let now = unix_in(0) as u64;
    let expired = mint_client_secret(
        &key,
        "token:alice",
        Some(ALICE),
        "gpt-realtime-mini",
        now - 700,
        now - 100,
    );
    let foreign = mint_client_secret(
        &Secret::new("another-client-secret-key-0123456789"),
        "token:alice",
        Some(ALICE),
        "gpt-realtime-mini",
        now,
        now + 600,
    );
    for style in STYLES {
        let error = refused(
            &h.base,
            "/v1/realtime",
            style,
            Some(&expired),
            "unauthorized",
        )
        .await;
        assert_message_contains(&error, "client secret expired");
        let error = refused(
            &h.base,
            "/v1/realtime",
            style,
            Some(&foreign),
            "unauthorized",
        )
        .await;
        assert_message_contains(&error, "not recognised");
    }
    assert_eq!(h.fake.recorder().handshakes().len(), 0);
    let valid = mint_client_secret(
        &key,
        "token:alice",
        Some(ALICE),
        "gpt-realtime-mini",
        now,
        now + 600,
    );
    let _ws = admitted(&h.base, "/v1/realtime", Style::Sdk, Some(&valid)).await;
    dials(&h.fake, 1).await;
    h.stop().await;
}

/// A secret whose token is removed from RELAY_TOKENS_FILE stops working after the reload
/// ("revoked"), while a secret of a token still listed keeps working.
#[actix_web::test]
async fn removing_the_token_revokes_its_secrets() {
    let file =
        std::env::temp_dir().join(format!("relay-test-cs-tokens-{}.txt", std::process::id()));
    std::fs::write(&file, format!("alice:{ALICE}\nbob:{BOB}\n")).expect("write the tokens file");
    let h = start(
        Script::demo(),
        &[("RELAY_TOKENS_FILE", file.to_str().expect("utf-8"))],
    )
    .await;
    let alice = mint(&h, Some(ALICE), "").await.value();
    let bob = mint(&h, Some(BOB), "").await.value();
    let _live = admitted(&h.base, "/v1/realtime", Style::Sdk, Some(&alice)).await;
    std::fs::write(&file, format!("bob:{BOB}\n")).expect("rewrite the tokens file");
    assert_eq!(h.relay.token_reloader().reload(), Ok(1));
    let error = refused(
        &h.base,
        "/v1/realtime",
        Style::Browser,
        Some(&alice),
        "unauthorized",
    )
    .await;
    assert_message_contains(&error, "revoked");
    let _bob = admitted(&h.base, "/v1/realtime", Style::Browser, Some(&bob)).await;
    // Alice's token back with another value: her old secrets stay revoked.
    std::fs::write(&file, format!("alice:tok-alice-rotated\nbob:{BOB}\n")).expect("rewrite");
    assert_eq!(h.relay.token_reloader().reload(), Ok(2));
    refused(
        &h.base,
        "/v1/realtime",
        Style::Sdk,
        Some(&alice),
        "unauthorized",
    )
    .await;
    h.stop().await;
    let _ = std::fs::remove_file(&file);
}
