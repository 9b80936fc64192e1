//! The demo server ([`crate::Mode::Demo`]): GA-shaped answers to the events a Realtime client
//! sends, written to an [`Outbox`] (`emit.rs`): one WebSocket, or a WebRTC call's data channel
//! and sidebands. It listens to appended audio (`hearing.rs`): a commit of at least
//! [`MIN_HEARD`], or a turn found by server VAD when the session asks for it, becomes a user item
//! with a transcription, and the next response (at once, for a VAD turn) says how long it was
//! over an audible chime; a user text message is echoed; otherwise `response.create` gets the
//! fixed greeting (`reply.rs`, streamed by `respond.rs`). Owned by a WebSocket connection's read
//! loop or by a call's task, it lives and ends with its owner.

mod emit;
mod hearing;
mod pcm;
mod reply;
mod respond;
#[cfg(test)]
mod tests;

use std::time::Duration;

use serde_json::{json, Value};

use emit::Names;
pub(crate) use emit::Outbox;
use hearing::{millis, Ear, Heard};
use pcm::RATE;
use reply::{seconds, Prompt, Reply};

use crate::script::Script;

/// The least committed audio the demo answers with what it heard (100 ms, the least OpenAI
/// accepts); shorter commits are only acknowledged.
const MIN_HEARD: u64 = RATE / 10;

/// An OpenAI-shaped `error` event.
pub(crate) fn error_event(
    kind: &str,
    code: &str,
    message: &str,
    param: Option<&str>,
    client_event_id: Option<Value>,
) -> Value {
    json!({
        "type": "error",
        "error": {
            "type": kind,
            "code": code,
            "message": message,
            "param": param,
            "event_id": client_event_id.unwrap_or(Value::Null),
        },
    })
}

/// One demo session: what it announced, what it heard, what it answers next.
pub(crate) struct Demo<O> {
    out: O,
    names: Names,
    /// The session object as last announced, updated by `session.update`.
    session: Value,
    /// The input audio buffer, counted, and server VAD's state.
    ear: Ear,
    /// The item of the speech server VAD has heard start, until it stops.
    speech_item: Option<String>,
    /// What the next response answers.
    prompt: Prompt,
    /// [`Script::demo_delta_delay`].
    delta_delay: Duration,
    /// [`Script::drop_after_deltas`].
    drop_after_deltas: Option<usize>,
    /// Set when a response has sent `drop_after_deltas` deltas: the owner then drops its
    /// connection. Holds the number of deltas sent.
    dropped_after: Option<usize>,
    /// Whether `response.output_audio.delta` events are sent (on WebRTC the audio is media).
    audio_deltas: bool,
}

impl<O: Outbox> Demo<O> {
    /// A demo for connection or call `scope` of the fake whose run is `run`, announcing `model`,
    /// paced as `script` says, writing to `out`.
    pub(crate) fn new(out: O, scope: String, run: &str, model: &str, script: &Script) -> Demo<O> {
        let names = Names::new(scope, run);
        let session = json!({
            "type": "realtime",
            "object": "realtime.session",
            "id": names.session_id(),
            "model": model,
            "output_modalities": ["audio"],
            "instructions": "You are a demo voice on a fake upstream.",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "turn_detection": {"type": "server_vad"},
                },
                "output": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "voice": "alloy",
                },
            },
            "tools": [],
            "max_output_tokens": "inf",
            "expires_at": 0,
        });
        Demo {
            out,
            names,
            session,
            ear: Ear::default(),
            speech_item: None,
            prompt: Prompt::Nothing,
            delta_delay: script.demo_delta_delay,
            drop_after_deltas: script.drop_after_deltas,
            dropped_after: None,
            audio_deltas: true,
        }
    }

    /// The demo of a WebRTC call: no audio deltas (the audio would be media) and no scripted
    /// drop (a call has no connection of its own to drop).
    #[cfg(feature = "webrtc")]
    pub(crate) fn for_call(mut self) -> Demo<O> {
        self.audio_deltas = false;
        self.drop_after_deltas = None;
        self
    }

    /// The session object as last announced.
    pub(crate) fn session(&self) -> &Value {
        &self.session
    }

    /// Sets the top-level fields of `update` (a JSON object) in the session.
    pub(crate) fn merge_session(&mut self, update: &Value) {
        if let (Value::Object(update), Value::Object(current)) = (update, &mut self.session) {
            for (key, value) in update {
                current.insert(key.clone(), value.clone());
            }
        }
    }

    /// Where the events go.
    #[cfg(feature = "webrtc")]
    pub(crate) fn out_mut(&mut self) -> &mut O {
        &mut self.out
    }

    /// Set once a response stopped after [`Script::drop_after_deltas`] deltas: how many.
    pub(crate) fn dropped_after(&self) -> Option<usize> {
        self.dropped_after
    }

    /// Sends `event` after giving it an `event_id`.
    pub(crate) async fn send_event(&mut self, event: Value) -> Result<(), actix_ws::Closed> {
        let text = self.names.stamp(event);
        self.out.text(text).await
    }

    /// Answers one client event (a text message).
    pub(crate) async fn handle(&mut self, text: &str) -> Result<(), actix_ws::Closed> {
        let Ok(Value::Object(event)) = serde_json::from_str::<Value>(text) else {
            let error = error_event(
                "invalid_request_error",
                "invalid_json",
                "The server could not parse the JSON body of the event.",
                None,
                None,
            );
            return self.send_event(error).await;
        };
        let client_event_id = event.get("event_id").cloned();
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "session.update" => {
                if let Some(update) = event.get("session") {
                    self.merge_session(update);
                }
                let updated = json!({"type": "session.updated", "session": self.session});
                self.send_event(updated).await
            }
            "response.create" => {
                let text_only = self.text_only(event.get("response"));
                let reply = Reply::to(std::mem::take(&mut self.prompt));
                self.respond(reply, text_only).await
            }
            "input_audio_buffer.append" => {
                let audio = event.get("audio").and_then(Value::as_str).unwrap_or("");
                let vad = self.server_vad().is_some();
                for change in self.ear.hear(audio, vad) {
                    self.on_heard(change).await?;
                }
                Ok(())
            }
            "input_audio_buffer.commit" => {
                let samples = self.ear.commit();
                let item_id = self
                    .speech_item
                    .take()
                    .unwrap_or_else(|| self.names.object_id("item"));
                let committed = json!({
                    "type": "input_audio_buffer.committed",
                    "previous_item_id": null,
                    "item_id": item_id,
                });
                self.send_event(committed).await?;
                if samples >= MIN_HEARD {
                    self.user_audio(item_id, samples).await?;
                    self.prompt = Prompt::Audio { samples };
                }
                Ok(())
            }
            "input_audio_buffer.clear" => {
                self.ear.clear();
                self.speech_item = None;
                self.send_event(json!({"type": "input_audio_buffer.cleared"}))
                    .await
            }
            "conversation.item.create" => {
                let item = event.get("item").cloned().unwrap_or_else(|| json!({}));
                self.item_create(item).await
            }
            "conversation.item.truncate" => {
                let truncated = json!({
                    "type": "conversation.item.truncated",
                    "item_id": event.get("item_id").cloned().unwrap_or(Value::Null),
                    "content_index": event.get("content_index").cloned().unwrap_or(json!(0)),
                    "audio_end_ms": event.get("audio_end_ms").cloned().unwrap_or(json!(0)),
                });
                self.send_event(truncated).await
            }
            _ => {
                let message = format!(
                    "Invalid value: '{kind}'. Supported values are: 'session.update', \
                     'input_audio_buffer.append', 'input_audio_buffer.commit', \
                     'input_audio_buffer.clear', 'conversation.item.create', \
                     'conversation.item.truncate', and 'response.create'."
                );
                let error = error_event(
                    "invalid_request_error",
                    "invalid_value",
                    &message,
                    Some("type"),
                    client_event_id,
                );
                self.send_event(error).await
            }
        }
    }

    /// A client's item: remembered as the next prompt when it is a user text message, and
    /// announced as added and done.
    async fn item_create(&mut self, mut item: Value) -> Result<(), actix_ws::Closed> {
        if let Some(text) = user_text(&item) {
            self.prompt = Prompt::text(&text);
        }
        if let Value::Object(fields) = &mut item {
            if !fields.contains_key("id") {
                let id = self.names.object_id("item");
                fields.insert("id".into(), Value::String(id));
            }
            fields.insert("object".into(), json!("realtime.item"));
            fields.insert("status".into(), json!("completed"));
        }
        let added =
            json!({"type": "conversation.item.added", "previous_item_id": null, "item": item});
        self.send_event(added).await?;
        let done =
            json!({"type": "conversation.item.done", "previous_item_id": null, "item": item});
        self.send_event(done).await
    }

    /// Whether a response is text only: its own `output_modalities`, else the session's.
    fn text_only(&self, response: Option<&Value>) -> bool {
        response
            .and_then(|r| r.get("output_modalities"))
            .or_else(|| self.session.get("output_modalities"))
            .and_then(Value::as_array)
            .is_some_and(|m| !m.iter().any(|v| v == "audio"))
    }

    /// The session's turn detection when it is server VAD (`server_vad` or `semantic_vad`).
    fn server_vad(&self) -> Option<&Value> {
        let detection = &self.session["audio"]["input"]["turn_detection"];
        matches!(
            detection["type"].as_str(),
            Some("server_vad" | "semantic_vad")
        )
        .then_some(detection)
    }

    /// Tells the client what server VAD noticed; a finished turn is committed, transcribed and,
    /// unless the session's turn detection says `create_response: false`, answered at once.
    async fn on_heard(&mut self, change: Heard) -> Result<(), actix_ws::Closed> {
        match change {
            Heard::SpeechStarted { at } => {
                let item_id = self.names.object_id("item");
                self.speech_item = Some(item_id.clone());
                let started = json!({"type": "input_audio_buffer.speech_started", "audio_start_ms": millis(at), "item_id": item_id});
                self.send_event(started).await
            }
            Heard::SpeechStopped { at, samples } => {
                let item_id = self
                    .speech_item
                    .take()
                    .unwrap_or_else(|| self.names.object_id("item"));
                let stopped = json!({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": millis(at), "item_id": item_id});
                self.send_event(stopped).await?;
                let committed = json!({"type": "input_audio_buffer.committed", "previous_item_id": null, "item_id": item_id});
                self.send_event(committed).await?;
                self.user_audio(item_id, samples).await?;
                let prompt = Prompt::Audio { samples };
                let respond = self
                    .server_vad()
                    .is_some_and(|vad| vad["create_response"] != json!(false));
                if !respond {
                    self.prompt = prompt;
                    return Ok(());
                }
                let text_only = self.text_only(None);
                self.respond(Reply::to(prompt), text_only).await
            }
        }
    }

    /// The user item made of `samples` of committed audio, and its transcription.
    async fn user_audio(&mut self, item_id: String, samples: u64) -> Result<(), actix_ws::Closed> {
        let mut item = json!({
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": null}],
        });
        let added =
            json!({"type": "conversation.item.added", "previous_item_id": null, "item": item});
        self.send_event(added).await?;
        let transcript = format!("({} of audio)", seconds(samples));
        item["content"][0]["transcript"] = json!(transcript);
        let done =
            json!({"type": "conversation.item.done", "previous_item_id": null, "item": item});
        self.send_event(done).await?;
        let completed = json!({
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": item_id,
            "content_index": 0,
            "transcript": transcript,
        });
        self.send_event(completed).await
    }
}

/// The text of a user message item (its `input_text` parts, joined), if it has any.
fn user_text(item: &Value) -> Option<String> {
    if item["type"] != "message" || item["role"] != "user" {
        return None;
    }
    let parts: Vec<&str> = item["content"]
        .as_array()?
        .iter()
        .filter(|part| part["type"] == "input_text")
        .filter_map(|part| part["text"].as_str())
        .collect();
    let text = parts.join(" ");
    (!text.trim().is_empty()).then_some(text)
}
