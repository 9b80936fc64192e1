//! WebRTC signalling: `POST /v1/realtime/calls` (also `/realtime/calls`), OpenAI's shape: the
//! body is the browser's SDP offer (`application/sdp`), `?model=` is optional, the credential is
//! `Authorization: Bearer <relay token | JWT | relay client secret>`. The checks are the
//! WebSocket upgrade's, in its order and with its codes (`upgrade.rs`); then a `Call` actor
//! takes a slot, forwards the offer upstream and answers here: `201` with the SDP answer and
//! `Location: /v1/realtime/calls/{call_id}`, or the refusal as JSON. `POST
//! /v1/realtime/calls/{call_id}/hangup` passes a hangup upstream for the identity that created
//! the call; anyone else gets 404. Browsers get CORS (and the preflight) as for the other
//! endpoints a page calls.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use actix_web::{
    http::{header, StatusCode},
    web, HttpRequest, HttpResponse,
};
use serde_json::{json, Map, Value};
use tokio::sync::oneshot;

use crate::{
    call::{
        actor::{self as call, Call},
        book::CallBook,
        msg::HangUp,
    },
    close::SessionEnd,
    http::{
        client_ip, json_error, not_found, origin, page_error, preflight, unix_now,
        upgrade::{admit, dialer, refuse_unwelcome, session_policy, shared},
        with_cors, AppState,
    },
    ops::throttle::RefusalLog,
    protection::{
        identity::{presented_credential, Identity},
        models::AllowedModels,
        policy::{Applied, PolicyBook},
    },
};

/// The largest SDP offer taken (a browser's is a few KiB).
const MAX_OFFER_BYTES: usize = 64 * 1024;

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    for path in ["/v1/realtime/calls", "/realtime/calls"] {
        cfg.route(path, web::post().to(create)).route(
            path,
            web::method(actix_web::http::Method::OPTIONS).to(preflight),
        );
    }
    for path in [
        "/v1/realtime/calls/{call_id}/hangup",
        "/realtime/calls/{call_id}/hangup",
    ] {
        cfg.route(path, web::post().to(hangup)).route(
            path,
            web::method(actix_web::http::Method::OPTIONS).to(preflight),
        );
    }
}

/// The HTTP status a refusal or a failure answers with; its `code` and message are the ones a
/// WebSocket session's `error` event carries.
pub(crate) fn status_of(reason: &SessionEnd) -> StatusCode {
    use SessionEnd::*;
    match reason {
        Unauthorized { .. } => StatusCode::UNAUTHORIZED,
        ModelNotAllowed { .. } => StatusCode::FORBIDDEN,
        RateLimited { .. } | TooManyConnections { .. } | BudgetExceeded { .. } => {
            StatusCode::TOO_MANY_REQUESTS
        }
        CapacityExceeded { .. } | ShuttingDown | ServiceUnavailable => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        UpstreamUnavailable { .. }
        | UpstreamAuthFailed { .. }
        | UpstreamRateLimited
        | UpstreamRejected { .. }
        | UpstreamClosed { .. }
        | UpstreamGone
        | UpstreamProtocolError
        | UpstreamMessageTooLarge { .. }
        | UpstreamTooSlow => StatusCode::BAD_GATEWAY,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// `reason` as the JSON refusal, with CORS so a page can read it.
fn refusal(state: &AppState, req: &HttpRequest, reason: &SessionEnd) -> HttpResponse {
    let code = reason.code().unwrap_or(reason.label());
    page_error(state, req, status_of(reason), code, &reason.message())
}

/// The session sent upstream with the offer: the call's model and the policy's pinned fields.
fn call_session(model: &str, policy: Option<&Applied>) -> Value {
    let mut session = Map::new();
    session.insert("type".into(), "realtime".into());
    if let Some(pinned) = policy.and_then(|p| p.policy.session.as_ref()) {
        session.extend(pinned.clone());
    }
    session.insert("model".into(), model.into());
    Value::Object(session)
}

/// The offer as text, if it is one: `application/sdp`, UTF-8, starting `v=0`.
fn offer_of(req: &HttpRequest, body: &[u8]) -> Result<String, SessionEnd> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
    {
        return Err(SessionEnd::InvalidRequest {
            detail: "send the SDP offer as the body, with Content-Type: application/sdp".into(),
        });
    }
    let text = std::str::from_utf8(body)
        .ok()
        .filter(|t| t.starts_with("v=0"))
        .ok_or_else(|| SessionEnd::InvalidRequest {
            detail: "the body is not an SDP offer (it must start with v=0)".into(),
        })?;
    Ok(text.to_string())
}

/// `POST /v1/realtime/calls`.
pub(crate) async fn create(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
    book: web::Data<CallBook>,
) -> actix_web::Result<HttpResponse> {
    if state.on_admin_listener(&req) {
        return Ok(not_found());
    }
    if let Some(refused) = refuse_unwelcome(&req, &state) {
        return Ok(refused);
    }
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    let ip = client_ip(&state, &req);
    let refusals = shared::<RefusalLog>(&req);
    let allowed = shared::<AllowedModels>(&req);
    let policies = shared::<PolicyBook>(&req);
    let checked = (|| {
        if query.contains_key("intent") {
            return Err(SessionEnd::InvalidRequest {
                detail: "a call takes a model, not an intent".into(),
            });
        }
        if body.len() > MAX_OFFER_BYTES {
            return Err(SessionEnd::InvalidRequest {
                detail: format!("the SDP offer is larger than {MAX_OFFER_BYTES} bytes"),
            });
        }
        let (query, identity) = admit(&req, &state, &allowed, &query, ip)?;
        let policy = session_policy(&policies, &identity)?;
        let offer = offer_of(&req, &body)?;
        Ok((query, identity, policy, offer))
    })();
    let (query, identity, policy, offer) = match checked {
        Ok(checked) => checked,
        Err(reason) => {
            refusals.refused("call refused", reason.label(), ip, None, Instant::now());
            state.count_rejection(reason.label());
            return Ok(refusal(&state, &req, &reason));
        }
    };
    let dialer = dialer(&req)?;
    let address = state.authenticator.address_identity(ip);
    let safety_id = state.safety.identifier(&identity, &address);
    let wait = dialer.upstream().connect_timeout * 3 + Duration::from_secs(1);
    let (tx, rx) = oneshot::channel();
    actix::Actor::start(Call::new(
        call::Params {
            session: call_session(&query.model, policy.as_deref()),
            offer,
            model: query.model,
            client_ip: ip,
            identity,
            safety_id,
            max_session_duration: state.max_session_duration,
            policy,
            registry: state.registry.clone(),
            metrics: state.metrics.clone(),
            dialer,
            book: book.clone(),
            refusals: refusals.into_inner(),
        },
        tx,
    ));
    let answered = match tokio::time::timeout(wait, rx).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) => Err(SessionEnd::ShuttingDown),
        Err(_) => Err(SessionEnd::UpstreamTimeout {
            after_ms: wait.as_millis(),
        }),
    };
    Ok(match answered {
        Ok((call_id, answer)) => with_cors(&state, &req, HttpResponse::Created())
            .insert_header((header::LOCATION, format!("/v1/realtime/calls/{call_id}")))
            .insert_header((header::ACCESS_CONTROL_EXPOSE_HEADERS, "Location"))
            .content_type("application/sdp")
            .body(answer),
        Err(reason) => refusal(&state, &req, &reason),
    })
}

/// The identity behind the request's credential, as a WebSocket upgrade would decide it.
fn identity_of(req: &HttpRequest, state: &AppState) -> Result<Identity, SessionEnd> {
    let presented = presented_credential(
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
        std::iter::empty(),
    );
    state
        .authenticator
        .authenticate(presented, client_ip(state, req), unix_now(), Instant::now())
        .map_err(|e| SessionEnd::Unauthorized {
            detail: e.to_string(),
        })
}

/// The 404 for a call that is not this client's, or is over: the two look the same.
fn call_not_found(state: &AppState, req: &HttpRequest) -> HttpResponse {
    page_error(
        state,
        req,
        StatusCode::NOT_FOUND,
        "call_not_found",
        "No live call with this id belongs to this client.",
    )
}

/// `POST /v1/realtime/calls/{call_id}/hangup`: only for the identity that created the call.
pub(crate) async fn hangup(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    book: web::Data<CallBook>,
) -> actix_web::Result<HttpResponse> {
    if state.on_admin_listener(&req) {
        return Ok(not_found());
    }
    if !state
        .allowed_origins
        .admits(origin(&req), state.allow_missing_origin)
    {
        return Ok(json_error(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "This Origin is not in the relay's ALLOWED_ORIGINS.",
        ));
    }
    let identity = match identity_of(&req, &state) {
        Ok(identity) => identity,
        Err(reason) => return Ok(refusal(&state, &req, &reason)),
    };
    let call_id = path.into_inner();
    let Some(booked) = book.owned_by(&call_id, &identity.key) else {
        return Ok(
            with_cors(&state, &req, HttpResponse::NotFound()).json(json!({
                "error": {
                    "type": "relay_error",
                    "code": "call_not_found",
                    "message": "No live call with this id belongs to this client.",
                }
            })),
        );
    };
    // The call hangs itself up, once, however many ways it is being ended at the same moment.
    let (reply, hung) = oneshot::channel();
    let _ = booked.hang_up.try_send(HangUp { reply });
    // The call may first finish opening its sideband, then hangs up: each is bounded by
    // UPSTREAM_CONNECT_TIMEOUT; a moment more for the reply.
    let wait = dialer(&req)?.upstream().connect_timeout * 2 + Duration::from_secs(1);
    let hung = match tokio::time::timeout(wait, hung).await {
        Ok(Ok(Some(hung))) => hung,
        // It had just ended (and hung up) by itself.
        Ok(Ok(None) | Err(_)) => return Ok(call_not_found(&state, &req)),
        Err(_) => Err(SessionEnd::UpstreamTimeout {
            after_ms: wait.as_millis(),
        }),
    };
    Ok(match hung {
        // The upstream already forgot the call: it is over either way.
        Ok(status) if status.is_success() || status == StatusCode::NOT_FOUND => {
            with_cors(&state, &req, HttpResponse::Ok()).json(json!({}))
        }
        Ok(status) => refusal(
            &state,
            &req,
            &SessionEnd::UpstreamRejected {
                status: status.as_u16(),
            },
        ),
        Err(reason) => refusal(&state, &req, &reason),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_the_issue_statuses() {
        use crate::protection::usage::Budget;
        let cases = [
            (
                SessionEnd::Unauthorized { detail: "x".into() },
                StatusCode::UNAUTHORIZED,
            ),
            (
                SessionEnd::ModelNotAllowed { model: "m".into() },
                StatusCode::FORBIDDEN,
            ),
            (
                SessionEnd::RateLimited { per_minute: 1 },
                StatusCode::TOO_MANY_REQUESTS,
            ),
            (
                SessionEnd::BudgetExceeded {
                    budget: Budget::Global,
                },
                StatusCode::TOO_MANY_REQUESTS,
            ),
            (
                SessionEnd::CapacityExceeded { max: 1 },
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                SessionEnd::UpstreamTimeout { after_ms: 1 },
                StatusCode::GATEWAY_TIMEOUT,
            ),
            (
                SessionEnd::UpstreamAuthFailed { status: 401 },
                StatusCode::BAD_GATEWAY,
            ),
            (
                SessionEnd::InvalidRequest { detail: "x".into() },
                StatusCode::BAD_REQUEST,
            ),
        ];
        for (reason, status) in cases {
            assert_eq!(status_of(&reason), status, "{reason:?}");
        }
    }

    #[test]
    fn the_session_sent_upstream_carries_the_model_last() {
        let s = call_session("gpt-realtime", None);
        assert_eq!(s, json!({"type":"realtime","model":"gpt-realtime"}));
    }
}
