//! The close frame of each [`SessionEnd`]: the code and reason the client receives (codes the
//! RFC reserves never go on the wire; reasons are cut to fit a control frame), the code the
//! upstream receives, and which endings fail the connection, so the close frame is all the
//! client gets.

use super::SessionEnd;

/// Close codes that must never be put on the wire (RFC 6455 7.4.1).
pub(super) const RESERVED_CODES: [u16; 3] = [1005, 1006, 1015];
/// The largest close reason that fits a control frame.
pub(crate) const MAX_REASON_BYTES: usize = 123;

impl SessionEnd {
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
}
