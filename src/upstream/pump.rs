//! The upstream reader of an open upstream (the client reader writes the socket itself, through
//! `sender.rs`). `read_upstream` relays every
//! upstream frame straight into the client's socket with backpressure, reassembling fragmented
//! messages within `MAX_MESSAGE_SIZE`, and glances at the first bytes of each text frame for the
//! few event types that carry usage (`protection/usage.rs`) and, with a session policy that
//! hides fields, for `session.created`/`session.updated` (`protection/policy/`); nothing else is
//! parsed.

use std::{
    cell::{Cell, RefCell},
    future::Future,
    rc::Rc,
    sync::Arc,
    time::Instant,
};

use actix::prelude::*;
use actix_web::web::{Bytes, BytesMut};
use awc::ws::{CloseReason as CloseFrame, Frame, Message};
use bytestring::ByteString;
use futures_util::{SinkExt, StreamExt};

use crate::{
    admission::msg::RecordUsage,
    close::SessionEnd,
    ops::metrics::Flow,
    protection::{
        policy::Applied,
        pricing::{Pricing, Source},
        usage::{self, Watched},
    },
    session::{events::log_event, shared::Shared},
    upstream::{
        backlog::{Backlog, CLIENT_BACKLOG},
        sender::ToUpstream,
        wire,
    },
};

/// What the relay sends the upstream when it ends a session with a response in flight.
pub(crate) const RESPONSE_CANCEL: &str = r#"{"type":"response.cancel","event_id":"relay_cancel"}"#;

/// Set once the relay closes the upstream: relay nothing more, keep counting usage, and send the
/// held close frame once no response is in flight.
#[derive(Default)]
pub(crate) struct Closing {
    pub(crate) draining: Cell<bool>,
    /// The relay's close frame, held until the last `response.done` has been read.
    pub(crate) held: RefCell<Option<CloseFrame>>,
}

/// What the upstream reader writes to: the client socket (and the upstream writer, for pongs).
pub(crate) struct ToClient {
    pub(crate) client: actix_ws::Session,
    pub(crate) writer: ToUpstream,
    pub(crate) shared: Rc<Shared>,
    pub(crate) closing: Rc<Closing>,
    pub(crate) flow: Flow,
    pub(crate) max_message_size: usize,
    pub(crate) session_id: u64,
    pub(crate) log_events: bool,
    /// Observed once, when the first upstream event is handed to the client.
    pub(crate) first_event: Option<(Instant, prometheus::Histogram)>,
    pub(crate) accounting: Accounting,
    /// False for a client attached to a WebRTC call (`?call_id=`): the call's own sideband
    /// counts its usage, once.
    pub(crate) metered: bool,
    /// Counts responses that ended without usage (`relay_unaccounted_responses_total`).
    pub(crate) unaccounted: prometheus::IntCounter,
    /// The session policy, when it hides fields of `session.created`/`session.updated`.
    pub(crate) hiding: Option<Arc<Applied>>,
    /// Bytes handed to actix-ws and not yet taken by the client's connection.
    pub(crate) backlog: Backlog,
}

/// Where usage read off `response.done` goes, and what it costs.
pub(crate) struct Accounting {
    pub(crate) usage: Recipient<RecordUsage>,
    pub(crate) identity: String,
    pub(crate) model: String,
    pub(crate) pricing: Arc<Pricing>,
}

impl Accounting {
    /// Looks at the few event types that matter for accounting (a check of the first bytes;
    /// anything else is not parsed): counts responses in flight in `s`, prices and reports the
    /// usage a report carries, counts a `response.done` without usage in `unaccounted`. Returns
    /// true when the session must now end because its budget is spent and the response in
    /// flight just completed. The WebSocket upstream reader and a call's sideband both use it.
    pub(crate) fn account(
        &self,
        s: &Shared,
        unaccounted: &prometheus::IntCounter,
        text: &str,
    ) -> bool {
        let Some(kind) = usage::watched(text) else {
            return false;
        };

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
        let reported = usage::parse_usage(text);
        if reported.is_none() && kind == Watched::ResponseDone {
            unaccounted.inc();
        }
        if let Some(mut reported) = reported {
            let source = match kind {
                Watched::TranscriptionCompleted => Source::Transcription,
                _ => Source::Response,
            };
            self.pricing.price(&self.model, source, &mut reported.usage);
            let mut total = s.usage.get();
            total.add(&reported.usage);
            s.usage.set(total);
            self.usage.do_send(RecordUsage {
                identity: self.identity.clone(),
                model: self.model.clone(),
                usage: reported.usage,
                key: reported.key,
            });
        }
        kind == Watched::ResponseDone
            && s.budget_spent.get().is_some()
            && s.responses_in_flight.get() == 0
    }
}

impl ToClient {
    /// See [`Accounting::account`]; nothing for a socket attached to a call, whose sideband
    /// meters it.
    #[inline]
    fn account(&self, text: &str) -> bool {
        if !self.metered {
            return false;
        }
        self.accounting
            .account(&self.shared, &self.unaccounted, text)
    }

    /// `msg` (of `len` bytes) without the fields the session policy hides, when it is a session
    /// echo that carried any. Only with such a policy, and then a look at the first bytes.
    #[inline]
    fn hide(&self, msg: Message, len: usize) -> (Message, usize) {
        let (Some(applied), Message::Text(text)) = (&self.hiding, &msg) else {
            return (msg, len);
        };
        let Some((hidden, removed)) = applied.policy.hide(text) else {
            return (msg, len);
        };
        for (action, field) in removed {
            applied.count(action, field);
        }
        let len = hidden.len();
        (Message::Text(hidden.into()), len)
    }

    #[inline]
    fn record(&mut self, msg: &Message, len: usize) {
        self.flow.record(len);
        self.shared.traffic.upstream_to_client.record(len);
        if let Some((since, histogram)) = self.first_event.take() {
            histogram.observe(since.elapsed().as_secs_f64());
        }
        if self.log_events {
            log_event(self.session_id, "upstream_to_client", msg);
        }
    }
}

/// Relays upstream frames to the client until either side ends; returns why.
///
/// Not an `async fn`, and the state is borrowed below it: an `async fn` keeps a copy of its
/// arguments beside the locals moved out of them, and this future lives as long as its session.
// An `async fn` would keep its arguments twice (rust-lang/rust#62958).
#[allow(clippy::manual_async_fn)]
pub(crate) fn read_upstream(
    replay: Vec<Message>,
    mut stream: wire::Reader,
    mut to: ToClient,
) -> impl Future<Output = SessionEnd> {
    async move { relay(replay, &mut stream, &mut to).await }
}

async fn relay(replay: Vec<Message>, stream: &mut wire::Reader, to: &mut ToClient) -> SessionEnd {
    stream.refuse_frames_over(to.max_message_size);
    let mut client = to.client.clone();
    let shared = to.shared.clone();
    let closing = to.closing.clone();
    // Frames a pooled socket received before this session took it (`session.created`).
    for msg in replay {
        let len = match &msg {
            Message::Text(t) => t.len(),
            Message::Binary(b) => b.len(),
            _ => 0,
        };
        let (msg, len) = to.hide(msg, len);
        to.record(&msg, len);
        if client.send(msg).await.is_err() {
            return SessionEnd::ClientGone;
        }
    }
    let mut partial = Partial::default();
    while let Some(frame) = stream.next().await {
        let (text, data) = match sort(frame, &mut partial, to) {
            Sorted::Data(text, data) => (text, data),
            Sorted::Skip => continue,
            Sorted::End(reason) => return reason,
        };
        if closing.draining.get() {
            // Closing: relay nothing more, but count what the upstream reports, and send the
            // held close once the last response in flight is done.
            if text {
                if let Ok(t) = std::str::from_utf8(&data) {
                    to.account(t);
                }
            }
            if shared.responses_in_flight.get() == 0 {
                if let Some(frame) = closing.held.borrow_mut().take() {
                    let _ = to.writer.try_send(Message::Close(Some(frame)));
                }
            }
            continue;
        }
        let len = data.len();
        // Wait for the client to take what waits for it (`backlog.rs`), then count this one.
        shared.client_write_blocked.set(true);
        to.backlog.room(CLIENT_BACKLOG).await;
        let data = to.backlog.hold(data);
        let msg = if text {
            match ByteString::try_from(data) {
                Ok(s) => Message::Text(s),
                Err(_) => {
                    shared.client_write_blocked.set(false);
                    return SessionEnd::UpstreamProtocolError;
                }
            }
        } else {
            Message::Binary(data)
        };
        let (msg, len) = to.hide(msg, len);
        to.record(&msg, len);
        let budget_end = matches!(&msg, Message::Text(t) if to.account(t));
        let sent = client.send(msg).await;
        shared.client_write_blocked.set(false);
        if sent.is_err() {
            // The client is gone mid-stream. Its session is ending (its reader sees the same
            // end) and will close this upstream; until then keep reading, so the usage of the
            // response in flight is still counted.
            closing.draining.set(true);
            continue;
        }
        if budget_end {
            if let Some(budget) = shared.budget_spent.get() {
                return SessionEnd::BudgetExceeded { budget };
            }
        }
    }
    SessionEnd::UpstreamGone
}

/// One upstream frame, sorted: a whole message to relay (text or not), nothing to relay (a
/// control frame, a fragment of a message not yet complete), or the end of the session.
enum Sorted {
    Data(bool, Bytes),
    Skip,
    End(SessionEnd),
}

/// A fragmented message being reassembled: whether it is text, and its bytes so far.
#[derive(Default)]
pub(crate) struct Partial(Option<(bool, BytesMut)>);

#[inline]
fn sort(frame: Result<Frame, wire::ReadError>, partial: &mut Partial, to: &ToClient) -> Sorted {
    let too_large = || {
        Sorted::End(SessionEnd::UpstreamMessageTooLarge {
            limit: to.max_message_size,
        })
    };
    match frame {
        Ok(Frame::Text(b)) => Sorted::Data(true, b),
        Ok(Frame::Binary(b)) => Sorted::Data(false, b),
        Ok(Frame::Continuation(item)) => match partial.push(item, to.max_message_size) {
            Ok(Some((text, data))) => Sorted::Data(text, data),
            Ok(None) => Sorted::Skip,
            Err(Fragment::TooLarge) => too_large(),
            Err(Fragment::OutOfOrder) => Sorted::End(SessionEnd::UpstreamProtocolError),
        },
        Ok(Frame::Ping(p)) => {
            // Answer for the relay; if too much waits for the upstream it is not reading
            // anyway and a lost pong changes nothing.
            let _ = to.writer.try_send(Message::Pong(p));
            Sorted::Skip
        }
        Ok(Frame::Pong(_)) => Sorted::Skip,
        Ok(Frame::Close(reason)) => Sorted::End(SessionEnd::UpstreamClosed {
            code: reason.as_ref().map(|r| u16::from(r.code)),
            reason: reason.and_then(|r| r.description).unwrap_or_default(),
        }),
        Err(wire::ReadError::TooLarge) => too_large(),
        Err(wire::ReadError::Gone) => Sorted::End(SessionEnd::UpstreamGone),
        Err(wire::ReadError::Invalid) => Sorted::End(SessionEnd::UpstreamProtocolError),
    }
}

/// Why a fragment was refused.
pub(crate) enum Fragment {
    TooLarge,
    OutOfOrder,
}

impl Partial {
    /// Adds one fragment; the whole message once its last fragment is in.
    pub(crate) fn push(
        &mut self,
        item: actix_ws::Item,
        max_message_size: usize,
    ) -> Result<Option<(bool, Bytes)>, Fragment> {
        use actix_ws::Item;
        let (first, chunk, last) = match item {
            Item::FirstText(b) => (Some(true), b, false),
            Item::FirstBinary(b) => (Some(false), b, false),
            Item::Continue(b) => (None, b, false),
            Item::Last(b) => (None, b, true),
        };
        match (first, self.0.as_mut()) {
            (Some(is_text), None) => self.0 = Some((is_text, BytesMut::from(&chunk[..]))),
            (None, Some((_, buf))) => buf.extend_from_slice(&chunk),
            _ => return Err(Fragment::OutOfOrder),
        }
        if self.0.as_ref().map_or(0, |(_, b)| b.len()) > max_message_size {
            return Err(Fragment::TooLarge);
        }
        if !last {
            return Ok(None);
        }
        match self.0.take() {
            Some((is_text, buf)) => Ok(Some((is_text, buf.freeze()))),
            None => Err(Fragment::OutOfOrder),
        }
    }
}
