//! `SessionEnd`: why a session ended, and how each ending looks on the wire: the close code the
//! client receives, the `error` event sent before it (for failures, except a client's
//! protocol violation, which gets the close frame alone), and the metric label.

use std::fmt;

use crate::protection::usage::Budget;

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

/// Close codes that must never be put on the wire (RFC 6455 7.4.1).
const RESERVED_CODES: [u16; 3] = [1005, 1006, 1015];
/// The largest close reason that fits a control frame.
pub(crate) const MAX_REASON_BYTES: usize = 123;

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

    /// The close code the client receives; `None` when it is gone and gets no close frame.
    pub(crate) fn client_code(&self) -> Option<u16> {
        use SessionEnd::*;
        Some(match self {
            ClientClosed { code, .. } => *code,
            ClientGone => return None,
            ClientProtocolError => 1002,
            ClientInvalidUtf8 => 1007,
            ClientMessageTooLarge { .. }
            | ClientTooManyFragments { .. }
            | UpstreamMessageTooLarge { .. } => 1009,
            ClientQueueOverflow { .. } => 1008,
            ClientTooSlow => 1008,
            HeartbeatTimeout => 1001,
            IdleTimeout => 1000,
            CapacityExceeded { .. } | ServiceUnavailable => 1013,
            UpstreamUnavailable { .. } => 1011,
            UpstreamTimeout { .. } => 1013,
            UpstreamAuthFailed { .. } => 1011,
            UpstreamRateLimited => 1013,
            UpstreamRejected { .. } => 1011,
            UpstreamClosed { code, .. } => match code {
                Some(c) if !RESERVED_CODES.contains(c) => *c,
                _ => 1011,
            },
            UpstreamGone => 1011,
            UpstreamProtocolError => 1011,
            UpstreamTooSlow => 1011,
            ShuttingDown => 1012,
            InvalidRequest { .. }
            | Unauthorized { .. }
            | TooManyConnections { .. }
            | RateLimited { .. }
            | ModelNotAllowed { .. }
            | BudgetExceeded { .. }
            | PolicyViolation { .. } => 1008,
            SessionMaxDuration => 1000,
        })
    }

    /// The close reason text the client receives, at most 123 bytes.
    pub(crate) fn client_reason(&self) -> String {
        let text = match self {
            SessionEnd::ClientClosed { reason, .. } | SessionEnd::UpstreamClosed { reason, .. } => {
                reason.clone()
            }
            other => other.code().unwrap_or(other.label()).to_string(),
        };
        truncate_utf8(&text, MAX_REASON_BYTES).to_string()
    }

    /// The `error.code` of the event sent before the close (and the close reason); `None` for
    /// endings that are not failures (the client closed, the upstream closed cleanly, or the
    /// client is gone).
    pub(crate) fn code(&self) -> Option<&'static str> {
        use SessionEnd::*;
        match self {
            ClientClosed { .. } | ClientGone => None,
            UpstreamClosed { code, .. } => match code {
                Some(c) if !RESERVED_CODES.contains(c) => None,
                _ => Some("upstream_closed"),
            },
            ClientProtocolError => Some("invalid_websocket_frame"),
            ClientInvalidUtf8 => Some("invalid_utf8"),
            ClientMessageTooLarge { .. } | ClientTooManyFragments { .. } => {
                Some("message_too_large")
            }
            UpstreamMessageTooLarge { .. } => Some("upstream_message_too_large"),
            IdleTimeout => Some("session_idle_timeout"),
            other => Some(other.label()),
        }
    }

    /// A sentence for the client (and the log) that says what happened. Never holds the key.
    pub(crate) fn message(&self) -> String {
        use SessionEnd::*;
        match self {
            ClientClosed { code, .. } => format!("The client closed the session ({code})."),
            ClientGone => "The client disconnected without a close frame.".into(),
            ClientProtocolError => "The client sent an invalid WebSocket frame.".into(),
            ClientInvalidUtf8 => "The client sent a text message that is not valid UTF-8.".into(),
            ClientMessageTooLarge { limit } => format!(
                "The message is larger than the relay's limit of {limit} bytes (MAX_MESSAGE_SIZE)."
            ),
            ClientTooManyFragments { limit } => {
                format!("The message came in more than {limit} fragments, the relay's limit.")
            }
            ClientQueueOverflow { limit } => format!(
                "The client sent more than {limit} bytes before the upstream connection was open."
            ),
            ClientTooSlow => "The client stopped reading while the upstream kept sending.".into(),
            HeartbeatTimeout => "The client did not answer two heartbeat pings.".into(),
            IdleTimeout => "The session was idle for longer than INACTIVITY_TIMEOUT.".into(),
            CapacityExceeded { max } => {
                format!("The relay is at its limit of {max} concurrent sessions; try again later.")
            }
            UpstreamUnavailable { detail } => {
                format!("The relay could not reach the OpenAI Realtime API: {detail}.")
            }
            UpstreamTimeout { after_ms } => format!(
                "The OpenAI Realtime API did not accept the connection within {after_ms} ms."
            ),
            UpstreamAuthFailed { status } => format!(
                "The OpenAI Realtime API refused the relay's credentials (HTTP {status}); \
                 the operator must check OPENAI_API_KEY."
            ),
            UpstreamRateLimited => {
                "The OpenAI Realtime API is rate limiting this relay (HTTP 429); try again later."
                    .into()
            }
            UpstreamRejected { status } => {
                format!("The OpenAI Realtime API rejected the connection (HTTP {status}).")
            }
            UpstreamClosed { code, reason } => match code {
                Some(c) => format!("The upstream closed the session ({c} {reason})."),
                None => "The upstream closed the session without a status code.".into(),
            },
            UpstreamGone => "The upstream connection was lost without a close frame.".into(),
            UpstreamProtocolError => "The upstream sent an invalid WebSocket frame.".into(),
            UpstreamMessageTooLarge { limit } => format!(
                "The upstream sent a message larger than the relay's limit of {limit} bytes."
            ),
            UpstreamTooSlow => "The upstream stopped reading while the client kept sending.".into(),
            ShuttingDown => "The relay is shutting down; reconnect to another instance.".into(),
            InvalidRequest { detail } => format!("The request was refused: {detail}."),
            Unauthorized { detail } => format!(
                "This relay needs a client token ({detail}): send Authorization: Bearer <token>, \
                 or the subprotocol openai-insecure-api-key.<token> from a browser."
            ),
            TooManyConnections { max } => {
                format!("This client already has {max} open sessions, its limit.")
            }
            RateLimited { per_minute } => format!(
                "This client opened sessions faster than its limit of {per_minute} per minute; \
                 try again shortly."
            ),
            ModelNotAllowed { model } => {
                format!("The model {model:?} is not allowed on this relay.")
            }
            BudgetExceeded { budget } => format!(
                "The {} budget is spent; it resets at 00:00 UTC.",
                budget_words(*budget)
            ),
            SessionMaxDuration => "The session reached the relay's MAX_SESSION_DURATION.".into(),
            ServiceUnavailable => "The relay cannot reach its shared state (Redis) to check this \
                                   client's limits and budgets; try again shortly."
                .into(),
            PolicyViolation { message } => message.clone(),
        }
    }

    /// The close code the upstream receives when the relay ends the session from this side.
    pub(crate) fn upstream_code(&self) -> u16 {
        match self {
            SessionEnd::ClientClosed { code, .. } if !RESERVED_CODES.contains(code) => *code,
            SessionEnd::ShuttingDown => 1001,
            _ => 1000,
        }
    }

    /// Whether the client broke the WebSocket protocol (1002, 1007, 1009): RFC 6455 §7.1.7 says
    /// to fail the connection, so the close frame is all it gets.
    pub(crate) fn fails_the_connection(&self) -> bool {
        use SessionEnd::*;
        matches!(
            self,
            ClientProtocolError
                | ClientInvalidUtf8
                | ClientMessageTooLarge { .. }
                | ClientTooManyFragments { .. }
        )
    }

    /// The OpenAI-shaped `error` event sent to the client before the close frame, if any.
    pub(crate) fn error_event(&self, event_id: &str) -> Option<String> {
        if self.fails_the_connection() {
            return None;
        }
        let code = self.code()?;
        Some(error_event(event_id, code, &self.message()))
    }
}

impl fmt::Display for SessionEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// How a budget is named in messages and logs.
pub(crate) fn budget_words(budget: Budget) -> &'static str {
    match budget {
        Budget::Global => "relay-wide daily token",
        Budget::Client => "per-client daily token",
        Budget::GlobalUsd => "relay-wide daily USD",
        Budget::ClientUsd => "per-client daily USD",
    }
}

/// `{"type":"error","event_id":..,"error":{"type":"relay_error","code":..,"message":..,..}}`
pub(crate) fn error_event(event_id: &str, code: &str, message: &str) -> String {
    serde_json::json!({
        "type": "error",
        "event_id": event_id,
        "error": {
            "type": "relay_error",
            "code": code,
            "message": message,
            "param": null,
            "event_id": null,
        }
    })
    .to_string()
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub(crate) fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_upstream_codes_become_1011() {
        for code in [Some(1005), Some(1006), Some(1015), None] {
            let r = SessionEnd::UpstreamClosed {
                code,
                reason: String::new(),
            };
            assert_eq!(r.client_code(), Some(1011));
            assert_eq!(r.code(), Some("upstream_closed"));
        }
        let clean = SessionEnd::UpstreamClosed {
            code: Some(4000),
            reason: "invalid_request_error.beta_api_shape_disabled".into(),
        };
        assert_eq!(clean.client_code(), Some(4000));
        assert_eq!(clean.code(), None);
        assert_eq!(
            clean.client_reason(),
            "invalid_request_error.beta_api_shape_disabled"
        );
    }

    #[test]
    fn reason_is_cut_on_a_char_boundary() {
        let long = "é".repeat(100); // 200 bytes
        let r = SessionEnd::UpstreamClosed {
            code: Some(1000),
            reason: long,
        };
        let cut = r.client_reason();
        assert!(cut.len() <= 123);
        assert_eq!(cut.len(), 122);
    }

    #[test]
    fn failure_codes_and_close_codes() {
        let cases = [
            (
                SessionEnd::CapacityExceeded { max: 1 },
                "capacity_exceeded",
                1013,
            ),
            (
                SessionEnd::UpstreamTimeout { after_ms: 5 },
                "upstream_timeout",
                1013,
            ),
            (
                SessionEnd::UpstreamUnavailable { detail: "x".into() },
                "upstream_unavailable",
                1011,
            ),
            (
                SessionEnd::UpstreamAuthFailed { status: 401 },
                "upstream_auth_failed",
                1011,
            ),
            (
                SessionEnd::UpstreamRateLimited,
                "upstream_rate_limited",
                1013,
            ),
            (
                SessionEnd::UpstreamRejected { status: 500 },
                "upstream_rejected",
                1011,
            ),
            (SessionEnd::IdleTimeout, "session_idle_timeout", 1000),
            (SessionEnd::ShuttingDown, "server_shutting_down", 1012),
            (SessionEnd::ServiceUnavailable, "service_unavailable", 1013),
        ];
        for (reason, code, close) in cases {
            assert_eq!(reason.code(), Some(code), "{reason:?}");
            assert_eq!(reason.client_code(), Some(close), "{reason:?}");
            let event: serde_json::Value =
                serde_json::from_str(&reason.error_event("evt_1").expect("failure")).expect("json");
            assert_eq!(event["type"], "error");
            assert_eq!(event["error"]["type"], "relay_error");
            assert_eq!(event["error"]["code"], code);
        }
    }

    /// A client's protocol violation gets a close frame with a code and a reason, and no event.
    #[test]
    fn protocol_violations_get_the_close_frame_alone() {
        let cases = [
            (
                SessionEnd::ClientProtocolError,
                1002,
                "invalid_websocket_frame",
            ),
            (SessionEnd::ClientInvalidUtf8, 1007, "invalid_utf8"),
            (
                SessionEnd::ClientMessageTooLarge { limit: 1 },
                1009,
                "message_too_large",
            ),
            (
                SessionEnd::ClientTooManyFragments { limit: 1 },
                1009,
                "message_too_large",
            ),
        ];
        for (reason, close, text) in cases {
            assert!(reason.fails_the_connection(), "{reason:?}");
            assert_eq!(reason.error_event("evt_1"), None, "{reason:?}");
            assert_eq!(reason.client_code(), Some(close), "{reason:?}");
            assert_eq!(reason.client_reason(), text, "{reason:?}");
            assert!(SessionEnd::LABELS.contains(&reason.label()), "{reason:?}");
        }
        assert!(!SessionEnd::ClientQueueOverflow { limit: 1 }.fails_the_connection());
        assert!(!SessionEnd::UpstreamMessageTooLarge { limit: 1 }.fails_the_connection());
    }

    #[test]
    fn a_client_that_is_gone_gets_no_close_code() {
        assert_eq!(SessionEnd::ClientGone.client_code(), None);
        assert_eq!(SessionEnd::HeartbeatTimeout.client_code(), Some(1001));
    }

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
