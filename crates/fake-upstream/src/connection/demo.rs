//! The demo server ([`crate::Mode::Demo`]): GA-shaped answers to the events a Realtime client
//! sends. It listens to appended audio (`hearing.rs`): a commit of at least [`MIN_HEARD`], or a
//! turn found by server VAD when the session asks for it, becomes a user item with a
//! transcription, and the next response (at once, for a VAD turn) says how long it was over an
//! audible chime; a user text message is echoed; otherwise `response.create` gets the fixed
//! greeting (`reply.rs`, streamed by `respond.rs`). Called by the connection's read loop.

use serde_json::{json, Value};

use super::hearing::{millis, Heard};
use super::pcm::RATE;
use super::reply::{seconds, Prompt, Reply};
use super::Connection;

/// The least committed audio the demo answers with what it heard (100 ms, the least OpenAI
/// accepts); shorter commits are only acknowledged.
const MIN_HEARD: u64 = RATE / 10;

impl Connection {
    pub(super) fn error_event(
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

    pub(super) async fn demo(&mut self, text: &str) -> Result<(), actix_ws::Closed> {
        let Ok(Value::Object(event)) = serde_json::from_str::<Value>(text) else {
            let error = Self::error_event(
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
                if let (Some(Value::Object(update)), Value::Object(current)) =
                    (event.get("session"), &mut self.session_config)
                {
                    for (key, value) in update {
                        current.insert(key.clone(), value.clone());
                    }
                }
                let updated = json!({"type": "session.updated", "session": self.session_config});
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
                    .unwrap_or_else(|| self.object_id("item"));
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
                let mut item = event.get("item").cloned().unwrap_or_else(|| json!({}));
                if let Some(text) = user_text(&item) {
                    self.prompt = Prompt::text(&text);
                }
                if let Value::Object(fields) = &mut item {
                    if !fields.contains_key("id") {
                        let id = self.object_id("item");
                        fields.insert("id".into(), Value::String(id));
                    }
                    fields.insert("object".into(), json!("realtime.item"));
                    fields.insert("status".into(), json!("completed"));
                }
                let added = json!({"type": "conversation.item.added", "previous_item_id": null, "item": item});
                self.send_event(added).await?;
                let done = json!({"type": "conversation.item.done", "previous_item_id": null, "item": item});
                self.send_event(done).await
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
                let error = Self::error_event(
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

    /// Whether a response is text only: its own `output_modalities`, else the session's.
    fn text_only(&self, response: Option<&Value>) -> bool {
        response
            .and_then(|r| r.get("output_modalities"))
            .or_else(|| self.session_config.get("output_modalities"))
            .and_then(Value::as_array)
            .is_some_and(|m| !m.iter().any(|v| v == "audio"))
    }

    /// The session's turn detection when it is server VAD (`server_vad` or `semantic_vad`).
    fn server_vad(&self) -> Option<&Value> {
        let detection = &self.session_config["audio"]["input"]["turn_detection"];
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
                let item_id = self.object_id("item");
                self.speech_item = Some(item_id.clone());
                let started = json!({"type": "input_audio_buffer.speech_started", "audio_start_ms": millis(at), "item_id": item_id});
                self.send_event(started).await
            }
            Heard::SpeechStopped { at, samples } => {
                let item_id = self
                    .speech_item
                    .take()
                    .unwrap_or_else(|| self.object_id("item"));
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

#[cfg(test)]
mod tests {
    use super::super::hearing::tests::tone;
    use super::super::pcm::Decoder;
    use super::super::reply::NOTE;
    use crate::test_client::{connect, next_frame, next_json, of, send, send_all, until_done, T};
    use crate::FakeUpstream;
    use crate::Script;
    use awc::ws;
    use serde_json::Value;

    /// Demo mode announces the requested model and answers response.create with deltas, then
    /// response.done carrying usage.
    #[actix_web::test]
    async fn demo_streams_a_response_with_usage() {
        let fake = FakeUpstream::start(Script::demo()).await.unwrap();
        let (_, mut framed) = connect(&format!("{}?model=gpt-realtime", fake.url())).await;
        let created = next_json(&mut framed).await;
        assert_eq!(created["type"], "session.created");
        assert_eq!(created["session"]["model"], "gpt-realtime");
        assert_eq!(created["session"]["type"], "realtime");
        assert!(created["event_id"].as_str().unwrap().starts_with("event_"));

        let update =
            r#"{"type":"session.update","session":{"type":"realtime","instructions":"Be brief."}}"#;
        send(&mut framed, ws::Message::Text(update.into())).await;
        let updated = next_json(&mut framed).await;
        assert_eq!(updated["type"], "session.updated");
        assert_eq!(updated["session"]["instructions"], "Be brief.");

        send(
            &mut framed,
            ws::Message::Text(r#"{"type":"response.create"}"#.into()),
        )
        .await;
        let mut types = Vec::new();
        let done = loop {
            let event = next_json(&mut framed).await;
            let kind = event["type"].as_str().unwrap().to_owned();
            types.push(kind.clone());
            if kind == "response.done" {
                break event;
            }
            assert!(types.len() < 50, "no response.done in {types:?}");
        };
        assert_eq!(types[0], "response.created");
        let audio = types
            .iter()
            .filter(|t| *t == "response.output_audio.delta")
            .count();
        let said = types
            .iter()
            .filter(|t| *t == "response.output_audio_transcript.delta")
            .count();
        assert!(audio >= 2 && said >= 2, "{types:?}");
        let usage = &done["response"]["usage"];
        assert_eq!(usage["total_tokens"], 32);
        assert_eq!(
            usage["total_tokens"].as_u64(),
            Some(
                usage["input_tokens"].as_u64().unwrap() + usage["output_tokens"].as_u64().unwrap()
            )
        );
        assert_eq!(usage["input_token_details"]["cached_tokens"], 0);
        assert_eq!(usage["output_token_details"]["audio_tokens"], 15);

        send(
            &mut framed,
            ws::Message::Text(r#"{"type":"bogus.kind","event_id":"e1"}"#.into()),
        )
        .await;
        let error = next_json(&mut framed).await;
        assert_eq!(error["type"], "error");
        assert_eq!(error["error"]["type"], "invalid_request_error");
        assert_eq!(error["error"]["event_id"], "e1");
        fake.stop().await;
    }

    /// drop_after_deltas ends the connection without a Close frame right after that many deltas
    /// of a response, all of which arrive first.
    #[actix_web::test]
    async fn drop_after_deltas_cuts_the_response() {
        let fake = FakeUpstream::start(Script {
            drop_after_deltas: Some(3),
            ..Script::demo()
        })
        .await
        .unwrap();
        let (_, mut framed) = connect(&fake.url()).await;
        assert_eq!(next_json(&mut framed).await["type"], "session.created");
        send(
            &mut framed,
            ws::Message::Text(r#"{"type":"response.create"}"#.into()),
        )
        .await;
        let mut deltas = Vec::new();
        loop {
            match next_frame(&mut framed).await {
                Some(Ok(ws::Frame::Text(bytes))) => {
                    let event: Value = serde_json::from_slice(&bytes).unwrap();
                    let kind = event["type"].as_str().unwrap().to_owned();
                    assert_ne!(kind, "response.done");
                    if kind.ends_with(".delta") {
                        deltas.push(kind);
                    }
                }
                None | Some(Err(_)) => break,
                Some(Ok(frame)) => panic!("expected the connection to end, got {frame:?}"),
            }
        }
        assert_eq!(
            deltas,
            [
                "response.output_audio.delta",
                "response.output_audio_transcript.delta",
                "response.output_audio.delta"
            ]
        );
        let closes = fake.recorder().wait_closes(1, T).await.unwrap();
        assert!(closes[0].abrupt, "{:?}", closes[0]);
        assert!(
            closes[0].reason.contains("after 3 deltas"),
            "{:?}",
            closes[0]
        );
        fake.stop().await;
    }

    /// An append of `audio` (base64 PCM16).
    fn append(audio: &str) -> String {
        format!(r#"{{"type":"input_audio_buffer.append","audio":"{audio}"}}"#)
    }

    /// The session update that turns server VAD off (push-to-talk).
    const NO_VAD: &str =
        r#"{"type":"session.update","session":{"audio":{"input":{"turn_detection":null}}}}"#;

    /// Push-to-talk: a commit of 1.0 s of appended audio is transcribed as "(1.0 seconds of
    /// audio)", and the next response.create answers with six chime notes (6 x 4800 samples of
    /// audible PCM16), "I heard 1.0 seconds of audio." and usage of 10 audio tokens in.
    #[actix_web::test]
    async fn committed_audio_is_answered_with_a_chime() {
        let fake = FakeUpstream::start(Script::demo()).await.unwrap();
        let (_, mut framed) = connect(&fake.url()).await;
        assert_eq!(next_json(&mut framed).await["type"], "session.created");
        let events = [
            NO_VAD.to_owned(),
            append(&tone(0.5, 1.0)),
            append(&tone(0.5, 1.0)),
            r#"{"type":"input_audio_buffer.commit"}"#.to_owned(),
            r#"{"type":"response.create"}"#.to_owned(),
        ];
        send_all(&mut framed, &events).await;
        let events = until_done(&mut framed).await;
        let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
        assert_eq!(
            &types[..5],
            [
                "session.updated",
                "input_audio_buffer.committed",
                "conversation.item.added",
                "conversation.item.done",
                "conversation.item.input_audio_transcription.completed"
            ],
            "{types:?}"
        );
        assert_eq!(events[4]["transcript"], "(1.0 seconds of audio)");
        assert_eq!(events[4]["item_id"], events[1]["item_id"]);
        let mut samples = Vec::new();
        for delta in of(&events, "response.output_audio.delta") {
            Decoder::default().feed(delta["delta"].as_str().unwrap(), |s| samples.push(s));
        }
        assert_eq!(samples.len(), 6 * NOTE);
        let energy: f64 = samples.iter().map(|s| f64::from(*s).powi(2)).sum();
        assert!((energy / samples.len() as f64).sqrt() > 1000.0, "too quiet");
        let said = of(&events, "response.output_audio_transcript.done");
        assert_eq!(said[0]["transcript"], "I heard 1.0 seconds of audio.");
        let usage = &events.last().unwrap()["response"]["usage"];
        assert_eq!(usage["input_token_details"]["audio_tokens"], 10);
        assert_eq!(usage["output_token_details"]["audio_tokens"], 24);

        // The answer is used up: the next response.create gets the greeting.
        send_all(&mut framed, &[r#"{"type":"response.create"}"#.to_owned()]).await;
        let events = until_done(&mut framed).await;
        assert_eq!(
            events.last().unwrap()["response"]["usage"]["total_tokens"],
            32
        );
        fake.stop().await;
    }

    /// Server VAD (the demo session's default): silence sets nothing off; a second of tone
    /// followed by 600 ms of quiet gives speech_started, speech_stopped, committed, the
    /// transcription and a response, all for the same item and without a response.create.
    #[actix_web::test]
    async fn server_vad_answers_a_tone_not_silence() {
        let fake = FakeUpstream::start(Script::demo()).await.unwrap();
        let (_, mut framed) = connect(&fake.url()).await;
        assert_eq!(next_json(&mut framed).await["type"], "session.created");
        let silence = [append(&tone(1.0, 0.0)), append(&tone(1.0, 0.0))];
        send_all(&mut framed, &silence).await;
        // A clear is answered in order, so nothing before its answer means silence set off nothing.
        send_all(
            &mut framed,
            &[r#"{"type":"input_audio_buffer.clear"}"#.to_owned()],
        )
        .await;
        assert_eq!(
            next_json(&mut framed).await["type"],
            "input_audio_buffer.cleared"
        );

        let speech = [
            append(&tone(0.2, 0.0)),
            append(&tone(1.0, 1.0)),
            append(&tone(0.6, 0.0)),
        ];
        send_all(&mut framed, &speech).await;
        let events = until_done(&mut framed).await;
        let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
        assert_eq!(
            &types[..4],
            [
                "input_audio_buffer.speech_started",
                "input_audio_buffer.speech_stopped",
                "input_audio_buffer.committed",
                "conversation.item.added"
            ],
            "{types:?}"
        );
        assert_eq!(events[0]["audio_start_ms"], 2200);
        assert_eq!(events[1]["audio_end_ms"], 3200);
        let item = &events[0]["item_id"];
        assert!(events[1..4]
            .iter()
            .all(|e| e["item_id"] == *item || e["item"]["id"] == *item));
        let heard = of(
            &events,
            "conversation.item.input_audio_transcription.completed",
        );
        assert_eq!(heard[0]["transcript"], "(1.0 seconds of audio)");
        let said = of(&events, "response.output_audio_transcript.done");
        assert_eq!(said[0]["transcript"], "I heard 1.0 seconds of audio.");
        fake.stop().await;
    }

    /// A user text message is echoed by the next response, as audio with its transcript or,
    /// when asked for text only, as text, with its text counted as input tokens.
    #[actix_web::test]
    async fn text_messages_are_echoed() {
        let fake = FakeUpstream::start(Script::demo()).await.unwrap();
        let (_, mut framed) = connect(&fake.url()).await;
        assert_eq!(next_json(&mut framed).await["type"], "session.created");
        let message = r#"{"type":"conversation.item.create","item":{"type":"message","role":"user","content":[{"type":"input_text","text":"Is anybody there?"}]}}"#;
        let events = [
            message.to_owned(),
            r#"{"type":"response.create"}"#.to_owned(),
        ];
        send_all(&mut framed, &events).await;
        let events = until_done(&mut framed).await;
        let said = of(&events, "response.output_audio_transcript.done");
        assert_eq!(said[0]["transcript"], "You said: Is anybody there?");
        assert_eq!(of(&events, "response.output_audio.delta").len(), 5);
        let usage = &events.last().unwrap()["response"]["usage"];
        assert_eq!(usage["input_token_details"]["text_tokens"], 15);

        let text_only = r#"{"type":"response.create","response":{"output_modalities":["text"]}}"#;
        send_all(&mut framed, &[message.to_owned(), text_only.to_owned()]).await;
        let events = until_done(&mut framed).await;
        let text = of(&events, "response.output_text.done");
        assert_eq!(text[0]["text"], "You said: Is anybody there?");
        assert!(of(&events, "response.output_audio.delta").is_empty());
        fake.stop().await;
    }
}
