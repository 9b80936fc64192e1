//! Streams one demo response: `response.created`, the output item and its content part, a
//! transcript (or text) delta and an audio delta (none on a WebRTC call, where audio is media)
//! for each piece of a [`Reply`], the `done` events, and `response.done` with the reply's
//! usage. Called by the demo server for `response.create` and after server VAD commits a turn;
//! it ends with the response, or early when the client is gone or
//! [`crate::Script::drop_after_deltas`] says so.

use serde_json::{json, Value};

use super::reply::Reply;
use super::{Demo, Outbox};

/// `event` with the fields of `extra` added.
fn with(mut event: Value, extra: &Value) -> Value {
    if let (Value::Object(e), Value::Object(x)) = (&mut event, extra) {
        for (k, v) in x {
            e.insert(k.clone(), v.clone());
        }
    }
    event
}

impl<O: Outbox> Demo<O> {
    /// The script's pause before a streamed delta, if any.
    async fn delta_pause(&self) {
        if !self.delta_delay.is_zero() {
            tokio::time::sleep(self.delta_delay).await;
        }
    }

    /// Sends one delta event of a response, `sent` so far before it. Once
    /// [`crate::Script::drop_after_deltas`] have gone out, marks the demo's connection for
    /// dropping and answers `Err` so the response stops there.
    async fn send_delta(&mut self, delta: Value, sent: &mut usize) -> Result<(), actix_ws::Closed> {
        self.send_event(delta).await?;
        *sent += 1;
        if self.drop_after_deltas == Some(*sent) {
            self.dropped_after = Some(*sent);
            return Err(actix_ws::Closed);
        }
        Ok(())
    }

    /// Streams `reply` as audio with a transcript, or as text when asked for text only.
    pub(super) async fn respond(
        &mut self,
        reply: Reply,
        text_only: bool,
    ) -> Result<(), actix_ws::Closed> {
        let response_id = self.names.object_id("resp");
        let item_id = self.names.object_id("item");
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
        let transcript = reply.transcript();
        let mut deltas = 0;
        if text_only {
            for piece in reply.pieces() {
                self.delta_pause().await;
                let delta = json!({"type": "response.output_text.delta", "delta": piece});
                self.send_delta(with(delta, &part_at), &mut deltas).await?;
            }
            let done = json!({"type": "response.output_text.done", "text": transcript});
            self.send_event(with(done, &part_at)).await?;
        } else {
            for (index, piece) in reply.pieces().iter().enumerate() {
                if self.audio_deltas {
                    self.delta_pause().await;
                    let sound = reply.audio(index);
                    let audio = json!({"type": "response.output_audio.delta", "delta": sound});
                    self.send_delta(with(audio, &part_at), &mut deltas).await?;
                }
                self.delta_pause().await;
                let said =
                    json!({"type": "response.output_audio_transcript.delta", "delta": piece});
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
        response["usage"] = reply.usage(text_only);
        self.send_event(json!({"type": "response.done", "response": response}))
            .await
    }
}
