//! Token usage: the [`Usage`] counts, read from upstream events (`event.rs`) and added up in the
//! daily [`Ledger`] that budgets are checked against (`ledger.rs`). Pure logic, no actors and no
//! clock: callers pass the day in, so tests can move time.
//!
//! The upstream→client pump calls `watched` on every text frame and `parse_usage` on the few
//! that carry usage; only upstream frames are looked at, so a client cannot fabricate usage. The
//! registry owns the one ledger: it records into it, checks budgets against it and saves it to
//! `USAGE_STATE_FILE`. Sessions, `/stats` and the metrics read [`Usage`] values.

mod event;
mod ledger;

pub use self::ledger::Ledger;
pub(crate) use self::{
    event::{parse_usage, top_level_type, watched, Watched},
    ledger::{utc_day, Budget},
};

use serde::{Deserialize, Serialize};

/// Token counts, split as OpenAI reports them. All fields default 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub total_tokens: u64,
    pub input_text: u64,
    pub input_audio: u64,
    pub input_image: u64,
    pub input_cached: u64,
    pub output_text: u64,
    pub output_audio: u64,
}

impl Usage {
    /// Adds `other` field by field; counts saturate instead of wrapping.
    pub(crate) fn add(&mut self, other: &Usage) {
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.total_tokens = self.total_tokens.saturating_add(other.total_tokens);
        self.input_text = self.input_text.saturating_add(other.input_text);
        self.input_audio = self.input_audio.saturating_add(other.input_audio);
        self.input_image = self.input_image.saturating_add(other.input_image);
        self.input_cached = self.input_cached.saturating_add(other.input_cached);
        self.output_text = self.output_text.saturating_add(other.output_text);
        self.output_audio = self.output_audio.saturating_add(other.output_audio);
    }

    /// What budgets count: total_tokens, or input+output when total is absent/0.
    pub(crate) fn billable(&self) -> u64 {
        if self.total_tokens > 0 {
            self.total_tokens
        } else {
            self.input_tokens.saturating_add(self.output_tokens)
        }
    }

    /// (kind label, count) for the metric relay_tokens_total{kind}: input_text, input_audio,
    /// input_image, input_cached, output_text, output_audio.
    pub(crate) fn by_kind(&self) -> [(&'static str, u64); 6] {
        [
            ("input_text", self.input_text),
            ("input_audio", self.input_audio),
            ("input_image", self.input_image),
            ("input_cached", self.input_cached),
            ("output_text", self.output_text),
            ("output_audio", self.output_audio),
        ]
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A GA `response.done` for an audio response, shaped as gpt-realtime sends it.
    pub(crate) const RESPONSE_DONE: &str = r#"{"type":"response.done","event_id":"event_CCXHxcwvTFGqDQ5OajzGa","response":{"object":"realtime.response","id":"resp_CCXHw4Jht3YqZ0jWv5yB8","status":"completed","status_details":null,"output":[{"id":"item_CCXHwGYmsu5NjCKDCHIBq","type":"message","status":"completed","role":"assistant","content":[{"type":"output_audio","transcript":"Hi there! How can I help you today?"}]}],"conversation_id":"conv_CCXHsurMKcaVxIZvaCI5m","output_modalities":["audio"],"max_output_tokens":"inf","audio":{"output":{"format":{"type":"audio/pcm","rate":24000},"voice":"marin"}},"usage":{"total_tokens":253,"input_tokens":132,"output_tokens":121,"input_token_details":{"text_tokens":119,"audio_tokens":13,"image_tokens":0,"cached_tokens":64,"cached_tokens_details":{"text_tokens":64,"audio_tokens":0,"image_tokens":0}},"output_token_details":{"text_tokens":30,"audio_tokens":91}},"metadata":null}}"#;

    pub(crate) const TRANSCRIPTION_TOKENS: &str = r#"{"type":"conversation.item.input_audio_transcription.completed","event_id":"event_CCXGRvtUVrax5SJAnNOWZ","item_id":"item_CCXGQ4e1ht4cOraEYcuR2","content_index":0,"transcript":"Hey, can you hear me?","usage":{"type":"tokens","total_tokens":22,"input_tokens":13,"input_token_details":{"text_tokens":0,"audio_tokens":13},"output_tokens":9}}"#;

    pub(crate) const TRANSCRIPTION_DURATION: &str = r#"{"type":"conversation.item.input_audio_transcription.completed","event_id":"event_1","item_id":"item_1","content_index":0,"transcript":"Hello.","usage":{"type":"duration","seconds":2.4}}"#;

    pub(crate) fn tokens(total: u64) -> Usage {
        Usage {
            input_tokens: total / 2,
            output_tokens: total - total / 2,
            total_tokens: total,
            ..Usage::default()
        }
    }

    /// Budgets count total_tokens, falling back to input+output.
    #[test]
    fn billable_prefers_total() {
        assert_eq!(tokens(10).billable(), 10);
        let no_total = Usage {
            input_tokens: 3,
            output_tokens: 4,
            ..Usage::default()
        };
        assert_eq!(no_total.billable(), 7);
        assert_eq!(Usage::default().billable(), 0);
        let huge = Usage {
            input_tokens: u64::MAX,
            output_tokens: 1,
            ..Usage::default()
        };
        assert_eq!(huge.billable(), u64::MAX);
    }

    /// add sums every field; by_kind labels the six split counts in order.
    #[test]
    fn add_and_by_kind() {
        let mut sum = Usage::default();
        let one = parse_usage(RESPONSE_DONE).unwrap_or_default();
        sum.add(&one);
        sum.add(&one);
        assert_eq!(sum.total_tokens, 506);
        assert_eq!(sum.input_cached, 128);
        assert_eq!(
            sum.by_kind(),
            [
                ("input_text", 238),
                ("input_audio", 26),
                ("input_image", 0),
                ("input_cached", 128),
                ("output_text", 60),
                ("output_audio", 182),
            ]
        );
    }
}
