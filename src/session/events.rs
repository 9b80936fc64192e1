//! Debug logging of relayed event types (`DEBUG=true`): the top-level `type` of each message,
//! found in its first bytes without parsing, never its contents. Used by both pumps.

use actix_ws::Message;

use crate::session::msg::SessionId;

/// The log target for per-message event types (`DEBUG=true`); never payloads.
pub(crate) const EVENTS_TARGET: &str = "openai_realtime_relay::events";

/// The `type` of a Realtime event, found without parsing the JSON (only for debug logging):
/// the top-level `"type"` key when it is among the first bytes, as OpenAI and the SDKs send it.
pub(crate) fn event_type(text: &str) -> &str {
    crate::protection::usage::top_level_type(text).unwrap_or("-")
}

/// Logs one message's event type at debug level on `EVENTS_TARGET`.
pub(crate) fn log_event(id: SessionId, direction: &str, msg: &Message) {
    let kind = match msg {
        Message::Text(t) => event_type(t),
        Message::Binary(_) => "binary",
        _ => return,
    };
    log::debug!(target: EVENTS_TARGET, session = id, direction = direction, "type" = kind; "");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_type_is_found_without_parsing() {
        assert_eq!(
            event_type(r#"{"type":"input_audio_buffer.append","audio":"AAAA"}"#),
            "input_audio_buffer.append"
        );
        assert_eq!(
            event_type(r#"{ "event_id": "e", "type" : "response.create" }"#),
            "response.create"
        );
        assert_eq!(event_type("not json"), "-");
        assert_eq!(event_type(r#"{"type":42}"#), "-");
        assert_eq!(
            event_type(r#"{"event_id":"e","session":{"type":"realtime"}}"#),
            "-"
        );
    }
}
