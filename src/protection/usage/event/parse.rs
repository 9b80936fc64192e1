//! The full parse of the few upstream events that carry usage (`response.done`, a completed
//! input audio transcription), only for events [`watched`](super::watched) picked out: the
//! counts as OpenAI sends them, turned into [`Usage`], with the key that makes a report unique;
//! counts no event can carry are dropped here.

use serde::Deserialize;

use crate::protection::usage::{millis, Usage, MAX_EVENT_TOKENS};

/// `usage` as OpenAI sends it; every field optional (absent or `null`).
#[derive(Deserialize, Default)]
#[serde(default)]
struct WireUsage {
    #[serde(rename = "type")]
    kind: Option<String>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    total_tokens: Option<u64>,
    input_token_details: Option<WireInputDetails>,
    output_token_details: Option<WireOutputDetails>,
    /// Transcription billed by duration: `{"type":"duration","seconds":2.4}`.
    seconds: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireInputDetails {
    text_tokens: Option<u64>,
    audio_tokens: Option<u64>,
    image_tokens: Option<u64>,
    cached_tokens: Option<u64>,
    /// How `cached_tokens` splits, which prices them exactly (`protection/pricing.rs`).
    cached_tokens_details: Option<WireCachedDetails>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireCachedDetails {
    text_tokens: Option<u64>,
    audio_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireOutputDetails {
    text_tokens: Option<u64>,
    audio_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireResponse {
    id: Option<String>,
    usage: Option<WireUsage>,
}

/// The parts of a server event that carry usage; everything else is skipped by serde.
#[derive(Deserialize, Default)]
#[serde(default)]
struct WireEvent {
    #[serde(rename = "type")]
    kind: Option<String>,
    response: Option<WireResponse>,
    usage: Option<WireUsage>,
    /// The transcribed item (transcription events).
    item_id: Option<String>,
    content_index: Option<u64>,
}

/// Usage one upstream event reported, and what makes the report unique.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reported {
    pub(crate) usage: Usage,
    /// `response:<id>` or `transcription:<item id>:<content index>`; None when the event names
    /// neither.
    pub(crate) key: Option<String>,
}

/// Ids longer than this are not used as keys (OpenAI's are about 30 characters).
const MAX_KEY_ID: usize = 128;

impl From<WireUsage> for Usage {
    fn from(w: WireUsage) -> Usage {
        let input = w.input_token_details.unwrap_or_default();
        let output = w.output_token_details.unwrap_or_default();
        let cached = input.cached_tokens_details.unwrap_or_default();
        Usage {
            input_tokens: w.input_tokens.unwrap_or(0),
            output_tokens: w.output_tokens.unwrap_or(0),
            total_tokens: w.total_tokens.unwrap_or(0),
            input_text: input.text_tokens.unwrap_or(0),
            input_audio: input.audio_tokens.unwrap_or(0),
            input_image: input.image_tokens.unwrap_or(0),
            input_cached: input.cached_tokens.unwrap_or(0),
            input_cached_text: cached.text_tokens.unwrap_or(0),
            input_cached_audio: cached.audio_tokens.unwrap_or(0),
            output_text: output.text_tokens.unwrap_or(0),
            output_audio: output.audio_tokens.unwrap_or(0),
            ..Usage::default()
        }
    }
}

/// The longest audio one transcription can bill: a session lasts at most 60 minutes, so a larger
/// figure is a fault, counted as this much rather than pinning the day's total.
const MAX_TRANSCRIPTION_SECONDS: f64 = 3600.0;

/// Full parse, only for watched events: the usage of a `response.done` (`response.usage`) or of a
/// `conversation.item.input_audio_transcription.completed` (top-level `usage`: tokens, or
/// `{"type":"duration","seconds":..}` as audio seconds, capped at an hour per event). Every field
/// is optional. None when the usage is missing or `null`, when a duration has no usable
/// `seconds`, for any other event type, and for a message that is not JSON of this shape.
///
/// Also None, with a warning, when a count is above [`MAX_EVENT_TOKENS`]: such a usage is an
/// upstream fault, not what the session used, and is counted nowhere (not in the session, the
/// ledger or the metrics; a `response.done` carrying it counts as a response without usage).
pub(crate) fn parse_usage(text: &str) -> Option<Reported> {
    let event: WireEvent = serde_json::from_str(text).ok()?;
    let kind = event.kind.as_deref()?;
    let short = |id: &str| !id.is_empty() && id.len() <= MAX_KEY_ID;
    let (usage, key) = match kind {
        "response.done" => {
            let response = event.response?;
            let key = response
                .id
                .filter(|id| short(id))
                .map(|id| format!("response:{id}"));
            (response.usage.map(Usage::from)?, key)
        }
        "conversation.item.input_audio_transcription.completed" => {
            let key = event
                .item_id
                .as_deref()
                .filter(|id| short(id))
                .map(|id| format!("transcription:{id}:{}", event.content_index.unwrap_or(0)));
            let usage = event.usage?;
            let usage = match usage.kind.as_deref() {
                Some("duration") => {
                    let seconds = usage.seconds?.min(MAX_TRANSCRIPTION_SECONDS);
                    Usage {
                        audio_millis: millis(seconds)?,
                        ..Usage::default()
                    }
                }
                _ => Usage::from(usage),
            };
            (usage, key)
        }
        _ => return None,
    };
    if !usage.plausible() {
        // Rare by nature (never seen from OpenAI), so one line each time it happens.
        log::warn!(
            event = kind, largest = usage.largest();
            "usage: the upstream reported a count above {MAX_EVENT_TOKENS} tokens in one event; not counted"
        );
        return None;
    }
    Some(Reported { usage, key })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protection::usage::tests::{
        RESPONSE_DONE, TRANSCRIPTION_DURATION, TRANSCRIPTION_TOKENS,
    };

    /// The usage alone: most tests here are about the counts.
    fn parse_usage(text: &str) -> Option<Usage> {
        super::parse_usage(text).map(|r| r.usage)
    }

    /// A report is keyed by its response id, or by its transcribed item and content index.
    #[test]
    fn reports_carry_their_key() {
        let key = |t: &str| super::parse_usage(t).and_then(|r| r.key);
        assert_eq!(
            key(
                r#"{"type":"response.done","response":{"id":"resp_1","usage":{"total_tokens":5}}}"#
            ),
            Some("response:resp_1".into())
        );
        assert_eq!(
            key(
                r#"{"type":"conversation.item.input_audio_transcription.completed","item_id":"item_9","content_index":0,"usage":{"type":"duration","seconds":1.5}}"#
            ),
            Some("transcription:item_9:0".into())
        );
        assert_eq!(
            key(r#"{"type":"response.done","response":{"usage":{"total_tokens":5}}}"#),
            None
        );
        let long = "x".repeat(200);
        assert_eq!(
            key(&format!(
                r#"{{"type":"response.done","response":{{"id":"{long}","usage":{{"total_tokens":5}}}}}}"#
            )),
            None
        );
    }

    /// The GA response.done usage is read field by field.
    #[test]
    fn parse_usage_reads_response_done() {
        assert_eq!(
            parse_usage(RESPONSE_DONE),
            Some(Usage {
                input_tokens: 132,
                output_tokens: 121,
                total_tokens: 253,
                input_text: 119,
                input_audio: 13,
                input_image: 0,
                input_cached: 64,
                input_cached_text: 64,
                input_cached_audio: 0,
                output_text: 30,
                output_audio: 91,
                ..Usage::default()
            })
        );
    }

    /// A count above the cap in any usage event (a u64::MAX total, say) is not usage: None, so
    /// nothing counts it (issue 10, 9: upstream usage numbers trusted unchecked).
    #[test]
    fn parse_usage_drops_implausible_counts() {
        let max = u64::MAX;
        assert_eq!(
            parse_usage(&format!(
                r#"{{"type":"response.done","response":{{"usage":{{"total_tokens":{max},"input_tokens":1,"output_tokens":1}}}}}}"#
            )),
            None
        );
        assert_eq!(
            parse_usage(&format!(
                r#"{{"type":"response.done","response":{{"usage":{{"output_token_details":{{"audio_tokens":{}}}}}}}}}"#,
                MAX_EVENT_TOKENS + 1
            )),
            None
        );
        assert_eq!(
            parse_usage(&format!(
                r#"{{"type":"conversation.item.input_audio_transcription.completed","usage":{{"type":"tokens","input_tokens":{max}}}}}"#
            )),
            None
        );
        assert_eq!(
            parse_usage(&format!(
                r#"{{"type":"response.done","response":{{"usage":{{"total_tokens":{MAX_EVENT_TOKENS}}}}}}}"#
            )),
            Some(Usage {
                total_tokens: MAX_EVENT_TOKENS,
                ..Usage::default()
            })
        );
    }

    /// Transcription usage counts in tokens when reported in tokens, and as audio seconds (no
    /// tokens) when reported as a duration; a duration without usable seconds is no usage, and an
    /// absurd one is capped at an hour.
    #[test]
    fn parse_usage_transcription_tokens_vs_duration() {
        assert_eq!(
            parse_usage(TRANSCRIPTION_TOKENS),
            Some(Usage {
                input_tokens: 13,
                output_tokens: 9,
                total_tokens: 22,
                input_audio: 13,
                ..Usage::default()
            })
        );
        assert_eq!(
            parse_usage(TRANSCRIPTION_DURATION),
            Some(Usage {
                audio_millis: 2400,
                ..Usage::default()
            })
        );
        let duration = |usage: &str| {
            parse_usage(&format!(
                r#"{{"type":"conversation.item.input_audio_transcription.completed","usage":{usage}}}"#
            ))
        };
        assert_eq!(duration(r#"{"type":"duration"}"#), None);
        assert_eq!(duration(r#"{"type":"duration","seconds":null}"#), None);
        assert_eq!(duration(r#"{"type":"duration","seconds":-3}"#), None);
        assert_eq!(duration(r#"{"type":"duration","seconds":"2"}"#), None);
        assert_eq!(
            duration(r#"{"type":"duration","seconds":1e30}"#).map(|u| u.audio_millis),
            Some(3_600_000)
        );
        assert_eq!(
            duration(r#"{"type":"duration","seconds":7}"#).map(|u| u.billable()),
            Some(0)
        );
    }

    /// Missing or null fields read as 0; missing or null usage, other types and bad JSON give None.
    #[test]
    fn parse_usage_missing_fields() {
        assert_eq!(
            parse_usage(
                r#"{"type":"response.done","response":{"usage":{"output_tokens":7,"input_token_details":null}}}"#
            ),
            Some(Usage {
                output_tokens: 7,
                ..Usage::default()
            })
        );
        assert_eq!(
            parse_usage(r#"{"type":"response.done","response":{"usage":{}}}"#),
            Some(Usage::default())
        );
        assert_eq!(
            parse_usage(r#"{"type":"response.done","response":{"status":"cancelled"}}"#),
            None
        );
        assert_eq!(
            parse_usage(r#"{"type":"response.done","response":{"usage":null}}"#),
            None
        );
        assert_eq!(parse_usage(r#"{"type":"response.done"}"#), None);
        assert_eq!(
            parse_usage(
                r#"{"type":"conversation.item.input_audio_transcription.completed","transcript":"hi"}"#
            ),
            None
        );
        assert_eq!(
            parse_usage(r#"{"type":"response.created","response":{"usage":{"total_tokens":5}}}"#),
            None
        );
        assert_eq!(
            parse_usage(r#"{"response":{"usage":{"total_tokens":5}}}"#),
            None
        );
        assert_eq!(
            parse_usage(r#"{"type":"response.done","response":{"usage":{"total_tokens":-5}}}"#),
            None
        );
        assert_eq!(parse_usage("{\"type\":\"response.done\""), None);
    }
}
