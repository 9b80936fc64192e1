//! The calls endpoints without the `webrtc` feature (the relay's release build and its
//! `--demo` mode): a call request is answered 501, a hangup 401 or 404, a sideband 404, since
//! no call can exist. Called by the server's router; nothing is recorded or kept.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::http_error::{error_response, missing_key, unknown_call};
use crate::request::bearer;
use crate::script::Script;
use crate::shared::Shared;

/// `POST /v1/realtime/calls`: 501, this build has no WebRTC stack.
pub(crate) async fn create() -> HttpResponse {
    error_response(
        StatusCode::NOT_IMPLEMENTED,
        "invalid_request_error",
        Some("webrtc_unsupported"),
        "This fake upstream (the relay's demo mode) does not speak WebRTC; use a WebSocket \
         session.",
    )
}

/// `POST /v1/realtime/calls/{call_id}/hangup`: 401 without a bearer key, else 404.
pub(crate) async fn hangup(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    match bearer(&req) {
        None => missing_key(),
        Some(_) => unknown_call(&path),
    }
}

/// The sideband upgrade for `?call_id=`: 404, there are no calls.
pub(crate) async fn attach(
    _req: &HttpRequest,
    _body: web::Payload,
    call_id: &str,
    _connection: u64,
    _script: &Script,
    _shared: &Shared,
) -> actix_web::Result<HttpResponse> {
    Ok(unknown_call(call_id))
}

#[cfg(test)]
mod tests {
    use awc::http::header::AUTHORIZATION;
    use serde_json::Value;

    use crate::test_client::T;
    use crate::{FakeUpstream, Script};

    /// Without the feature a call request is answered 501 `webrtc_unsupported` (OpenAI-shaped),
    /// a hangup 404 (401 without a key), a sideband 404 without an upgrade; nothing is recorded.
    #[actix_web::test]
    async fn calls_are_unsupported_without_the_feature() {
        let fake = FakeUpstream::start(Script::demo()).await.unwrap();
        let client = awc::Client::new();
        let posting = client
            .post(fake.calls_url())
            .insert_header((AUTHORIZATION, "Bearer sk-test"))
            .send_body("v=0");
        let mut answer = tokio::time::timeout(T, posting).await.unwrap().unwrap();
        assert_eq!(answer.status().as_u16(), 501);
        let body: Value = serde_json::from_slice(&answer.body().await.unwrap()).unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["code"], "webrtc_unsupported");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not speak WebRTC"));

        let hangup = format!("{}/rtc_x/hangup", fake.calls_url());
        let with_key = client
            .post(&hangup)
            .insert_header((AUTHORIZATION, "Bearer sk-test"))
            .send();
        let answer = tokio::time::timeout(T, with_key).await.unwrap().unwrap();
        assert_eq!(answer.status().as_u16(), 404);
        let without = tokio::time::timeout(T, client.post(&hangup).send()).await;
        assert_eq!(without.unwrap().unwrap().status().as_u16(), 401);

        let sideband = client.ws(format!("{}?call_id=rtc_x", fake.url())).connect();
        match tokio::time::timeout(T, sideband).await.unwrap() {
            Err(awc::error::WsClientError::InvalidResponseStatus(status)) => {
                assert_eq!(status.as_u16(), 404)
            }
            other => panic!("expected a 404, got {:?}", other.map(|_| ())),
        }
        assert!(fake.recorder().calls().is_empty());
        assert!(fake.recorder().hangups().is_empty());
        fake.stop().await;
    }
}
