//! `POST /v1/realtime/client_secrets` (and `/realtime/client_secrets`): a relay client secret
//! (`protection/client_secret.rs`) for an authenticated client, in OpenAI's request and answer
//! shape, so an SDK that asks its backend for an ephemeral key gets one the relay honours — never
//! an OpenAI `ek_` key. Checked in the upgrade's order with the upgrade's codes: a drain, the
//! shared state down, the origin (`refuse_unwelcome`); the credential (a relay token or JWT, or
//! the address in open mode; a client secret cannot mint another); the body; the model
//! (`ALLOWED_MODELS` and the credential's own `models`); the session policy, which the request's
//! `session` may only narrow. Every answer is counted in `relay_client_secrets_total` and a
//! refusal also in `relay_sessions_rejected_total`, as the upgrade counts it; a mint is logged in
//! one line that never holds the value. Browsers get CORS headers and their preflight answered.

use std::time::Instant;

use actix_web::{
    http::{header, Method, StatusCode},
    web, HttpRequest, HttpResponse, Resource,
};
use serde_json::{json, Map, Value};

use crate::{
    close::SessionEnd,
    config::is_query_safe,
    http::{
        client_ip, origin, unix_now,
        upgrade::{refuse_unwelcome, shared},
        with_cors, AppState,
    },
    protection::{
        client_secret::{MintError, DEFAULT_SECONDS, MAX_SECONDS, MIN_SECONDS},
        identity::{presented_credential, AuthError, Identity},
        models::AllowedModels,
        policy::{PolicyBook, PolicyError},
    },
};

/// The largest request body read: session fields beyond a few KiB do not fit a secret anyway.
const MAX_BODY: usize = 64 * 1024;

/// The endpoint at `path`: `POST` mints, `OPTIONS` answers a browser's preflight.
pub(crate) fn resource(path: &str) -> Resource {
    web::resource(path)
        .app_data(web::PayloadConfig::new(MAX_BODY))
        .route(web::post().to(mint))
        .route(web::method(Method::OPTIONS).to(crate::http::preflight))
        .default_service(web::to(|| async {
            crate::http::json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Only POST is served here.",
            )
        }))
}

/// A refusal: its HTTP status, `code` and message (never a credential).
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            code,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> Refusal {
        Refusal::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// The `relay_sessions_rejected_total` label: a policy violation is an invalid request there.
    fn rejection_label(&self) -> &'static str {
        match self.code {
            "policy_violation" => "invalid_request",
            code => code,
        }
    }
}

/// What the request asks for.
#[derive(Debug, PartialEq)]
struct Request {
    seconds: u64,
    model: Option<String>,
    /// The session fields besides `type` and `model`, which narrow the policy.
    fields: Map<String, Value>,
}

/// `POST`: the checks in order, then the secret.
async fn mint(req: HttpRequest, body: web::Bytes, state: web::Data<AppState>) -> HttpResponse {
    if let Some(mut refused) = refuse_unwelcome(&req, &state) {
        let outcome = match refused.status() {
            StatusCode::FORBIDDEN => "origin_not_allowed",
            _ if state.is_draining() => "server_shutting_down",
            _ => "service_unavailable",
        };
        count(&state, outcome);
        add_cors(&state, &req, &mut refused);
        return refused;
    }
    match minted(&req, &body, &state) {
        Ok(answer) => {
            count(&state, "minted");
            with_cors(&state, &req, HttpResponse::Ok())
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .json(answer)
        }
        Err(refusal) => {
            count(&state, refusal.code);
            state.count_rejection(refusal.rejection_label());
            crate::http::page_error(&state, &req, refusal.status, refusal.code, &refusal.message)
        }
    }
}

/// Everything after the checks before a session: the credential, the body, the model, the
/// policy; then the secret and OpenAI's answer.
fn minted(req: &HttpRequest, body: &[u8], state: &AppState) -> Result<Value, Refusal> {
    let identity = authenticate(req, state)?;
    let asked = parse(body)?;
    let model = asked
        .model
        .clone()
        .unwrap_or_else(|| state.default_model.clone());
    let allowed = shared::<AllowedModels>(req);
    let names = [model.clone()];
    if allowed
        .first_refused(&names, identity.models.as_deref())
        .is_some()
    {
        let end = SessionEnd::ModelNotAllowed { model };
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "model_not_allowed",
            end.message(),
        ));
    }
    let policies = shared::<PolicyBook>(req);
    let policy = policies
        .narrowed(identity.policy.as_deref(), Some(&asked.fields))
        .map_err(|e| match &e {
            PolicyError::Contradiction(c) if c.code() == "policy_violation" => Refusal::new(
                StatusCode::BAD_REQUEST,
                "policy_violation",
                format!("The request was refused: {e}."),
            ),
            _ => Refusal::invalid(format!("The request was refused: {e}.")),
        })?;
    let now = unix_now();
    let value = state
        .authenticator
        .mint_secret(&identity, &model, Some(asked.fields), now, asked.seconds)
        .map_err(|e| match e {
            MintError::TooLong => Refusal::invalid(format!("The request was refused: {e}.")),
            MintError::Revoked => Refusal::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "The relay token was removed while the request was served.",
            ),
            MintError::Random => Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "The relay could not make a client secret; try again shortly.",
            ),
        })?;
    log::info!(
        identity = identity.key.as_str(), model = model.as_str(), expires_in = asked.seconds;
        "client secret minted"
    );
    let mut session = Map::new();
    session.insert("type".into(), Value::from("realtime"));
    session.insert("model".into(), Value::from(model));
    if let Some(applied) = policy {
        for (k, v) in applied.policy.visible_session() {
            session.entry(k).or_insert(v);
        }
    }
    Ok(json!({
        "value": value,
        "expires_at": now + asked.seconds,
        "session": session,
    }))
}

/// The client's identity: its credential from `Authorization: Bearer` (in open mode, its
/// address), never a client secret.
fn authenticate(req: &HttpRequest, state: &AppState) -> Result<Identity, Refusal> {
    let presented = presented_credential(
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
        std::iter::empty(),
    );
    let identity = state
        .authenticator
        .authenticate(presented, client_ip(state, req), unix_now(), Instant::now())
        .map_err(|e| match e {
            AuthError::Throttled { per_minute } => Refusal::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                SessionEnd::RateLimited { per_minute }.message(),
            ),
            other => Refusal::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                format!(
                    "This endpoint needs a relay token or JWT ({other}): send Authorization: \
                     Bearer <token>."
                ),
            ),
        })?;
    if identity.is_client_secret() {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "A client secret cannot mint another client secret: send the relay token or JWT \
             it was minted with.",
        ));
    }
    Ok(identity)
}

/// The body: empty, or OpenAI's `{"expires_after":{"anchor":"created_at","seconds":N},
/// "session":{"type":"realtime","model":"…",…}}`. Every refusal names the field.
fn parse(body: &[u8]) -> Result<Request, Refusal> {
    let mut asked = Request {
        seconds: DEFAULT_SECONDS,
        model: None,
        fields: Map::new(),
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(asked);
    }
    let Ok(Value::Object(top)) = serde_json::from_slice::<Value>(body) else {
        return Err(Refusal::invalid("The request body must be a JSON object."));
    };
    for (key, value) in top {
        match key.as_str() {
            "expires_after" => asked.seconds = expires_after(&value)?,
            "session" => match value {
                Value::Object(session) => session_fields(session, &mut asked)?,
                Value::Null => {}
                _ => return Err(Refusal::invalid("session must be an object.")),
            },
            other => {
                return Err(Refusal::invalid(format!(
                    "{:?} is not a field of this request (expires_after, session).",
                    truncated(other)
                )))
            }
        }
    }
    Ok(asked)
}

/// `expires_after`: anchor `created_at` (or none), seconds from 10 to 7200 (or none: 600).
fn expires_after(value: &Value) -> Result<u64, Refusal> {
    let Some(object) = value.as_object() else {
        return Err(Refusal::invalid("expires_after must be an object."));
    };
    for key in object.keys() {
        if key != "anchor" && key != "seconds" {
            return Err(Refusal::invalid(format!(
                "expires_after.{} is not a field (anchor, seconds).",
                truncated(key)
            )));
        }
    }
    match object.get("anchor") {
        None | Some(Value::Null) => {}
        Some(a) if a == "created_at" => {}
        Some(_) => {
            return Err(Refusal::invalid(
                "expires_after.anchor must be \"created_at\".",
            ))
        }
    }
    match object.get("seconds") {
        None | Some(Value::Null) => Ok(DEFAULT_SECONDS),
        Some(s) => s
            .as_u64()
            .filter(|n| (MIN_SECONDS..=MAX_SECONDS).contains(n))
            .ok_or_else(|| {
                Refusal::invalid(format!(
                    "expires_after.seconds must be a whole number from {MIN_SECONDS} to \
                     {MAX_SECONDS}."
                ))
            }),
    }
}

/// `session`: `type` (only `realtime`), `model` (a model name), and the fields that narrow.
fn session_fields(mut session: Map<String, Value>, asked: &mut Request) -> Result<(), Refusal> {
    match session.shift_remove("type") {
        None | Some(Value::Null) => {}
        Some(t) if t == "realtime" => {}
        Some(_) => {
            return Err(Refusal::invalid(
                "session.type must be \"realtime\": this relay mints client secrets for \
                 realtime sessions.",
            ))
        }
    }
    match session.shift_remove("model") {
        None | Some(Value::Null) => {}
        Some(Value::String(m)) if is_query_safe(&m) => asked.model = Some(m),
        Some(_) => {
            return Err(Refusal::invalid(
                "session.model must be a model name (letters, digits, '-', '_', '.' and ':').",
            ))
        }
    }
    asked.fields = session;
    Ok(())
}

/// A client's key name, cut short for the message.
fn truncated(key: &str) -> String {
    key.chars().take(64).collect()
}

/// The CORS headers `with_cors` would add, on a response already built.
fn add_cors(state: &AppState, req: &HttpRequest, res: &mut HttpResponse) {
    let Some(origin) = origin(req) else { return };
    if !state.allowed_origins.admits(Some(origin), false) {
        return;
    }
    let value = match &state.allowed_origins {
        crate::config::AllowedOrigins::Any => "*",
        crate::config::AllowedOrigins::List(_) => origin,
    };
    if let Ok(value) = header::HeaderValue::from_str(value) {
        let headers = res.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.insert(header::VARY, header::HeaderValue::from_static("Origin"));
    }
}

fn count(state: &AppState, outcome: &str) {
    state
        .metrics
        .client_secrets
        .with_label_values(&[outcome])
        .inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(body: &str) -> String {
        match parse(body.as_bytes()) {
            Ok(_) => "ok".into(),
            Err(r) => format!("{} {}", r.status.as_u16(), r.message),
        }
    }

    /// An empty body asks for the defaults; OpenAI's shape is read field by field.
    #[test]
    fn body_is_read() {
        for empty in ["", "  \n", "{}"] {
            let r = parse(empty.as_bytes()).expect("valid");
            assert_eq!((r.seconds, r.model, r.fields.len()), (600, None, 0));
        }
        let r = parse(
            br#"{"expires_after":{"anchor":"created_at","seconds":10},
                 "session":{"type":"realtime","model":"gpt-realtime","instructions":"Hi."}}"#,
        )
        .expect("valid");
        assert_eq!(r.seconds, 10);
        assert_eq!(r.model.as_deref(), Some("gpt-realtime"));
        assert_eq!(
            r.fields,
            json!({"instructions": "Hi."})
                .as_object()
                .cloned()
                .expect("map")
        );
        assert_eq!(
            parse(br#"{"expires_after":{"seconds":7200}}"#)
                .expect("valid")
                .seconds,
            7200
        );
    }

    /// Every malformed body is a 400 that names the field.
    #[test]
    fn bad_bodies_name_the_field() {
        for (body, field) in [
            ("[]", "JSON object"),
            ("not json", "JSON object"),
            (
                r#"{"expires_after":{"seconds":9}}"#,
                "expires_after.seconds",
            ),
            (
                r#"{"expires_after":{"seconds":7201}}"#,
                "expires_after.seconds",
            ),
            (
                r#"{"expires_after":{"seconds":"60"}}"#,
                "expires_after.seconds",
            ),
            (
                r#"{"expires_after":{"anchor":"now"}}"#,
                "expires_after.anchor",
            ),
            (r#"{"expires_after":{"sec":60}}"#, "expires_after.sec"),
            (r#"{"expires_after":60}"#, "expires_after"),
            (r#"{"session":{"type":"transcription"}}"#, "session.type"),
            (r#"{"session":{"model":"a&b"}}"#, "session.model"),
            (r#"{"session":[]}"#, "session"),
            (r#"{"sesion":{}}"#, "sesion"),
        ] {
            let got = code_of(body);
            assert!(
                got.starts_with("400 ") && got.contains(field),
                "{body}: {got}"
            );
        }
    }
}
