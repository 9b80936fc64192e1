//! `Upstream`: the relay's WebSocket to OpenAI for one session. It is started by its `Session`
//! once the `Registry` has admitted it, gets a socket from the `Dialer` (warm or fresh), hands
//! the session a `ToUpstream` sender for client→upstream frames (after queueing the session
//! policy's pinned `session.update`, so it goes first), and runs the two pumps of `pump.rs`. It stops when the upstream closes (telling the session why with `End`) or when its
//! session sends `Close` (after passing the close frame on and waiting for the answer).

use std::{
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use actix::prelude::*;
use awc::ws::{self, Message};
use tokio::sync::oneshot;

use crate::{
    close::SessionEnd,
    ops::metrics::Metrics,
    protection::policy::{Action, Applied, FIELD_SESSION},
    session::{
        msg::{End, UpstreamOpened},
        shared::Shared,
    },
    upstream::{
        backlog::Backlog,
        dial::{Dialer, Opened},
        pump::{read_upstream, Accounting, Closing, ToClient, RESPONSE_CANCEL},
        sender::ToUpstream,
        wire,
    },
};

/// How long a closing upstream gets to take its close frame before the socket is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How long the relay keeps reading (relaying nothing) after it ends a session with responses in
/// flight, so their `response.done` and its usage are counted before the close.
pub(crate) const USAGE_GRACE: Duration = Duration::from_secs(5);

/// The session ends from the client or relay side: pass the close on and stop.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Close {
    pub(crate) code: u16,
    pub(crate) reason: String,
}

/// The upstream query of a client attached to a WebRTC call's events (`call_id=rtc_…`).
pub(crate) const ATTACH_QUERY: &str = "call_id=";

pub(crate) struct Upstream {
    opened_to: Recipient<UpstreamOpened>,
    end_to: Recipient<End>,
    session_id: u64,
    client: actix_ws::Session,
    query: String,
    model: String,
    dialer: Rc<Dialer>,
    metrics: Arc<Metrics>,
    shared: Rc<Shared>,
    opened: Option<oneshot::Sender<ToUpstream>>,
    admitted_at: Instant,
    log_events: bool,
    identity: String,
    safety_id: Option<String>,
    policy: Option<Arc<Applied>>,
    writer: Option<ToUpstream>,
    /// Set when closing: the reader drops upstream frames instead of forwarding them.
    closing_state: Rc<Closing>,
    reader_done: bool,
    writer_done: bool,
    closing: bool,
}

/// What a session hands its upstream.
pub(crate) struct Params {
    /// Told once the upstream is open.
    pub(crate) opened_to: Recipient<UpstreamOpened>,
    /// Told why, when the upstream ends the session.
    pub(crate) end_to: Recipient<End>,
    pub(crate) session_id: u64,
    pub(crate) client: actix_ws::Session,
    pub(crate) query: String,
    pub(crate) model: String,
    pub(crate) dialer: Rc<Dialer>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) shared: Rc<Shared>,
    pub(crate) opened: oneshot::Sender<ToUpstream>,
    /// When the registry admitted the session, for the time-to-first-event histogram.
    pub(crate) admitted_at: Instant,
    /// Log each upstream event's type (debug).
    pub(crate) log_events: bool,
    /// Whose usage this session's `response.done` events count against.
    pub(crate) identity: String,
    pub(crate) safety_id: Option<String>,
    /// The session policy: its pinned `session.update` goes first, its hidden fields never
    /// reach the client.
    pub(crate) policy: Option<Arc<Applied>>,
}

impl Upstream {
    pub(crate) fn new(p: Params) -> Upstream {
        Upstream {
            opened_to: p.opened_to,
            end_to: p.end_to,
            session_id: p.session_id,
            client: p.client,
            query: p.query,
            model: p.model,
            dialer: p.dialer,
            metrics: p.metrics,
            shared: p.shared,
            opened: Some(p.opened),
            admitted_at: p.admitted_at,
            log_events: p.log_events,
            identity: p.identity,
            safety_id: p.safety_id,
            policy: p.policy,
            writer: None,
            closing_state: Rc::new(Closing::default()),
            reader_done: false,
            writer_done: false,
            closing: false,
        }
    }

    fn connected(&mut self, opened: Opened, ctx: &mut Context<Self>) {
        let (stream, sink) = wire::split(opened.socket);
        let tx = ToUpstream::new(sink);
        ctx.spawn(tx.clone().background().into_actor(self).map(|_, act, ctx| {
            // The writer ends after our close frame (or when the socket fails). The
            // socket stays open until the upstream answers the close, so it sees the
            // frame before the connection ends; if it already has, stop now.
            act.writer_done = true;
            if act.closing && act.reader_done {
                ctx.stop();
            }
        }));
        let reader = read_upstream(
            opened.replay,
            stream,
            ToClient {
                client: self.client.clone(),
                writer: tx.clone(),
                shared: self.shared.clone(),
                closing: self.closing_state.clone(),
                flow: self.metrics.upstream_to_client.clone(),
                max_message_size: self.dialer.max_message_size,
                session_id: self.session_id,
                log_events: self.log_events,
                unaccounted: self.metrics.unaccounted_responses.clone(),
                first_event: Some((
                    self.admitted_at,
                    self.metrics.first_upstream_event_seconds.clone(),
                )),
                accounting: Accounting {
                    usage: self.dialer.usage.clone(),
                    identity: self.identity.clone(),
                    model: self.model.clone(),
                    pricing: self.dialer.pricing.clone(),
                },
                hiding: self.policy.clone().filter(|p| p.policy.hides()),
                metered: !self.query.starts_with(ATTACH_QUERY),
                backlog: Backlog::default(),
            },
        );
        ctx.spawn(reader.into_actor(self).map(|reason, act, ctx| {
            act.reader_done = true;
            act.ended(reason, ctx);
        }));
        self.pin(&tx);
        if let Some(opened) = self.opened.take() {
            // The session may already be gone; then its close follows shortly.
            let _ = opened.send(tx.clone());
        }
        self.writer = Some(tx);
    }

    /// Queues the policy's pinned `session.update` ahead of every client frame: the client
    /// reader gets its sender only after this, so the queue is empty and takes it at once.
    fn pin(&self, writer: &ToUpstream) {
        let Some(applied) = &self.policy else { return };
        let Some(update) = applied.policy.pinned_update() else {
            return;
        };
        if writer.try_send(Message::Text(update.into())) {
            applied.count(Action::Pinned, FIELD_SESSION);
        }
    }

    /// The reader ended. If we were closing, this was the upstream's answer: stop. Otherwise the
    /// upstream ended the session: answer its close (or say why we stop), tell the session, stop
    /// once our close frame is written.
    fn ended(&mut self, reason: SessionEnd, ctx: &mut Context<Self>) {
        // Nothing more is read: a response still in flight (the upstream reset or closed
        // mid-response, or closed before the usage grace saw its `response.done`) is never
        // counted.
        let left = self.shared.responses_in_flight.replace(0);
        self.metrics.unaccounted_responses.inc_by(u64::from(left));
        if self.closing {
            ctx.stop();
            return;
        }
        let frame = match &reason {
            SessionEnd::UpstreamClosed { code, reason: text } => ws::CloseReason {
                code: code.map_or(ws::CloseCode::Normal, ws::CloseCode::from),
                description: (code.is_some() && !text.is_empty()).then(|| text.clone()),
            },
            SessionEnd::UpstreamMessageTooLarge { .. } => ws::CloseCode::Size.into(),
            SessionEnd::UpstreamProtocolError => ws::CloseCode::Protocol.into(),
            _ => ws::CloseCode::Normal.into(),
        };
        self.end_to.do_send(End { reason });
        self.begin_close(frame, ctx);
    }

    /// Sends the upstream a close frame and stops forwarding its frames. The actor stops when
    /// the close handshake is complete (reader and writer done) or after `CLOSE_GRACE`.
    fn begin_close(&mut self, frame: ws::CloseReason, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        self.closing = true;
        self.closing_state.draining.set(true);
        let Some(writer) = self.writer.take() else {
            // Not connected yet: stopping drops the dial; nothing was opened.
            ctx.stop();
            return;
        };
        let in_flight = self.shared.responses_in_flight.get();
        if in_flight > 0 && !self.reader_done {
            // The relay ends the session mid-response (the client left, a limit, a drain): ask
            // the upstream to stop, and hold the close until its `response.done` (with the
            // usage the relay must count) has been read, or `USAGE_GRACE` has passed.
            let _ = writer.try_send(Message::Text(RESPONSE_CANCEL.into()));
            *self.closing_state.held.borrow_mut() = Some(frame);
            ctx.run_later(USAGE_GRACE, move |act, ctx| {
                if let Some(frame) = act.closing_state.held.borrow_mut().take() {
                    let left = act.shared.responses_in_flight.get();
                    act.metrics.unaccounted_responses.inc_by(u64::from(left));
                    log::debug!(
                        "session={} {left} response(s) still in flight after the usage grace",
                        act.session_id
                    );
                    let _ = writer.try_send(Message::Close(Some(frame)));
                }
                ctx.run_later(CLOSE_GRACE, |_, ctx| ctx.stop());
            });
            return;
        }
        if !writer.try_send(Message::Close(Some(frame))) || self.reader_done && self.writer_done {
            ctx.stop();
            return;
        }
        ctx.run_later(CLOSE_GRACE, |_, ctx| ctx.stop());
    }
}

impl Actor for Upstream {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let dialer = self.dialer.clone();
        let query = self.query.clone();
        let model = self.model.clone();
        let safety_id = self.safety_id.clone();
        let started = Instant::now();
        ctx.spawn(
            async move { dialer.open(&query, &model, safety_id.as_deref()).await }
                .into_actor(self)
                .map(move |result, act, ctx| {
                    if act.closing {
                        return;
                    }
                    match result {
                        Ok(opened) => {
                            let took = started.elapsed();
                            log::debug!(
                                "session={} upstream open in {} ms pooled={}",
                                act.session_id,
                                took.as_millis(),
                                opened.pooled
                            );
                            act.connected(opened, ctx);
                            act.opened_to.do_send(UpstreamOpened { took });
                        }
                        Err(reason) => {
                            act.closing = true;
                            act.end_to.do_send(End { reason });
                            ctx.stop();
                        }
                    }
                }),
        );
    }
}

impl Handler<Close> for Upstream {
    type Result = ();

    fn handle(&mut self, msg: Close, ctx: &mut Context<Self>) {
        let frame = ws::CloseReason {
            code: msg.code.into(),
            description: (!msg.reason.is_empty()).then_some(msg.reason),
        };
        // Still dialing: stop now, which aborts the dial; nothing was opened, nothing is billed.
        self.begin_close(frame, ctx);
    }
}
