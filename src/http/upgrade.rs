//! The WebSocket entry points `/`, `/realtime` and `/v1/realtime`: the checks before the
//! upgrade, the handshake, the client's identity and the upstream query (every name the URL
//! carries held to `ALLOWED_MODELS`, and a client secret's to its bound model), its session
//! policy (`SESSION_POLICY_FILE`: the one its credential names, else `default`, narrowed by a
//! client secret's session fields), and the start of its `Session`. Refusals are logged through
//! the relay's `RefusalLog`, at most one line per reason and address every few seconds.

use std::{collections::HashMap, net::IpAddr, rc::Rc, sync::Arc, time::Instant};

use actix_web::{
    http::{header, StatusCode},
    web, HttpRequest, HttpResponse,
};
use serde_json::json;

use crate::{
    call::book::CallBook,
    close::SessionEnd,
    config::is_query_safe,
    http::{client_ip, json_error, not_found, origin, unix_now, with_cors, AppState},
    ops::throttle::RefusalLog,
    protection::{
        identity::{presented_credential, AuthError, Identity},
        models::{url_names, AllowedModels},
        policy::{Applied, PolicyBook},
    },
    session::{
        actor::{self as session, say_goodbye, Session},
        guard::guard_frames,
    },
    upstream::{actor::ATTACH_QUERY, dial::Dialer},
};

/// What the client's URL asks for upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Query {
    /// The upstream query string (`model=..`, `intent=..`).
    pub(crate) upstream: String,
    /// The session's name in logs, `/stats`, usage and the registry's model check: its model, or
    /// `intent:<intent>` when it has none.
    pub(crate) model: String,
    /// Every name the URL is held to `ALLOWED_MODELS` under (`protection/models.rs`).
    pub(crate) names: Vec<String>,
}

/// Shared state `relay::start` registers beside `AppState` (`ALLOWED_MODELS`, the refusal log).
/// Without it (a relay wired without), an empty `AllowedModels` leaves the model to the
/// registry's check and a fresh `RefusalLog` writes every refusal.
pub(crate) fn shared<T: Default + 'static>(req: &HttpRequest) -> web::Data<T> {
    req.app_data::<web::Data<T>>()
        .cloned()
        .unwrap_or_else(|| web::Data::new(T::default()))
}

/// This worker's upstream dialer (`relay::start` gives every worker one).
pub(crate) fn dialer(req: &HttpRequest) -> actix_web::Result<Rc<Dialer>> {
    req.app_data::<Rc<Dialer>>()
        .cloned()
        .ok_or_else(|| actix_web::error::ErrorInternalServerError("no dialer"))
}

fn is_websocket_upgrade(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The upstream query (`model=..`, `intent=..`), the session's name and the names it is checked
/// under.
fn upstream_query(
    query: &HashMap<String, String>,
    default_model: &str,
) -> Result<Query, SessionEnd> {
    if query.contains_key("call_id") {
        return Err(SessionEnd::InvalidRequest {
            detail: "call_id attaches a WebSocket to the client's own WebRTC call, alone: \
                     ws://relay/v1/realtime?call_id=rtc_..."
                .into(),
        });
    }
    let model = query.get("model").map(String::as_str);
    let intent = query.get("intent").map(String::as_str);
    for (name, value) in [("model", model), ("intent", intent)] {
        if let Some(v) = value {
            if !is_query_safe(v) {
                return Err(SessionEnd::InvalidRequest {
                    detail: format!(
                        "the {name} parameter may contain only letters, digits, '-', '_', '.' and ':'"
                    ),
                });
            }
        }
    }
    let names = url_names(model, intent, default_model);
    let (upstream, model) = match (model, intent) {
        (Some(m), Some(i)) => (format!("model={m}&intent={i}"), m.to_string()),
        (Some(m), None) => (format!("model={m}"), m.to_string()),
        (None, Some(i)) => (format!("intent={i}"), names[0].clone()),
        (None, None) => (format!("model={default_model}"), default_model.to_string()),
    };
    Ok(Query {
        upstream,
        model,
        names,
    })
}

/// The query of a client secret's session: a URL without `?model=` gets the model the secret is
/// bound to, and a URL naming any other model or an intent is refused.
fn bound_query(query: &HashMap<String, String>, bound: &str) -> Result<Query, SessionEnd> {
    let bound_to = upstream_query(query, bound)?;
    match bound_to.names.iter().find(|n| *n != bound) {
        Some(name) => Err(SessionEnd::ModelNotAllowed {
            model: name.clone(),
        }),
        None => Ok(bound_to),
    }
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
    let mut query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    // `?call_id=` alone attaches to a call; checked once the client's identity is known.
    let attach = (query.len() == 1)
        .then(|| query.remove("call_id"))
        .flatten();

    // Client frames are checked from their headers as they arrive (size, reserved bits, control
    // frames, fragments) before actix-ws buffers them.
    let body = guard_frames(&req, body, state.max_message_size)?;
    let (response, client, stream) = actix_ws::handle_with_protocols(&req, body, &["realtime"])?;
    let stream = stream
        .max_frame_size(state.max_message_size)
        .aggregate_continuations()
        .max_continuation_size(state.max_message_size);

    let ip = client_ip(&state, &req);
    let allowed = shared::<AllowedModels>(&req);
    let refusals = shared::<RefusalLog>(&req);
    let policies = shared::<PolicyBook>(&req);
    let admitted = admit(&req, &state, &allowed, &query, ip).and_then(|(query, identity)| {
        let query = match &attach {
            Some(call_id) => attached(&req, call_id, &identity)?,
            None => query,
        };
        let policy = session_policy(&policies, &identity)?;
        Ok((query, identity, policy))
    });
    match admitted {
        Ok((query, identity, policy)) => {
            let dialer = dialer(&req)?;
            let address = state.authenticator.address_identity(ip);
            let safety_id = state.safety.identifier(&identity, &address);
            // `session.update` is checked against the credential's own models too.
            let allowed_models = match &identity.models {
                Some(models) => Arc::new(allowed.with_credential(models)),
                None => allowed.into_inner(),
            };
            actix::Actor::start(Session::new(session::Params {
                client,
                stream,
                query: query.upstream,
                model: query.model,
                client_ip: ip,
                identity,
                safety_id,
                max_session_duration: state.max_session_duration,
                registry: state.registry.clone(),
                metrics: state.metrics.clone(),
                dialer,
                max_message_size: state.max_message_size,
                inactivity_timeout: state.inactivity_timeout,
                allowed_models,
                policy,
                refusals: refusals.into_inner(),
            }));
        }
        Err(reason) => {
            refusals.refused("session refused", reason.label(), ip, None, Instant::now());
            state.count_rejection(reason.label());
            say_goodbye(client, &reason, "relay_evt_refused");
            drop(stream);
        }
    }
    Ok(response)
}

/// The query of a WebSocket attached to a WebRTC call's events: the call's sideband upstream,
/// for the identity that created the call only (anyone else is told no such call exists).
fn attached(req: &HttpRequest, call_id: &str, identity: &Identity) -> Result<Query, SessionEnd> {
    let booked = shared::<CallBook>(req)
        .owned_by(call_id, &identity.key)
        .filter(|_| is_query_safe(call_id))
        .ok_or_else(|| SessionEnd::InvalidRequest {
            detail: "no live WebRTC call with this call_id belongs to this client".into(),
        })?;
    Ok(Query {
        upstream: format!("{ATTACH_QUERY}{call_id}"),
        names: vec![booked.model.clone()],
        model: booked.model,
    })
}

/// The session policy the identity's credential names (`default` without a name), if
/// `SESSION_POLICY_FILE` is set, narrowed by its client secret's session fields if it has some
/// (with no file, a policy of those alone); a name the file does not define, or secret fields
/// that contradict the policy, refuse the session.
pub(crate) fn session_policy(
    policies: &PolicyBook,
    identity: &Identity,
) -> Result<Option<Arc<Applied>>, SessionEnd> {
    policies
        .narrowed(identity.policy.as_deref(), identity.session.as_ref())
        .map_err(|e| SessionEnd::InvalidRequest {
            detail: e.to_string(),
        })
}

/// What is refused with plain JSON, before any WebSocket exists: the admin listener, a request
/// that is not an upgrade (426), a drain (503), an origin not allowed (403).
fn refuse_before_upgrade(req: &HttpRequest, state: &AppState) -> Option<HttpResponse> {
    if state.on_admin_listener(req) {
        return Some(not_found());
    }
    if let Some(refusal) = malformed(req) {
        state.count_rejection("invalid_request");
        return Some(refusal);
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
    refuse_unwelcome(req, state)
}

/// What is refused with plain JSON before a session of either transport (a WebSocket upgrade,
/// a WebRTC call) is considered: a drain (503), the shared state down in closed mode (503), an
/// origin not allowed (403).
pub(crate) fn refuse_unwelcome(req: &HttpRequest, state: &AppState) -> Option<HttpResponse> {
    if state.is_draining() {
        state.count_rejection("server_shutting_down");
        return Some(json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_shutting_down",
            &SessionEnd::ShuttingDown.message(),
        ));
    }
    if state
        .cluster
        .as_ref()
        .is_some_and(|c| c.failure_mode == crate::config::FailureMode::Closed && !c.is_up())
    {
        state.count_rejection("service_unavailable");
        return Some(json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            &SessionEnd::ServiceUnavailable.message(),
        ));
    }
    let origin = origin(req);
    if state
        .allowed_origins
        .admits(origin, state.allow_missing_origin)
    {
        return None;
    }
    // One line per address and window, however many origins it tries.
    shared::<RefusalLog>(req).refused(
        "upgrade refused",
        "origin_not_allowed",
        client_ip(state, req),
        Some(origin.unwrap_or("(none)")),
        Instant::now(),
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

/// The most request-header bytes (names and values) an upgrade may carry, as Node's HTTP server
/// allows by default; Nginx allows 8 KiB. A Realtime upgrade needs well under 2 KiB.
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// An upgrade HTTP itself rules out: over HTTP/1.0 (RFC 6455 §4.2.1 needs HTTP/1.1), or with more
/// header bytes than [`MAX_HEADER_BYTES`] (431).
fn malformed(req: &HttpRequest) -> Option<HttpResponse> {
    if req.version() < actix_web::http::Version::HTTP_11 {
        return Some(json_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "A WebSocket upgrade needs HTTP/1.1 or later.",
        ));
    }
    let bytes: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    (bytes > MAX_HEADER_BYTES).then(|| {
        json_error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "invalid_request",
            &format!("The request's headers are larger than the relay's limit of {MAX_HEADER_BYTES} bytes."),
        )
    })
}

/// After the handshake: the upstream query and the client's identity, or why the session is
/// refused, in this order: an invalid query; an address that failed to authenticate too often
/// (`rate_limited`, before its credential is looked at); a missing or wrong credential; a name
/// of the URL besides the session's own (the `intent:..` of `?model=..&intent=..`) that
/// `ALLOWED_MODELS` or the credential's `models` does not allow, or, for a client secret, any
/// name but its bound model (which a URL without `?model=` gets). The session's own name is
/// checked at admission, in the registry's order.
pub(crate) fn admit(
    req: &HttpRequest,
    state: &AppState,
    allowed: &AllowedModels,
    query: &HashMap<String, String>,
    ip: Option<IpAddr>,
) -> Result<(Query, Identity), SessionEnd> {
    let presented = presented_credential(
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
        req.headers()
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .filter_map(|v| v.to_str().ok()),
    );
    let now_unix = unix_now();
    let url = query;
    let query = upstream_query(url, &state.default_model)?;
    let identity = state
        .authenticator
        .authenticate(presented, ip, now_unix, Instant::now())
        .map_err(|e| match e {
            AuthError::Throttled { per_minute } => SessionEnd::RateLimited { per_minute },
            other => SessionEnd::Unauthorized {
                detail: other.to_string(),
            },
        })?;
    let query = match &identity.model {
        Some(bound) => bound_query(url, bound)?,
        None => query,
    };
    let others: Vec<String> = query
        .names
        .iter()
        .filter(|n| **n != query.model)
        .cloned()
        .collect();
    if let Some(name) = allowed.first_refused(&others, identity.models.as_deref()) {
        return Err(SessionEnd::ModelNotAllowed { model: name.into() });
    }
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
            upstream_query(&q(&[]), d).expect("ok").upstream,
            "model=gpt-realtime-mini"
        );
        assert_eq!(
            upstream_query(&q(&[("model", "gpt-realtime"), ("api_key", "x")]), d)
                .expect("ok")
                .upstream,
            "model=gpt-realtime"
        );
        assert_eq!(
            upstream_query(&q(&[("intent", "transcription")]), d)
                .expect("ok")
                .upstream,
            "intent=transcription"
        );
        assert!(upstream_query(&q(&[("model", "a&b=c")]), d).is_err());
        assert!(upstream_query(&q(&[("call_id", "rtc_1")]), d).is_err());
    }

    /// The session is named by its model (or `intent:..` without one) and checked under every
    /// name its URL carries: `?model=M&intent=I` under both.
    #[test]
    fn query_names() {
        let d = "gpt-realtime-mini";
        let both = upstream_query(
            &q(&[("model", "gpt-realtime"), ("intent", "transcription")]),
            d,
        )
        .expect("ok");
        assert_eq!(both.upstream, "model=gpt-realtime&intent=transcription");
        assert_eq!(both.model, "gpt-realtime");
        assert_eq!(both.names, ["gpt-realtime", "intent:transcription"]);
        let intent = upstream_query(&q(&[("intent", "transcription")]), d).expect("ok");
        assert_eq!(intent.model, "intent:transcription");
        assert_eq!(intent.names, ["intent:transcription"]);
        let default = upstream_query(&q(&[]), d).expect("ok");
        assert_eq!(
            (default.model.as_str(), default.names.as_slice()),
            (d, &[d.to_string()][..])
        );
    }

    /// A client secret's session gets its bound model without `?model=`, keeps it when the URL
    /// repeats it, and is refused (naming it) any other model or an intent.
    #[test]
    fn bound_query_holds_the_url_to_the_secret_model() {
        let b = "gpt-realtime";
        let none = bound_query(&q(&[]), b).expect("ok");
        assert_eq!(
            (none.upstream.as_str(), none.model.as_str()),
            ("model=gpt-realtime", b)
        );
        assert_eq!(bound_query(&q(&[("model", b)]), b).expect("ok"), none);
        for (url, refused) in [
            (q(&[("model", "gpt-realtime-mini")]), "gpt-realtime-mini"),
            (q(&[("intent", "transcription")]), "intent:transcription"),
            (
                q(&[("model", b), ("intent", "transcription")]),
                "intent:transcription",
            ),
        ] {
            assert_eq!(
                bound_query(&url, b),
                Err(SessionEnd::ModelNotAllowed {
                    model: refused.into()
                })
            );
        }
        assert!(matches!(
            bound_query(&q(&[("model", "a&b")]), b),
            Err(SessionEnd::InvalidRequest { .. })
        ));
    }
}
