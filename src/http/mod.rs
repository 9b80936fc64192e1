//! The HTTP face of the relay: what every worker shares (`AppState`), the routes, and the
//! helpers both halves use. The WebSocket entry points (`/`, `/realtime`, `/v1/realtime`) are in
//! `upgrade.rs`; the console page (`/console`, its files and `/console/config`) in `console.rs`;
//! relay client secrets (`/v1/realtime/client_secrets`) in `client_secrets.rs`;
//! `/health`, `/stats`, `/metrics` and everything else in `admin.rs`. Everything
//! that can be refused before the upgrade is refused with JSON; everything after the upgrade
//! belongs to a `Session`.

pub(crate) mod admin;
pub(crate) mod calls;
pub(crate) mod client_secrets;
pub(crate) mod console;
pub(crate) mod upgrade;

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Instant,
};

use actix::Addr;
use actix_web::{
    http::{header, StatusCode},
    web, HttpRequest, HttpResponse, HttpResponseBuilder,
};
use serde_json::json;

use crate::{
    admission::registry::Registry,
    config::{AllowedOrigins, Secret, TrustedProxies},
    ops::metrics::Metrics,
    protection::{identity::Authenticator, safety::Safety},
};

/// What every worker shares.
pub(crate) struct AppState {
    pub(crate) registry: Addr<Registry>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) started_at: Instant,
    pub(crate) max_connections: usize,
    pub(crate) allowed_origins: AllowedOrigins,
    pub(crate) allow_missing_origin: bool,
    pub(crate) default_model: String,
    pub(crate) max_message_size: usize,
    pub(crate) inactivity_timeout: std::time::Duration,
    pub(crate) trusted_proxies: TrustedProxies,
    pub(crate) admin_token: Option<Secret>,
    /// The admin listener, when `/stats` and `/metrics` live there instead.
    pub(crate) admin_addr: Option<SocketAddr>,
    /// `ADMIN_HOSTNAMES`: `Host` names the admin listener answers besides IP literals and
    /// `localhost`.
    pub(crate) admin_hostnames: Vec<String>,
    /// Client tokens are on but neither `ADMIN_TOKEN` nor `ADMIN_PORT` is set: `/stats` and
    /// `/metrics` answer only loopback clients (after `TRUSTED_PROXIES`).
    pub(crate) admin_loopback_only: bool,
    /// Set once a drain has begun.
    pub(crate) draining: Arc<AtomicBool>,
    pub(crate) authenticator: Arc<Authenticator>,
    pub(crate) safety: Safety,
    pub(crate) max_session_duration: Option<std::time::Duration>,
    /// `REDIS_URL`: the shared state, for `/health`, `/stats?scope=cluster` and the refusal
    /// before the upgrade while it does not answer (`REDIS_FAILURE_MODE=closed`).
    pub(crate) cluster: Option<crate::cluster::Cluster>,
}

impl AppState {
    /// Counts a connection refused before it became a session.
    pub(crate) fn count_rejection(&self, label: &str) {
        self.metrics
            .sessions_rejected
            .with_label_values(&[label])
            .inc();
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Whether this request arrived on the admin listener.
    pub(crate) fn on_admin_listener(&self, req: &HttpRequest) -> bool {
        self.admin_addr == Some(req.app_config().local_addr())
    }

    /// `/stats` and `/metrics`: only on the admin listener when there is one, and only with the
    /// admin token when one is set. `Some` is the response to send instead.
    pub(crate) fn admin_refusal(&self, req: &HttpRequest) -> Option<HttpResponse> {
        if self.admin_addr.is_some() && !self.on_admin_listener(req) {
            return Some(not_found());
        }
        // Without a token, the admin listener's answer must not be readable by a web page that
        // rebinds its own host name to this address: only known `Host` values are answered.
        if self.on_admin_listener(req)
            && self.admin_token.is_none()
            && !admin_host_allowed(req, &self.admin_hostnames)
        {
            return Some(json_error(
                StatusCode::MISDIRECTED_REQUEST,
                "admin_host_not_allowed",
                "This Host is not one the admin listener answers: use an IP address or \
                 localhost, or list the name in ADMIN_HOSTNAMES.",
            ));
        }
        if self.admin_loopback_only && !client_ip(self, req).is_some_and(|ip| ip.is_loopback()) {
            return Some(json_error(
                StatusCode::FORBIDDEN,
                "admin_loopback_only",
                "Client tokens are on, so /stats and /metrics answer only this host; \
                 set ADMIN_TOKEN or ADMIN_PORT to reach them from elsewhere.",
            ));
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

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    for path in ["/", "/realtime", "/v1/realtime"] {
        cfg.route(path, web::get().to(upgrade::realtime));
    }
    calls::routes(cfg);
    for path in ["/v1/realtime/client_secrets", "/realtime/client_secrets"] {
        cfg.service(client_secrets::resource(path));
    }
    cfg.route("/health", web::get().to(admin::health))
        .route("/stats", web::get().to(admin::stats))
        .route("/metrics", web::get().to(admin::metrics))
        .default_service(web::to(admin::fallback));
}

/// The client's address: the peer, or what a trusted proxy says it forwarded for.
pub(crate) fn client_ip(state: &AppState, req: &HttpRequest) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    let headers = req.headers();
    let forwarded = headers
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok());
    let real_ip = headers.get("x-real-ip").and_then(|v| v.to_str().ok());
    Some(state.trusted_proxies.client_ip(peer, forwarded, real_ip))
}

/// Whether the request's `Host` (without its port) is an IP literal, `localhost`, or listed.
fn admin_host_allowed(req: &HttpRequest, listed: &[String]) -> bool {
    let Some(host) = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        // `[v6]:port`
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    }
    .to_ascii_lowercase();
    name.parse::<IpAddr>().is_ok() || name == "localhost" || listed.contains(&name)
}

pub(crate) fn not_found() -> HttpResponse {
    json_error(
        StatusCode::NOT_FOUND,
        "not_found",
        "Not found. Endpoints: / /realtime /v1/realtime (WebSocket), /health, /stats, /metrics.",
    )
}

pub(crate) fn origin(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
}

pub(crate) fn json_error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({
        "error": { "type": "relay_error", "code": code, "message": message }
    }))
}

/// The CORS preflight of an endpoint a page POSTs to with a credential (`/v1/realtime/calls`,
/// `/v1/realtime/client_secrets`): the allowed origin, `POST`, and the `Authorization` and
/// `Content-Type` headers; 403 for an origin the relay does not allow, or none (a preflight
/// always names one).
pub(crate) async fn preflight(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if !origin(&req).is_some_and(|o| state.allowed_origins.admits(Some(o), false)) {
        return json_error(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "This Origin is not in the relay's ALLOWED_ORIGINS.",
        );
    }
    with_cors(&state, &req, HttpResponse::NoContent())
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "POST"))
        .insert_header((
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            "authorization, content-type",
        ))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
        .finish()
}

/// A JSON refusal a page can read (CORS headers for an allowed origin), with
/// `WWW-Authenticate: Bearer` on a 401: what the endpoints a page POSTs to answer.
pub(crate) fn page_error(
    state: &AppState,
    req: &HttpRequest,
    status: StatusCode,
    code: &str,
    message: &str,
) -> HttpResponse {
    let mut res = with_cors(state, req, HttpResponse::build(status));
    if status == StatusCode::UNAUTHORIZED {
        res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
    }
    res.json(json!({
        "error": { "type": "relay_error", "code": code, "message": message }
    }))
}

/// Seconds since the Unix epoch, what credentials' expiry is checked against.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Adds `Access-Control-Allow-Origin` when the request comes from an allowed origin.
pub(crate) fn with_cors(
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
