//! The HTTP face of the relay: the WebSocket entry points (`/`, `/realtime`, `/v1/realtime`),
//! `/health`, `/stats` and `/metrics`, with CORS for allowed origins. Everything that can be
//! refused before the upgrade (not a WebSocket, a forbidden origin) is refused here with JSON;
//! everything after the upgrade belongs to a `Session`.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    rc::Rc,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Instant,
};

use actix::Addr;
use actix_web::{
    http::{header, Method, StatusCode},
    web, HttpRequest, HttpResponse, HttpResponseBuilder,
};
use serde_json::json;

use crate::{
    admission::registry::{self, Registry},
    close::CloseReason,
    config::{is_query_safe, AllowedOrigins, SafetyIdentifier, Secret, TrustedProxies},
    ops::metrics::Metrics,
    protection::identity::{presented_credential, Authenticator, Identity},
    session::{self, Session},
    upstream::Dialer,
};

/// What every worker shares.
pub struct AppState {
    pub registry: Addr<Registry>,
    pub metrics: Arc<Metrics>,
    pub started_at: Instant,
    pub max_connections: usize,
    pub allowed_origins: AllowedOrigins,
    pub allow_missing_origin: bool,
    pub default_model: String,
    pub max_message_size: usize,
    pub inactivity_timeout: std::time::Duration,
    pub trusted_proxies: TrustedProxies,
    pub admin_token: Option<Secret>,
    /// The admin listener, when `/stats` and `/metrics` live there instead.
    pub admin_addr: Option<SocketAddr>,
    /// Set once a drain has begun.
    pub draining: Arc<AtomicBool>,
    pub authenticator: Arc<Authenticator>,
    pub safety: Safety,
    pub max_session_duration: Option<std::time::Duration>,
}

/// `SAFETY_IDENTIFIER`: how the `OpenAI-Safety-Identifier` header is made.
pub struct Safety {
    pub mode: SafetyIdentifier,
    /// HMAC key for the hash (`SAFETY_IDENTIFIER_SALT`, else the server key): stable across
    /// restarts and instances, and not reversible to the identity without it.
    pub salt: Secret,
}

impl Safety {
    /// The header value for this client, if the feature is on: 32 hex digits of
    /// HMAC-SHA256(salt, identity or address).
    pub fn identifier(&self, identity: &Identity, ip: Option<IpAddr>) -> Option<String> {
        let subject = match self.mode {
            SafetyIdentifier::Off => return None,
            SafetyIdentifier::Identity => identity.key.clone(),
            SafetyIdentifier::Address => Identity::address(ip).key,
        };
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.salt.expose().as_bytes());
        let tag = ring::hmac::sign(&key, subject.as_bytes());
        Some(
            tag.as_ref()[..16]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        )
    }
}

impl AppState {
    /// Counts a connection refused before it became a session.
    fn count_rejection(&self, label: &str) {
        self.metrics
            .sessions_rejected
            .with_label_values(&[label])
            .inc();
    }

    fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Whether this request arrived on the admin listener.
    fn on_admin_listener(&self, req: &HttpRequest) -> bool {
        self.admin_addr == Some(req.app_config().local_addr())
    }

    /// `/stats` and `/metrics`: only on the admin listener when there is one, and only with the
    /// admin token when one is set. `Some` is the response to send instead.
    fn admin_refusal(&self, req: &HttpRequest) -> Option<HttpResponse> {
        if self.admin_addr.is_some() && !self.on_admin_listener(req) {
            return Some(not_found());
        }
        if let Some(token) = &self.admin_token {
            let presented = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            if !token.matches(presented.trim()) {
                return Some(HttpResponse::Unauthorized()
                    .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
                    .json(json!({
                        "error": {
                            "type": "relay_error",
                            "code": "unauthorized",
                            "message": "This endpoint needs Authorization: Bearer <ADMIN_TOKEN>.",
                        }
                    })));
            }
        }
        None
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    for path in ["/", "/realtime", "/v1/realtime"] {
        cfg.route(path, web::get().to(realtime));
    }
    cfg.route("/health", web::get().to(health))
        .route("/stats", web::get().to(stats))
        .route("/metrics", web::get().to(metrics))
        .default_service(web::to(fallback));
}

/// The client's address: the peer, or what a trusted proxy says it forwarded for.
fn client_ip(state: &AppState, req: &HttpRequest) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    let headers = req.headers();
    let forwarded = headers
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok());
    let real_ip = headers.get("x-real-ip").and_then(|v| v.to_str().ok());
    Some(state.trusted_proxies.client_ip(peer, forwarded, real_ip))
}

fn not_found() -> HttpResponse {
    json_error(
        StatusCode::NOT_FOUND,
        "not_found",
        "Not found. Endpoints: / /realtime /v1/realtime (WebSocket), /health, /stats, /metrics.",
    )
}

fn origin(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
}

fn json_error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({
        "error": { "type": "relay_error", "code": code, "message": message }
    }))
}

/// Adds `Access-Control-Allow-Origin` when the request comes from an allowed origin.
fn with_cors(
    state: &AppState,
    req: &HttpRequest,
    mut res: HttpResponseBuilder,
) -> HttpResponseBuilder {
    if let Some(o) = origin(req) {
        if state.allowed_origins.admits(Some(o), false) {
            let value = match state.allowed_origins {
                AllowedOrigins::Any => "*".to_string(),
                AllowedOrigins::List(_) => o.to_string(),
            };
            res.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, value))
                .insert_header((header::VARY, "Origin"));
        }
    }
    res
}

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

async fn realtime(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> actix_web::Result<HttpResponse> {
    if state.on_admin_listener(&req) {
        return Ok(not_found());
    }
    if !is_websocket_upgrade(&req) {
        return Ok(with_cors(&state, &req, HttpResponse::build(StatusCode::UPGRADE_REQUIRED))
            .insert_header((header::UPGRADE, "websocket"))
            .json(json!({
                "error": {
                    "type": "relay_error",
                    "code": "websocket_required",
                    "message": "This endpoint speaks the OpenAI Realtime API over WebSocket: \
                                connect with new WebSocket(url + '?model=gpt-realtime-mini', ['realtime']).",
                }
            })));
    }
    if state.is_draining() {
        state.count_rejection("server_shutting_down");
        return Ok(json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_shutting_down",
            &CloseReason::ShuttingDown.message(),
        ));
    }
    let origin = origin(&req);
    if !state
        .allowed_origins
        .admits(origin, state.allow_missing_origin)
    {
        log::warn!(
            "upgrade refused client={} reason=origin_not_allowed origin={:?}",
            client_ip(&state, &req).map_or_else(|| "-".into(), |ip| ip.to_string()),
            origin.unwrap_or("(none)")
        );
        state.count_rejection("origin_not_allowed");
        return Ok(json_error(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            match origin {
                Some(_) => "This Origin is not in the relay's ALLOWED_ORIGINS.",
                None => "Requests without an Origin header are not allowed (ALLOW_MISSING_ORIGIN=false).",
            },
        ));
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
    let admitted = upstream_query(&query, &state.default_model).and_then(|q| {
        state
            .authenticator
            .authenticate(presented, ip, now_unix)
            .map(|identity| (q, identity))
            .map_err(|e| CloseReason::Unauthorized {
                detail: e.to_string(),
            })
    });
    match admitted {
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
                "session refused client={} reason={}",
                ip.map_or_else(|| "-".into(), |ip| ip.to_string()),
                reason.label()
            );
            state.count_rejection(reason.label());
            session::say_goodbye(client, &reason, "relay_evt_refused");
            drop(stream);
        }
    }
    Ok(response)
}

async fn health(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let (status, label) = if state.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else {
        (StatusCode::OK, "ok")
    };
    with_cors(&state, &req, HttpResponse::build(status)).json(json!({
        "status": label,
        "uptime_seconds": state.started_at.elapsed().as_secs(),
        "connections": {
            "active": state.metrics.sessions_active.get(),
            "max": state.max_connections,
        },
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

async fn stats(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Some(refusal) = state.admin_refusal(&req) {
        return refusal;
    }
    let Ok(stats) = state.registry.send(registry::GetStats).await else {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "registry_unavailable",
            "The relay is shutting down.",
        );
    };
    let mut body = serde_json::to_value(stats).unwrap_or_default();
    let wants_sessions = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .is_ok_and(|q| q.get("sessions").is_some_and(|v| v == "true" || v == "1"));
    if wants_sessions {
        body["sessions"] =
            serde_json::to_value(describe_sessions(&state).await).unwrap_or_default();
    }
    with_cors(&state, &req, HttpResponse::Ok()).json(body)
}

/// Asks every live session to describe itself; sessions that do not answer within a second
/// (their worker is saturated) are left out.
async fn describe_sessions(state: &AppState) -> Vec<session::SessionInfo> {
    let Ok(addrs) = state.registry.send(registry::LiveSessions).await else {
        return Vec::new();
    };
    let asks = addrs.iter().map(|a| a.send(session::Describe));
    let answers = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        futures_util::future::join_all(asks),
    )
    .await
    .unwrap_or_default();
    let mut sessions: Vec<_> = answers
        .into_iter()
        .filter_map(|a| a.ok().flatten())
        .collect();
    sessions.sort_by_key(|s| s.id);
    sessions
}

async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Some(refusal) = state.admin_refusal(&req) {
        return refusal;
    }
    with_cors(&state, &req, HttpResponse::Ok())
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}

/// CORS preflights for the HTTP endpoints, 404 JSON for everything else.
async fn fallback(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let known = matches!(
        req.path(),
        "/" | "/realtime" | "/v1/realtime" | "/health" | "/stats" | "/metrics"
    );
    if req.method() == Method::OPTIONS && known {
        let allowed = origin(&req).is_some_and(|o| state.allowed_origins.admits(Some(o), false));
        if !allowed {
            return json_error(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                "This Origin is not in the relay's ALLOWED_ORIGINS.",
            );
        }
        return with_cors(&state, &req, HttpResponse::NoContent())
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, OPTIONS"))
            .insert_header((
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "Authorization, Content-Type",
            ))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
            .finish();
    }
    if known {
        return json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Only GET is served here.",
        );
    }
    not_found()
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
