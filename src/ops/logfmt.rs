//! `LOG_FORMAT=json`: one JSON object per line. The relay's log sentences carry `key=value`
//! fields (`session=12 reason=client_closed ...`); those become top-level fields too, so a log
//! shipper can index them without parsing the message.

use serde_json::{Map, Value};

/// The JSON line for one log record.
pub fn json_line(timestamp: &str, level: &str, target: &str, message: &str) -> String {
    let mut obj = Map::new();
    obj.insert("timestamp".into(), Value::from(timestamp));
    obj.insert("level".into(), Value::from(level));
    obj.insert("target".into(), Value::from(target));
    obj.insert("message".into(), Value::from(message));
    for (k, v) in fields(message) {
        if !obj.contains_key(k) {
            let value = v
                .parse::<u64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::from(v));
            obj.insert(k.to_string(), value);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_become_json() {
        let line = json_line(
            "2026-11-28T00:00:00.000Z",
            "INFO",
            "openai_realtime_relay::session",
            "session=7 closed reason=client_closed code=1000",
        );
        let v: Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(v["session"], 7);
        assert_eq!(v["reason"], "client_closed");
        assert_eq!(v["level"], "INFO");
        assert_eq!(
            v["message"],
            "session=7 closed reason=client_closed code=1000"
        );
        assert!(!line.contains('\n'));
    }
}
