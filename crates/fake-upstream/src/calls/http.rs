//! The calls endpoints with the `webrtc` feature: `POST /v1/realtime/calls` ([`create`]: record
//! the request, wait or refuse as [`crate::CallScript`] says, check the bearer key, read the
//! offer and session, make the peer's answer, start the call), `POST …/{call_id}/hangup`
//! ([`hangup`]) and the sideband upgrade for `?call_id=` ([`attach`]). Called by the server's
//! router per request; each returns with its answer, leaving the call's task and sidebands
//! running.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{HeaderName, AUTHORIZATION, CONTENT_TYPE, LOCATION};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use super::call::{Call, Fanout};
use super::msg::{Handle, Input, INBOX};
use super::multipart::{boundary, parse};
use super::peer::{self, PeerError};
use super::sideband::Sideband;
use crate::demo::Demo;
use crate::http_error::{error_response, missing_key, rejection, unknown_call};
use crate::recorder::{CallRequest, Hangup};
use crate::request::{bearer, query_param, DEFAULT_MODEL};
use crate::script::Script;
use crate::shared::Shared;

/// The largest call request body read (offer and session together).
const MAX_BODY: usize = 256 * 1024;

/// How long a hangup waits for its call to end (after any response it is streaming).
const HANGUP_LIMIT: Duration = Duration::from_secs(30);

/// A call request the fake will not make a call of, and why.
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

    fn bad(code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal::new(StatusCode::BAD_REQUEST, code, message)
    }

    fn response(&self) -> HttpResponse {
        let kind = if self.status.is_server_error() {
            "server_error"
        } else {
            "invalid_request_error"
        };
        error_response(self.status, kind, Some(self.code), &self.message)
    }
}

/// What a call request asks for.
struct Offer {
    session: Value,
    sdp: String,
    model: String,
}

/// `POST /v1/realtime/calls`: see the module docs.
pub(crate) async fn create(
    req: HttpRequest,
    body: web::Payload,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let script = shared.script();
    let call_id = shared.calls.new_id();
    let content_type = header_value(&req, CONTENT_TYPE).unwrap_or_default();
    let offer = read_offer(&req, body, &content_type).await;
    let (session, sdp) = match &offer {
        Ok(offer) => (offer.session.clone(), offer.sdp.clone()),
        Err(_) => (Value::Null, String::new()),
    };
    shared.recorder.record_call(CallRequest {
        call_id: call_id.clone(),
        authorization: header_value(&req, AUTHORIZATION),
        content_type,
        session,
        offer: sdp,
    });
    log::debug!("fake upstream got a call request call={call_id}");

    if !script.calls.delay.is_zero() {
        tokio::time::sleep(script.calls.delay).await;
    }
    if let Some(status) = script.calls.reject_status {
        log::debug!("fake upstream rejects the call call={call_id} status={status}");
        return rejection(status);
    }
    if bearer(&req).is_none() {
        return missing_key();
    }
    let result = match offer {
        Ok(offer) => open(call_id.clone(), offer, &script, &shared).await,
        Err(refusal) => Err(refusal),
    };
    match result {
        Ok(answer) => HttpResponse::Created()
            .content_type("application/sdp")
            .insert_header((LOCATION, format!("/v1/realtime/calls/{call_id}")))
            .body(answer),
        Err(refusal) => {
            log::debug!(
                "fake upstream refused a call call={call_id} status={} why={}",
                refusal.status,
                refusal.message
            );
            refusal.response()
        }
    }
}

/// The offer and session of a call request: a form with parts `sdp` and `session` (JSON), or
/// the bare offer as `application/sdp` with the model from `?model=`.
async fn read_offer(
    req: &HttpRequest,
    body: web::Payload,
    content_type: &str,
) -> Result<Offer, Refusal> {
    let bytes = match body.to_bytes_limited(MAX_BODY).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(err)) => {
            let message = format!("The request body could not be read: {err}");
            return Err(Refusal::bad("invalid_body", message));
        }
        Err(_) => {
            let message = format!("The request body is larger than {MAX_BODY} bytes.");
            return Err(Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                message,
            ));
        }
    };
    let media = content_type.split(';').next().unwrap_or("").trim();
    let (sdp, session) = if media.eq_ignore_ascii_case("application/sdp") {
        (bytes.to_vec(), None)
    } else if media.eq_ignore_ascii_case("multipart/form-data") {
        let boundary = boundary(content_type).ok_or_else(|| {
            Refusal::bad(
                "invalid_body",
                "The multipart Content-Type has no valid boundary.",
            )
        })?;
        let parts =
            parse(&bytes, &boundary).map_err(|e| Refusal::bad("invalid_body", e.to_string()))?;
        let mut sdp = None;
        let mut session = None;
        for part in parts {
            match part.name.as_str() {
                "sdp" => sdp = Some(part.body),
                "session" => session = Some(part.body),
                _ => {}
            }
        }
        let sdp = sdp.ok_or_else(|| Refusal::bad("missing_sdp", "The form has no 'sdp' part."))?;
        (sdp, session)
    } else {
        let message = "Send the offer as multipart/form-data (parts 'sdp' and 'session') or as \
                       application/sdp.";
        return Err(Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_content_type",
            message,
        ));
    };
    let sdp = String::from_utf8(sdp)
        .ok()
        .filter(|sdp| !sdp.trim().is_empty())
        .ok_or_else(|| Refusal::bad("invalid_sdp", "The SDP offer is empty or not UTF-8."))?;
    let asked = query_param(req, "model");
    let session = match session {
        Some(json) => read_session(&json)?,
        None => json!({
            "type": "realtime",
            "model": asked.as_deref().unwrap_or(DEFAULT_MODEL),
        }),
    };
    let model = session["model"]
        .as_str()
        .map(str::to_owned)
        .or(asked)
        .unwrap_or_else(|| DEFAULT_MODEL.to_owned());
    Ok(Offer {
        session,
        sdp,
        model,
    })
}

/// The `session` part: a JSON object whose `type`, if given, is `realtime`.
fn read_session(json: &[u8]) -> Result<Value, Refusal> {
    let session: Value = serde_json::from_slice(json)
        .map_err(|e| Refusal::bad("invalid_json", format!("The 'session' part: {e}")))?;
    if !session.is_object() {
        return Err(Refusal::bad(
            "invalid_type",
            "The 'session' part must be a JSON object.",
        ));
    }
    if session.get("type").is_some_and(|kind| kind != "realtime") {
        return Err(Refusal::bad(
            "invalid_value",
            "session.type must be 'realtime' for a call.",
        ));
    }
    Ok(session)
}

/// Answers `offer` with a new peer and starts call `call_id`; returns the SDP answer.
async fn open(
    call_id: String,
    offer: Offer,
    script: &Script,
    shared: &Shared,
) -> Result<String, Refusal> {
    if !shared.calls.has_room() {
        return Err(Refusal::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_calls",
            "The fake upstream has as many calls open as it keeps.",
        ));
    }
    let (inbox_tx, inbox) = mpsc::channel(INBOX);
    let (ended_tx, ended) = watch::channel(false);
    let recorder = Arc::clone(&shared.recorder);
    let answered = peer::answer(
        &offer.sdp,
        &call_id,
        inbox_tx.clone(),
        Arc::clone(&recorder),
    )
    .await;
    let (peer, answer) = answered.map_err(|err| match err {
        PeerError::BadOffer(why) => Refusal::bad("invalid_offer", format!("The SDP offer: {why}")),
        PeerError::Internal(why) => Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "peer_failed",
            format!("The fake upstream's peer failed: {why}"),
        ),
    })?;
    let scope = call_id.trim_start_matches("rtc_").to_owned();
    let mut demo = Demo::new(
        Fanout::default(),
        scope,
        &recorder.run,
        &offer.model,
        script,
    )
    .for_call();
    demo.merge_session(&offer.session);
    let call = Call::new(
        call_id.clone(),
        demo,
        peer,
        recorder,
        script.record_messages,
        ended_tx,
    );
    shared.calls.insert(
        call_id,
        Handle {
            inbox: inbox_tx,
            ended,
        },
    );
    actix_web::rt::spawn(call.run(inbox));
    Ok(answer)
}

/// `POST /v1/realtime/calls/{call_id}/hangup`: 401 without a bearer key, 404 for no open call,
/// else 200 once the call has ended; recorded either way.
pub(crate) async fn hangup(
    req: HttpRequest,
    path: web::Path<String>,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let call_id = path.into_inner();
    let (status, response) = if bearer(&req).is_none() {
        (401, missing_key())
    } else {
        end_call(&shared, &call_id).await
    };
    log::debug!("fake upstream answered a hangup call={call_id} status={status}");
    shared.recorder.record_hangup(Hangup {
        call_id,
        authorization: header_value(&req, AUTHORIZATION),
        status,
    });
    response
}

/// Ends open call `call_id`: its status and answer.
async fn end_call(shared: &Shared, call_id: &str) -> (u16, HttpResponse) {
    let Some(call) = shared.calls.get(call_id) else {
        return (404, unknown_call(call_id));
    };
    let ended = call.ask(|done| Input::Hangup { done });
    match tokio::time::timeout(HANGUP_LIMIT, ended).await {
        Ok(Ok(())) => {
            let ok = HttpResponse::Ok()
                .content_type("application/json")
                .body("{}");
            (200, ok)
        }
        Ok(Err(_)) => (404, unknown_call(call_id)),
        Err(_) => {
            let status = StatusCode::INTERNAL_SERVER_ERROR;
            let message = "The call did not end in time.";
            (500, error_response(status, "server_error", None, message))
        }
    }
}

/// The sideband upgrade for `?call_id=`: 404 for no open call, else the upgrade, with the
/// socket attached to the call before the upgrade is answered (so no event after the answer is
/// missed) and served by a [`Sideband`].
pub(crate) async fn attach(
    req: &HttpRequest,
    body: web::Payload,
    call_id: &str,
    connection: u64,
    script: &Script,
    shared: &Shared,
) -> actix_web::Result<HttpResponse> {
    let Some(call) = shared.calls.get(call_id) else {
        log::debug!("fake upstream has no call for a sideband connection={connection}");
        return Ok(unknown_call(call_id));
    };
    let (response, session, stream) = actix_ws::handle_with_protocols(req, body, &["realtime"])?;
    let attached = Input::Attach {
        connection,
        session: session.clone(),
    };
    if call.inbox.send(attached).await.is_err() {
        log::debug!(
            "fake upstream's call ended before a sideband attached connection={connection}"
        );
        return Ok(unknown_call(call_id));
    }
    let stream = stream
        .max_frame_size(script.max_message_size)
        .aggregate_continuations()
        .max_continuation_size(script.max_message_size);
    let recorder = Arc::clone(&shared.recorder);
    recorder.opened();
    let keep = script.record_messages;
    actix_web::rt::spawn(async move {
        let sideband = Sideband {
            connection,
            call,
            recorder: &recorder,
            keep,
        };
        let closed = sideband.run(session, stream).await;
        log::debug!(
            "fake upstream sideband ended connection={connection} code={:?} abrupt={}",
            closed.code,
            closed.abrupt
        );
        recorder.record_close(closed);
    });
    Ok(response)
}

/// Header `name` as sent (lossily UTF-8), if present.
fn header_value(req: &HttpRequest, name: HeaderName) -> Option<String> {
    req.headers()
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}
