//! The cheap look at an upstream event, on every text frame: its top-level `"type"`
//! ([`top_level_type`]), found by scanning the first bytes only, and whether it is one of the
//! few the relay watches ([`watched`]). Works on bytes, so any input is safe.

/// The event kinds the relay looks at on the upstream→client path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Watched {
    ResponseCreated,
    ResponseDone,
    TranscriptionCompleted,
}

/// How far into a message [`watched`] looks for the `"type"` key.
const WATCH_WINDOW: usize = 96;

/// The type strings [`watched`] recognises. The value may end past [`WATCH_WINDOW`] (only the key
/// must start inside it), but never further than the longest of these.
const WATCHED_TYPES: [(&[u8], Watched); 3] = [
    (b"response.created", Watched::ResponseCreated),
    (b"response.done", Watched::ResponseDone),
    (
        b"conversation.item.input_audio_transcription.completed",
        Watched::TranscriptionCompleted,
    ),
];

/// Cheap check, called on every upstream text frame: which watched event this is, if any.
///
/// Only the first [`WATCH_WINDOW`] bytes are scanned for a top-level `"type"` key (whitespace
/// allowed around the `:`), then its string value is compared with the watched types. OpenAI puts
/// `type` first in server events; a `type` key that starts beyond the first 96 bytes is not seen,
/// and such an event counts as unwatched. Works on bytes, so any input is safe, including one whose
/// 96th byte falls inside a multibyte character.
pub(crate) fn watched(text: &str) -> Option<Watched> {
    let kind = top_level_type(text)?;
    WATCHED_TYPES
        .iter()
        .find_map(|(name, watched)| (kind.as_bytes() == *name).then_some(*watched))
}

/// The value of the top-level `"type"` key, when the key starts within the first
/// `WATCH_WINDOW` bytes (the same cheap look as [`watched`]); values longer than 128 bytes are
/// not returned. Also used to log event types without parsing the JSON.
pub(crate) fn top_level_type(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    let window = &bytes[..bytes.len().min(WATCH_WINDOW)];
    let mut depth = 0usize;
    let mut i = 0;
    while i < window.len() {
        match window[i] {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            b'"' => {
                // A string that does not end inside the window cannot be the key we look for.
                let end = string_end(window, i + 1)?;
                let content = &window[i + 1..end];
                let colon = skip_ws(window, end + 1);
                if depth == 1 && content == b"type" && window.get(colon) == Some(&b':') {
                    return type_value(bytes, colon + 1);
                }
                i = end;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The string value starting at or after `from` (whitespace first), at most 128 bytes.
fn type_value(bytes: &[u8], from: usize) -> Option<&str> {
    // Whitespace after the colon is only skipped up to the end of the window; JSON with more than
    // that is not what OpenAI sends.
    let start = skip_ws(&bytes[..bytes.len().min(WATCH_WINDOW)], from);
    let rest = bytes.get(start..)?.strip_prefix(b"\"")?;
    let limit = &rest[..rest.len().min(129)];
    let end = limit.iter().position(|b| *b == b'"')?;
    std::str::from_utf8(&rest[..end]).ok()
}

/// Index of the closing quote of a JSON string whose content starts at `from`, skipping escapes.
fn string_end(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

fn skip_ws(bytes: &[u8], from: usize) -> usize {
    let mut i = from;
    while i < bytes.len() && matches!(bytes[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protection::usage::{
        tests::{RESPONSE_DONE, TRANSCRIPTION_TOKENS},
        Usage,
    };

    /// The three watched types are recognised when `type` comes first, compact or spaced.
    #[test]
    fn watched_recognises_typical_events() {
        assert_eq!(watched(RESPONSE_DONE), Some(Watched::ResponseDone));
        assert_eq!(
            watched(TRANSCRIPTION_TOKENS),
            Some(Watched::TranscriptionCompleted)
        );
        assert_eq!(
            watched(r#"{"type":"response.created","event_id":"e","response":{}}"#),
            Some(Watched::ResponseCreated)
        );
        assert_eq!(
            watched("{ \"type\" :\t\"response.done\" , \"response\": {}}"),
            Some(Watched::ResponseDone)
        );
        assert_eq!(
            watched("{\n  \"type\": \"response.created\"\n}"),
            Some(Watched::ResponseCreated)
        );
    }

    /// Other types, prefixes of watched types and non-JSON are not watched.
    #[test]
    fn watched_ignores_other_events() {
        assert_eq!(
            watched(r#"{"type":"response.output_audio.delta","delta":"AAAA"}"#),
            None
        );
        assert_eq!(watched(r#"{"type":"response.done.extra"}"#), None);
        assert_eq!(watched(r#"{"type":"response.don"}"#), None);
        assert_eq!(watched(r#"{"type":"response.done"#), None);
        assert_eq!(watched(r#"{"type": 5}"#), None);
        assert_eq!(watched(""), None);
        assert_eq!(watched("not json at all"), None);
        assert_eq!(watched("\"type\":\"response.done\""), None);
    }

    /// Only a top-level `type` key counts: a nested one, or `"type"` as a value, does not.
    #[test]
    fn watched_needs_top_level_type_key() {
        assert_eq!(
            watched(r#"{"item":{"type":"response.done"},"type":"x"}"#),
            None
        );
        assert_eq!(watched(r#"{"kind":"type","x":"response.done"}"#), None);
        assert_eq!(
            watched(r#"{"note":"\"type\":\"response.done\"","type":"response.created"}"#),
            Some(Watched::ResponseCreated)
        );
    }

    /// A `type` key that starts after the first 96 bytes is not seen.
    #[test]
    fn watched_does_not_see_type_past_the_window() {
        let late = format!(
            r#"{{"event_id":"{}","type":"response.done","response":{{"usage":{{}}}}}}"#,
            "e".repeat(100)
        );
        assert_eq!(watched(&late), None);
        assert_eq!(
            super::super::parse_usage(&late).map(|r| r.usage),
            Some(Usage::default())
        );
        let early = r#"{"event_id":"event_B4C5D6E7F8G9H0I1","type":"conversation.item.input_audio_transcription.completed"}"#;
        assert!(early.find("\"type\"").is_some_and(|at| at < WATCH_WINDOW));
        assert!(early.len() > WATCH_WINDOW);
        assert_eq!(watched(early), Some(Watched::TranscriptionCompleted));
    }

    /// A huge message is classified from its first bytes, whatever follows.
    #[test]
    fn watched_finds_type_first_in_huge_message() {
        let huge = format!(
            r#"{{"type":"response.done","response":{{"output":[{{"transcript":"{}"}}]}}}}"#,
            "ü".repeat(2 * 1024 * 1024)
        );
        assert_eq!(watched(&huge), Some(Watched::ResponseDone));
    }

    /// Multibyte characters straddling byte 96 cannot make it panic.
    #[test]
    fn watched_is_safe_on_multibyte_at_the_window_edge() {
        for pad in 0..8 {
            for ch in ["é", "€", "😀"] {
                let text = format!("{}{}{}", "x".repeat(90 + pad), ch.repeat(4), "\"type\"");
                assert_eq!(watched(&text), None);
                let text = format!(
                    "{{\"{}\":\"{}\",\"type\":\"response.done\"}}",
                    "k".repeat(80 + pad),
                    ch.repeat(6)
                );
                assert_eq!(watched(&text), None);
            }
        }
        let text = format!("{{\"type\":\"{}\"}}", "€".repeat(64));
        assert_eq!(watched(&text), None);
    }
}
