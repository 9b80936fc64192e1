//! The two pumps of an open upstream. `write_upstream` drains the session's `ToUpstream` queue
//! into the socket, batching what is waiting into one write. `read_upstream` relays every
//! upstream frame straight into the client's socket with backpressure, reassembling fragmented
//! messages within `MAX_MESSAGE_SIZE`, and glances at the first bytes of each text frame for the
//! few event types that carry usage (`protection/usage.rs`); nothing else is parsed.

use std::{cell::Cell, rc::Rc, time::Instant};

use actix::prelude::*;
use actix_web::web::{Bytes, BytesMut};
use actix_ws::ProtocolError;
use awc::ws::{Frame, Message};
use bytestring::ByteString;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use crate::{
    admission::msg::RecordUsage,
    close::CloseReason,
    ops::metrics::Flow,
    protection::usage::{self, Watched},
    session::{events::log_event, shared::Shared},
    upstream::wire,
};

/// Frames queued for the upstream writer; a full queue makes the client reader wait.
pub const WRITER_QUEUE: usize = 16;

/// The sending half of an open upstream: the session's client reader feeds it.
pub type ToUpstream = mpsc::Sender<Message>;

/// Drains the writer queue into the upstream socket, in order, until a close frame is written or
/// every sender is gone.
pub async fn write_upstream(mut rx: mpsc::Receiver<Message>, mut sink: wire::Writer) {
    while let Some(msg) = rx.recv().await {
        // Encode every frame already waiting, then write once: one write carries them all.
        let mut is_close = matches!(msg, Message::Close(_));
        if sink.encode(msg).is_err() {
            return;
        }
        while !is_close {
            let Ok(next) = rx.try_recv() else { break };
            is_close = matches!(next, Message::Close(_));
            if sink.encode(next).is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() || is_close {
            return;
        }
    }
}

/// What the upstream reader writes to: the client socket (and the upstream writer, for pongs).
pub struct ToClient {
    pub client: actix_ws::Session,
    pub writer: ToUpstream,
    pub shared: Rc<Shared>,
    pub draining: Rc<Cell<bool>>,
    pub flow: Flow,
    pub max_message_size: usize,
    pub session_id: u64,
    pub log_events: bool,
    /// Observed once, when the first upstream event is handed to the client.
    pub first_event: Option<(Instant, prometheus::Histogram)>,
    pub accounting: Accounting,
}

/// Where usage read off `response.done` goes.
pub struct Accounting {
    pub usage: Recipient<RecordUsage>,
    pub identity: String,
    pub model: String,
}

impl ToClient {
    /// Looks at the few event types that matter for accounting (a check of the first bytes;
    /// anything else is not parsed). Returns true when the session must now end because its
    /// budget is spent and the response in flight just completed.
    fn account(&self, text: &str) -> bool {
        let Some(kind) = usage::watched(text) else {
            return false;
        };
        let s = &self.shared;
        match kind {
            Watched::ResponseCreated => {
                s.responses_in_flight.set(s.responses_in_flight.get() + 1);
                return false;
            }
            Watched::ResponseDone => {
                s.responses_in_flight
                    .set(s.responses_in_flight.get().saturating_sub(1));
            }
            Watched::TranscriptionCompleted => {}
        }
        if let Some(used) = usage::parse_usage(text) {
            let mut total = s.usage.get();
            total.add(&used);
            s.usage.set(total);
            self.accounting.usage.do_send(RecordUsage {
                identity: self.accounting.identity.clone(),
                model: self.accounting.model.clone(),
                usage: used,
            });
        }
        kind == Watched::ResponseDone
            && s.budget_spent.get().is_some()
            && s.responses_in_flight.get() == 0
    }

    #[inline]
    fn record(&mut self, msg: &Message, len: usize) {
        self.flow.record(len);
        self.shared.upstream_to_client.record(len);
        if let Some((since, histogram)) = self.first_event.take() {
            histogram.observe(since.elapsed().as_secs_f64());
        }
        if self.log_events {
            log_event(self.session_id, "upstream_to_client", msg);
        }
    }
}

/// Relays upstream frames to the client until either side ends; returns why.
pub async fn read_upstream(
    replay: Vec<Message>,
    mut stream: wire::Reader,
    mut to: ToClient,
) -> CloseReason {
    let mut client = to.client.clone();
    let writer = to.writer.clone();
    let shared = to.shared.clone();
    let draining = to.draining.clone();
    let max_message_size = to.max_message_size;
    // Frames a pooled socket received before this session took it (`session.created`).
    for msg in replay {
        let len = match &msg {
            Message::Text(t) => t.len(),
            Message::Binary(b) => b.len(),
            _ => 0,
        };
        to.record(&msg, len);
        if client.send(msg).await.is_err() {
            return CloseReason::ClientGone;
        }
    }
    // A fragmented message being reassembled: whether it is text, and its bytes so far.
    let mut partial: Option<(bool, BytesMut)> = None;
    while let Some(frame) = stream.next().await {
        let (text, data): (bool, Bytes) = match frame {
            Ok(Frame::Text(b)) => (true, b),
            Ok(Frame::Binary(b)) => (false, b),
            Ok(Frame::Continuation(item)) => {
                use actix_ws::Item;
                let (first, chunk, last) = match item {
                    Item::FirstText(b) => (Some(true), b, false),
                    Item::FirstBinary(b) => (Some(false), b, false),
                    Item::Continue(b) => (None, b, false),
                    Item::Last(b) => (None, b, true),
                };
                match (first, partial.as_mut()) {
                    (Some(is_text), None) => partial = Some((is_text, BytesMut::from(&chunk[..]))),
                    (None, Some((_, buf))) => buf.extend_from_slice(&chunk),
                    _ => return CloseReason::UpstreamProtocolError,
                }
                let size = partial.as_ref().map_or(0, |(_, b)| b.len());
                if size > max_message_size {
                    return CloseReason::UpstreamMessageTooLarge {
                        limit: max_message_size,
                    };
                }
                if !last {
                    continue;
                }
                match partial.take() {
                    Some((is_text, buf)) => (is_text, buf.freeze()),
                    None => return CloseReason::UpstreamProtocolError,
                }
            }
            Ok(Frame::Ping(p)) => {
                // Answer for the relay; if the writer queue is full the upstream is not reading
                // anyway and a lost pong changes nothing.
                let _ = writer.try_send(Message::Pong(p));
                continue;
            }
            Ok(Frame::Pong(_)) => continue,
            Ok(Frame::Close(reason)) => {
                return CloseReason::UpstreamClosed {
                    code: reason.as_ref().map(|r| u16::from(r.code)),
                    reason: reason.and_then(|r| r.description).unwrap_or_default(),
                }
            }
            Err(ProtocolError::Overflow) => {
                return CloseReason::UpstreamMessageTooLarge {
                    limit: max_message_size,
                }
            }
            Err(ProtocolError::Io(_)) => return CloseReason::UpstreamGone,
            Err(_) => return CloseReason::UpstreamProtocolError,
        };
        if draining.get() {
            // Closing: wait for the upstream's close without relaying anything more.
            continue;
        }
        let len = data.len();
        let msg = if text {
            match ByteString::try_from(data) {
                Ok(s) => Message::Text(s),
                Err(_) => return CloseReason::UpstreamProtocolError,
            }
        } else {
            Message::Binary(data)
        };
        to.record(&msg, len);
        let budget_end = matches!(&msg, Message::Text(t) if to.account(t));
        shared.client_write_blocked.set(true);
        let sent = client.send(msg).await;
        shared.client_write_blocked.set(false);
        if sent.is_err() {
            return CloseReason::ClientGone;
        }
        if budget_end {
            if let Some(budget) = shared.budget_spent.get() {
                return CloseReason::BudgetExceeded { budget };
            }
        }
    }
    CloseReason::UpstreamGone
}
