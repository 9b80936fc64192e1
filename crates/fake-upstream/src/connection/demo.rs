//! The demo server ([`crate::Mode::Demo`]): GA-shaped answers to the events a Realtime client sends,
//! and a short deterministic streamed response with usage. Called by the connection's read loop.

use serde_json::{json, Value};

use super::Connection;

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
                let modalities = event
                    .get("response")
                    .and_then(|r| r.get("output_modalities"))
                    .or_else(|| self.session_config.get("output_modalities"))
                    .cloned();
                let text_only = modalities
                    .as_ref()
                    .and_then(Value::as_array)
                    .is_some_and(|m| !m.iter().any(|v| v == "audio"));
                self.demo_response(text_only).await
            }
            "input_audio_buffer.append" => Ok(()),
            "input_audio_buffer.commit" => {
                let item_id = self.object_id("item");
                let committed = json!({
                    "type": "input_audio_buffer.committed",
                    "previous_item_id": null,
                    "item_id": item_id,
                });
                self.send_event(committed).await
            }
            "input_audio_buffer.clear" => {
                self.send_event(json!({"type": "input_audio_buffer.cleared"}))
                    .await
            }
            "conversation.item.create" => {
                let mut item = event.get("item").cloned().unwrap_or_else(|| json!({}));
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
            _ => {
                let message = format!(
                    "Invalid value: '{kind}'. Supported values are: 'session.update', \
                     'input_audio_buffer.append', 'input_audio_buffer.commit', \
                     'input_audio_buffer.clear', 'conversation.item.create', and 'response.create'."
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

    /// The script's pause before a streamed delta, if any.
    async fn delta_pause(&self) {
        if !self.script.demo_delta_delay.is_zero() {
            tokio::time::sleep(self.script.demo_delta_delay).await;
        }
    }

    /// Sends one delta event of a response, `sent` so far before it. Once
    /// [`crate::Script::drop_after_deltas`] have gone out, marks the connection for dropping and
    /// answers `Err` so the response stops there.
    async fn send_delta(&mut self, delta: Value, sent: &mut usize) -> Result<(), actix_ws::Closed> {
        self.send_event(delta).await?;
        *sent += 1;
        if self.script.drop_after_deltas == Some(*sent) {
            self.dropping_after = Some(*sent);
            return Err(actix_ws::Closed);
        }
        Ok(())
    }

    /// A short, deterministic response: audio with a transcript, or text when asked for text only.
    async fn demo_response(&mut self, text_only: bool) -> Result<(), actix_ws::Closed> {
        const WORDS: [&str; 4] = ["Hello ", "from the ", "fake ", "upstream."];
        let response_id = self.object_id("resp");
        let item_id = self.object_id("item");
        let modality = if text_only { "text" } else { "audio" };
        let mut response = json!({
            "object": "realtime.response",
            "id": response_id,
            "status": "in_progress",
            "status_details": null,
            "output": [],
            "output_modalities": [modality],
            "usage": null,
        });
        self.send_event(json!({"type": "response.created", "response": response}))
            .await?;
        let mut item = json!({
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        });
        let at = json!({"response_id": response_id, "item_id": item_id, "output_index": 0});
        let with = |mut event: Value, extra: &Value| {
            if let (Value::Object(e), Value::Object(x)) = (&mut event, extra) {
                for (k, v) in x {
                    e.insert(k.clone(), v.clone());
                }
            }
            event
        };
        let added = json!({"type": "response.output_item.added", "response_id": response_id, "output_index": 0, "item": item});
        self.send_event(added).await?;
        let empty_part = if text_only {
            json!({"type": "output_text", "text": ""})
        } else {
            json!({"type": "output_audio", "transcript": ""})
        };
        let part_at = with(json!({"content_index": 0}), &at);
        self.send_event(with(
            json!({"type": "response.content_part.added", "part": empty_part}),
            &part_at,
        ))
        .await?;
        let transcript: String = WORDS.concat();
        let mut deltas = 0;
        if text_only {
            for word in WORDS {
                self.delta_pause().await;
                let delta = json!({"type": "response.output_text.delta", "delta": word});
                self.send_delta(with(delta, &part_at), &mut deltas).await?;
            }
            let done = json!({"type": "response.output_text.done", "text": transcript});
            self.send_event(with(done, &part_at)).await?;
        } else {
            // 480 zero bytes of PCM16 (10 ms of silence at 24 kHz), base64-encoded.
            let silence = "A".repeat(640);
            for word in WORDS {
                self.delta_pause().await;
                let audio = json!({"type": "response.output_audio.delta", "delta": silence});
                self.send_delta(with(audio, &part_at), &mut deltas).await?;
                self.delta_pause().await;
                let said = json!({"type": "response.output_audio_transcript.delta", "delta": word});
                self.send_delta(with(said, &part_at), &mut deltas).await?;
            }
            self.send_event(with(
                json!({"type": "response.output_audio.done"}),
                &part_at,
            ))
            .await?;
            let done =
                json!({"type": "response.output_audio_transcript.done", "transcript": transcript});
            self.send_event(with(done, &part_at)).await?;
        }
        let part = if text_only {
            json!({"type": "output_text", "text": transcript})
        } else {
            json!({"type": "output_audio", "transcript": transcript})
        };
        self.send_event(with(
            json!({"type": "response.content_part.done", "part": part}),
            &part_at,
        ))
        .await?;
        item["status"] = json!("completed");
        item["content"] = json!([part]);
        let item_done = json!({"type": "response.output_item.done", "response_id": response_id, "output_index": 0, "item": item});
        self.send_event(item_done).await?;
        response["status"] = json!("completed");
        response["output"] = json!([item]);
        response["usage"] = json!({
            "total_tokens": 32,
            "input_tokens": 12,
            "output_tokens": 20,
            "input_token_details": {"text_tokens": 10, "audio_tokens": 2, "cached_tokens": 0},
            "output_token_details": {"text_tokens": 5, "audio_tokens": 15},
        });
        self.send_event(json!({"type": "response.done", "response": response}))
            .await
    }
}

#[cfg(test)]
mod tests {
    use crate::test_client::{connect, next_frame, next_json, send, T};
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
}
