//! One WebRTC call's task: it owns the call's peer connection and its [`Demo`], and handles the
//! call's [`Input`]s one at a time, so every server event reaches the data channel and each
//! sideband ([`Fanout`]) in order. Client events from the data channel and from sidebands are
//! recorded and answered alike. Spawned by the calls endpoint once the SDP answer is made; it
//! ends on a hangup or when the browser's side goes away: then it closes every sideband with
//! 1000, closes the peer connection and records how the call ended.

use std::sync::Arc;

use actix_ws::{CloseCode, CloseReason, Session};
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};
use webrtc::data_channel::DataChannel;
use webrtc::peer_connection::PeerConnection;

use super::msg::Input;
use crate::demo::{Demo, Outbox};
use crate::recorder::{CallEnd, CallEvent, Recorder};

/// Sidebands one call feeds at most; one more is closed with 1008 as it attaches.
const MAX_SIDEBANDS: usize = 16;

/// Where a call's server events go: its data channel once open, and every attached sideband.
/// A receiver that fails is dropped; the call goes on without it.
#[derive(Default)]
pub(crate) struct Fanout {
    channel: Option<Arc<dyn DataChannel>>,
    sidebands: Vec<(u64, Session)>,
}

impl Outbox for Fanout {
    async fn text(&mut self, text: String) -> Result<(), actix_ws::Closed> {
        if let Some(channel) = &self.channel {
            if let Err(err) = channel.send_text(&text).await {
                log::debug!("fake upstream lost a call's data channel error={err}");
                self.channel = None;
            }
        }
        let mut kept = Vec::with_capacity(self.sidebands.len());
        for (connection, mut session) in self.sidebands.drain(..) {
            if session.text(text.clone()).await.is_ok() {
                kept.push((connection, session));
            }
        }
        self.sidebands = kept;
        Ok(())
    }
}

/// One open call; see the module docs.
pub(crate) struct Call {
    call_id: String,
    demo: Demo<Fanout>,
    peer: Arc<dyn PeerConnection>,
    recorder: Arc<Recorder>,
    /// [`crate::Script::record_messages`]: keep the client events, or only count them.
    keep_events: bool,
    ended: watch::Sender<bool>,
}

impl Call {
    /// Call `call_id`, answering with `demo` over `peer`; `ended` tells sidebands and the
    /// registry when it is over.
    pub(crate) fn new(
        call_id: String,
        demo: Demo<Fanout>,
        peer: Arc<dyn PeerConnection>,
        recorder: Arc<Recorder>,
        keep_events: bool,
        ended: watch::Sender<bool>,
    ) -> Call {
        Call {
            call_id,
            demo,
            peer,
            recorder,
            keep_events,
            ended,
        }
    }

    /// Handles `inbox` until the call ends.
    pub(crate) async fn run(mut self, mut inbox: mpsc::Receiver<Input>) {
        let (end, answer) = loop {
            // The peer's callbacks hold a sender, so the queue outlives every other sender.
            let Some(input) = inbox.recv().await else {
                break (CallEnd::PeerGone, None);
            };
            if let Some(end) = self.handle(input).await {
                break end;
            }
        };
        self.end(end).await;
        if let Some(done) = answer {
            let _ = done.send(());
        }
    }

    /// Handles one input; `Some` when it ends the call (with the hangup to answer, if any).
    async fn handle(&mut self, input: Input) -> Option<(CallEnd, Option<oneshot::Sender<()>>)> {
        match input {
            Input::Client {
                source,
                connection,
                text,
            } => {
                // Recorded before it is answered: whoever sees the answer sees the record.
                let event = CallEvent {
                    call_id: self.call_id.clone(),
                    source,
                    connection,
                    text: text.clone(),
                };
                self.recorder.record_call_event(event, self.keep_events);
                // A Fanout never fails: the call outlives any one receiver.
                let _ = self.demo.handle(&text).await;
            }
            Input::ChannelOpen(channel) => {
                self.demo.out_mut().channel = Some(channel);
                let created = json!({"type": "session.created", "session": self.demo.session()});
                let _ = self.demo.send_event(created).await;
                self.recorder.record_data_channel(&self.call_id);
                log::debug!(
                    "fake upstream call opened its data channel call={}",
                    self.call_id
                );
            }
            Input::Attach {
                connection,
                session,
            } => {
                let sidebands = &mut self.demo.out_mut().sidebands;
                if sidebands.len() < MAX_SIDEBANDS {
                    sidebands.push((connection, session));
                } else {
                    let reason = CloseReason {
                        code: CloseCode::Policy,
                        description: Some("too many sidebands on this call".into()),
                    };
                    let _ = session.close(Some(reason)).await;
                }
            }
            Input::Push { event, done } => {
                let _ = self.demo.send_event(event).await;
                let _ = done.send(());
            }
            Input::Respond { done } => {
                let _ = self.demo.handle(r#"{"type":"response.create"}"#).await;
                let _ = done.send(());
            }
            Input::Hangup { done } => return Some((CallEnd::HungUp, Some(done))),
            Input::PeerGone => return Some((CallEnd::PeerGone, None)),
        }
        None
    }

    /// Closes every sideband with 1000, then the peer connection, and records the end.
    async fn end(&mut self, end: CallEnd) {
        log::debug!("fake upstream call ended call={} end={end:?}", self.call_id);
        self.ended.send_replace(true);
        let fanout = self.demo.out_mut();
        fanout.channel = None;
        for (_, session) in fanout.sidebands.drain(..) {
            let reason = CloseReason {
                code: CloseCode::Normal,
                description: Some("call ended".into()),
            };
            let _ = session.close(Some(reason)).await;
        }
        if let Err(err) = self.peer.close().await {
            log::debug!(
                "fake upstream could not close a call's peer call={} error={err}",
                self.call_id
            );
        }
        self.recorder.record_call_end(&self.call_id, end);
    }
}
