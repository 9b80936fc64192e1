//! Client events the relay does not forward: a `session.update` (or the beta-era
//! `transcription_session.update`) that names a model `ALLOWED_MODELS` does not list. A session's
//! URL is checked once, at the upgrade; this keeps the list holding for the models a client picks
//! afterwards: the transcription model (GA `session.audio.input.transcription.model`, beta-era
//! `session.input_audio_transcription.model`) and `session.model`. The client pump asks
//! [`refuse_client_event`] about every data frame before forwarding it and answers a refusal with
//! its `error` event; the session goes on. Pure logic, no state.
//!
//! Why not just the first bytes, like the usage glance: a `type` key further in, a second `type`
//! key (JSON parsers differ on which of two equal keys wins) or a type spelled with `\u` escapes
//! would slip past a look at the start. So the cheap test is for the text `session.update` or a
//! `\u` escape anywhere: audio appends (base64, no backslashes) and most events have neither and
//! are never parsed. A message that has one is walked once, keeping only the `type` values and the
//! model fields above, every occurrence of each, so no duplicate key can hide one.

use std::{borrow::Cow, fmt};

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::{close::error_event, protection::models::AllowedModels};

/// Event types that can change a session's models.
const UPDATE_TYPES: [&str; 2] = ["session.update", "transcription_session.update"];

/// Where a model hides in a session update, as key paths from the top of the event.
const MODEL_PATHS: [&[&str]; 3] = [
    &["session", "model"],
    &["session", "audio", "input", "transcription", "model"],
    &["session", "input_audio_transcription", "model"],
];

/// Why a client event was not forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// It names a model `ALLOWED_MODELS` does not list.
    ModelNotAllowed { model: String },
    /// It says `session.update` but is not JSON the relay can read, so its models cannot be
    /// checked.
    Unreadable,
}

impl Refusal {
    /// The `error` event the client gets instead of the upstream's answer.
    pub(crate) fn error_event(&self, event_id: &str) -> String {
        let message = match self {
            Refusal::ModelNotAllowed { model } => format!(
                "The model {model:?} is not allowed on this relay (ALLOWED_MODELS, or the \
                 token's models claim); the session.update was not forwarded."
            ),
            Refusal::Unreadable => "The relay could not read this session.update as JSON, so \
                                    it could not check its models against ALLOWED_MODELS; \
                                    it was not forwarded."
                .to_string(),
        };
        error_event(event_id, "model_not_allowed", &message)
    }
}

/// Whether the client's text message `text` must be refused rather than forwarded. Parses
/// nothing unless `allowed` is a list and `text` contains `session.update` or a `\u` escape.
pub(crate) fn refuse_client_event(text: &str, allowed: &AllowedModels) -> Option<Refusal> {
    if allowed.is_any() {
        return None;
    }
    let named = text.contains("session.update");
    if !named && !text.contains("\\u") {
        return None;
    }
    let mut found = Found::default();
    let mut de = serde_json::Deserializer::from_str(text);
    let read = Walk {
        path: Vec::new(),
        found: &mut found,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    if read.is_err() {
        // Without the text `session.update` it cannot be one, whatever a lenient parser makes of
        // it; with it, the relay cannot tell, and does not forward what it cannot check.
        return named.then_some(Refusal::Unreadable);
    }
    if !found
        .types
        .iter()
        .any(|t| UPDATE_TYPES.contains(&t.as_str()))
    {
        return None;
    }
    found
        .models
        .into_iter()
        .find(|m| !allowed.admits(m))
        .map(|model| Refusal::ModelNotAllowed { model })
}

/// The same for a binary frame: checked as text when it is UTF-8 (what could be JSON), else
/// passed, since no JSON parser reads it as an event.
pub(crate) fn refuse_client_binary(data: &[u8], allowed: &AllowedModels) -> Option<Refusal> {
    if allowed.is_any() {
        return None;
    }
    std::str::from_utf8(data)
        .ok()
        .and_then(|text| refuse_client_event(text, allowed))
}

/// Every top-level `type` string and every string at one of [`MODEL_PATHS`].
#[derive(Default)]
struct Found {
    types: Vec<String>,
    models: Vec<String>,
}

/// Walks one JSON value at `path`, descending only into objects on the way to a model field.
struct Walk<'f> {
    path: Vec<String>,
    found: &'f mut Found,
}

impl Walk<'_> {
    /// Whether some model path runs through or ends at `path`.
    fn leads_somewhere(path: &[String]) -> bool {
        MODEL_PATHS
            .iter()
            .any(|p| p.len() >= path.len() && p.iter().zip(path).all(|(a, b)| *a == b))
    }

    fn is_model(path: &[String]) -> bool {
        MODEL_PATHS
            .iter()
            .any(|p| p.len() == path.len() && p.iter().zip(path).all(|(a, b)| *a == b))
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let mut path = self.path.clone();
            path.push(key.into_owned());
            if path.len() == 1 && path[0] == "type" {
                if let Some(t) = map
                    .next_value::<Option<Value>>()?
                    .and_then(Value::into_string)
                {
                    self.found.types.push(t);
                }
            } else if Walk::is_model(&path) {
                if let Some(m) = map
                    .next_value::<Option<Value>>()?
                    .and_then(Value::into_string)
                {
                    self.found.models.push(m);
                }
            } else if Walk::leads_somewhere(&path) {
                map.next_value_seed(Walk {
                    path,
                    found: &mut *self.found,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    // Anything but an object on the way to a model field holds no model: skip it.
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// A model field or `type` value: a string, or anything else (which is not a model name and is
/// left to the upstream to refuse).
enum Value {
    String(String),
    Other,
}

impl Value {
    fn into_string(self) -> Option<String> {
        match self {
            Value::String(s) => Some(s),
            Value::Other => None,
        }
    }
}

impl<'de> serde::Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Value, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_str<E>(self, s: &str) -> Result<Value, E> {
                Ok(Value::String(s.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Value::Other)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Value::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Value, E> {
                Ok(Value::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Value, E> {
                Ok(Value::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Value, E> {
                Ok(Value::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Value, E> {
                Ok(Value::Other)
            }
            fn visit_unit<E>(self) -> Result<Value, E> {
                Ok(Value::Other)
            }
        }
        de.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> AllowedModels {
        AllowedModels::new(vec![
            "gpt-realtime-mini".into(),
            "gpt-4o-mini-transcribe".into(),
        ])
    }

    fn refused(text: &str) -> Option<Refusal> {
        refuse_client_event(text, &allowed())
    }

    fn not_allowed(model: &str) -> Option<Refusal> {
        Some(Refusal::ModelNotAllowed {
            model: model.into(),
        })
    }

    /// The GA shape: `session.audio.input.transcription.model` outside the list is refused,
    /// inside it passes.
    #[test]
    fn ga_transcription_model() {
        let update = |m: &str| {
            format!(
                r#"{{"type":"session.update","session":{{"type":"realtime","instructions":"hi","audio":{{"input":{{"format":{{"type":"audio/pcm","rate":24000}},"transcription":{{"model":"{m}","language":"en"}}}}}}}}}}"#
            )
        };
        assert_eq!(
            refused(&update("gpt-4o-transcribe")),
            not_allowed("gpt-4o-transcribe")
        );
        assert_eq!(refused(&update("gpt-4o-mini-transcribe")), None);
    }

    /// The beta-era shape, in `session.update` and in `transcription_session.update`.
    #[test]
    fn beta_transcription_model() {
        for kind in ["session.update", "transcription_session.update"] {
            let text = format!(
                r#"{{"type":"{kind}","session":{{"input_audio_transcription":{{"model":"whisper-1"}}}}}}"#
            );
            assert_eq!(refused(&text), not_allowed("whisper-1"), "{kind}");
            let ok = text.replace("whisper-1", "gpt-4o-mini-transcribe");
            assert_eq!(refused(&ok), None, "{kind}");
        }
    }

    /// `session.model` is held to the list too.
    #[test]
    fn session_model() {
        assert_eq!(
            refused(r#"{"type":"session.update","session":{"model":"gpt-realtime"}}"#),
            not_allowed("gpt-realtime")
        );
        assert_eq!(
            refused(r#"{"type":"session.update","session":{"model":"gpt-realtime-mini"}}"#),
            None
        );
    }

    /// Updates without a model, null models, transcription turned off, and other events pass.
    #[test]
    fn nothing_to_check_passes() {
        for text in [
            r#"{"type":"session.update","session":{"instructions":"be brief"}}"#,
            r#"{"type":"session.update","session":{"audio":{"input":{"transcription":null}}}}"#,
            r#"{"type":"session.update","session":{"input_audio_transcription":{"model":null}}}"#,
            r#"{"type":"session.update","session":{"audio":{"input":{"transcription":{"model":7}}}}}"#,
            r#"{"type":"response.create","response":{"instructions":"say session.update"}}"#,
            r#"{"type":"input_audio_buffer.append","audio":"AAAA/+8="}"#,
            r#"{"type":"conversation.item.create","item":{"session":{"model":"gpt-realtime"}}}"#,
        ] {
            assert_eq!(refused(text), None, "{text}");
        }
    }

    /// With no list, nothing is looked at, even a forbidden-looking update.
    #[test]
    fn no_list_no_look() {
        let text = r#"{"type":"session.update","session":{"model":"anything"}}"#;
        assert_eq!(refuse_client_event(text, &AllowedModels::default()), None);
    }

    /// A `type` past the first bytes, a second `type` key, a duplicated `session` or model key,
    /// and `\u`-escaped names cannot hide an update.
    #[test]
    fn no_disguise_slips_through() {
        let padding = "x".repeat(200);
        for text in [
            format!(
                r#"{{"event_id":"{padding}","session":{{"model":"gpt-realtime"}},"type":"session.update"}}"#
            ),
            r#"{"type":"response.create","session":{"model":"gpt-realtime"},"type":"session.update"}"#.to_string(),
            r#"{"type":"session.update","session":{"model":"gpt-realtime"},"type":"response.create"}"#.to_string(),
            r#"{"type":"session.update","session":{"model":"gpt-realtime"},"session":{}}"#.to_string(),
            r#"{"type":"session.update","session":{"model":"gpt-realtime-mini","model":"gpt-realtime"}}"#.to_string(),
            r#"{"type":"session\u002eupdate","session":{"model":"gpt-realtime"}}"#.to_string(),
            r#"{"type":"\u0073ession.update","\u0073ession":{"\u006dodel":"gpt-realtime"}}"#.to_string(),
        ] {
            assert_eq!(refused(&text), not_allowed("gpt-realtime"), "{text}");
        }
    }

    /// A message that says `session.update` but does not parse is refused as unreadable; one
    /// that only has a `\u` escape is left to the upstream.
    #[test]
    fn unreadable_updates_are_refused() {
        assert_eq!(
            refused(r#"{"type":"session.update","session":{"model":"gpt-realtime"}"#),
            Some(Refusal::Unreadable)
        );
        assert_eq!(
            refused(r#"{"type":"session.update"} trailing"#),
            Some(Refusal::Unreadable)
        );
        assert_eq!(refused(r#"{"type":"x","note":"\u0041" "#), None);
        // Binary audio that happens to hold a backslash and a `u` is not JSON: forwarded.
        assert_eq!(
            refuse_client_binary(&[0x00, 0xff, b'\\', b'u', 0x10], &allowed()),
            None
        );
        let update = br#"{"type":"session.update","session":{"model":"gpt-realtime"}}"#;
        assert_eq!(
            refuse_client_binary(update, &allowed()),
            not_allowed("gpt-realtime")
        );
    }

    /// The refusal's `error` event is OpenAI-shaped, with the code and the model.
    #[test]
    fn refusal_event() {
        let event: serde_json::Value = serde_json::from_str(
            &Refusal::ModelNotAllowed {
                model: "whisper-1".into(),
            }
            .error_event("relay_evt_3"),
        )
        .expect("JSON");
        assert_eq!(event["type"], "error");
        assert_eq!(event["event_id"], "relay_evt_3");
        assert_eq!(event["error"]["code"], "model_not_allowed");
        let message = event["error"]["message"].as_str().expect("message");
        assert!(message.contains("\"whisper-1\"") && message.contains("not forwarded"));
    }
}
