//! What usage costs: the price table (`config/pricing.toml`, built in; `PRICING_FILE` replaces
//! it, TOML or JSON) and [`Pricing::price`], which turns one usage report into whole
//! billionths of a dollar at the moment it is counted. Read once at start (`config/cost.rs`
//! checks the file before anything binds); the upstream→client pump prices each report it
//! counts, so the session, the ledger, Redis, `/metrics` and budgets all see the same figure.
//!
//! The rules, each chosen so that a figure is never guessed silently:
//! - A response is priced by the session's model; a dated snapshot (`gpt-realtime-2025-08-28`)
//!   not listed itself is priced as its family (`gpt-realtime`).
//! - A transcription event names no model: it is priced by the session's model when that model's
//!   entry has a `per_minute` price (a transcription session), else by the entry `[transcription]
//!   model` names.
//! - A model with no entry is priced by the `default` entry when the file has one; otherwise the
//!   report counts as `unpriced` (cost 0) and the model is logged once.
//! - Every rate is USD per 1M tokens (`per_minute`: USD per minute of audio billed by duration),
//!   kept as whole millionths of a dollar; a count whose rate the entry lacks makes the report
//!   `unpriced` (the rest is still priced) and is logged once.
//! - Cached tokens are priced at the cached rates as `cached_tokens_details` splits them; cached
//!   tokens it does not split stay at the full input rate. Tokens the details do not split
//!   (`input_tokens` beyond text+audio+image, `output_tokens` beyond text+audio) are priced as
//!   text.

use std::{
    collections::{BTreeMap, HashSet},
    path::Path,
    sync::{Mutex, PoisonError},
};

use serde::Deserialize;

use super::usage::Usage;

/// The price table the relay ships, used when `PRICING_FILE` is unset.
pub(crate) const SHIPPED: &str = include_str!("../../config/pricing.toml");

/// The most distinct warnings remembered (each is logged once); past it, nothing more is logged.
const MAX_WARNED: usize = 1_000;

/// Where a usage report came from, which decides whose price applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// `response.done`: the session's model.
    Response,
    /// `conversation.item.input_audio_transcription.completed`.
    Transcription,
}

/// One model's rates as the file writes them (USD per 1M tokens; `per_minute` USD per minute).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    input_text: Option<f64>,
    cached_input_text: Option<f64>,
    input_audio: Option<f64>,
    cached_input_audio: Option<f64>,
    input_image: Option<f64>,
    output_text: Option<f64>,
    output_audio: Option<f64>,
    per_minute: Option<f64>,
}

/// `[transcription]`: whose price transcription events get when the session's model has none.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TranscriptionEntry {
    model: Option<String>,
}

/// The file: where the prices come from, the models, and the optional `default` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// The day the prices were taken, and from where (shown at start).
    as_of: Option<String>,
    source: Option<String>,
    #[serde(default)]
    models: BTreeMap<String, Entry>,
    default: Option<Entry>,
    #[serde(default)]
    transcription: TranscriptionEntry,
}

/// One model's rates in whole millionths of a dollar (per 1M tokens, or per minute).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Rates {
    input_text: Option<u64>,
    cached_input_text: Option<u64>,
    input_audio: Option<u64>,
    cached_input_audio: Option<u64>,
    input_image: Option<u64>,
    output_text: Option<u64>,
    output_audio: Option<u64>,
    per_minute: Option<u64>,
}

/// The price table, and the warnings already logged.
#[derive(Debug)]
pub(crate) struct Pricing {
    models: BTreeMap<String, Rates>,
    default: Option<Rates>,
    transcription: Option<String>,
    as_of: Option<String>,
    source: Option<String>,
    warned: Mutex<HashSet<String>>,
}

impl Pricing {
    /// The table in `text` (TOML, or JSON when it starts with `{`). Err says what is wrong,
    /// every bad rate at once.
    pub(crate) fn parse(text: &str) -> Result<Pricing, String> {
        let file: File = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| e.to_string())?
        } else {
            toml::from_str(text).map_err(|e| e.to_string())?
        };
        let mut errors = Vec::new();
        let mut rates = |name: &str, e: &Entry| Rates {
            input_text: micros(name, "input_text", e.input_text, &mut errors),
            cached_input_text: micros(name, "cached_input_text", e.cached_input_text, &mut errors),
            input_audio: micros(name, "input_audio", e.input_audio, &mut errors),
            cached_input_audio: micros(
                name,
                "cached_input_audio",
                e.cached_input_audio,
                &mut errors,
            ),
            input_image: micros(name, "input_image", e.input_image, &mut errors),
            output_text: micros(name, "output_text", e.output_text, &mut errors),
            output_audio: micros(name, "output_audio", e.output_audio, &mut errors),
            per_minute: micros(name, "per_minute", e.per_minute, &mut errors),
        };
        let models: BTreeMap<String, Rates> = file
            .models
            .iter()
            .map(|(name, e)| (name.clone(), rates(name, e)))
            .collect();
        let default = file.default.as_ref().map(|e| rates("default", e));
        if let Some(model) = &file.transcription.model {
            if !models.contains_key(model) {
                errors.push(format!(
                    "[transcription] model {model:?} has no entry in [models]"
                ));
            }
        }
        if !errors.is_empty() {
            return Err(errors.join("; "));
        }
        Ok(Pricing {
            models,
            default,
            transcription: file.transcription.model,
            as_of: file.as_of,
            source: file.source,
            warned: Mutex::new(HashSet::new()),
        })
    }

    /// The table at `path`; errors name the path.
    pub(crate) fn load(path: &Path) -> Result<Pricing, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read price file {}: {e}", path.display()))?;
        Pricing::parse(&text).map_err(|e| format!("price file {}: {e}", path.display()))
    }

    /// One line for the start-up log: how many models, since when, from where.
    pub(crate) fn describe(&self) -> String {
        format!(
            "{} model(s){}, prices as of {} from {}",
            self.models.len(),
            if self.default.is_some() {
                " and a default entry"
            } else {
                ""
            },
            self.as_of.as_deref().unwrap_or("(no date given)"),
            self.source.as_deref().unwrap_or("(no source given)"),
        )
    }

    /// Prices `usage` (one report from a session of `model`) in place: sets its
    /// `cost_nano_usd`, and `unpriced = 1` when it could not be priced in full (see the module).
    pub(crate) fn price(&self, model: &str, source: Source, usage: &mut Usage) {
        let (cost, missing) = match self.rates_for(model, source) {
            Some((name, rates)) => {
                let (cost, missing) = rates.cost(usage);
                if let Some(kind) = missing {
                    self.warn_once(format!(
                        "pricing: the price entry {name:?} has no {kind} rate; usage of model \
                         {model} is counted as unpriced in part (add the rate to the price file)"
                    ));
                }
                (cost, missing.is_some())
            }
            None => {
                self.warn_once(format!(
                    "pricing: model {model} has no price and the price file has no default \
                     entry; its usage is counted as unpriced (see /stats)"
                ));
                (0, true)
            }
        };
        usage.cost_nano_usd = cost;
        usage.unpriced = u64::from(missing);
    }

    /// The entry that prices a report, and its name for warnings.
    fn rates_for(&self, model: &str, source: Source) -> Option<(&str, &Rates)> {
        let own = self.lookup(model);
        let transcription_model = self
            .transcription
            .as_deref()
            .and_then(|name| self.models.get_key_value(name));
        let chosen = match (source, own) {
            (Source::Transcription, Some((_, r))) if r.per_minute.is_some() => own,
            (Source::Transcription, _) if transcription_model.is_some() => transcription_model,
            (_, Some(_)) => own,
            (_, None) => None,
        };
        chosen
            .map(|(name, rates)| (name.as_str(), rates))
            .or_else(|| self.default.as_ref().map(|r| ("default", r)))
    }

    /// `model`'s own entry, or its family's for a dated snapshot (`name-YYYY-MM-DD`).
    fn lookup(&self, model: &str) -> Option<(&String, &Rates)> {
        self.models
            .get_key_value(model)
            .or_else(|| self.models.get_key_value(undated(model)?))
    }

    fn warn_once(&self, warning: String) {
        let mut warned = self.warned.lock().unwrap_or_else(PoisonError::into_inner);
        if warned.len() < MAX_WARNED && warned.insert(warning.clone()) {
            log::warn!("{warning}");
        }
    }
}

impl Rates {
    /// The cost of `u` in billionths of a dollar, and the first kind of count it has no rate
    /// for, if any (that count adds nothing).
    fn cost(&self, u: &Usage) -> (u64, Option<&'static str>) {
        let cached_text = u.input_cached_text.min(u.input_text);
        let cached_audio = u.input_cached_audio.min(u.input_audio);
        let split_in = u
            .input_text
            .saturating_add(u.input_audio)
            .saturating_add(u.input_image);
        let split_out = u.output_text.saturating_add(u.output_audio);
        let text_in =
            (u.input_text - cached_text).saturating_add(u.input_tokens.saturating_sub(split_in));
        let text_out = u
            .output_text
            .saturating_add(u.output_tokens.saturating_sub(split_out));
        let counts = [
            ("input_text", text_in, self.input_text),
            ("cached_input_text", cached_text, self.cached_input_text),
            (
                "input_audio",
                u.input_audio - cached_audio,
                self.input_audio,
            ),
            ("cached_input_audio", cached_audio, self.cached_input_audio),
            ("input_image", u.input_image, self.input_image),
            ("output_text", text_out, self.output_text),
            ("output_audio", u.output_audio, self.output_audio),
        ];
        let mut missing = None;
        // Millionths of a dollar per 1M tokens, times tokens: 10^-12 dollars.
        let mut picos: u128 = 0;
        for (kind, n, rate) in counts {
            match (n, rate) {
                (0, _) => {}
                (n, Some(rate)) => picos += u128::from(n) * u128::from(rate),
                (_, None) => missing = missing.or(Some(kind)),
            }
        }
        if u.audio_millis > 0 {
            match self.per_minute {
                // Millionths of a dollar per minute, times ms, over 60,000 ms: 10^-6 × 10^-6.
                Some(rate) => {
                    picos += u128::from(u.audio_millis) * u128::from(rate) * 1_000_000 / 60_000
                }
                None => missing = missing.or(Some("per_minute")),
            }
        }
        let nanos = (picos + 500) / 1_000;
        (u64::try_from(nanos).unwrap_or(u64::MAX), missing)
    }
}

/// `gpt-realtime` for `gpt-realtime-2025-08-28`; None when `model` has no date suffix.
fn undated(model: &str) -> Option<&str> {
    let (family, date) = model.split_at_checked(model.len().checked_sub(11)?)?;
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let bytes = date.as_bytes();
    let dated = bytes.first() == Some(&b'-')
        && bytes.get(5) == Some(&b'-')
        && bytes.get(8) == Some(&b'-')
        && digits(&date[1..5])
        && digits(&date[6..8])
        && digits(&date[9..]);
    (dated && !family.is_empty()).then_some(family)
}

/// A rate in dollars as whole millionths; a negative, non-finite or absurd one is an error.
fn micros(model: &str, kind: &str, usd: Option<f64>, errors: &mut Vec<String>) -> Option<u64> {
    let usd = usd?;
    if !(usd.is_finite() && (0.0..=1_000_000.0).contains(&usd)) {
        errors.push(format!(
            "{model}.{kind} = {usd} is not a price (USD, 0 to 1000000)"
        ));
        return None;
    }
    Some((usd * 1e6).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protection::usage::{parse_usage, tests::RESPONSE_DONE};

    const TABLE: &str = r#"
        as_of = "2026-01-01"
        source = "test"
        [models.m]
        input_text = 4.0
        cached_input_text = 0.4
        input_audio = 32.0
        cached_input_audio = 0.4
        input_image = 5.0
        output_text = 16.0
        output_audio = 64.0
        [models.whisper-1]
        per_minute = 0.006
        [models.tx]
        input_text = 2.5
        input_audio = 6.0
        output_text = 10.0
        per_minute = 0.006
        [transcription]
        model = "tx"
    "#;

    fn priced(p: &Pricing, model: &str, source: Source, mut u: Usage) -> (u64, u64) {
        p.price(model, source, &mut u);
        (u.cost_nano_usd, u.unpriced)
    }

    /// The GA response.done example: uncached text, cached text, audio in, text and audio out,
    /// each at its own rate, to the billionth of a dollar.
    #[test]
    fn response_priced_by_kind_with_cached_split() {
        let p = Pricing::parse(TABLE).expect("valid");
        let u = parse_usage(RESPONSE_DONE)
            .map(|r| r.usage)
            .unwrap_or_default();
        // text 55 × $4 + cached text 64 × $0.4 + audio 13 × $32 + text out 30 × $16
        // + audio out 91 × $64, per 1M tokens.
        let want =
            (55 * 4_000_000 + 64 * 400_000 + 13 * 32_000_000 + 30 * 16_000_000 + 91 * 64_000_000)
                / 1_000;
        assert_eq!(priced(&p, "m", Source::Response, u), (want, 0));
        assert_eq!(want, 6_965_600, "$0.0069656");
    }

    /// Cached tokens without their split stay at the full rate; unsplit tokens count as text.
    #[test]
    fn unsplit_tokens_are_priced_conservatively() {
        let p = Pricing::parse(TABLE).expect("valid");
        let u = Usage {
            input_tokens: 10,
            input_text: 10,
            input_cached: 10,
            output_tokens: 9,
            ..Usage::default()
        };
        assert_eq!(
            priced(&p, "m", Source::Response, u),
            ((10 * 4_000_000 + 9 * 16_000_000) / 1_000, 0)
        );
    }

    /// Duration usage: the session's model's per-minute price when it has one, else the
    /// [transcription] model's; tokens of a transcription likewise.
    #[test]
    fn transcription_by_session_model_or_the_table() {
        let p = Pricing::parse(TABLE).expect("valid");
        let audio = Usage {
            audio_millis: 2_400,
            ..Usage::default()
        };
        // 2.4 s at $0.006 per minute = $0.00024.
        assert_eq!(
            priced(&p, "whisper-1", Source::Transcription, audio),
            (240_000, 0)
        );
        assert_eq!(priced(&p, "m", Source::Transcription, audio), (240_000, 0));
        let tokens = Usage {
            input_tokens: 13,
            input_audio: 13,
            output_tokens: 9,
            ..Usage::default()
        };
        assert_eq!(
            priced(&p, "m", Source::Transcription, tokens),
            ((13 * 6_000_000 + 9 * 10_000_000) / 1_000, 0)
        );
        // A response on whisper-1 has tokens it has no rate for.
        assert_eq!(priced(&p, "whisper-1", Source::Response, tokens), (0, 1));
    }

    /// An unknown model is unpriced (cost 0) without a default entry, and priced by it with one;
    /// a dated snapshot is priced as its family.
    #[test]
    fn unknown_models_default_and_snapshots() {
        let p = Pricing::parse(TABLE).expect("valid");
        let u = Usage {
            input_tokens: 1_000_000,
            input_text: 1_000_000,
            ..Usage::default()
        };
        assert_eq!(priced(&p, "mystery", Source::Response, u), (0, 1));
        assert_eq!(priced(&p, "mystery", Source::Response, u), (0, 1));
        let warned = p.warned.lock().map(|w| w.len()).unwrap_or(0);
        assert_eq!(warned, 1, "an unpriced model is logged once");
        assert_eq!(
            priced(&p, "m-2025-08-28", Source::Response, u),
            (4_000_000_000, 0)
        );
        let with_default =
            Pricing::parse(&format!("{TABLE}\n[default]\ninput_text = 1.5\n")).expect("valid");
        assert_eq!(
            priced(&with_default, "mystery", Source::Response, u),
            (1_500_000_000, 0)
        );
        assert_eq!(undated("gpt-realtime-2025-08-28"), Some("gpt-realtime"));
        assert_eq!(undated("gpt-realtime-mini"), None);
        assert_eq!(undated("-2025-08-28"), None);
        assert_eq!(undated("x-2025-0828"), None);
    }

    /// JSON works as well as TOML; bad rates, unknown keys and a dangling transcription model
    /// are refused with what is wrong.
    #[test]
    fn json_and_errors() {
        let p = Pricing::parse(r#"{"models":{"m":{"input_text":4}},"default":{"output_text":1}}"#)
            .expect("json");
        assert!(p.describe().starts_with("1 model(s) and a default entry"));
        let err =
            Pricing::parse("[models.m]\ninput_text = -1\noutput_text = nan\n").expect_err("bad");
        assert!(
            err.contains("m.input_text = -1") && err.contains("m.output_text"),
            "{err}"
        );
        assert!(Pricing::parse("[models.m]\ninput_txt = 1\n").is_err());
        let err = Pricing::parse("[transcription]\nmodel = \"nope\"\n").expect_err("dangling");
        assert!(err.contains("nope"), "{err}");
    }

    /// The shipped table parses, says when and where its prices come from, and prices every
    /// model the docs name (gpt-realtime-2 aside: its price was not known when it was written).
    #[test]
    fn shipped_table_prices_the_documented_models() {
        let p = Pricing::parse(SHIPPED).expect("the shipped price file parses");
        assert!(p.as_of.is_some() && p.source.is_some());
        assert!(p.default.is_none(), "unknown models must show as unpriced");
        let u = Usage {
            input_tokens: 100,
            input_text: 50,
            input_audio: 50,
            output_tokens: 100,
            output_text: 50,
            output_audio: 50,
            ..Usage::default()
        };
        for model in [
            "gpt-realtime",
            "gpt-realtime-mini",
            "gpt-realtime-2025-08-28",
            "gpt-4o-realtime-preview",
            "gpt-4o-mini-realtime-preview",
        ] {
            let (cost, unpriced) = priced(&p, model, Source::Response, u);
            assert!(cost > 0 && unpriced == 0, "{model}: {cost} {unpriced}");
        }
        let audio = Usage {
            audio_millis: 60_000,
            ..Usage::default()
        };
        for model in ["whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"] {
            let (cost, unpriced) = priced(&p, model, Source::Transcription, audio);
            assert!(cost > 0 && unpriced == 0, "{model}: {cost} {unpriced}");
        }
        assert_eq!(
            priced(&p, "gpt-realtime", Source::Transcription, audio).1,
            0,
            "transcription in a realtime session has a price"
        );
    }
}
