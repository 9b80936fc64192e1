//! What a call's task is told ([`Input`], one queue, handled in order), a call's address
//! ([`Handle`]), and [`UnknownCall`] for an id that names no open call. A leaf: the peer's
//! callbacks, sidebands, the HTTP handlers and the test API send these; `call.rs` handles them.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use webrtc::data_channel::DataChannel;

use crate::recorder::Source;

/// The call named is not open on this fake: never made, hung up, or gone.
#[derive(Debug)]
pub struct UnknownCall;

impl fmt::Display for UnknownCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no open call with that id on the fake upstream")
    }
}

impl std::error::Error for UnknownCall {}

/// Inputs a call's queue holds at most; senders wait when it is full.
pub(crate) const INBOX: usize = 64;

/// One thing for a call's task to do.
pub(crate) enum Input {
    /// A client event from the data channel or a sideband (`connection`): record it and
    /// answer it.
    Client {
        source: Source,
        connection: Option<u64>,
        text: String,
    },
    /// The `oai-events` data channel opened: send `session.created` on it.
    ChannelOpen(Arc<dyn DataChannel>),
    /// A sideband attached: it gets every server event from now on.
    Attach {
        connection: u64,
        session: actix_ws::Session,
    },
    /// A test's server event: send it, then answer.
    Push {
        event: Value,
        done: oneshot::Sender<()>,
    },
    /// A test's `response.create`: run one response, then answer.
    Respond { done: oneshot::Sender<()> },
    /// A hangup request: end the call, then answer.
    Hangup { done: oneshot::Sender<()> },
    /// The browser's side went away (peer connection failed or closed, data channel closed).
    PeerGone,
}

/// A call's address: its queue, and whether it has ended.
#[derive(Clone)]
pub(crate) struct Handle {
    pub(crate) inbox: mpsc::Sender<Input>,
    pub(crate) ended: watch::Receiver<bool>,
}

impl Handle {
    /// Whether the call has ended (it answers nothing more).
    pub(crate) fn is_ended(&self) -> bool {
        *self.ended.borrow() || self.inbox.is_closed()
    }

    /// Sends the input `make` builds around an answer channel, and waits for the answer.
    /// [`UnknownCall`] when the call ended before answering.
    pub(crate) async fn ask(
        &self,
        make: impl FnOnce(oneshot::Sender<()>) -> Input,
    ) -> Result<(), UnknownCall> {
        let (done, answered) = oneshot::channel();
        self.inbox.send(make(done)).await.map_err(|_| UnknownCall)?;
        answered.await.map_err(|_| UnknownCall)
    }
}
