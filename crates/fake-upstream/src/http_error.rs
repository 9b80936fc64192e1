//! OpenAI-shaped HTTP error answers (`{"error":{"message","type","code","param"}}`): the
//! scripted rejections of upgrades and calls, and the calls endpoints' own refusals (no key, no
//! such call, a body it cannot read). Called by `server.rs` and `calls/`; pure functions.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde_json::json;

/// An answer with `status` and an OpenAI-shaped error body.
pub(crate) fn error_response(
    status: StatusCode,
    kind: &str,
    code: Option<&str>,
    message: &str,
) -> HttpResponse {
    let body = json!({"error": {
        "message": message,
        "type": kind,
        "code": code,
        "param": null,
    }});
    HttpResponse::build(status)
        .content_type("application/json")
        .body(body.to_string())
}

/// The answer to a request the script rejects with `status`, with the body OpenAI gives for it.
pub(crate) fn rejection(status: u16) -> HttpResponse {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match status {
        401 => error_response(
            code,
            "invalid_request_error",
            Some("invalid_api_key"),
            "Incorrect API key provided",
        ),
        429 => error_response(
            code,
            "requests",
            Some("rate_limit_exceeded"),
            "Rate limit reached for requests. Please try again later.",
        ),
        _ => error_response(
            code,
            "server_error",
            None,
            &format!("The fake upstream rejected the request with status {status}"),
        ),
    }
}

/// The answer to a request without `Authorization: Bearer …`.
pub(crate) fn missing_key() -> HttpResponse {
    error_response(
        StatusCode::UNAUTHORIZED,
        "invalid_request_error",
        None,
        "You didn't provide an API key. You need to provide your API key in an Authorization \
         header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
    )
}

/// The answer naming a call that does not exist (or has ended).
pub(crate) fn unknown_call(call_id: &str) -> HttpResponse {
    let shown: String = call_id.chars().take(64).collect();
    error_response(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        Some("call_not_found"),
        &format!("No call found with id '{shown}'."),
    )
}
