//! One sideband: a WebSocket attached to a call with `?call_id=`. It sends nothing on open
//! (OpenAI's sideband has no `session.created`); the call's task writes the call's server events
//! to it, and what the client sends is recorded (as a WebSocket message, and as the call's client
//! event from this sideband) and handed to the call to answer. Started by the upgrade handler
//! once it has attached the socket to a known call; it ends when the client closes or goes away,
//! or when the call ends: then it is closed with 1000 and recorded as closed by the fake.

use std::time::Duration;

use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, Session};

use super::msg::{Handle, Input};
use crate::connection::{close_code_for, closed, End};
use crate::recorder::{Closed, Frame, Recorder, Source};

/// How long a sideband waits for the client's answer after the call ended and closed it.
const CLOSE_ANSWER_GRACE: Duration = Duration::from_secs(5);

/// Why the fake closed a sideband when its call ended.
const CALL_ENDED: &str = "closed by the fake upstream: 1000 call ended";

/// One attached sideband; see the module docs.
pub(crate) struct Sideband<'a> {
    /// Its connection number (from the recorder, like every upgrade).
    pub(crate) connection: u64,
    pub(crate) call: Handle,
    pub(crate) recorder: &'a Recorder,
    /// [`crate::Script::record_messages`].
    pub(crate) keep: bool,
}

impl Sideband<'_> {
    /// Serves `session`, already attached to the call, until it ends; returns how it ended.
    pub(crate) async fn run(self, session: Session, mut stream: AggregatedMessageStream) -> Closed {
        let mut ended = self.call.ended.clone();
        let mut deadline = None;
        loop {
            let next = tokio::select! {
                next = stream.recv() => next,
                // The sender going away (the fake stopping) ends the call too.
                _ = ended.wait_for(|ended| *ended), if deadline.is_none() => {
                    // The call's task closed this sideband already; closing again is harmless
                    // and covers a sideband that attached as the call was ending.
                    close_normally(session.clone()).await;
                    deadline = Some(tokio::time::Instant::now() + CLOSE_ANSWER_GRACE);
                    continue;
                }
                () = sleep_until(deadline), if deadline.is_some() => None,
            };
            let msg = match next {
                None if deadline.is_some() => {
                    return closed(self.connection, End::FakeClosed(CALL_ENDED.into()))
                }
                None => return closed(self.connection, End::Abrupt("stream ended".into())),
                Some(Err(err)) => return self.failed(session, &err).await,
                Some(Ok(msg)) => msg,
            };
            match msg {
                AggregatedMessage::Text(text) => {
                    self.record(Frame::Text(text.to_string()));
                    let event = Input::Client {
                        source: Source::Sideband,
                        connection: Some(self.connection),
                        text: text.to_string(),
                    };
                    // A call that has ended answers nothing; its end closes this sideband.
                    let _ = self.call.inbox.send(event).await;
                }
                AggregatedMessage::Binary(bytes) => self.record(Frame::Binary(bytes.to_vec())),
                AggregatedMessage::Ping(bytes) => {
                    let _ = session.clone().pong(&bytes).await;
                }
                AggregatedMessage::Pong(_) => {}
                AggregatedMessage::Close(reason) => {
                    if deadline.is_none() {
                        let echo = reason.as_ref().map(|r| CloseReason {
                            code: r.code,
                            description: None,
                        });
                        let _ = session.close(echo).await;
                    }
                    return closed(self.connection, End::ClientClose(reason));
                }
            }
        }
    }

    fn record(&self, frame: Frame) {
        if self.keep {
            self.recorder.record_message(self.connection, frame);
        } else {
            self.recorder.count_message();
        }
    }

    /// A frame the fake cannot accept is answered with a Close; a failed connection just ends.
    async fn failed(&self, session: Session, err: &actix_ws::ProtocolError) -> Closed {
        let Some(code) = close_code_for(err) else {
            return closed(
                self.connection,
                End::Abrupt(format!("connection failed: {err}")),
            );
        };
        let reason = CloseReason {
            code,
            description: None,
        };
        let _ = session.close(Some(reason)).await;
        let why = format!(
            "closed by the fake upstream: {} after a protocol error: {err}",
            u16::from(code)
        );
        closed(self.connection, End::FakeClosed(why))
    }
}

/// Closes `session` with 1000, "call ended".
async fn close_normally(session: Session) {
    let reason = CloseReason {
        code: CloseCode::Normal,
        description: Some("call ended".into()),
    };
    let _ = session.close(Some(reason)).await;
}

/// Waits until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
