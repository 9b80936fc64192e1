//! `POST /v1/realtime/client_secrets` (issue 14): what the endpoint mints and refuses. A relay
//! token or JWT (or the address, in open mode) gets an opaque `rcs_` secret in OpenAI's answer
//! shape, never an `ek_` key nor the server's; the body is checked field by field; the checks
//! before a session (origin), the credential (a secret cannot mint another), `ALLOWED_MODELS`
//! and the session policy refuse with the upgrade's codes; browsers get CORS and a preflight.
//! Sessions opened with a secret are in `client_secret_sessions`.

use awc::http::StatusCode;
use serde_json::{json, Value};

use super::*;

pub(crate) const ENDPOINT: &str = "/v1/realtime/client_secrets";

/// The answer to one POST: status, headers as `(name, value)` text, the body as JSON.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Value,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts a refusal with `status` and `code`; returns the message.
    pub(crate) fn refused(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        assert_eq!(self.body["error"]["type"], "relay_error", "{}", self.body);
        assert_eq!(self.body["error"]["code"], code, "{}", self.body);
        self.body["error"]["message"]
            .as_str()
            .expect("message")
            .to_string()
    }

    /// The minted secret, after checking the answer is 200 in OpenAI's shape.
    pub(crate) fn value(&self) -> String {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        let value = self.body["value"].as_str().expect("value").to_string();
        assert!(value.starts_with("rcs_"), "{value}");
        assert!(self.body["expires_at"].is_u64(), "{}", self.body);
        assert_eq!(self.body["session"]["type"], "realtime", "{}", self.body);
        value
    }
}

/// POSTs `body` to `path` with `headers` (`bearer`, when given, as `Authorization: Bearer`).
pub(crate) async fn post_to(
    http: &str,
    path: &str,
    bearer: Option<&str>,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let client = awc::Client::default();
    let mut req = client
        .post(format!("{http}{path}"))
        .insert_header(("Content-Type", "application/json"));
    if let Some(b) = bearer {
        req = req.insert_header(("Authorization", format!("Bearer {b}")));
    }
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    let mut res = timed("the POST", req.send_body(body.to_string()))
        .await
        .expect("POST succeeds");
    let bytes = timed("the body", res.body()).await.expect("body");
    let headers = res
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&bytes)));
    Answer {
        status: res.status(),
        headers,
        body,
    }
}

/// POSTs `body` to the endpoint with `bearer`.
pub(crate) async fn mint(h: &Harness, bearer: Option<&str>, body: &str) -> Answer {
    post_to(&h.http(), ENDPOINT, bearer, &[], body).await
}

/// `relay_client_secrets_total{outcome}`.
async fn outcomes(h: &Harness, outcome: &str) -> Option<f64> {
    let (_, text) = get(&format!("{}/metrics", h.http()), &[]).await;
    prom::sample(
        &text,
        &format!(r#"relay_client_secrets_total{{outcome="{outcome}"}}"#),
    )
}

/// A relay token mints at both paths: 200 in OpenAI's shape with the requested expiry, the bound
/// model and the narrowing fields echoed; neither the body nor any header holds `ek_` or the
/// server's key; each mint is a new secret and is counted.
#[actix_web::test]
async fn a_token_mints_an_opaque_relay_secret() {
    let h = with_tokens(&[]).await;
    let body = r#"{"expires_after":{"anchor":"created_at","seconds":120},
        "session":{"type":"realtime","model":"gpt-realtime","instructions":"Be brief."}}"#;
    let before = unix_in(0) as u64;
    let first = mint(&h, Some(ALICE), body).await;
    let value = first.value();
    let expires_at = first.body["expires_at"].as_u64().expect("expires_at");
    assert!(
        (before + 120..=before + 122).contains(&expires_at),
        "{expires_at}"
    );
    assert_eq!(first.body["session"]["model"], "gpt-realtime");
    assert_eq!(first.body["session"]["instructions"], "Be brief.");
    assert_eq!(first.header("cache-control"), Some("no-store"));
    let again = post_to(&h.http(), "/realtime/client_secrets", Some(ALICE), &[], "").await;
    assert_ne!(again.value(), value);
    assert_eq!(
        again.body["session"]["model"], "gpt-realtime-mini",
        "the default model"
    );
    for answer in [&first, &again] {
        let text = answer.body.to_string();
        assert!(!text.contains("ek_") && !text.contains(TEST_KEY), "{text}");
        for (name, v) in &answer.headers {
            assert!(!v.contains("ek_") && !v.contains(TEST_KEY), "{name}: {v}");
        }
    }
    assert_eq!(outcomes(&h, "minted").await, Some(2.0));
    assert_eq!(
        h.fake.recorder().handshakes().len(),
        0,
        "minting dials nothing"
    );
    h.stop().await;
}

/// Bodies OpenAI would refuse are 400 `invalid_request` naming the field: seconds out of 10..=7200,
/// another anchor, another session type, an unknown field.
#[actix_web::test]
async fn bad_bodies_are_invalid_requests() {
    let h = with_tokens(&[]).await;
    for (body, field) in [
        (
            r#"{"expires_after":{"anchor":"created_at","seconds":9}}"#,
            "expires_after.seconds",
        ),
        (
            r#"{"expires_after":{"seconds":7201}}"#,
            "expires_after.seconds",
        ),
        (
            r#"{"expires_after":{"anchor":"now","seconds":60}}"#,
            "expires_after.anchor",
        ),
        (r#"{"session":{"type":"transcription"}}"#, "session.type"),
        (r#"{"session":{"a b":1}}"#, "session.a b"),
        (r#"{"ttl":60}"#, "ttl"),
        ("{", "JSON object"),
    ] {
        let message = mint(&h, Some(ALICE), body)
            .await
            .refused(400, "invalid_request");
        assert!(message.contains(field), "{body}: {message}");
    }
    assert_eq!(outcomes(&h, "invalid_request").await, Some(7.0));
    h.stop().await;
}

/// No credential, a wrong one and a client secret itself are 401 `unauthorized` (with
/// `WWW-Authenticate: Bearer`); the secret's refusal says a secret cannot mint, never echoing it.
#[actix_web::test]
async fn unauthenticated_and_secrets_cannot_mint() {
    let h = with_tokens(&[]).await;
    for bearer in [None, Some("tok-alice-124")] {
        let answer = mint(&h, bearer, "").await;
        answer.refused(401, "unauthorized");
        assert_eq!(answer.header("www-authenticate"), Some("Bearer"));
    }
    let secret = mint(&h, Some(ALICE), "").await.value();
    let answer = mint(&h, Some(&secret), "").await;
    let message = answer.refused(401, "unauthorized");
    assert!(message.contains("cannot mint"), "{message}");
    assert!(!answer.body.to_string().contains(&secret));
    assert_eq!(outcomes(&h, "unauthorized").await, Some(3.0));
    let s = stats::get(&h.http()).await;
    assert_eq!(s["rejected_by_reason"]["unauthorized"], 3, "{s}");
    h.stop().await;
}

/// A model outside ALLOWED_MODELS, or outside the JWT's own `models`, is 403 `model_not_allowed`.
#[actix_web::test]
async fn models_are_held_to_the_allow_lists() {
    let h = start(
        Script::demo(),
        &[
            ("RELAY_JWT_SECRET", JWT_SECRET),
            ("ALLOWED_MODELS", "gpt-realtime-mini,gpt-realtime"),
        ],
    )
    .await;
    let jwt = openai_realtime_relay::protection::identity::mint_jwt(
        &openai_realtime_relay::config::Secret::new(JWT_SECRET),
        &json!({"sub": "u1", "exp": unix_in(600), "models": ["gpt-realtime-mini"]}),
    );
    let body = |m: &str| format!(r#"{{"session":{{"model":"{m}"}}}}"#);
    let message = mint(&h, Some(&jwt), &body("gpt-realtime-2"))
        .await
        .refused(403, "model_not_allowed");
    assert!(message.contains("gpt-realtime-2"), "{message}");
    mint(&h, Some(&jwt), &body("gpt-realtime"))
        .await
        .refused(403, "model_not_allowed");
    mint(&h, Some(&jwt), &body("gpt-realtime-mini"))
        .await
        .value();
    assert_eq!(outcomes(&h, "model_not_allowed").await, Some(2.0));
    h.stop().await;
}

/// An origin outside ALLOWED_ORIGINS is 403 `origin_not_allowed` before the credential is
/// looked at; an allowed one gets its CORS header and its preflight answered (POST,
/// authorization and content-type); a preflight from elsewhere is refused.
#[actix_web::test]
async fn origins_and_cors() {
    let h = with_tokens(&[("ALLOWED_ORIGINS", "https://app.example")]).await;
    let evil = [("Origin", "https://evil.example")];
    post_to(&h.http(), ENDPOINT, Some(ALICE), &evil, "")
        .await
        .refused(403, "origin_not_allowed");
    let app = [("Origin", "https://app.example")];
    let ok = post_to(&h.http(), ENDPOINT, Some(ALICE), &app, "").await;
    ok.value();
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let refused = post_to(&h.http(), ENDPOINT, None, &app, "").await;
    refused.refused(401, "unauthorized");
    assert_eq!(
        refused.header("access-control-allow-origin"),
        Some("https://app.example"),
        "a browser can read why"
    );
    let client = awc::Client::default();
    let preflight = |origin: &'static str| {
        client
            .request(
                awc::http::Method::OPTIONS,
                format!("{}{ENDPOINT}", h.http()),
            )
            .insert_header(("Origin", origin))
            .insert_header(("Access-Control-Request-Method", "POST"))
            .send()
    };
    let res = timed("the preflight", preflight("https://app.example"))
        .await
        .expect("preflight");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let header = |name: &str| res.headers().get(name).map(|v| v.to_str().expect("ASCII"));
    assert_eq!(
        header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(header("access-control-allow-methods"), Some("POST"));
    assert_eq!(
        header("access-control-allow-headers"),
        Some("authorization, content-type")
    );
    let res = timed("the preflight", preflight("https://evil.example"))
        .await
        .expect("preflight");
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(outcomes(&h, "origin_not_allowed").await, Some(1.0));
    h.stop().await;
}

/// With a session policy, the request's session may only narrow it: a locked field given
/// another value is 400 `policy_violation` naming it, the pinned value is accepted, and the
/// answer shows the policy's pinned fields but never a hidden one.
#[actix_web::test]
async fn session_fields_only_narrow_the_policy() {
    let file =
        std::env::temp_dir().join(format!("relay-test-cs-policy-{}.toml", std::process::id()));
    std::fs::write(
        &file,
        "[policies.default]\nlocked = [\"instructions\", \"audio.output.voice\"]\n\
         hidden = [\"instructions\"]\n[policies.default.session]\ntype = \"realtime\"\n\
         instructions = \"Policy prompt.\"\naudio = { output = { voice = \"marin\" } }\n",
    )
    .expect("write the policy file");
    let h = with_tokens(&[("SESSION_POLICY_FILE", file.to_str().expect("utf-8"))]).await;
    let body = |session: &str| format!(r#"{{"session":{session}}}"#);
    for (session, field) in [
        (r#"{"instructions":"Mine."}"#, "instructions"),
        (
            r#"{"audio":{"output":{"voice":"alloy"}}}"#,
            "audio.output.voice",
        ),
    ] {
        let message = mint(&h, Some(ALICE), &body(session))
            .await
            .refused(400, "policy_violation");
        assert!(message.contains(field), "{message}");
    }
    let ok = mint(
        &h,
        Some(ALICE),
        &body(r#"{"instructions":"Policy prompt.","output_modalities":["text"]}"#),
    )
    .await;
    ok.value();
    let session = &ok.body["session"];
    assert_eq!(session["audio"]["output"]["voice"], "marin", "{session}");
    assert_eq!(session["output_modalities"], json!(["text"]), "{session}");
    assert!(
        !ok.body.to_string().contains("Policy prompt."),
        "{}",
        ok.body
    );
    assert_eq!(outcomes(&h, "policy_violation").await, Some(2.0));
    h.stop().await;
    let _ = std::fs::remove_file(&file);
}

/// In open mode (no tokens, no JWT secret) a client is its address and may mint without a
/// credential; its secret opens a session as that address, bound to the model.
#[actix_web::test]
async fn open_mode_mints_for_the_address() {
    let h = start(Script::demo(), &[]).await;
    let secret = mint(&h, None, r#"{"session":{"model":"gpt-realtime"}}"#)
        .await
        .value();
    let _ws = admitted(&h.base, "/v1/realtime", Style::Browser, Some(&secret)).await;
    let hs = h.fake.recorder().wait_handshakes(1, T).await;
    assert!(hs.is_ok());
    let dial = &h.fake.recorder().handshakes()[0];
    assert!(
        dial.path_and_query.contains("model=gpt-realtime"),
        "{dial:?}"
    );
    let s = stats::sessions(&h.http()).await;
    assert_eq!(s[0]["identity"], "ip:127.0.0.1", "{s:?}");
    // A secret that is not this relay's is refused even in open mode.
    refused(
        &h.base,
        "/v1/realtime",
        Style::Browser,
        Some("rcs_e30.AAAA"),
        "unauthorized",
    )
    .await;
    h.stop().await;
}
