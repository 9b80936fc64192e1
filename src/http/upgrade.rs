//! The WebSocket entry points `/`, `/realtime` and `/v1/realtime`: the checks before the
//! upgrade, the handshake, the client's identity and the upstream query, and the start of its
//! `Session`.

use std::{collections::HashMap, net::IpAddr, rc::Rc};

use actix_web::{
    http::{header, StatusCode},
    web, HttpRequest, HttpResponse,
};
use serde_json::json;

use crate::{
    close::CloseReason,
    config::is_query_safe,
    http::{client_ip, json_error, not_found, origin, with_cors, AppState},
    protection::identity::{presented_credential, Identity},
    session::actor::{self as session, say_goodbye, Session},
    upstream::dial::Dialer,
};

fn is_websocket_upgrade(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The upstream query (`model=..`, `intent=..`) and the model name for logs.
fn upstream_query(
    query: &HashMap<String, String>,
    default_model: &str,
) -> Result<(String, String), CloseReason> {
    if query.contains_key("call_id") {
        return Err(CloseReason::InvalidRequest {
            detail: "call_id (attaching to a WebRTC or SIP call) is not supported by this relay"
                .into(),
        });
    }
    let model = query.get("model").map(String::as_str);
    let intent = query.get("intent").map(String::as_str);
    for (name, value) in [("model", model), ("intent", intent)] {
        if let Some(v) = value {
            if !is_query_safe(v) {
                return Err(CloseReason::InvalidRequest {
                    detail: format!(
                        "the {name} parameter may contain only letters, digits, '-', '_', '.' and ':'"
                    ),
                });
            }
        }
    }
    Ok(match (model, intent) {
        (Some(m), Some(i)) => (format!("model={m}&intent={i}"), m.to_string()),
        (Some(m), None) => (format!("model={m}"), m.to_string()),
        (None, Some(i)) => (format!("intent={i}"), format!("intent:{i}")),
        (None, None) => (format!("model={default_model}"), default_model.to_string()),
    })
}

/// The WebSocket upgrade: refusals that need no WebSocket (not an upgrade, draining, origin)
/// as JSON, then the handshake (selecting `realtime`), then client identity and the query; a
/// session starts, or the client gets an `error` event and a close.
pub(crate) async fn realtime(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> actix_web::Result<HttpResponse> {
    if let Some(refusal) = refuse_before_upgrade(&req, &state) {
        return Ok(refusal);
    }
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();

    let (response, client, stream) = actix_ws::handle_with_protocols(&req, body, &["realtime"])?;
    let stream = stream
        .max_frame_size(state.max_message_size)
        .aggregate_continuations()
        .max_continuation_size(state.max_message_size);

    let ip = client_ip(&state, &req);
    match admit(&req, &state, &query, ip) {
        Ok(((query, model), identity)) => {
            let dialer = req
                .app_data::<Rc<Dialer>>()
                .cloned()
                .ok_or_else(|| actix_web::error::ErrorInternalServerError("no dialer"))?;
            let safety_id = state.safety.identifier(&identity, ip);
            actix::Actor::start(Session::new(session::Params {
                client,
                stream,
                query,
                model,
                client_ip: ip,
                identity,
                safety_id,
                max_session_duration: state.max_session_duration,
                registry: state.registry.clone(),
                metrics: state.metrics.clone(),
                dialer,
                max_message_size: state.max_message_size,
                inactivity_timeout: state.inactivity_timeout,
            }));
        }
        Err(reason) => {
            log::warn!(
                client = ip.map_or_else(|| "-".into(), |ip| ip.to_string()).as_str(),
                reason = reason.label();
                "session refused"
            );
            state.count_rejection(reason.label());
            say_goodbye(client, &reason, "relay_evt_refused");
            drop(stream);
        }
    }
    Ok(response)
}

/// What is refused with plain JSON, before any WebSocket exists: the admin listener, a request
/// that is not an upgrade (426), a drain (503), an origin not allowed (403).
fn refuse_before_upgrade(req: &HttpRequest, state: &AppState) -> Option<HttpResponse> {
    if state.on_admin_listener(req) {
        return Some(not_found());
    }
    if !is_websocket_upgrade(req) {
        return Some(
            with_cors(state, req, HttpResponse::build(StatusCode::UPGRADE_REQUIRED))
                .insert_header((header::UPGRADE, "websocket"))
                .json(json!({
                    "error": {
                        "type": "relay_error",
                        "code": "websocket_required",
                        "message": "This endpoint speaks the OpenAI Realtime API over WebSocket: \
                                    connect with new WebSocket(url + '?model=gpt-realtime-mini', ['realtime']).",
                    }
                })),
        );
    }
    if state.is_draining() {
        state.count_rejection("server_shutting_down");
        return Some(json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_shutting_down",
            &CloseReason::ShuttingDown.message(),
        ));
    }
    let origin = origin(req);
    if state
        .allowed_origins
        .admits(origin, state.allow_missing_origin)
    {
        return None;
    }
    log::warn!(
        client = client_ip(state, req).map_or_else(|| "-".into(), |ip| ip.to_string()).as_str(),
        reason = "origin_not_allowed",
        origin:? = origin.unwrap_or("(none)");
        "upgrade refused"
    );
    state.count_rejection("origin_not_allowed");
    Some(json_error(
        StatusCode::FORBIDDEN,
        "origin_not_allowed",
        match origin {
            Some(_) => "This Origin is not in the relay's ALLOWED_ORIGINS.",
            None => {
                "Requests without an Origin header are not allowed (ALLOW_MISSING_ORIGIN=false)."
            }
        },
    ))
}

/// After the handshake: the upstream query and the client's identity, or why the session is
/// refused (an invalid query, a missing or wrong credential).
fn admit(
    req: &HttpRequest,
    state: &AppState,
    query: &HashMap<String, String>,
    ip: Option<IpAddr>,
) -> Result<((String, String), Identity), CloseReason> {
    let presented = presented_credential(
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
        req.headers()
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .filter_map(|v| v.to_str().ok()),
    );
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let query = upstream_query(query, &state.default_model)?;
    let identity = state
        .authenticator
        .authenticate(presented, ip, now_unix)
        .map_err(|e| CloseReason::Unauthorized {
            detail: e.to_string(),
        })?;
    Ok((query, identity))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn query_forwards_model_and_intent_only() {
        let d = "gpt-realtime-mini";
        assert_eq!(
            upstream_query(&q(&[]), d).expect("ok").0,
            "model=gpt-realtime-mini"
        );
        assert_eq!(
            upstream_query(&q(&[("model", "gpt-realtime"), ("api_key", "x")]), d)
                .expect("ok")
                .0,
            "model=gpt-realtime"
        );
        assert_eq!(
            upstream_query(&q(&[("intent", "transcription")]), d)
                .expect("ok")
                .0,
            "intent=transcription"
        );
        assert!(upstream_query(&q(&[("model", "a&b=c")]), d).is_err());
        assert!(upstream_query(&q(&[("call_id", "rtc_1")]), d).is_err());
    }
}
