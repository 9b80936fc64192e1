//! Every metric the relay exports, named once: each is a `Def` constant here (name, help,
//! labels, buckets), beside the closed sets of label values that no enum elsewhere owns.
//! `Metrics::new` (in the parent module) is the only reader of the definitions; the label sets
//! also preset series there and are reported by the admission registry.

use prometheus::{CounterVec, Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

use super::def::Def;

/// Reasons a session is refused at admission.
pub(crate) const REJECT_LABELS: [&str; 10] = [
    "capacity_exceeded",
    "invalid_request",
    "origin_not_allowed",
    "server_shutting_down",
    "unauthorized",
    "too_many_connections",
    "rate_limited",
    "model_not_allowed",
    "budget_exceeded",
    "service_unavailable",
];
/// What became of a request for a client secret, for `relay_client_secrets_total{outcome}`.
pub(crate) const CLIENT_SECRET_OUTCOMES: [&str; 9] = [
    "minted",
    "invalid_request",
    "policy_violation",
    "unauthorized",
    "origin_not_allowed",
    "model_not_allowed",
    "rate_limited",
    "server_shutting_down",
    "service_unavailable",
];
/// Redis operations, for `relay_redis_errors_total{op}`.
pub(crate) const REDIS_OPS: [&str; 7] = [
    "admit", "release", "refresh", "usage", "totals", "stats", "ping",
];
/// Reasons an upstream dial fails.
pub(crate) const CONNECT_FAILURE_LABELS: [&str; 5] = [
    "upstream_unavailable",
    "upstream_timeout",
    "upstream_auth_failed",
    "upstream_rate_limited",
    "upstream_rejected",
];
/// Realtime models named in token metrics even when not configured.
pub(super) const BUILTIN_MODELS: [&str; 5] = [
    "gpt-realtime",
    "gpt-realtime-mini",
    "gpt-realtime-2",
    "gpt-4o-realtime-preview",
    "gpt-4o-mini-realtime-preview",
];

pub(super) const SESSIONS_ACTIVE: Def<IntGauge> = Def::gauge(
    "relay_sessions_active",
    "Client sessions currently admitted.",
);
pub(super) const SESSIONS_BY_TRANSPORT: Def<IntGaugeVec> = Def::gauges(
    "relay_sessions_active_by_transport",
    "Client sessions currently admitted, by transport: websocket, or webrtc (a call whose media \
     goes between the browser and the upstream, metered through the relay's sideband).",
    &["transport"],
);
pub(super) const SESSIONS_MAX: Def<IntGauge> = Def::gauge(
    "relay_sessions_max",
    "MAX_CONNECTIONS: the most sessions this relay admits at once.",
);
pub(super) const SESSIONS_OPENED: Def<IntCounter> = Def::counter(
    "relay_sessions_opened_total",
    "Client sessions admitted since start.",
);
pub(super) const SESSIONS_CLOSED: Def<IntCounterVec> = Def::counters(
    "relay_sessions_closed_total",
    "Admitted sessions that ended, by reason.",
    &["reason"],
);
pub(super) const SESSIONS_REJECTED: Def<IntCounterVec> = Def::counters(
    "relay_sessions_rejected_total",
    "Client connections refused before any upstream dial, by reason.",
    &["reason"],
);
pub(super) const UPSTREAM_CONNECT_SECONDS: Def<Histogram> = Def::histogram(
    "relay_upstream_connect_seconds",
    "Time to dial, TLS-handshake and upgrade the upstream WebSocket.",
    &[
        0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0,
    ],
);
pub(super) const UPSTREAM_CONNECT_FAILURES: Def<IntCounterVec> = Def::counters(
    "relay_upstream_connect_failures_total",
    "Upstream dials that failed, by reason.",
    &["reason"],
);
pub(super) const MESSAGES: Def<IntCounterVec> = Def::counters(
    "relay_messages_total",
    "WebSocket data messages relayed, by direction.",
    &["direction"],
);
pub(super) const BYTES: Def<IntCounterVec> = Def::counters(
    "relay_bytes_total",
    "Payload bytes of relayed data messages, by direction.",
    &["direction"],
);
pub(super) const UPSTREAM_POOL_WARM: Def<IntGaugeVec> = Def::gauges(
    "relay_upstream_pool_warm",
    "Warm upstream sockets waiting in the pool, by model.",
    &["model"],
);
pub(super) const UPSTREAM_POOL_HITS: Def<IntCounterVec> = Def::counters(
    "relay_upstream_pool_hits_total",
    "Sessions that got a warm upstream socket from the pool.",
    &["model"],
);
pub(super) const UPSTREAM_POOL_MISSES: Def<IntCounterVec> = Def::counters(
    "relay_upstream_pool_misses_total",
    "Sessions for a pooled model that found the pool empty and dialed.",
    &["model"],
);
pub(super) const UPSTREAM_POOL_EXPIRED: Def<IntCounterVec> = Def::counters(
    "relay_upstream_pool_expired_total",
    "Warm sockets closed unused (past UPSTREAM_POOL_MAX_IDLE, or closed by the upstream).",
    &["model"],
);
pub(super) const UPSTREAM_POOL_AGE_SECONDS: Def<Histogram> = Def::histogram(
    "relay_upstream_pool_age_seconds",
    "Age of warm sockets when a session took them.",
    &[0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0],
);
pub(super) const SESSION_DURATION_SECONDS: Def<Histogram> = Def::histogram(
    "relay_session_duration_seconds",
    "Length of admitted sessions, from admission to release.",
    &[
        1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
    ],
);
pub(super) const FIRST_UPSTREAM_EVENT_SECONDS: Def<Histogram> = Def::histogram(
    "relay_first_upstream_event_seconds",
    "Time from admission to the first upstream event reaching the client.",
    &[
        0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0,
    ],
);
pub(super) const TOKENS: Def<IntCounterVec> = Def::counters(
    "relay_tokens_total",
    "Tokens the upstream reported used (response.done, transcription), by model and kind.",
    &["model", "kind"],
);
pub(super) const AUDIO_SECONDS: Def<CounterVec> = Def::seconds(
    "relay_audio_seconds_total",
    "Seconds of input audio the upstream reported transcribing and billing by duration \
     (transcription usage of type duration), by model.",
    &["model"],
);
pub(super) const COST_USD: Def<CounterVec> = Def::dollars(
    "relay_cost_usd_total",
    "What the usage the upstream reported cost, in US dollars, priced by the price table \
     (PRICING_FILE or the built-in one) when it was counted, by model.",
    &["model"],
);
pub(super) const UNPRICED_USAGE: Def<IntCounterVec> = Def::counters(
    "relay_unpriced_usage_total",
    "Usage reports the price table could not price in full (a model with no entry and no \
     default entry, or a kind of count its entry has no rate for), by model.",
    &["model"],
);
pub(super) const UNACCOUNTED_RESPONSES: Def<IntCounter> = Def::counter(
    "relay_unaccounted_responses_total",
    "Responses that ended without usage the relay could count: a response.done without a usage \
     block or with counts no event can carry, still in flight when the relay closed the \
     upstream after its usage grace, or cut off by the upstream ending the session.",
);

pub(super) const REDIS_UP: Def<IntGauge> = Def::gauge(
    "relay_redis_up",
    "1 when the last Redis command answered in time, 0 when it did not (always 0 without REDIS_URL).",
);
pub(super) const REDIS_ERRORS: Def<IntCounterVec> = Def::counters(
    "relay_redis_errors_total",
    "Redis commands that failed or timed out, by operation.",
    &["op"],
);
pub(super) const ADMISSION_SECONDS: Def<Histogram> = Def::histogram(
    "relay_admission_seconds",
    "Time the registry took to admit or refuse a session (with REDIS_URL, one Redis round trip).",
    &[
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    ],
);
pub(super) const POLICY_ACTIONS: Def<IntCounterVec> = Def::counters(
    "relay_policy_actions_total",
    "Session policy decisions (SESSION_POLICY_FILE), by policy, action (pinned, stripped, \
     rejected, closed, lowered, hidden, not_allowed) and field (one the policy names, or type, \
     json, session, max_output_tokens).",
    &["policy", "action", "field"],
);
pub(super) const CLIENT_SECRETS: Def<IntCounterVec> = Def::counters(
    "relay_client_secrets_total",
    "Requests for a relay client secret (POST /v1/realtime/client_secrets), by outcome: minted, \
     or the code it was refused with.",
    &["outcome"],
);
