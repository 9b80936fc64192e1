//! How a log record becomes a line on stderr: `init` installs env_logger once, from `main`, with
//! the `LOG_FORMAT` of the config; every `log` macro in the relay then ends here.
//!
//! A record's structured key-values (`log::info!(session = id, reason = label; "closed")`) are
//! written after its message, except `session`, which leads so every session line starts with
//! its id: `session=1 closed reason=client_closed`. A text value with a space, `=`, a quote or a
//! control character is quoted and escaped, so it reads as one value. `LOG_FORMAT=json` writes
//! one object per line: `timestamp`, `level`, `target`, `message` (that same sentence), then
//! every key-value as a field of its own, numbers as numbers; serde_json escapes them, so no value
//! can add or replace a field. A record without key-values falls back to the `key=value` tokens
//! of its message (how call sites wrote fields before `log`'s `kv`), which a client-chosen value
//! with a space in it could forge: a call site closes that by passing its fields as key-values.

use std::fmt::{self, Write as _};

use env_logger::fmt::{ConfigurableFormat, Formatter};
use log::{
    kv::{self, Key, VisitSource, VisitValue},
    Record,
};
use serde_json::{Map, Value};

use crate::config::LogFormat;

/// The key written before the message instead of after it.
const LEAD: &str = "session";

/// Installs the process's logger: `info` (`debug` with `DEBUG=true`) unless `RUST_LOG` says
/// otherwise, env_logger's usual header in text, one JSON object per line in JSON.
pub fn init(debug: bool, format: LogFormat) {
    let default = if debug { "debug" } else { "info" };
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default));
    match format {
        LogFormat::Json => builder.format(|buf, record| {
            use std::io::Write;
            let line = json_line(&buf.timestamp_millis().to_string(), record);
            writeln!(buf, "{line}")
        }),
        LogFormat::Text => {
            let header = ConfigurableFormat::default();
            builder.format(move |buf, record| text_line(&header, buf, record))
        }
    };
    builder.init();
}

/// env_logger's default line, with the record's key-values rendered into the message.
fn text_line(
    header: &ConfigurableFormat,
    buf: &mut Formatter,
    record: &Record,
) -> std::io::Result<()> {
    if record.key_values().count() == 0 {
        return header.format(buf, record);
    }
    header.format(
        buf,
        &Record::builder()
            .args(format_args!("{}", Sentence(record)))
            .level(record.level())
            .target(record.target())
            .module_path(record.module_path())
            .file(record.file())
            .line(record.line())
            .build(),
    )
}

/// The JSON line for one log record (without the newline). The first of a repeated key wins,
/// so no key-value replaces `timestamp`, `level`, `target` or `message`.
fn json_line(timestamp: &str, record: &Record) -> String {
    let message = Sentence(record).to_string();
    let mut obj = Map::new();
    obj.insert("timestamp".into(), Value::from(timestamp));
    obj.insert("level".into(), Value::from(record.level().as_str()));
    obj.insert("target".into(), Value::from(record.target()));
    obj.insert("message".into(), Value::from(message.as_str()));
    if record.key_values().count() == 0 {
        for (k, v) in fields(&message) {
            let value = v
                .parse::<u64>()
                .map_or_else(|_| Value::from(v), Value::from);
            obj.entry(k).or_insert(value);
        }
    } else {
        // Cannot fail: the visitor only inserts into the map.
        let _ = record.key_values().visit(&mut JsonFields(&mut obj));
    }
    Value::Object(obj).to_string()
}

/// The `key=value` tokens of a message (keys are lowercase words with `_`).
fn fields(message: &str) -> impl Iterator<Item = (&str, &str)> {
    message.split_whitespace().filter_map(|token| {
        let (k, v) = token.split_once('=')?;
        let ok = !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        ok.then_some((k, v))
    })
}

/// A record as one sentence: `session=N` first when present, the message, then the other
/// key-values as ` key=value`.
struct Sentence<'a, 'r>(&'a Record<'r>);

impl fmt::Display for Sentence<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kvs = self.0.key_values();
        let mut text = TextPairs { f, written: false };
        if let Some(lead) = kvs.get(Key::from_str(LEAD)) {
            text.pair(LEAD, &lead)?;
        }
        let message = self.0.args();
        if message.as_str() != Some("") {
            text.separate()?;
            write!(text.f, "{message}")?;
        }
        kvs.visit(&mut text).map_err(|_| fmt::Error)
    }
}

/// Writes key-values as ` key=value`, skipping the lead key (written before the message).
struct TextPairs<'a, 'f> {
    f: &'a mut fmt::Formatter<'f>,
    written: bool,
}

impl TextPairs<'_, '_> {
    fn separate(&mut self) -> fmt::Result {
        if std::mem::replace(&mut self.written, true) {
            self.f.write_char(' ')?;
        }
        Ok(())
    }

    fn pair(&mut self, key: &str, value: &kv::Value) -> fmt::Result {
        self.separate()?;
        let value = value.to_string();
        if needs_quotes(&value) {
            write!(self.f, "{key}={value:?}")
        } else {
            write!(self.f, "{key}={value}")
        }
    }
}

impl<'kvs> VisitSource<'kvs> for TextPairs<'_, '_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: kv::Value<'kvs>) -> Result<(), kv::Error> {
        if key.as_str() != LEAD {
            self.pair(key.as_str(), &value)?;
        }
        Ok(())
    }
}

/// Whether a text value must be quoted to read as one value. A value that is already one quoted,
/// escaped string (a `:?` capture of a string) is written as it is.
fn needs_quotes(value: &str) -> bool {
    if let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        return !is_escaped(inner);
    }
    value.is_empty()
        || value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '=')
}

/// Whether `s` has no bare quote and no control character: the inside of a Debug-quoted string.
fn is_escaped(s: &str) -> bool {
    let mut escaped = false;
    for c in s.chars() {
        if c.is_control() || (c == '"' && !escaped) {
            return false;
        }
        escaped = c == '\\' && !escaped;
    }
    !escaped
}

/// Adds each key-value to a JSON object, typed; the first of a repeated key wins.
struct JsonFields<'a>(&'a mut Map<String, Value>);

impl<'kvs> VisitSource<'kvs> for JsonFields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: kv::Value<'kvs>) -> Result<(), kv::Error> {
        let mut json = JsonValue(Value::Null);
        value.visit(&mut json)?;
        self.0.entry(key.as_str()).or_insert(json.0);
        Ok(())
    }
}

/// One key-value as JSON: integers, floats and booleans as themselves, anything else as its text.
struct JsonValue(Value);

impl<'v> VisitValue<'v> for JsonValue {
    fn visit_any(&mut self, value: kv::Value) -> Result<(), kv::Error> {
        self.0 = Value::from(value.to_string());
        Ok(())
    }
    fn visit_null(&mut self) -> Result<(), kv::Error> {
        self.0 = Value::Null;
        Ok(())
    }
    fn visit_u64(&mut self, value: u64) -> Result<(), kv::Error> {
        self.0 = Value::from(value);
        Ok(())
    }
    fn visit_i64(&mut self, value: i64) -> Result<(), kv::Error> {
        self.0 = Value::from(value);
        Ok(())
    }
    fn visit_f64(&mut self, value: f64) -> Result<(), kv::Error> {
        self.0 = Value::from(value);
        Ok(())
    }
    fn visit_bool(&mut self, value: bool) -> Result<(), kv::Error> {
        self.0 = Value::from(value);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: &str = "2026-11-28T00:00:00.000Z";
    const TARGET: &str = "openai_realtime_relay::session";

    /// The JSON line of a record with `message` and `kvs`, parsed; also checks it is one line.
    fn json(message: fmt::Arguments, kvs: &[(&str, kv::Value)]) -> Value {
        let line = json_line(
            TS,
            &Record::builder()
                .args(message)
                .level(log::Level::Info)
                .target(TARGET)
                .key_values(&kvs)
                .build(),
        );
        assert!(!line.contains('\n'), "{line}");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    fn sentence(message: fmt::Arguments, kvs: &[(&str, kv::Value)]) -> String {
        let record = Record::builder().args(message).key_values(&kvs).build();
        Sentence(&record).to_string()
    }

    /// A message without key-values: its `key=value` tokens become fields (the fallback).
    #[test]
    fn text_fields_become_json() {
        let v = json(
            format_args!("session=7 closed reason=client_closed code=1000"),
            &[],
        );
        assert_eq!(v["session"], 7);
        assert_eq!(v["reason"], "client_closed");
        assert_eq!(v["code"], 1000);
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["target"], TARGET);
        assert_eq!(v["timestamp"], TS);
        assert_eq!(
            v["message"],
            "session=7 closed reason=client_closed code=1000"
        );
    }

    /// Key-values render as the text lines did: `session` first, the rest after the message.
    #[test]
    fn key_values_render_like_the_text_lines() {
        let kvs = [
            ("session", kv::Value::from(1u64)),
            ("client", kv::Value::from("203.0.113.50")),
            ("reason", kv::Value::from("client_closed")),
            ("code", kv::Value::from(1000u16)),
        ];
        assert_eq!(
            sentence(format_args!("closed"), &kvs),
            "session=1 closed client=203.0.113.50 reason=client_closed code=1000"
        );
        assert_eq!(
            sentence(format_args!("upgrade refused"), &kvs[1..]),
            "upgrade refused client=203.0.113.50 reason=client_closed code=1000"
        );
        let events = [
            ("session", kv::Value::from(3u64)),
            ("direction", kv::Value::from("client_to_upstream")),
            ("type", kv::Value::from("response.create")),
        ];
        assert_eq!(
            sentence(format_args!(""), &events),
            "session=3 direction=client_to_upstream type=response.create"
        );
    }

    /// Key-values become typed JSON fields after `message`, which is the text sentence.
    #[test]
    fn key_values_become_typed_json_fields() {
        let v = json(
            format_args!("closed"),
            &[
                ("session", kv::Value::from(1u64)),
                ("client", kv::Value::from("203.0.113.50")),
                ("code", kv::Value::from(1000u16)),
                ("pooled", kv::Value::from(true)),
                ("identity", kv::Value::from("123")),
            ],
        );
        assert_eq!(v["session"], 1);
        assert_eq!(v["client"], "203.0.113.50");
        assert_eq!(v["code"], 1000);
        assert_eq!(v["pooled"], true);
        assert_eq!(v["identity"], "123", "a string stays a string");
        assert_eq!(
            v["message"],
            "session=1 closed client=203.0.113.50 code=1000 pooled=true identity=123"
        );
        let keys: Vec<&String> = v
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        assert_eq!(
            keys,
            [
                "timestamp",
                "level",
                "target",
                "message",
                "session",
                "client",
                "code",
                "pooled",
                "identity"
            ]
        );
    }

    /// A client-chosen value that looks like more fields stays one field, in JSON and in text.
    #[test]
    fn a_value_cannot_forge_a_field() {
        let kvs = [
            ("session", kv::Value::from(1u64)),
            ("identity", kv::Value::from("x=1 reason=fake")),
            ("reason", kv::Value::from("client_closed")),
        ];
        let v = json(format_args!("closed"), &kvs);
        assert_eq!(v["identity"], "x=1 reason=fake");
        assert_eq!(v["reason"], "client_closed");
        assert!(v.get("x").is_none(), "{v}");
        assert_eq!(
            sentence(format_args!("closed"), &kvs),
            r#"session=1 closed identity="x=1 reason=fake" reason=client_closed"#
        );
    }

    /// Key-values cannot replace the line's own fields.
    #[test]
    fn a_key_value_cannot_replace_the_header() {
        let v = json(
            format_args!("hello"),
            &[
                ("level", kv::Value::from("ERROR")),
                ("message", kv::Value::from("forged")),
                ("target", kv::Value::from("elsewhere")),
                ("timestamp", kv::Value::from("yesterday")),
            ],
        );
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["target"], TARGET);
        assert_eq!(v["timestamp"], TS);
        assert!(v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("hello ")));
    }

    /// Quotes, newlines and control characters are escaped in JSON and quoted in text.
    #[test]
    fn quotes_newlines_and_control_characters_are_escaped() {
        let nasty = "a\"b\nc\rd\te\u{1b}[31mf\u{0}g\\h";
        let kvs = [("client", kv::Value::from(nasty))];
        let line = json_line(
            TS,
            &Record::builder()
                .args(format_args!("said \"hi\"\nthen left"))
                .key_values(&kvs)
                .build(),
        );
        assert!(!line.contains('\n') && !line.contains('\r'), "{line}");
        assert!(!line.chars().any(|c| c.is_control()), "{line}");
        let v: Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(v["client"], nasty);
        let text = sentence(format_args!("x"), &kvs);
        assert_eq!(text, format!("x client={nasty:?}"));
        assert!(!text.chars().any(|c| c.is_control()), "{text}");
    }

    /// Plain values are written bare; only those that would not read as one value are quoted.
    #[test]
    fn text_values_are_quoted_only_when_needed() {
        assert!(!needs_quotes("203.0.113.50"));
        assert!(!needs_quotes("jwt:user-42"));
        assert!(!needs_quotes("-"));
        assert!(!needs_quotes(r#""https://evil.example""#), "already quoted");
        assert!(!needs_quotes(r#""a \"quoted\" \\ word""#), "already quoted");
        assert!(needs_quotes(""));
        assert!(needs_quotes("two words"));
        assert!(needs_quotes("x=1"));
        assert!(needs_quotes("line\nbreak"));
        assert!(needs_quotes("\""));
        assert!(needs_quotes(r#""a" reason="b""#), "bare quotes inside");
        assert!(needs_quotes("\"ends in a backslash\\\""));
        assert!(
            needs_quotes("\"a raw\\\nnewline\""),
            "control characters are never bare"
        );
    }
}
