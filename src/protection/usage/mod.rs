//! Token usage: the [`Usage`] counts, read from upstream events (`event/`) and added up in the
//! daily [`Ledger`] that budgets are checked against (`ledger.rs`), which survives restarts in
//! `USAGE_STATE_FILE` (`store.rs`: the atomic write and the read back; `writer.rs`: the thread
//! that writes it; `lock.rs`: one relay per file). The logic has no actors and no clock: callers
//! pass the day in, so tests can move time.
//!
//! The upstream→client pump calls `watched` on every text frame and `parse_usage` on the few
//! that carry usage; only upstream frames are looked at, so a client cannot fabricate usage, and
//! usage no event can plausibly carry is dropped there. The registry owns the one ledger: it
//! records into it, checks budgets against it and hands copies to the writer. `relay::start`
//! takes the lock. Sessions, `/stats` and the metrics read [`Usage`] values.

mod event;
mod ledger;
mod lock;
mod store;
mod writer;

pub use self::ledger::Ledger;
pub(crate) use self::{
    event::{parse_usage, top_level_type, watched, Watched},
    ledger::{utc_day, Budget, Budgets, Spent},
    lock::StateLock,
    writer::Writer,
};

/// The most tokens one event may report in any field. A Realtime response or transcription uses
/// thousands (a context window is about 10^5); a count beyond this (a `u64::MAX` total, say) is
/// an upstream fault, and counting it would spend every budget for the day at once.
pub(crate) const MAX_EVENT_TOKENS: u64 = 1_000_000_000;

use serde::{Deserialize, Serialize};

/// Token counts, split as OpenAI reports them, and audio billed by duration. All fields default
/// 0, so a state file written before a field existed still loads.
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
    /// Of `input_cached`, the text and the audio tokens (`cached_tokens_details`); cached
    /// tokens the upstream does not split are priced at the full input rate.
    pub input_cached_text: u64,
    pub input_cached_audio: u64,
    pub output_text: u64,
    pub output_audio: u64,
    /// Input audio transcribed and billed by duration (`"usage":{"type":"duration",...}`), in
    /// milliseconds; written and read as `audio_seconds` in `/stats` and the state file. Budgets
    /// count tokens only, so this is not in `Usage::billable`.
    #[serde(rename = "audio_seconds", with = "seconds")]
    pub audio_millis: u64,
    /// What these counts cost, in billionths of a US dollar, priced when they were counted
    /// (`protection/pricing.rs`): whole numbers, so sums and budgets are exact.
    pub cost_nano_usd: u64,
    /// Usage reports that were not (fully) priced: a model with no price and no `default`
    /// entry, or a count its price entry has no rate for.
    pub unpriced: u64,
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
        self.audio_millis = self.audio_millis.saturating_add(other.audio_millis);
        self.input_cached_text = self
            .input_cached_text
            .saturating_add(other.input_cached_text);
        self.input_cached_audio = self
            .input_cached_audio
            .saturating_add(other.input_cached_audio);
        self.cost_nano_usd = self.cost_nano_usd.saturating_add(other.cost_nano_usd);
        self.unpriced = self.unpriced.saturating_add(other.unpriced);
    }

    /// The cost in US dollars, for `/stats`, `/metrics` and logs (the exact figure stays in
    /// `cost_nano_usd`).
    pub(crate) fn cost_usd(&self) -> f64 {
        nano_to_usd(self.cost_nano_usd)
    }

    /// Seconds of audio billed by duration.
    pub(crate) fn audio_seconds(&self) -> f64 {
        self.audio_millis as f64 / 1000.0
    }

    /// Whether one event can carry these counts: none above [`MAX_EVENT_TOKENS`].
    pub(crate) fn plausible(&self) -> bool {
        self.largest() <= MAX_EVENT_TOKENS
    }

    /// The largest of the token counts.
    pub(crate) fn largest(&self) -> u64 {
        [
            self.input_tokens,
            self.output_tokens,
            self.total_tokens,
            self.input_text,
            self.input_audio,
            self.input_image,
            self.input_cached,
            self.input_cached_text,
            self.input_cached_audio,
            self.output_text,
            self.output_audio,
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
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

/// Billionths of a dollar as dollars.
pub(crate) fn nano_to_usd(nano: u64) -> f64 {
    nano as f64 / 1e9
}

/// Dollars as whole billionths, if `usd` is a finite, non-negative amount below a billion.
pub(crate) fn usd_to_nano(usd: f64) -> Option<u64> {
    (usd.is_finite() && (0.0..1e9).contains(&usd)).then(|| (usd * 1e9).round() as u64)
}

/// [`Usage`] as `/stats` shows it: every count, and the cost in dollars beside the exact
/// `cost_nano_usd`.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Shown {
    #[serde(flatten)]
    usage: Usage,
    cost_usd: f64,
}

impl From<Usage> for Shown {
    fn from(usage: Usage) -> Shown {
        Shown {
            usage,
            cost_usd: usage.cost_usd(),
        }
    }
}

/// For `#[serde(serialize_with)]`: a [`Usage`] written as [`Shown`].
pub(crate) fn shown<S: serde::Serializer>(u: &Usage, s: S) -> Result<S::Ok, S::Error> {
    Shown::from(*u).serialize(s)
}

/// For `#[serde(serialize_with)]`: a map of [`Usage`] written as [`Shown`].
pub(crate) fn shown_map<S: serde::Serializer>(
    map: &std::collections::BTreeMap<String, Usage>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(map.iter().map(|(k, u)| (k, Shown::from(*u))))
}

/// Milliseconds kept as integers (so [`Usage`] stays `Eq` and sums exactly), written and read as
/// seconds with a fraction.
mod seconds {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(millis: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(*millis as f64 / 1000.0)
    }

    /// A negative, non-finite or absurd value reads as 0 rather than failing the whole file.
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let seconds = f64::deserialize(d)?;
        Ok(super::millis(seconds).unwrap_or(0))
    }
}

/// `seconds` as whole milliseconds, if it is a finite, non-negative number that fits.
pub(crate) fn millis(seconds: f64) -> Option<u64> {
    // `as` saturates; 2^53 ms is far beyond any real total and keeps the conversion exact.
    (seconds.is_finite() && seconds >= 0.0 && seconds * 1000.0 < 9_007_199_254_740_992.0)
        .then(|| (seconds * 1000.0).round() as u64)
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

    /// Any one count above the cap makes a usage implausible; at the cap it is plausible.
    #[test]
    fn plausible_caps_every_field() {
        assert!(Usage::default().plausible());
        assert!(tokens(MAX_EVENT_TOKENS).plausible());
        let fields: [fn(&mut Usage) -> &mut u64; 11] = [
            |u| &mut u.input_tokens,
            |u| &mut u.output_tokens,
            |u| &mut u.total_tokens,
            |u| &mut u.input_text,
            |u| &mut u.input_audio,
            |u| &mut u.input_image,
            |u| &mut u.input_cached,
            |u| &mut u.input_cached_text,
            |u| &mut u.input_cached_audio,
            |u| &mut u.output_text,
            |u| &mut u.output_audio,
        ];
        for field in fields {
            let mut usage = tokens(10);
            *field(&mut usage) = MAX_EVENT_TOKENS + 1;
            assert!(!usage.plausible(), "{usage:?}");
            assert_eq!(usage.largest(), MAX_EVENT_TOKENS + 1);
        }
    }

    /// add sums every field; by_kind labels the six split counts in order.
    #[test]
    fn add_and_by_kind() {
        let mut sum = Usage::default();
        let one = parse_usage(RESPONSE_DONE)
            .map(|r| r.usage)
            .unwrap_or_default();
        sum.add(&one);
        sum.add(&one);
        assert_eq!(sum.total_tokens, 506);
        assert_eq!(sum.input_cached, 128);
        let audio = parse_usage(TRANSCRIPTION_DURATION)
            .map(|r| r.usage)
            .unwrap_or_default();
        sum.add(&audio);
        sum.add(&audio);
        assert_eq!(sum.audio_millis, 4800);
        assert_eq!(sum.audio_seconds(), 4.8);
        assert_eq!(sum.total_tokens, 506, "audio by duration is not tokens");
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

#[cfg(test)]
mod serde_tests {
    use super::{tests::TRANSCRIPTION_DURATION, *};

    /// Audio is written as `audio_seconds` with a fraction and read back exactly; a usage written
    /// before the field existed reads as 0 seconds.
    #[test]
    fn audio_seconds_round_trip_and_old_files_load() {
        let usage = parse_usage(TRANSCRIPTION_DURATION)
            .map(|r| r.usage)
            .unwrap_or_default();
        let json = serde_json::to_value(usage).expect("serializes");
        assert_eq!(json["audio_seconds"], 2.4, "{json}");
        assert!(json.get("audio_millis").is_none(), "{json}");
        let back: Usage = serde_json::from_value(json).expect("reads back");
        assert_eq!(back, usage);
        let old: Usage =
            serde_json::from_str(r#"{"input_tokens":3,"total_tokens":3}"#).expect("old shape");
        assert_eq!(old.audio_millis, 0);
        assert_eq!(old.total_tokens, 3);
        let odd: Usage = serde_json::from_str(r#"{"audio_seconds":-4}"#).expect("tolerated");
        assert_eq!(odd.audio_millis, 0);
    }

    /// Only finite, non-negative seconds become milliseconds.
    #[test]
    fn millis_of_seconds() {
        assert_eq!(millis(2.4), Some(2400));
        assert_eq!(millis(0.0), Some(0));
        assert_eq!(millis(0.0004), Some(0));
        assert_eq!(millis(-1.0), None);
        assert_eq!(millis(f64::NAN), None);
        assert_eq!(millis(f64::INFINITY), None);
        assert_eq!(millis(1e300), None);
    }
}
