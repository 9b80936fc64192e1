//! RELAY_JWT_SECRET: signed, unexpired JWTs admitted as `jwt:<sub>`, their `models` claim obeyed.

use openai_realtime_relay::{config::Secret, protection::identity::mint_jwt};
use serde_json::json;

use super::*;

/// A JWT signed with RELAY_JWT_SECRET, `sub` and a future `exp`, is admitted in both styles and
/// the session's identity is `jwt:<sub>`.
#[actix_web::test]
async fn jwt_with_sub_and_future_exp_is_admitted() {
    let h = start(Script::demo(), &[("RELAY_JWT_SECRET", JWT_SECRET)]).await;
    let secret = Secret::new(JWT_SECRET);
    let mut live = Vec::new();
    for (style, sub) in [(Style::Sdk, "user-1"), (Style::Browser, "user-2")] {
        let token = mint_jwt(&secret, &json!({"sub": sub, "exp": unix_in(600)}));
        let mut ws = admitted(&h.base, "/v1/realtime", style, Some(&token)).await;
        respond(&mut ws).await;
        live.push(ws);
        let hs = h.fake.recorder().handshakes();
        for (name, value) in &hs.last().expect("a dial").headers {
            assert!(!value.contains(&token), "{name} carries the JWT");
        }
    }
    let s = stats::sessions(&h.http()).await;
    let identities: Vec<&str> = s.iter().filter_map(|x| x["identity"].as_str()).collect();
    assert_eq!(identities, ["jwt:user-1", "jwt:user-2"], "{s:?}");
    dials(&h.fake, 2).await;
    h.stop().await;
}

/// An expired JWT and one signed with another secret are `unauthorized` + 1008, with no dial.
#[actix_web::test]
async fn expired_or_foreign_jwt_is_unauthorized() {
    let h = start(Script::demo(), &[("RELAY_JWT_SECRET", JWT_SECRET)]).await;
    let secret = Secret::new(JWT_SECRET);
    let expired = mint_jwt(&secret, &json!({"sub": "user-1", "exp": unix_in(-30)}));
    let foreign = mint_jwt(
        &Secret::new("another-secret-that-is-long-enough-000"),
        &json!({"sub": "user-1", "exp": unix_in(600)}),
    );
    for style in STYLES {
        let error = refused(&h.base, "/", style, Some(&expired), "unauthorized").await;
        assert_message_contains(&error, "expired");
        refused(&h.base, "/", style, Some(&foreign), "unauthorized").await;
    }
    let good = mint_jwt(&secret, &json!({"sub": "user-1", "exp": unix_in(600)}));
    let _ws = admitted(&h.base, "/", Style::Sdk, Some(&good)).await;
    dials(&h.fake, 1).await;
    h.stop().await;
}

/// A JWT whose `models` claim is ["gpt-realtime-mini"] may not open gpt-realtime
/// (`model_not_allowed`, 1008, no dial) but may open gpt-realtime-mini.
#[actix_web::test]
async fn jwt_models_claim_restricts_models() {
    let h = start(Script::demo(), &[("RELAY_JWT_SECRET", JWT_SECRET)]).await;
    let token = mint_jwt(
        &Secret::new(JWT_SECRET),
        &json!({"sub": "mini-only", "exp": unix_in(600), "models": ["gpt-realtime-mini"]}),
    );
    for style in STYLES {
        let error = refused(
            &h.base,
            "/v1/realtime?model=gpt-realtime",
            style,
            Some(&token),
            "model_not_allowed",
        )
        .await;
        assert_message_contains(&error, "gpt-realtime");
    }
    let _ws = admitted(
        &h.base,
        "/v1/realtime?model=gpt-realtime-mini",
        Style::Browser,
        Some(&token),
    )
    .await;
    let hs = dials(&h.fake, 1).await;
    assert_eq!(hs[0].path_and_query, "/v1/realtime?model=gpt-realtime-mini");
    h.stop().await;
}

/// The claim holds after the upgrade too: a `session.update` picking a transcription model the
/// claim does not list is answered with `model_not_allowed` and not forwarded, even with
/// `ALLOWED_MODELS` unset; one the claim lists is forwarded.
#[actix_web::test]
async fn jwt_models_claim_applies_to_session_update() {
    let h = start(Script::echo(), &[("RELAY_JWT_SECRET", JWT_SECRET)]).await;
    let token = mint_jwt(
        &Secret::new(JWT_SECRET),
        &json!({"sub": "u", "exp": unix_in(600), "models": ["gpt-realtime-mini", "gpt-4o-mini-transcribe"]}),
    );
    let mut ws = admitted(
        &h.base,
        "/v1/realtime?model=gpt-realtime-mini",
        Style::Browser,
        Some(&token),
    )
    .await;
    let update = |model: &str, id: &str| {
        format!(
            r#"{{"type":"session.update","event_id":"{id}","session":{{"type":"realtime","audio":{{"input":{{"transcription":{{"model":"{model}"}}}}}}}}}}"#
        )
    };
    send_text(&mut ws, &update("whisper-1", "refused")).await;
    let error = next_json(&mut ws).await;
    assert_eq!(error["error"]["code"], "model_not_allowed", "{error}");
    assert_message_contains(&error, "\"whisper-1\"");
    send_text(&mut ws, &update("gpt-4o-mini-transcribe", "allowed")).await;
    let echo = next_json(&mut ws).await;
    assert_eq!(echo["event_id"], "allowed", "{echo}");
    let got = h.fake.recorder().messages();
    assert_eq!(
        got.len(),
        1,
        "only the allowed update is forwarded: {got:?}"
    );
    h.stop().await;
}
