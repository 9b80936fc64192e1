//! RELAY_JWT_AUDIENCE and RELAY_JWT_ISSUER: when set, a JWT must carry a matching `aud` (a
//! string, or an array holding it) and `iss`, else `unauthorized` with a message naming the claim.

use openai_realtime_relay::{config::Secret, protection::identity::mint_jwt};
use serde_json::json;

use super::*;

const AUDIENCE: &str = "realtime-relay";
const ISSUER: &str = "https://auth.example.com/";

/// A JWT for `sub` with `extra` claims, valid for ten minutes.
fn token(extra: Value) -> String {
    let mut claims = json!({"sub": "user-1", "exp": unix_in(600)});
    for (k, v) in extra.as_object().expect("an object") {
        claims[k] = v.clone();
    }
    mint_jwt(&Secret::new(JWT_SECRET), &claims)
}

/// With both set, a token naming the audience (alone or in an array) and the issuer is admitted;
/// a missing or other `aud` or `iss` is `unauthorized` (1008, no dial) and the message says which.
#[actix_web::test]
async fn audience_and_issuer_are_enforced() {
    let h = start(
        Script::demo(),
        &[
            ("RELAY_JWT_SECRET", JWT_SECRET),
            ("RELAY_JWT_AUDIENCE", AUDIENCE),
            ("RELAY_JWT_ISSUER", ISSUER),
            // Ten refusals from one address: not what this test is about.
            ("AUTH_FAILURES_PER_MINUTE", "0"),
        ],
    )
    .await;
    for (claims, claim) in [
        (json!({"iss": ISSUER}), "aud"),
        (json!({"aud": "another-service", "iss": ISSUER}), "aud"),
        (json!({"aud": ["another-service"], "iss": ISSUER}), "aud"),
        (json!({"aud": AUDIENCE}), "iss"),
        (
            json!({"aud": AUDIENCE, "iss": "https://evil.example.com/"}),
            "iss",
        ),
    ] {
        for style in STYLES {
            let error = refused(
                &h.base,
                "/",
                style,
                Some(&token(claims.clone())),
                "unauthorized",
            )
            .await;
            assert_message_contains(&error, &format!("{claim} claim"));
        }
    }
    let _a = admitted(
        &h.base,
        "/",
        Style::Sdk,
        Some(&token(json!({"aud": AUDIENCE, "iss": ISSUER}))),
    )
    .await;
    let _b = admitted(
        &h.base,
        "/",
        Style::Browser,
        Some(&token(
            json!({"aud": ["another-service", AUDIENCE], "iss": ISSUER}),
        )),
    )
    .await;
    dials(&h.fake, 2).await;
    h.stop().await;
}

/// Unset, `aud` and `iss` are not looked at, as before.
#[actix_web::test]
async fn unset_audience_and_issuer_are_not_checked() {
    let h = start(Script::demo(), &[("RELAY_JWT_SECRET", JWT_SECRET)]).await;
    let _ws = admitted(
        &h.base,
        "/",
        Style::Sdk,
        Some(&token(json!({"aud": "anything", "iss": "anyone"}))),
    )
    .await;
    h.stop().await;
}
