//! One upgraded WebSocket: `Connection::run` sends `session.created` and whatever else the
//! script says to send on open, then reads until the client closes or goes away, answering as its
//! [`Mode`] says (the demo server in `crate::demo`; `stream.rs` for the streamer). It records
//! every message and how the connection ended. Started by `server.rs` per upgrade; ends with the
//! socket.

mod stream;

use std::sync::Arc;
use std::time::Duration;

use actix_web::web::Bytes;
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, Session};
use serde_json::json;

use crate::demo::{error_event, Demo};
use crate::recorder::{Closed, Frame, Recorder};
use crate::script::{Mode, Script};
use stream::stream_deltas;

/// How long a connection waits for the client's answer after the fake sent a Close frame.
const CLOSE_ANSWER_GRACE: Duration = Duration::from_secs(5);

/// How often a connection that stopped reading ([`Script::stop_reading`]) pings the client to
/// find out whether it is still there.
const STALLED_PROBE_EVERY: Duration = Duration::from_millis(100);

/// How a WebSocket's read loop ended, before it is turned into a [`Closed`].
pub(crate) enum End {
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
    recorder: Arc<Recorder>,
    session: Session,
    /// Announces the session in every mode; answers events in demo mode.
    demo: Demo<Session>,
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
        let demo = Demo::new(
            session.clone(),
            id.to_string(),
            &recorder.run,
            &model,
            &script,
        );
        Connection {
            id,
            script,
            recorder,
            session,
            demo,
        }
    }

    /// Serves the connection until it ends; returns how it ended.
    pub(crate) async fn run(mut self, mut stream: AggregatedMessageStream) -> Closed {
        if self.script.send_session_created {
            let event = json!({"type": "session.created", "session": self.demo.session()});
            if self.demo.send_event(event).await.is_err() {
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
                        Mode::Demo => self.demo.handle(&text).await,
                        Mode::Silent | Mode::Stream { .. } => Ok(()),
                    };
                    replying &= replied.is_ok();
                    if let Some(deltas) = self.demo.dropped_after() {
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
        closed(self.id, end)
    }

    async fn on_binary(&mut self, bytes: Bytes) -> Result<(), actix_ws::Closed> {
        match self.script.mode {
            Mode::Echo => self.session.binary(bytes).await,
            Mode::Demo => {
                let error = error_event(
                    "invalid_request_error",
                    "invalid_message",
                    "Binary frames are not supported; send JSON text events.",
                    None,
                    None,
                );
                self.demo.send_event(error).await
            }
            Mode::Silent | Mode::Stream { .. } => Ok(()),
        }
    }
}

/// The record of WebSocket connection `connection`, which ended as `end` says.
pub(crate) fn closed(connection: u64, end: End) -> Closed {
    match end {
        End::ClientClose(reason) => Closed {
            connection,
            code: reason.as_ref().map(|r| u16::from(r.code)),
            reason: reason.and_then(|r| r.description).unwrap_or_default(),
            abrupt: false,
        },
        End::FakeClosed(reason) => Closed {
            connection,
            code: None,
            reason,
            abrupt: false,
        },
        End::Abrupt(reason) => Closed {
            connection,
            code: None,
            reason,
            abrupt: true,
        },
    }
}

/// The Close code answering a frame the fake cannot accept; None when the connection itself failed.
pub(crate) fn close_code_for(err: &actix_ws::ProtocolError) -> Option<CloseCode> {
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
mod tests;
