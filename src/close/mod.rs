//! `SessionEnd`: why a session ended, and how each ending looks on the wire: the close code the
//! client receives, the `error` event sent before it (for failures, except a client's
//! protocol violation, which gets the close frame alone), and the metric label.
//!
//! This file holds the endings and their labels; `frame.rs` the close frame each side receives
//! (code and reason) and when the client gets nothing else; `event.rs` the `error` event sent
//! before it, with its code and message.

mod event;
mod frame;

use std::fmt;

use crate::protection::usage::Budget;

pub(crate) use self::{
    event::{budget_words, error_event},
    frame::truncate_utf8,
};

/// Every way a session can end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SessionEnd {
    /// The client sent a close frame; it is echoed and passed upstream.
    ClientClosed { code: u16, reason: String },
    /// The client's connection ended without a close frame.
    ClientGone,
    /// The client sent something that is not valid WebSocket.
    ClientProtocolError,
    /// The client sent a text message that is not UTF-8.
    ClientInvalidUtf8,
    /// The client sent a message over `MAX_MESSAGE_SIZE`, or a frame whose header announced more.
    ClientMessageTooLarge { limit: usize },
    /// The client split a message into more fragments than the relay keeps track of.
    ClientTooManyFragments { limit: usize },
    /// The client sent more than the pre-open queue holds before the upstream was ready.
    ClientQueueOverflow { limit: usize },
    /// The client stopped reading while the upstream kept sending.
    ClientTooSlow,
    /// The client missed two heartbeats.
    HeartbeatTimeout,
    /// No data frame either way for `INACTIVITY_TIMEOUT`.
    IdleTimeout,
    /// `MAX_CONNECTIONS` sessions were already open.
    CapacityExceeded { max: usize },
    /// The upstream could not be reached (DNS, TCP, TLS, a broken handshake).
    UpstreamUnavailable { detail: String },
    /// Dial, TLS and upgrade took longer than `UPSTREAM_CONNECT_TIMEOUT`.
    UpstreamTimeout { after_ms: u128 },
    /// The upstream answered the upgrade with 401 or 403.
    UpstreamAuthFailed { status: u16 },
    /// The upstream answered the upgrade with 429.
    UpstreamRateLimited,
    /// The upstream answered the upgrade with another status.
    UpstreamRejected { status: u16 },
    /// The upstream sent a close frame; its code and reason are passed on.
    UpstreamClosed { code: Option<u16>, reason: String },
    /// The upstream's connection ended without a close frame.
    UpstreamGone,
    /// The upstream sent something that is not valid WebSocket.
    UpstreamProtocolError,
    /// The upstream sent a message over `MAX_MESSAGE_SIZE`.
    UpstreamMessageTooLarge { limit: usize },
    /// The upstream stopped reading while the client kept sending.
    UpstreamTooSlow,
    /// The relay is shutting down.
    ShuttingDown,
    /// The upgrade request carried a query the relay will not forward (a bad `model`, say).
    InvalidRequest { detail: String },
    /// Client tokens are required and none valid was presented.
    Unauthorized { detail: String },
    /// The identity already has `MAX_CONNECTIONS_PER_CLIENT` sessions.
    TooManyConnections { max: usize },
    /// The identity opened sessions faster than `CONNECTION_RATE_PER_CLIENT` per minute.
    RateLimited { per_minute: u32 },
    /// The model is not in `ALLOWED_MODELS` (or the credential's `models` claim).
    ModelNotAllowed { model: String },
    /// A daily budget (tokens or dollars) is spent.
    BudgetExceeded { budget: Budget },
    /// The session reached `MAX_SESSION_DURATION`.
    SessionMaxDuration,
    /// The shared state (Redis) did not answer and `REDIS_FAILURE_MODE=closed`.
    ServiceUnavailable,
    /// The client set a field its session policy locks, with `on_violation = "close"`.
    PolicyViolation { message: String },
}

impl SessionEnd {
    /// The metric and log label: a closed set, never an id or a free string.
    pub(crate) fn label(&self) -> &'static str {
        use SessionEnd::*;
        match self {
            ClientClosed { .. } => "client_closed",
            ClientGone => "client_gone",
            ClientProtocolError => "client_protocol_error",
            ClientInvalidUtf8 => "client_invalid_utf8",
            ClientMessageTooLarge { .. } | ClientTooManyFragments { .. } => {
                "client_message_too_large"
            }
            ClientQueueOverflow { .. } => "client_queue_overflow",
            ClientTooSlow => "client_too_slow",
            HeartbeatTimeout => "heartbeat_timeout",
            IdleTimeout => "session_idle_timeout",
            CapacityExceeded { .. } => "capacity_exceeded",
            UpstreamUnavailable { .. } => "upstream_unavailable",
            UpstreamTimeout { .. } => "upstream_timeout",
            UpstreamAuthFailed { .. } => "upstream_auth_failed",
            UpstreamRateLimited => "upstream_rate_limited",
            UpstreamRejected { .. } => "upstream_rejected",
            UpstreamClosed { .. } => "upstream_closed",
            UpstreamGone => "upstream_gone",
            UpstreamProtocolError => "upstream_protocol_error",
            UpstreamMessageTooLarge { .. } => "upstream_message_too_large",
            UpstreamTooSlow => "upstream_too_slow",
            ShuttingDown => "server_shutting_down",
            InvalidRequest { .. } => "invalid_request",
            Unauthorized { .. } => "unauthorized",
            TooManyConnections { .. } => "too_many_connections",
            RateLimited { .. } => "rate_limited",
            ModelNotAllowed { .. } => "model_not_allowed",
            BudgetExceeded { .. } => "budget_exceeded",
            SessionMaxDuration => "session_max_duration",
            ServiceUnavailable => "service_unavailable",
            PolicyViolation { .. } => "policy_violation",
        }
    }

    /// Labels that only ever refuse a session before it is admitted: they are counted as
    /// rejections, never as closed sessions.
    pub(crate) const REFUSAL_ONLY_LABELS: [&'static str; 7] = [
        "capacity_exceeded",
        "invalid_request",
        "unauthorized",
        "too_many_connections",
        "rate_limited",
        "model_not_allowed",
        "service_unavailable",
    ];

    /// Every label, for pre-registering metric series.
    pub(crate) const LABELS: [&'static str; 30] = [
        "client_closed",
        "client_gone",
        "client_protocol_error",
        "client_invalid_utf8",
        "client_message_too_large",
        "client_queue_overflow",
        "client_too_slow",
        "heartbeat_timeout",
        "session_idle_timeout",
        "capacity_exceeded",
        "upstream_unavailable",
        "upstream_timeout",
        "upstream_auth_failed",
        "upstream_rate_limited",
        "upstream_rejected",
        "upstream_closed",
        "upstream_gone",
        "upstream_protocol_error",
        "upstream_message_too_large",
        "upstream_too_slow",
        "server_shutting_down",
        "invalid_request",
        "unauthorized",
        "too_many_connections",
        "rate_limited",
        "model_not_allowed",
        "budget_exceeded",
        "session_max_duration",
        "service_unavailable",
        "policy_violation",
    ];
}

impl fmt::Display for SessionEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_only_labels_are_labels() {
        for label in SessionEnd::REFUSAL_ONLY_LABELS {
            assert!(SessionEnd::LABELS.contains(&label), "{label}");
        }
    }

    #[test]
    fn every_label_is_listed() {
        let all = [
            SessionEnd::ClientGone,
            SessionEnd::UpstreamGone,
            SessionEnd::HeartbeatTimeout,
            SessionEnd::ClientTooSlow,
            SessionEnd::UpstreamTooSlow,
        ];
        for r in all {
            assert!(SessionEnd::LABELS.contains(&r.label()));
        }
    }
}
