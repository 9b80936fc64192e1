//! Token usage: reading it from upstream events, and the daily [`Ledger`] that budgets are checked
//! against. Pure logic, no actors and no clock: callers pass the day in, so tests can move time.
//!
//! The upstream→client pump calls [`watched`] on every text frame. It looks at the first bytes
//! only, so relaying stays fast; [`parse_usage`] parses the whole message, and only for the
//! event kinds that carry usage. Only upstream frames are looked at: a client cannot fabricate
//! usage. The ledger is one value owned by one place, which records into it, checks budgets
//! against it and saves it to `USAGE_STATE_FILE` (one writer: saves must not run concurrently).

use std::{
    collections::BTreeMap,
    fs, io,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
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
    pub fn add(&mut self, other: &Usage) {
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
    pub fn billable(&self) -> u64 {
        if self.total_tokens > 0 {
            self.total_tokens
        } else {
            self.input_tokens.saturating_add(self.output_tokens)
        }
    }

    /// (kind label, count) for the metric relay_tokens_total{kind}: input_text, input_audio,
    /// input_image, input_cached, output_text, output_audio.
    pub fn by_kind(&self) -> [(&'static str, u64); 6] {
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

/// The event kinds the relay looks at on the upstream→client path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watched {
    ResponseCreated,
    ResponseDone,
    TranscriptionCompleted,
}

/// How far into a message [`watched`] looks for the `"type"` key.
pub const WATCH_WINDOW: usize = 96;

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
pub fn watched(text: &str) -> Option<Watched> {
    let kind = top_level_type(text)?;
    WATCHED_TYPES
        .iter()
        .find_map(|(name, watched)| (kind.as_bytes() == *name).then_some(*watched))
}

/// The value of the top-level `"type"` key, when the key starts within the first
/// `WATCH_WINDOW` bytes (the same cheap look as [`watched`]); values longer than 128 bytes are
/// not returned. Also used to log event types without parsing the JSON.
pub fn top_level_type(text: &str) -> Option<&str> {
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
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireInputDetails {
    text_tokens: Option<u64>,
    audio_tokens: Option<u64>,
    image_tokens: Option<u64>,
    cached_tokens: Option<u64>,
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
}

impl From<WireUsage> for Usage {
    fn from(w: WireUsage) -> Usage {
        let input = w.input_token_details.unwrap_or_default();
        let output = w.output_token_details.unwrap_or_default();
        Usage {
            input_tokens: w.input_tokens.unwrap_or(0),
            output_tokens: w.output_tokens.unwrap_or(0),
            total_tokens: w.total_tokens.unwrap_or(0),
            input_text: input.text_tokens.unwrap_or(0),
            input_audio: input.audio_tokens.unwrap_or(0),
            input_image: input.image_tokens.unwrap_or(0),
            input_cached: input.cached_tokens.unwrap_or(0),
            output_text: output.text_tokens.unwrap_or(0),
            output_audio: output.audio_tokens.unwrap_or(0),
        }
    }
}

/// Full parse, only for watched events: the usage of a `response.done` (`response.usage`) or of a
/// `conversation.item.input_audio_transcription.completed` (top-level `usage`, when its type is
/// `tokens`). Every field is optional. None when the usage is missing or `null`, when a
/// transcription reports `{"type":"duration",...}` (billed by time, no tokens), for any other
/// event type, and for a message that is not JSON of this shape.
pub fn parse_usage(text: &str) -> Option<Usage> {
    let event: WireEvent = serde_json::from_str(text).ok()?;
    match event.kind.as_deref()? {
        "response.done" => event.response?.usage.map(Usage::from),
        "conversation.item.input_audio_transcription.completed" => {
            let usage = event.usage?;
            match usage.kind.as_deref() {
                Some("duration") => None,
                _ => Some(Usage::from(usage)),
            }
        }
        _ => None,
    }
}

/// UTC day number (days since 1970-01-01) of a unix time.
pub fn utc_day(unix_seconds: u64) -> u64 {
    unix_seconds / 86_400
}

/// At most this many entries in [`Ledger::by_identity`], counting [`OTHER`].
pub const MAX_IDENTITIES: usize = 100_000;
/// At most this many entries in [`Ledger::by_model`], counting [`OTHER`].
pub const MAX_MODELS: usize = 1_000;
/// The key that identities (or models) beyond the cap are aggregated under.
pub const OTHER: &str = "other";

/// Daily usage totals: all clients, per identity, per model; resets at UTC midnight; survives
/// restarts through a state file.
///
/// State is bounded: the per-identity and per-model maps only hold today, and hold at most
/// [`MAX_IDENTITIES`] and [`MAX_MODELS`] entries; usage of further names is added under
/// [`OTHER`]. An identity folded into `other` is held to the global budget only.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Ledger {
    pub day: u64,
    pub all: Usage,
    pub by_identity: BTreeMap<String, Usage>,
    pub by_model: BTreeMap<String, Usage>,
    /// Lifetime totals (not reset daily), for /stats.
    pub lifetime: Usage,
}

/// Which daily budget is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    Global,
    Client,
}

impl Ledger {
    /// Rolls the daily totals over if `day` is later than self.day (lifetime kept). An earlier
    /// `day` (the clock went back) changes nothing: counts keep going into the current day.
    pub fn roll(&mut self, day: u64) {
        if day > self.day {
            self.day = day;
            self.all = Usage::default();
            self.by_identity.clear();
            self.by_model.clear();
        }
    }

    /// Adds usage for identity and model on `day` (rolling first).
    pub fn record(&mut self, identity: &str, model: &str, usage: &Usage, day: u64) {
        self.roll(day);
        self.all.add(usage);
        self.lifetime.add(usage);
        add_capped(&mut self.by_identity, identity, usage, MAX_IDENTITIES);
        add_capped(&mut self.by_model, model, usage, MAX_MODELS);
    }

    /// Which budget, if any, is spent (>= limit) for this identity today: global checked first.
    /// None limits = unlimited. A `day` later than the ledger's counts as a fresh day.
    pub fn exhausted(
        &self,
        identity: &str,
        day: u64,
        global_limit: Option<u64>,
        client_limit: Option<u64>,
    ) -> Option<Budget> {
        let fresh = day > self.day;
        let spent_all = if fresh { 0 } else { self.all.billable() };
        if global_limit.is_some_and(|limit| spent_all >= limit) {
            return Some(Budget::Global);
        }
        let spent_client = match self.by_identity.get(identity) {
            Some(usage) if !fresh => usage.billable(),
            _ => 0,
        };
        if client_limit.is_some_and(|limit| spent_client >= limit) {
            return Some(Budget::Client);
        }
        None
    }

    /// Writes JSON atomically: to `<path>.tmp` in the same directory, fsync (File::sync_all),
    /// rename over `path`; creates parent dir if missing. Not safe to call concurrently for the
    /// same path.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let json = serde_json::to_vec(self).map_err(io::Error::other)?;
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(dir) = parent {
            fs::create_dir_all(dir)?;
        }
        let tmp = with_suffix(path, ".tmp");
        {
            let mut file = fs::File::create(&tmp)?;
            io::Write::write_all(&mut file, &json)?;
            file.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        // Make the rename itself durable. Best effort: not every platform can open a directory.
        #[cfg(unix)]
        if let Ok(dir) = fs::File::open(parent.unwrap_or(Path::new("."))) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// Loads a saved ledger; a missing file → Ok(Ledger::default()); a file that is not a ledger
    /// → Err of kind `InvalidData`; other read errors are passed on.
    pub fn load(path: &Path) -> io::Result<Ledger> {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Ledger::default()),
            Err(e) => return Err(e),
        };
        serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// [`Ledger::load`], never failing: a corrupt file is renamed to `<path>.corrupt-<unix>` and
    /// the ledger starts empty; an unreadable one is left alone and the ledger starts empty. The
    /// second value is a warning for the caller to log when either happened.
    pub fn load_or_quarantine(path: &Path) -> (Ledger, Option<String>) {
        match Ledger::load(path) {
            Ok(ledger) => (ledger, None),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                let unix = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let aside = with_suffix(path, &format!(".corrupt-{unix}"));
                let warning = match fs::rename(path, &aside) {
                    Ok(()) => format!(
                        "usage state file {} is corrupt ({e}); moved it to {} and started usage totals from zero",
                        path.display(),
                        aside.display()
                    ),
                    Err(re) => format!(
                        "usage state file {} is corrupt ({e}) and could not be moved aside ({re}); started usage totals from zero",
                        path.display()
                    ),
                };
                (Ledger::default(), Some(warning))
            }
            Err(e) => (
                Ledger::default(),
                Some(format!(
                    "usage state file {} could not be read ({e}); started usage totals from zero",
                    path.display()
                )),
            ),
        }
    }
}

/// Adds `usage` under `name`, or under [`OTHER`] when `name` is new and the map is full.
fn add_capped(map: &mut BTreeMap<String, Usage>, name: &str, usage: &Usage, cap: usize) {
    if let Some(entry) = map.get_mut(name) {
        entry.add(usage);
        return;
    }
    // Keep one slot for `other`, so the map never exceeds `cap` entries.
    let key = if map.len() + 1 >= cap { OTHER } else { name };
    map.entry(key.to_owned()).or_default().add(usage);
}

/// `path` with `suffix` appended to its file name (`state.json` → `state.json.tmp`).
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GA `response.done` for an audio response, shaped as gpt-realtime sends it.
    const RESPONSE_DONE: &str = r#"{"type":"response.done","event_id":"event_CCXHxcwvTFGqDQ5OajzGa","response":{"object":"realtime.response","id":"resp_CCXHw4Jht3YqZ0jWv5yB8","status":"completed","status_details":null,"output":[{"id":"item_CCXHwGYmsu5NjCKDCHIBq","type":"message","status":"completed","role":"assistant","content":[{"type":"output_audio","transcript":"Hi there! How can I help you today?"}]}],"conversation_id":"conv_CCXHsurMKcaVxIZvaCI5m","output_modalities":["audio"],"max_output_tokens":"inf","audio":{"output":{"format":{"type":"audio/pcm","rate":24000},"voice":"marin"}},"usage":{"total_tokens":253,"input_tokens":132,"output_tokens":121,"input_token_details":{"text_tokens":119,"audio_tokens":13,"image_tokens":0,"cached_tokens":64,"cached_tokens_details":{"text_tokens":64,"audio_tokens":0,"image_tokens":0}},"output_token_details":{"text_tokens":30,"audio_tokens":91}},"metadata":null}}"#;

    const TRANSCRIPTION_TOKENS: &str = r#"{"type":"conversation.item.input_audio_transcription.completed","event_id":"event_CCXGRvtUVrax5SJAnNOWZ","item_id":"item_CCXGQ4e1ht4cOraEYcuR2","content_index":0,"transcript":"Hey, can you hear me?","usage":{"type":"tokens","total_tokens":22,"input_tokens":13,"input_token_details":{"text_tokens":0,"audio_tokens":13},"output_tokens":9}}"#;

    const TRANSCRIPTION_DURATION: &str = r#"{"type":"conversation.item.input_audio_transcription.completed","event_id":"event_1","item_id":"item_1","content_index":0,"transcript":"Hello.","usage":{"type":"duration","seconds":2.4}}"#;

    fn tokens(total: u64) -> Usage {
        Usage {
            input_tokens: total / 2,
            output_tokens: total - total / 2,
            total_tokens: total,
            ..Usage::default()
        }
    }

    fn scratch_path(name: &str) -> PathBuf {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        std::env::temp_dir()
            .join(format!("relay-usage-{}-{nanos}-{name}", std::process::id()))
            .join("state.json")
    }

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
        assert_eq!(parse_usage(&late), Some(Usage::default()));
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
                output_text: 30,
                output_audio: 91,
            })
        );
    }

    /// Transcription usage counts when reported in tokens, not when reported as a duration.
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
        assert_eq!(parse_usage(TRANSCRIPTION_DURATION), None);
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

    /// Day numbers change at UTC midnight.
    #[test]
    fn utc_day_boundaries() {
        assert_eq!(utc_day(0), 0);
        assert_eq!(utc_day(86_399), 0);
        assert_eq!(utc_day(86_400), 1);
        // 2026-05-01T00:00:00Z
        assert_eq!(utc_day(1_777_593_600), 20_574);
    }

    /// record adds to all, identity, model and lifetime; a later day resets all but lifetime.
    #[test]
    fn ledger_record_and_roll() {
        let mut ledger = Ledger::default();
        ledger.record("alice", "gpt-realtime", &tokens(10), 100);
        ledger.record("bob", "gpt-realtime-mini", &tokens(5), 100);
        ledger.record("alice", "gpt-realtime-mini", &tokens(1), 100);
        assert_eq!(ledger.day, 100);
        assert_eq!(ledger.all.billable(), 16);
        assert_eq!(ledger.by_identity["alice"].billable(), 11);
        assert_eq!(ledger.by_identity["bob"].billable(), 5);
        assert_eq!(ledger.by_model["gpt-realtime-mini"].billable(), 6);
        assert_eq!(ledger.lifetime.billable(), 16);

        // A clock that steps back keeps counting into the current day.
        ledger.record("bob", "gpt-realtime", &tokens(2), 99);
        assert_eq!(ledger.day, 100);
        assert_eq!(ledger.by_identity["bob"].billable(), 7);

        ledger.record("carol", "gpt-realtime", &tokens(4), 101);
        assert_eq!(ledger.day, 101);
        assert_eq!(ledger.all.billable(), 4);
        assert_eq!(ledger.by_identity.len(), 1);
        assert_eq!(ledger.by_model.len(), 1);
        assert_eq!(ledger.lifetime.billable(), 22);
    }

    /// The global budget is checked first, then the client's; both reset on a new day.
    #[test]
    fn ledger_exhausted_budgets() {
        let mut ledger = Ledger::default();
        ledger.record("alice", "m", &tokens(60), 7);
        ledger.record("bob", "m", &tokens(30), 7);

        assert_eq!(ledger.exhausted("alice", 7, None, None), None);
        assert_eq!(ledger.exhausted("alice", 7, None, Some(61)), None);
        assert_eq!(
            ledger.exhausted("alice", 7, None, Some(60)),
            Some(Budget::Client)
        );
        assert_eq!(ledger.exhausted("bob", 7, None, Some(60)), None);
        assert_eq!(ledger.exhausted("nobody", 7, None, Some(1)), None);
        assert_eq!(ledger.exhausted("bob", 7, Some(91), Some(60)), None);
        assert_eq!(
            ledger.exhausted("bob", 7, Some(90), Some(60)),
            Some(Budget::Global)
        );
        assert_eq!(
            ledger.exhausted("alice", 7, Some(90), Some(10)),
            Some(Budget::Global)
        );
        // Tomorrow, before anything rolled the ledger over, both budgets are fresh.
        assert_eq!(ledger.exhausted("alice", 8, Some(90), Some(10)), None);
        // A zero limit allows nothing.
        assert_eq!(
            ledger.exhausted("carol", 8, Some(0), None),
            Some(Budget::Global)
        );
    }

    /// Identities beyond the cap are aggregated under `other`, so the map stays bounded.
    #[test]
    fn ledger_caps_identities() {
        let mut ledger = Ledger::default();
        for i in 0..MAX_IDENTITIES + 50 {
            ledger.record(&format!("client-{i}"), "m", &tokens(1), 1);
        }
        assert_eq!(ledger.by_identity.len(), MAX_IDENTITIES);
        assert_eq!(ledger.by_identity[OTHER].billable(), 51);
        assert_eq!(ledger.all.billable(), (MAX_IDENTITIES + 50) as u64);
        // Known identities keep their own entry.
        ledger.record("client-0", "m", &tokens(1), 1);
        assert_eq!(ledger.by_identity["client-0"].billable(), 2);
    }

    /// save then load gives back the same ledger, through a directory save created.
    #[test]
    fn ledger_save_load_round_trip() -> io::Result<()> {
        let path = scratch_path("roundtrip");
        let mut ledger = Ledger::default();
        ledger.record(
            "alice",
            "gpt-realtime",
            &parse_usage(RESPONSE_DONE).unwrap_or_default(),
            20_574,
        );
        ledger.record("bob", "gpt-realtime-mini", &tokens(9), 20_574);
        ledger.save(&path)?;
        assert!(!with_suffix(&path, ".tmp").exists());
        ledger.record("bob", "gpt-realtime-mini", &tokens(1), 20_574);
        ledger.save(&path)?;

        let loaded = Ledger::load(&path)?;
        assert_eq!(loaded.day, 20_574);
        assert_eq!(loaded.all, ledger.all);
        assert_eq!(loaded.lifetime, ledger.lifetime);
        assert_eq!(loaded.by_identity, ledger.by_identity);
        assert_eq!(loaded.by_model, ledger.by_model);
        assert_eq!(Ledger::load_or_quarantine(&path).1, None);

        if let Some(dir) = path.parent() {
            fs::remove_dir_all(dir)?;
        }
        Ok(())
    }

    /// A missing state file is an empty ledger, not an error.
    #[test]
    fn ledger_load_missing_is_empty() -> io::Result<()> {
        let path = scratch_path("missing");
        let ledger = Ledger::load(&path)?;
        assert_eq!(ledger.day, 0);
        assert!(ledger.by_identity.is_empty());
        let (ledger, warning) = Ledger::load_or_quarantine(&path);
        assert_eq!(ledger.all, Usage::default());
        assert_eq!(warning, None);
        Ok(())
    }

    /// A corrupt state file is an error for load, and is moved aside by load_or_quarantine.
    #[test]
    fn ledger_corrupt_file_is_quarantined() -> io::Result<()> {
        let path = scratch_path("corrupt");
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        fs::create_dir_all(&dir)?;
        fs::write(&path, b"{\"day\": 3, \"all\": {\"input_tok")?;

        let err = Ledger::load(&path).err().map(|e| e.kind());
        assert_eq!(err, Some(io::ErrorKind::InvalidData));

        let (ledger, warning) = Ledger::load_or_quarantine(&path);
        assert_eq!(ledger.day, 0);
        assert!(warning.is_some_and(|w| w.contains("corrupt")));
        assert!(!path.exists());
        let aside: Vec<String> = fs::read_dir(&dir)?
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(aside.len(), 1);
        assert!(aside[0].starts_with("state.json.corrupt-"));

        // The next save starts a fresh file in the same place.
        ledger.save(&path)?;
        assert_eq!(Ledger::load(&path)?.day, 0);
        fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
