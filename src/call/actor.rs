//! `Call`: one WebRTC call through the relay, from its offer to its hangup. Started by
//! `http/calls.rs` after the checks every session gets, it asks the `Registry` for a slot (a live
//! call counts against `MAX_CONNECTIONS` like a WebSocket session, with the same limits and
//! budgets), forwards the offer upstream, answers the HTTP layer through a oneshot, then opens the
//! call's sideband (`sideband.rs`) and keeps it until the call ends. It hears `Tick` (a ping on
//! the sideband; two unanswered end the call), `End` (a drain), `BudgetSpent` and `HungUp`. A
//! call the relay cannot meter is not left running: a sideband that fails to open or is lost
//! ends the call. Whoever ends it, `end()` hangs the call up upstream (unless the client already
//! did), closes the sideband and stops; `stopping()` gives the slot back and writes the log line.

use std::{
    cell::Cell,
    net::IpAddr,
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use actix::prelude::*;
use actix_web::{http::StatusCode, web};
use awc::ws::{CloseCode, CloseReason, Message};
use tokio::sync::oneshot;

use crate::{
    admission::{
        msg::{Admit, Entry, Release, Transport},
        registry::Registry,
    },
    call::{
        book::{Booked, CallBook},
        msg::{Answer, HangUp},
        sideband::{read_sideband, Sideband},
    },
    close::SessionEnd,
    ops::{metrics::Metrics, throttle::RefusalLog},
    protection::{identity::Identity, policy::Applied},
    session::{
        msg::{BudgetSpent, End, SessionHandle, SessionId, Tick},
        shared::Shared,
    },
    upstream::{calls, dial::Dialer, pump::Accounting, sender::ToUpstream, wire},
};

/// The log target of a call's lines, beside the sessions'.
const LOG_TARGET: &str = "openai_realtime_relay::call";

/// Heartbeats the sideband may leave unanswered before the call is ended.
const MAX_UNANSWERED: u32 = 2;

/// Everything the HTTP layer hands a new call.
pub(crate) struct Params {
    pub(crate) offer: String,
    /// The session sent with the offer: the model and the policy's pinned fields.
    pub(crate) session: serde_json::Value,
    pub(crate) model: String,
    pub(crate) client_ip: Option<IpAddr>,
    pub(crate) identity: Identity,
    pub(crate) safety_id: Option<String>,
    pub(crate) max_session_duration: Option<Duration>,
    pub(crate) policy: Option<Arc<Applied>>,
    pub(crate) registry: Addr<Registry>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) dialer: Rc<Dialer>,
    pub(crate) book: web::Data<CallBook>,
    pub(crate) refusals: Arc<RefusalLog>,
}

pub(crate) struct Call {
    p: Params,
    answer: Option<oneshot::Sender<Answer>>,
    id: Option<SessionId>,
    call_id: Arc<std::sync::OnceLock<String>>,
    shared: Rc<Shared>,
    sideband: Option<ToUpstream>,
    unanswered: Rc<Cell<u32>>,
    opened_at: Instant,
    /// Set when the call ends.
    ending: Option<SessionEnd>,
}

impl Call {
    /// A call that sends its answer (or the refusal) to `answer`.
    pub(crate) fn new(p: Params, answer: oneshot::Sender<Answer>) -> Call {
        Call {
            p,
            answer: Some(answer),
            id: None,
            call_id: Arc::default(),
            shared: Rc::new(Shared::default()),
            sideband: None,
            unanswered: Rc::default(),
            opened_at: Instant::now(),
            ending: None,
        }
    }

    fn call_label(&self) -> &str {
        self.call_id.get().map_or("-", String::as_str)
    }

    fn client_label(&self) -> String {
        self.p
            .client_ip
            .map_or_else(|| "-".into(), |ip| ip.to_string())
    }

    /// Admitted: the duration limit starts, and the offer goes upstream.
    fn admitted(&mut self, id: SessionId, ctx: &mut Context<Self>) {
        self.id = Some(id);
        self.opened_at = Instant::now();
        if let Some(max) = self.p.max_session_duration {
            ctx.run_later(max, |act, ctx| act.end(SessionEnd::SessionMaxDuration, ctx));
        }
        let dialer = self.p.dialer.clone();
        let offer = std::mem::take(&mut self.p.offer);
        let session = self.p.session.clone();
        let safety_id = self.p.safety_id.clone();
        let create =
            async move { calls::create(&dialer, &offer, &session, safety_id.as_deref()).await };
        ctx.wait(
            create
                .into_actor(self)
                .map(|created, act, ctx| match created {
                    Ok(created) => act.created(created, ctx),
                    Err(reason) => {
                        if let Some(answer) = act.answer.take() {
                            let _ = answer.send(Err(reason.clone()));
                        }
                        // Nothing exists upstream: nothing to hang up.
                        act.ending = Some(reason);
                        ctx.stop();
                    }
                }),
        );
    }

    /// The upstream accepted the call: book it, answer the client, open the sideband.
    fn created(&mut self, created: calls::Created, ctx: &mut Context<Self>) {
        let call_id = created.call_id;
        let _ = self.call_id.set(call_id.clone());
        self.p.book.insert(
            call_id.clone(),
            Booked {
                identity: self.p.identity.key.clone(),
                model: self.p.model.clone(),
                hang_up: ctx.address().recipient(),
            },
        );
        log::info!(
            target: LOG_TARGET,
            session = self.id.unwrap_or(0),
            call = call_id.as_str(),
            client = self.client_label().as_str(),
            identity = self.p.identity.key.as_str(),
            model = self.p.model.as_str();
            "opened"
        );
        let delivered = self
            .answer
            .take()
            .is_some_and(|a| a.send(Ok((call_id.clone(), created.answer))).is_ok());
        if !delivered {
            // The client gave up waiting: the call exists upstream, so end it there.
            self.end(SessionEnd::ClientGone, ctx);
            return;
        }
        let dialer = self.p.dialer.clone();
        let query = format!("call_id={call_id}");
        let dial = async move { dialer.connect(&query, None).await };
        ctx.wait(dial.into_actor(self).map(|socket, act, ctx| match socket {
            Ok(socket) => act.sideband_open(socket, ctx),
            // An unmetered call is not left running.
            Err(reason) => act.end(reason, ctx),
        }));
    }

    fn sideband_open(&mut self, socket: wire::Socket, ctx: &mut Context<Self>) {
        if self.ending.is_some() {
            return;
        }
        let (stream, sink) = wire::split(socket);
        let tx = ToUpstream::new(sink);
        actix_web::rt::spawn(tx.clone().background());
        let reader = read_sideband(
            stream,
            Sideband {
                writer: tx.clone(),
                shared: self.shared.clone(),
                accounting: Accounting {
                    usage: self.p.dialer.usage.clone(),
                    identity: self.p.identity.key.clone(),
                    model: self.p.model.clone(),
                    pricing: self.p.dialer.pricing.clone(),
                },
                unaccounted: self.p.metrics.unaccounted_responses.clone(),
                guard: self.p.policy.clone().filter(|p| p.policy.guards_drift()),
                max_message_size: self.p.dialer.max_message_size,
                unanswered: self.unanswered.clone(),
            },
        );
        ctx.spawn(reader.into_actor(self).map(|reason, act, ctx| {
            let left = act.shared.responses_in_flight.replace(0);
            act.p.metrics.unaccounted_responses.inc_by(u64::from(left));
            act.end(reason, ctx);
        }));
        self.sideband = Some(tx);
    }

    /// Ends the call once: hangs it up upstream (if it exists there), closes the sideband, stops.
    fn end(&mut self, reason: SessionEnd, ctx: &mut Context<Self>) {
        self.end_replying(reason, None, ctx);
    }

    /// [`end`](Self::end), telling `reply` what the upstream answered the hangup.
    fn end_replying(
        &mut self,
        reason: SessionEnd,
        reply: Option<oneshot::Sender<Option<Result<StatusCode, SessionEnd>>>>,
        ctx: &mut Context<Self>,
    ) {
        if self.ending.is_some() {
            if let Some(reply) = reply {
                let _ = reply.send(None);
            }
            return;
        }
        if let Some(sideband) = self.sideband.take() {
            let _ = sideband.try_send(Message::Close(Some(CloseReason {
                code: CloseCode::Normal,
                description: Some(reason.label().to_string()),
            })));
        }
        self.ending = Some(reason);
        let Some(call_id) = self.call_id.get().cloned() else {
            ctx.stop();
            return;
        };
        let dialer = self.p.dialer.clone();
        let hangup = async move { calls::hangup(&dialer, &call_id).await };
        ctx.wait(hangup.into_actor(self).map(|result, act, ctx| {
            if let Some(reply) = reply {
                let _ = reply.send(Some(result.clone()));
            }
            if let Err(e) = result {
                log::warn!(
                    target: LOG_TARGET,
                    session = act.id.unwrap_or(0),
                    call = act.call_label();
                    "the upstream hangup failed: {}",
                    e.message()
                );
            }
            ctx.stop();
        }));
    }
}

impl Actor for Call {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let addr = ctx.address();
        let admit = self.p.registry.send(Admit {
            entry: Entry {
                handle: SessionHandle {
                    tick: addr.clone().recipient(),
                    end: addr.clone().recipient(),
                    budget_spent: addr.recipient(),
                },
                model: self.p.model.clone(),
                identity: self.p.identity.key.clone(),
                credential_models: self.p.identity.models.clone(),
                usd_budget: self.p.identity.usd_budget,
                client: self.p.client_ip,
                traffic: self.shared.traffic.clone(),
                opened_at: self.opened_at,
                transport: Transport::WebRtc,
                call_id: Some(self.call_id.clone()),
            },
        });
        ctx.wait(admit.into_actor(self).map(|answer, act, ctx| {
            let reason = match answer {
                Ok(Ok(id)) => return act.admitted(id, ctx),
                Ok(Err(rejected)) => {
                    act.p.refusals.refused(
                        "call refused",
                        rejected.label(),
                        act.p.client_ip,
                        None,
                        Instant::now(),
                    );
                    rejected.into_close_reason()
                }
                Err(_) => SessionEnd::ShuttingDown,
            };
            if let Some(answer) = act.answer.take() {
                let _ = answer.send(Err(reason.clone()));
            }
            act.ending = Some(reason);
            ctx.stop();
        }));
    }

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        if let Some(call_id) = self.call_id.get() {
            self.p.book.remove(call_id);
        }
        let Some(id) = self.id else {
            return Running::Stop;
        };
        let reason = self.ending.clone().unwrap_or(SessionEnd::ShuttingDown);
        self.p.registry.do_send(Release {
            id,
            reason: reason.clone(),
        });
        let tokens = self.shared.usage.get();
        let duration_ms = u64::try_from(self.opened_at.elapsed().as_millis()).unwrap_or(u64::MAX);
        log::info!(
            target: LOG_TARGET,
            session = id,
            call = self.call_label(),
            transport = "webrtc",
            client = self.client_label().as_str(),
            identity = self.p.identity.key.as_str(),
            model = self.p.model.as_str(),
            policy = self.p.policy.as_ref().map_or("-", |p| p.policy.name.as_str()),
            reason = reason.label(),
            duration_ms = duration_ms,
            sideband_messages = self.shared.traffic.upstream_to_client.messages(),
            input_tokens = tokens.input_tokens,
            output_tokens = tokens.output_tokens,
            total_tokens = tokens.billable(),
            cost_usd = tokens.cost_usd();
            "closed"
        );
        Running::Stop
    }
}

impl Handler<Tick> for Call {
    type Result = ();

    /// Media never passes the relay, so a call has no idle timeout; the heartbeat checks that its
    /// sideband (the relay's only view of it) is still there.
    fn handle(&mut self, tick: Tick, ctx: &mut Context<Self>) {
        if !tick.heartbeat {
            return;
        }
        let Some(sideband) = &self.sideband else {
            return;
        };
        if self.unanswered.get() >= MAX_UNANSWERED {
            self.end(SessionEnd::UpstreamGone, ctx);
            return;
        }
        self.unanswered.set(self.unanswered.get() + 1);
        let _ = sideband.try_send(Message::Ping(web::Bytes::from_static(b"relay")));
    }
}

impl Handler<End> for Call {
    type Result = ();

    fn handle(&mut self, msg: End, ctx: &mut Context<Self>) {
        self.end(msg.reason, ctx);
    }
}

impl Handler<BudgetSpent> for Call {
    type Result = ();

    fn handle(&mut self, msg: BudgetSpent, ctx: &mut Context<Self>) {
        self.shared.budget_spent.set(Some(msg.budget));
        // With a response in flight the sideband reader ends the call after its `response.done`.
        if self.shared.responses_in_flight.get() == 0 {
            self.end(SessionEnd::BudgetExceeded { budget: msg.budget }, ctx);
        }
    }
}

impl Handler<HangUp> for Call {
    type Result = ();

    fn handle(&mut self, msg: HangUp, ctx: &mut Context<Self>) {
        let reason = SessionEnd::ClientClosed {
            code: 1000,
            reason: "hangup".into(),
        };
        self.end_replying(reason, Some(msg.reply), ctx);
    }
}
