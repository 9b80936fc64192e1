//! `/health`, `/stats` and `/metrics` (the last two only on the admin listener and with the admin
//! token when those are set), CORS preflights, and the JSON 404 for everything else.

use std::collections::HashMap;

use actix_web::{
    http::{header, Method, StatusCode},
    web, HttpRequest, HttpResponse,
};
use serde_json::json;

use crate::{
    admission::msg::{Entry, GetStats},
    http::{json_error, not_found, origin, with_cors, AppState},
    session::msg::SessionId,
};

/// `GET /health`: 200 with the live count, or 503 once a drain has begun.
pub(crate) async fn health(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let (status, label) = if state.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else {
        (StatusCode::OK, "ok")
    };
    let mut body = json!({
        "status": label,
        "uptime_seconds": state.started_at.elapsed().as_secs(),
        "connections": {
            "active": state.metrics.sessions_active.get(),
            "max": state.max_connections,
        },
        "version": env!("CARGO_PKG_VERSION"),
    });
    // Redis down does not make this relay unhealthy: live sessions go on, and the failure mode
    // decides about new ones.
    if let Some(cluster) = &state.cluster {
        body["redis"] = json!(if cluster.is_up() { "up" } else { "down" });
    }
    with_cors(&state, &req, HttpResponse::build(status)).json(body)
}

/// `GET /stats?scope=cluster`: every instance sharing this relay's Redis, read from Redis.
async fn cluster_stats(state: &AppState) -> HttpResponse {
    let Some(cluster) = &state.cluster else {
        return json_error(
            StatusCode::NOT_FOUND,
            "no_shared_state",
            "scope=cluster needs REDIS_URL: this relay shares no state with other instances.",
        );
    };
    match cluster.stats().await {
        Ok(body) => HttpResponse::Ok().json(body),
        Err(e) => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            &format!("Redis did not answer ({e}); try again shortly."),
        ),
    }
}

/// `GET /stats` (`?sessions=true` adds one line per live session).
pub(crate) async fn stats(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Some(refusal) = state.admin_refusal(&req) {
        return refusal;
    }
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    if query.get("scope").is_some_and(|s| s == "cluster") {
        return cluster_stats(&state).await;
    }
    let wants_sessions = query
        .get("sessions")
        .is_some_and(|v| v == "true" || v == "1");
    let Ok(snapshot) = state
        .registry
        .send(GetStats {
            sessions: wants_sessions,
        })
        .await
    else {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "registry_unavailable",
            "The relay is shutting down.",
        );
    };
    // Written straight to bytes (no JSON tree: at thousands of sessions that was most of the
    // cost), the session list spliced in before the closing brace.
    let mut body = serde_json::to_vec(&snapshot.stats).unwrap_or_else(|_| b"{}".to_vec());
    if let Some(entries) = snapshot.sessions {
        body.pop();
        if body.len() > 1 {
            body.push(b',');
        }
        body.extend_from_slice(br#""sessions":"#);
        let _ = serde_json::to_writer(&mut body, &session_list(entries));
        body.push(b'}');
    }
    // Admin data: never readable cross-origin, so no CORS headers.
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body)
}

/// One session as `/stats?sessions=true` lists it.
#[derive(serde::Serialize)]
struct SessionInfo {
    id: u64,
    client: Option<String>,
    model: String,
    identity: String,
    /// `websocket`, or `webrtc` for a call.
    transport: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    call_id: Option<String>,
    age_seconds: u64,
    idle_seconds: u64,
    client_to_upstream_bytes: u64,
    upstream_to_client_bytes: u64,
}

/// The registry's snapshot of live sessions as `/stats?sessions=true` lists them, by id: built
/// here, on an HTTP worker, so the registry spends only a reference count per session on it.
fn session_list(entries: Vec<(SessionId, std::sync::Arc<Entry>)>) -> Vec<SessionInfo> {
    let now = std::time::Instant::now();
    let mut list: Vec<SessionInfo> = entries
        .into_iter()
        .map(|(id, e)| SessionInfo {
            id,
            client: e.client.map(|ip| ip.to_string()),
            model: e.model.clone(),
            identity: e.identity.clone(),
            transport: e.transport.label(),
            call_id: e.call_id.as_ref().and_then(|c| c.get().cloned()),
            age_seconds: now.saturating_duration_since(e.opened_at).as_secs(),
            idle_seconds: e.traffic.idle(e.opened_at, now).as_secs(),
            client_to_upstream_bytes: e.traffic.client_to_upstream.bytes(),
            upstream_to_client_bytes: e.traffic.upstream_to_client.bytes(),
        })
        .collect();
    list.sort_by_key(|s| s.id);
    list
}

/// `GET /metrics`: the Prometheus text format.
pub(crate) async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Some(refusal) = state.admin_refusal(&req) {
        return refusal;
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}

/// CORS preflights for the HTTP endpoints, 404 JSON for everything else.
pub(crate) async fn fallback(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let known = matches!(
        req.path(),
        "/" | "/realtime" | "/v1/realtime" | "/health" | "/stats" | "/metrics"
    );
    // `/stats` and `/metrics` are admin data: no CORS preflight is ever answered for them.
    let cross_origin = !matches!(req.path(), "/stats" | "/metrics");
    if req.method() == Method::OPTIONS && known && cross_origin {
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
