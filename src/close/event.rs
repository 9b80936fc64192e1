//! The `error` event a client receives before the close frame when its session ends in a
//! failure: its `error.code` and its message, built for each [`SessionEnd`], and the
//! OpenAI-shaped event itself ([`error_event`], which other refusals use too).

use super::{frame::RESERVED_CODES, SessionEnd};
use crate::protection::usage::Budget;

impl SessionEnd {
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

    /// The OpenAI-shaped `error` event sent to the client before the close frame, if any.
    pub(crate) fn error_event(&self, event_id: &str) -> Option<String> {
        if self.fails_the_connection() {
            return None;
        }
        let code = self.code()?;
        Some(error_event(event_id, code, &self.message()))
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
