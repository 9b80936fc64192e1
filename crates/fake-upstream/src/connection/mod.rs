//! One upgraded WebSocket: `Connection::run` sends `session.created` and whatever else the
//! script says to send on open, then reads until the client closes or goes away, answering as its
//! [`Mode`] says (`demo.rs` for the demo server, with `hearing.rs`, `reply.rs`, `respond.rs` and
//! `pcm.rs`; `stream.rs` for the streamer). It records every message and how the connection
//! ended. Started by `server.rs` per upgrade; ends with the socket.

mod demo;
mod hearing;
mod pcm;
mod reply;
mod respond;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use actix_web::web::Bytes;
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, Session};
use serde_json::{json, Map, Value};

use crate::recorder::{Closed, Frame, Recorder};
use crate::script::{Mode, Script};
use hearing::Ear;
use reply::Prompt;
use stream::stream_deltas;

/// How long a connection waits for the client's answer after the fake sent a Close frame.
const CLOSE_ANSWER_GRACE: Duration = Duration::from_secs(5);

/// How often a connection that stopped reading ([`Script::stop_reading`]) pings the client to
/// find out whether it is still there.
const STALLED_PROBE_EVERY: Duration = Duration::from_millis(100);

/// How a connection's read loop ended, before it is turned into a [`Closed`].
enum End {
    /// The client sent a Close frame.
    ClientClose(Option<CloseReason>),
    /// The fake sent a Close frame first and the stream then ended.
    FakeClosed(String),
    /// The stream ended without a Close frame from either side.
    Abrupt(String),
}

/// One open WebSocket connection.
pub(crate) struct Connection {
    id: u64,
    script: Script,
    model: String,
    recorder: Arc<Recorder>,
    session: Session,
    next_event: u64,
    next_id: u64,
    /// The session object as last announced, updated by `session.update` in demo mode.
    session_config: Value,
    /// Set by the demo response when it has sent [`Script::drop_after_deltas`] deltas: the read
    /// loop then drops the connection. Holds the number of deltas sent.
    dropping_after: Option<usize>,
    /// Demo mode: the input audio buffer, counted, and server VAD's state.
    ear: Ear,
    /// Demo mode: the item of the speech server VAD has heard start, until it stops.
    speech_item: Option<String>,
    /// Demo mode: what the next response answers.
    prompt: Prompt,
}

impl Connection {
    /// Connection number `id` (from 1), for a client that asked for `model`, doing what
    /// `script` says; what it sees goes to `recorder`, what it sends to `session`.
    pub(crate) fn new(
        id: u64,
        script: Script,
        model: String,
        recorder: Arc<Recorder>,
        session: Session,
    ) -> Connection {
        Connection {
            id,
            script,
            model,
            recorder,
            session,
            next_event: 0,
            next_id: 0,
            session_config: Value::Null,
            dropping_after: None,
            ear: Ear::default(),
            speech_item: None,
            prompt: Prompt::Nothing,
        }
    }

    /// Serves the connection until it ends; returns how it ended.
    pub(crate) async fn run(mut self, mut stream: AggregatedMessageStream) -> Closed {
        self.session_config = json!({
            "type": "realtime",
            "object": "realtime.session",
            "id": format!("sess_fake{:06}", self.id),
            "model": self.model,
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
        if self.script.send_session_created {
            let event = json!({"type": "session.created", "session": self.session_config});
            if self.send_event(event).await.is_err() {
                return self.closed(End::Abrupt(
                    "client went away before session.created".into(),
                ));
            }
        }
        for frame in self.script.frames_after_open.clone() {
            if self.session.text(frame).await.is_err() {
                return self.closed(End::Abrupt(
                    "client went away during frames_after_open".into(),
                ));
            }
        }
        if self.script.drop_after_open {
            // Dropping both halves ends the response body and the request payload: the server
            // closes the TCP connection without a Close frame.
            drop(stream);
            return self.closed(End::Abrupt("dropped by the fake upstream".into()));
        }
        let mut fake_closed = None;
        if let Some((code, reason)) = self.script.close_after_open.clone() {
            fake_closed = Some(format!("closed by the fake upstream: {code} {reason}"));
            let reason = CloseReason {
                code: CloseCode::from(code),
                description: Some(reason),
            };
            let _ = self.session.clone().close(Some(reason)).await;
        }

        let streamer = match (&self.script.mode, &fake_closed) {
            (
                Mode::Stream {
                    message_bytes,
                    interval,
                    count,
                },
                None,
            ) => Some(actix_web::rt::spawn(stream_deltas(
                self.session.clone(),
                *message_bytes,
                *interval,
                *count,
            ))),
            _ => None,
        };
        let end = if self.script.stop_reading && fake_closed.is_none() {
            // `stream` stays alive, unpolled, until the connection is found gone.
            self.stalled().await
        } else {
            self.read(&mut stream, fake_closed).await
        };
        if let Some(streamer) = streamer {
            streamer.abort();
        }
        self.closed(end)
    }

    /// Never reads again (so what the client sends backs up in the kernel's buffers and then
    /// the client's), and keeps the connection open until the client is found gone: a ping every
    /// [`STALLED_PROBE_EVERY`] fails once actix-web has dropped the connection, which it does
    /// when a write fails (a peer that closed its socket answers data with a reset). Close frames
    /// cannot be seen without reading, so the end is recorded as abrupt.
    async fn stalled(&mut self) -> End {
        loop {
            tokio::time::sleep(STALLED_PROBE_EVERY).await;
            if self.session.ping(b"stalled").await.is_err() {
                return End::Abrupt("the client went away while the fake was not reading".into());
            }
        }
    }

    /// Reads until the client closes or goes away. `fake_closed` says why, if the fake has
    /// already sent its Close frame.
    async fn read(
        &mut self,
        stream: &mut AggregatedMessageStream,
        mut fake_closed: Option<String>,
    ) -> End {
        // Once a reply fails the client is gone or closing: keep reading, stop answering.
        let mut replying = fake_closed.is_none();
        let mut deadline = None;
        loop {
            if fake_closed.is_some() && deadline.is_none() {
                deadline = Some(tokio::time::Instant::now() + CLOSE_ANSWER_GRACE);
            }
            let next = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, stream.recv())
                    .await
                    .unwrap_or(None),
                None => stream.recv().await,
            };
            let msg = match next {
                // actix-ws ends the stream as soon as the fake's own Close is flushed, so the
                // client's answer to it is usually not seen.
                None => {
                    return match fake_closed {
                        Some(why) => End::FakeClosed(why),
                        None => End::Abrupt("stream ended without a Close frame".into()),
                    }
                }
                Some(Err(err)) => {
                    log::debug!(
                        "fake upstream read a bad frame connection={} error={err}",
                        self.id
                    );
                    if fake_closed.is_some() {
                        continue;
                    }
                    let Some(code) = close_code_for(&err) else {
                        return End::Abrupt(format!("connection failed: {err}"));
                    };
                    let reason = CloseReason {
                        code,
                        description: None,
                    };
                    let _ = self.session.clone().close(Some(reason)).await;
                    fake_closed = Some(format!(
                        "closed by the fake upstream: {} after a protocol error: {err}",
                        u16::from(code)
                    ));
                    replying = false;
                    continue;
                }
                Some(Ok(msg)) => msg,
            };
            match msg {
                AggregatedMessage::Text(text) => {
                    if self.script.record_messages {
                        self.recorder
                            .record_message(self.id, Frame::Text(text.to_string()));
                    } else {
                        self.recorder.count_message();
                    }
                    let replied = match self.script.mode {
                        _ if !replying => Ok(()),
                        Mode::Echo => self.session.text(text).await,
                        Mode::Demo => self.demo(&text).await,
                        Mode::Silent | Mode::Stream { .. } => Ok(()),
                    };
                    replying &= replied.is_ok();
                    if let Some(deltas) = self.dropping_after {
                        // Returning drops the stream and the session: the TCP connection ends
                        // without a Close frame, after what was already queued.
                        return End::Abrupt(format!(
                            "dropped by the fake upstream after {deltas} deltas"
                        ));
                    }
                }
                AggregatedMessage::Binary(bytes) => {
                    if self.script.record_messages {
                        self.recorder
                            .record_message(self.id, Frame::Binary(bytes.to_vec()));
                    } else {
                        self.recorder.count_message();
                    }
                    if replying && self.on_binary(bytes).await.is_err() {
                        replying = false;
                    }
                }
                AggregatedMessage::Ping(bytes) => {
                    let _ = self.session.pong(&bytes).await;
                }
                AggregatedMessage::Pong(_) => {}
                AggregatedMessage::Close(reason) => {
                    if fake_closed.is_none() {
                        let echo = reason.as_ref().map(|r| CloseReason {
                            code: r.code,
                            description: None,
                        });
                        let _ = self.session.clone().close(echo).await;
                    }
                    return End::ClientClose(reason);
                }
            }
        }
    }

    fn closed(&self, end: End) -> Closed {
        match end {
            End::ClientClose(reason) => Closed {
                connection: self.id,
                code: reason.as_ref().map(|r| u16::from(r.code)),
                reason: reason.and_then(|r| r.description).unwrap_or_default(),
                abrupt: false,
            },
            End::FakeClosed(reason) => Closed {
                connection: self.id,
                code: None,
                reason,
                abrupt: false,
            },
            End::Abrupt(reason) => Closed {
                connection: self.id,
                code: None,
                reason,
                abrupt: true,
            },
        }
    }

    async fn on_binary(&mut self, bytes: Bytes) -> Result<(), actix_ws::Closed> {
        match self.script.mode {
            Mode::Echo => self.session.binary(bytes).await,
            Mode::Demo => {
                let error = Self::error_event(
                    "invalid_request_error",
                    "invalid_message",
                    "Binary frames are not supported; send JSON text events.",
                    None,
                    None,
                );
                self.send_event(error).await
            }
            Mode::Silent | Mode::Stream { .. } => Ok(()),
        }
    }

    fn event_id(&mut self) -> String {
        self.next_event += 1;
        format!("event_{}_{}", self.id, self.next_event)
    }

    fn object_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!(
            "{prefix}_fake{}x{}x{}",
            self.recorder.run, self.id, self.next_id
        )
    }

    /// Sends `event` after giving it an `event_id` (kept second, after `type`, as OpenAI does).
    async fn send_event(&mut self, event: Value) -> Result<(), actix_ws::Closed> {
        let mut out = Map::new();
        let Value::Object(fields) = event else {
            return self.session.text(event.to_string()).await;
        };
        let mut fields = fields;
        if let Some(kind) = fields.remove("type") {
            out.insert("type".into(), kind);
        }
        out.insert("event_id".into(), Value::String(self.event_id()));
        out.extend(fields);
        self.session.text(Value::Object(out).to_string()).await
    }
}

/// The Close code answering a frame the fake cannot accept; None when the connection itself failed.
fn close_code_for(err: &actix_ws::ProtocolError) -> Option<CloseCode> {
    match err {
        actix_ws::ProtocolError::Overflow => Some(CloseCode::Size),
        // actix-ws reports an oversized aggregated message as an I/O error with this text.
        actix_ws::ProtocolError::Io(e) if e.to_string().contains("maximum continuation size") => {
            Some(CloseCode::Size)
        }
        actix_ws::ProtocolError::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            Some(CloseCode::Invalid)
        }
        actix_ws::ProtocolError::Io(_) => None,
        _ => Some(CloseCode::Protocol),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_client::{connect, next_frame, next_json, send, T};
    use crate::{FakeUpstream, Frame, Script};
    use awc::ws::{self, CloseCode, CloseReason};
    use futures_util::SinkExt;

    /// Echo mode returns each text and binary frame byte for byte, and records both in order.
    #[actix_web::test]
    async fn echo_returns_frames_unchanged() {
        let fake = FakeUpstream::start(Script::echo()).await.unwrap();
        let (_, mut framed) = connect(&fake.url()).await;
        assert_eq!(next_json(&mut framed).await["type"], "session.created");

        let text = r#"{"type":"input_audio_buffer.append","event_id":"evt_42","audio":"AAAA"}"#;
        send(&mut framed, ws::Message::Text(text.into())).await;
        match next_frame(&mut framed).await {
            Some(Ok(ws::Frame::Text(got))) => assert_eq!(&got[..], text.as_bytes()),
            other => panic!("expected the text back, got {other:?}"),
        }
        let bin = Bytes::from_static(&[0, 159, 146, 150, 255]);
        send(&mut framed, ws::Message::Binary(bin.clone())).await;
        match next_frame(&mut framed).await {
            Some(Ok(ws::Frame::Binary(got))) => assert_eq!(got, bin),
            other => panic!("expected the binary back, got {other:?}"),
        }

        let got = fake.recorder().wait_messages(2, T).await.unwrap();
        assert_eq!(got[0].connection, 1);
        assert_eq!(got[0].frame, Frame::Text(text.to_owned()));
        assert_eq!(got[1].frame, Frame::Binary(bin.to_vec()));
        fake.stop().await;
    }

    /// A client's Close frame is recorded with its code and reason, and answered with the same code.
    #[actix_web::test]
    async fn client_close_is_recorded_and_echoed() {
        let fake = FakeUpstream::start(Script::silent()).await.unwrap();
        let (_, mut framed) = connect(&fake.url()).await;
        assert_eq!(next_json(&mut framed).await["type"], "session.created");
        assert_eq!(fake.recorder().open_connections(), 1);
        let reason = CloseReason {
            code: CloseCode::Away,
            description: Some("bye".into()),
        };
        send(&mut framed, ws::Message::Close(Some(reason))).await;
        match next_frame(&mut framed).await {
            Some(Ok(ws::Frame::Close(Some(r)))) => assert_eq!(r.code, CloseCode::Away),
            other => panic!("expected a close echo, got {other:?}"),
        }
        let closes = fake.recorder().wait_closes(1, T).await.unwrap();
        assert_eq!(closes[0].code, Some(1001));
        assert_eq!(closes[0].reason, "bye");
        assert!(!closes[0].abrupt);
        assert_eq!(fake.recorder().open_connections(), 0);
        fake.stop().await;
    }

    /// A client that goes away without a Close frame is recorded as abrupt.
    #[actix_web::test]
    async fn vanished_client_is_abrupt() {
        let fake = FakeUpstream::start(Script::silent()).await.unwrap();
        let (_, mut framed) = connect(&fake.url()).await;
        assert_eq!(next_json(&mut framed).await["type"], "session.created");
        drop(framed);
        let closes = fake.recorder().wait_closes(1, T).await.unwrap();
        assert!(closes[0].abrupt);
        assert_eq!(closes[0].code, None);
        fake.stop().await;
    }

    /// close_after_open sends session.created, then a Close with the scripted code and reason.
    #[actix_web::test]
    async fn close_after_open_sends_the_scripted_close() {
        let fake = FakeUpstream::start(Script {
            close_after_open: Some((4000, "invalid_request_error.beta_api_shape_disabled".into())),
            ..Script::demo()
        })
        .await
        .unwrap();
        let (_, mut framed) = connect(&fake.url()).await;
        assert_eq!(next_json(&mut framed).await["type"], "session.created");
        match next_frame(&mut framed).await {
            Some(Ok(ws::Frame::Close(Some(r)))) => {
                assert_eq!(u16::from(r.code), 4000);
                assert_eq!(
                    r.description.as_deref(),
                    Some("invalid_request_error.beta_api_shape_disabled")
                );
            }
            other => panic!("expected a close, got {other:?}"),
        }
        let _ = framed
            .send(ws::Message::Close(Some(CloseCode::from(4000).into())))
            .await;
        let closes = fake.recorder().wait_closes(1, T).await.unwrap();
        assert!(!closes[0].abrupt);
        if closes[0].code.is_none() {
            assert!(closes[0].reason.contains("4000"), "{:?}", closes[0]);
        }
        fake.stop().await;
    }

    /// drop_after_open ends the connection after session.created with no Close frame.
    #[actix_web::test]
    async fn drop_after_open_sends_no_close() {
        let fake = FakeUpstream::start(Script {
            drop_after_open: true,
            ..Script::echo()
        })
        .await
        .unwrap();
        let (_, mut framed) = connect(&fake.url()).await;
        assert_eq!(next_json(&mut framed).await["type"], "session.created");
        match next_frame(&mut framed).await {
            None | Some(Err(_)) => {}
            Some(Ok(frame)) => panic!("expected the connection to end, got {frame:?}"),
        }
        let closes = fake.recorder().wait_closes(1, T).await.unwrap();
        assert!(closes[0].abrupt);
        fake.stop().await;
    }

    /// With record_messages off, messages are still echoed and counted but not kept.
    #[actix_web::test]
    async fn unrecorded_messages_are_counted_only() {
        let fake = FakeUpstream::start(Script {
            record_messages: false,
            ..Script::echo()
        })
        .await
        .unwrap();
        let (_, mut framed) = connect(&fake.url()).await;
        assert_eq!(next_json(&mut framed).await["type"], "session.created");
        for text in ["one", "two"] {
            send(&mut framed, ws::Message::Text(text.into())).await;
            match next_frame(&mut framed).await {
                Some(Ok(ws::Frame::Text(got))) => assert_eq!(&got[..], text.as_bytes()),
                other => panic!("expected the echo, got {other:?}"),
            }
        }
        assert_eq!(fake.recorder().message_count(), 2);
        assert!(fake.recorder().messages().is_empty());
        fake.stop().await;
    }

    /// Messages far above the 64 KiB actix default are accepted, recorded and echoed whole.
    #[actix_web::test]
    async fn large_messages_are_accepted() {
        let fake = FakeUpstream::start(Script::echo()).await.unwrap();
        let connecting = awc::Client::new()
            .ws(fake.url())
            .max_frame_size(4 * 1024 * 1024)
            .connect();
        let (_, mut framed) = tokio::time::timeout(T, connecting).await.unwrap().unwrap();
        assert_eq!(next_json(&mut framed).await["type"], "session.created");
        let big = format!(
            r#"{{"type":"x","audio":"{}"}}"#,
            "A".repeat(3 * 1024 * 1024)
        );
        send(&mut framed, ws::Message::Text(big.clone().into())).await;
        match next_frame(&mut framed).await {
            Some(Ok(ws::Frame::Text(got))) => assert_eq!(got.len(), big.len()),
            other => panic!(
                "expected the big message back, got {:?}",
                other.map(|r| r.is_ok())
            ),
        }
        let got = fake.recorder().wait_messages(1, T).await.unwrap();
        assert_eq!(got[0].frame, Frame::Text(big));
        fake.stop().await;
    }

    /// frames_after_open follow session.created byte for byte and in order, JSON or not.
    #[actix_web::test]
    async fn frames_after_open_are_sent_unchanged() {
        let frames = vec![
            "hello".to_owned(),
            String::new(),
            r#"{"type":5}"#.to_owned(),
        ];
        let fake = FakeUpstream::start(Script {
            frames_after_open: frames.clone(),
            ..Script::echo()
        })
        .await
        .unwrap();
        let (_, mut framed) = connect(&fake.url()).await;
        assert_eq!(next_json(&mut framed).await["type"], "session.created");
        for want in &frames {
            match next_frame(&mut framed).await {
                Some(Ok(ws::Frame::Text(got))) => assert_eq!(&got[..], want.as_bytes()),
                other => panic!("expected {want:?}, got {other:?}"),
            }
        }
        // Then the script's mode goes on as usual.
        send(&mut framed, ws::Message::Text("after".into())).await;
        match next_frame(&mut framed).await {
            Some(Ok(ws::Frame::Text(got))) => assert_eq!(&got[..], b"after"),
            other => panic!("expected the echo, got {other:?}"),
        }
        fake.stop().await;
    }

    /// With stop_reading nothing the client sends is read, and a client that goes away is
    /// still noticed (recorded as abrupt).
    #[actix_web::test]
    async fn stop_reading_reads_nothing_and_notices_the_end() {
        let fake = FakeUpstream::start(Script {
            stop_reading: true,
            ..Script::echo()
        })
        .await
        .unwrap();
        let (_, mut framed) = connect(&fake.url()).await;
        assert_eq!(next_json(&mut framed).await["type"], "session.created");
        send(&mut framed, ws::Message::Text("unread".into())).await;
        drop(framed);
        let closes = fake.recorder().wait_closes(1, T).await.unwrap();
        assert!(closes[0].abrupt, "{:?}", closes[0]);
        assert_eq!(fake.recorder().message_count(), 0);
        fake.stop().await;
    }
}
