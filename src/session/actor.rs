//! `Session`: one client WebSocket and everything that happens to it. Created by the HTTP layer
//! right after the upgrade, it asks the `Registry` for a slot, starts its `Upstream`, and spawns
//! the client pump (`client.rs`). It hears from the `Reaper` (`Tick`), from its upstream
//! (`UpstreamOpened`, `End`) and from the registry (`BudgetSpent`, `End` on shutdown); the
//! registry reads its `Traffic` for `/stats`. Whichever side ends first, `end()` tells the other why, sends the
//! client an `error` event (for failures) and a close frame, and stops; `stopping()` gives the
//! slot back and writes the log line.

use std::{
    net::IpAddr,
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use actix::prelude::*;
use actix_ws::AggregatedMessageStream;
use futures_util::FutureExt;
use tokio::sync::oneshot;

use crate::{
    admission::{
        msg::{Admit, Entry, Release, Transport},
        registry::Registry,
    },
    close::{error_event, SessionEnd},
    ops::{metrics::Metrics, throttle::RefusalLog},
    protection::{identity::Identity, models::AllowedModels, policy::Applied},
    session::{
        client::{read_client, FromClient},
        events::EVENTS_TARGET,
        liveness,
        msg::{BudgetSpent, End, SessionHandle, SessionId, Tick, UpstreamOpened},
        shared::Shared,
    },
    upstream::{
        actor::{self as upstream, Upstream},
        dial::Dialer,
    },
};

/// The target of the session's log lines, as it was before the module became a folder: log
/// filters and JSON consumers key on it.
const LOG_TARGET: &str = "openai_realtime_relay::session";

/// How long the client gets to take the final `error` event and close frame.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How long before `MAX_SESSION_DURATION` the client is warned (`session_expiring`).
pub(crate) const EXPIRY_WARNING: Duration = Duration::from_secs(60);

/// The warning comes `EXPIRY_WARNING` before the end, or halfway for limits under two minutes.
pub(crate) fn expiry_warning_lead(max: Duration) -> Duration {
    EXPIRY_WARNING.min(max / 2)
}

/// Everything the HTTP layer hands a new session.
pub(crate) struct Params {
    pub(crate) client: actix_ws::Session,
    pub(crate) stream: AggregatedMessageStream,
    /// The upstream query string (`model=..`, `intent=..`), already validated.
    pub(crate) query: String,
    pub(crate) model: String,
    pub(crate) client_ip: Option<IpAddr>,
    pub(crate) identity: Identity,
    /// `OpenAI-Safety-Identifier` for the upstream handshake, when enabled.
    pub(crate) safety_id: Option<String>,
    pub(crate) max_session_duration: Option<Duration>,
    pub(crate) registry: Addr<Registry>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) dialer: Rc<Dialer>,
    pub(crate) max_message_size: usize,
    pub(crate) inactivity_timeout: Duration,
    /// `ALLOWED_MODELS`, for the client pump's `session.update` check.
    pub(crate) allowed_models: Arc<AllowedModels>,
    /// The session policy (`SESSION_POLICY_FILE`), if any.
    pub(crate) policy: Option<Arc<Applied>>,
    /// Where a refusal at admission is logged (collapsed per reason and address).
    pub(crate) refusals: Arc<RefusalLog>,
}

pub(crate) struct Session {
    id: Option<SessionId>,
    client: actix_ws::Session,
    stream: Option<AggregatedMessageStream>,
    query: String,
    model: String,
    client_ip: Option<IpAddr>,
    identity: Identity,
    safety_id: Option<String>,
    max_session_duration: Option<Duration>,
    registry: Addr<Registry>,
    metrics: Arc<Metrics>,
    dialer: Rc<Dialer>,
    max_message_size: usize,
    inactivity_timeout: Duration,
    allowed_models: Arc<AllowedModels>,
    policy: Option<Arc<Applied>>,
    refusals: Arc<RefusalLog>,
    upstream: Option<Addr<Upstream>>,
    shared: Rc<Shared>,
    opened_at: Instant,
    last_activity: Instant,
    seen_messages: u64,
    ending: Option<SessionEnd>,
}

impl Session {
    pub(crate) fn new(p: Params) -> Session {
        let now = Instant::now();
        Session {
            id: None,
            client: p.client,
            stream: Some(p.stream),
            query: p.query,
            model: p.model,
            client_ip: p.client_ip,
            identity: p.identity,
            safety_id: p.safety_id,
            max_session_duration: p.max_session_duration,
            registry: p.registry,
            metrics: p.metrics,
            dialer: p.dialer,
            max_message_size: p.max_message_size,
            inactivity_timeout: p.inactivity_timeout,
            allowed_models: p.allowed_models,
            policy: p.policy,
            refusals: p.refusals,
            upstream: None,
            shared: Rc::new(Shared::default()),
            opened_at: now,
            last_activity: now,
            seen_messages: 0,
            ending: None,
        }
    }

    /// The client's address for log lines, `-` when unknown.
    fn client_label(&self) -> String {
        self.client_ip
            .map_or_else(|| "-".into(), |ip| ip.to_string())
    }

    /// The session policy's name for the closing log line, `-` without one.
    fn policy_label(&self) -> &str {
        self.policy.as_ref().map_or("-", |p| p.policy.name.as_str())
    }

    fn label(&self) -> String {
        self.id.map_or_else(|| "-".to_string(), |id| id.to_string())
    }

    /// The `event_id` of the relay's own `error` event for this session.
    fn event_id(&self) -> String {
        self.id.map_or_else(
            || "relay_evt_refused".to_string(),
            |id| format!("relay_evt_{id}"),
        )
    }

    fn admitted(&mut self, id: SessionId, ctx: &mut Context<Self>) {
        self.id = Some(id);
        self.opened_at = Instant::now();
        let log_events = log::log_enabled!(target: EVENTS_TARGET, log::Level::Debug);
        log::info!(
            target: LOG_TARGET,
            session = id,
            client = self.client_label().as_str(),
            identity = self.identity.key.as_str(),
            model = self.model.as_str();
            "opened"
        );
        if let Some(max) = self.max_session_duration {
            let lead = expiry_warning_lead(max);
            ctx.run_later(max - lead, move |act, _| {
                let event = error_event(
                    &act.event_id(),
                    "session_expiring",
                    &format!(
                        "The relay ends this session in {} ms (MAX_SESSION_DURATION).",
                        lead.as_millis()
                    ),
                );
                let mut client = act.client.clone();
                actix_web::rt::spawn(async move {
                    let _ = tokio::time::timeout(CLOSE_GRACE, client.text(event)).await;
                });
            });
            ctx.run_later(max, |act, ctx| act.end(SessionEnd::SessionMaxDuration, ctx));
        }
        let (opened_tx, opened_rx) = oneshot::channel();
        self.upstream = Some(
            Upstream::new(upstream::Params {
                opened_to: ctx.address().recipient(),
                end_to: ctx.address().recipient(),
                session_id: id,
                client: self.client.clone(),
                query: self.query.clone(),
                model: self.model.clone(),
                dialer: self.dialer.clone(),
                metrics: self.metrics.clone(),
                shared: self.shared.clone(),
                opened: opened_tx,
                admitted_at: self.opened_at,
                log_events,
                identity: self.identity.key.clone(),
                safety_id: self.safety_id.clone(),
                policy: self.policy.clone(),
            })
            .start(),
        );
        if let Some(stream) = self.stream.take() {
            let reader = read_client(
                stream,
                opened_rx,
                FromClient {
                    id,
                    client: self.client.clone(),
                    shared: self.shared.clone(),
                    flow: self.metrics.client_to_upstream.clone(),
                    max_queued: self.max_message_size,
                    log_events,
                    allowed_models: self.allowed_models.clone(),
                    policy: self.policy.clone(),
                },
            );
            ctx.spawn(
                reader
                    .into_actor(self)
                    .map(|reason, act, ctx| act.end(reason, ctx)),
            );
        }
    }

    /// Decides what a reaper tick means for this session.
    pub(crate) fn on_tick(&mut self, now: Instant, heartbeat: bool) -> Option<SessionEnd> {
        let seen = self.shared.traffic.data_messages();
        if seen != self.seen_messages {
            self.seen_messages = seen;
            self.last_activity = now;
            self.shared
                .traffic
                .saw_activity(seen, now.saturating_duration_since(self.opened_at));
        } else if now.duration_since(self.last_activity) >= self.inactivity_timeout {
            return Some(SessionEnd::IdleTimeout);
        }
        if heartbeat {
            // The ping itself goes out from the `Tick` handler, which counts it as unanswered.
            if self.shared.liveness.missed() >= 2 {
                return Some(if self.shared.client_write_blocked.get() {
                    SessionEnd::ClientTooSlow
                } else if self.shared.upstream_write_blocked.get() {
                    SessionEnd::UpstreamTooSlow
                } else {
                    SessionEnd::HeartbeatTimeout
                });
            }
        }
        None
    }

    /// Ends the session once: tells the upstream, tells the client, stops.
    fn end(&mut self, reason: SessionEnd, ctx: &mut Context<Self>) {
        if self.ending.is_some() {
            return;
        }
        self.finish(reason);
        ctx.stop();
    }

    fn finish(&mut self, reason: SessionEnd) {
        if let Some(upstream) = self.upstream.take() {
            upstream.do_send(upstream::Close {
                code: reason.upstream_code(),
                reason: match &reason {
                    SessionEnd::ClientClosed { reason, .. } => reason.clone(),
                    other => other.label().to_string(),
                },
            });
        }
        if reason != SessionEnd::ClientGone {
            say_goodbye(self.client.clone(), &reason, &self.event_id());
        }
        self.ending = Some(reason);
    }
}

/// Sends the client the `error` event for `reason` (if it is a failure) and the close frame.
/// Detached, so the client still gets its close after the session actor is gone; bounded, so a
/// client that never reads cannot keep the task alive.
pub(crate) fn say_goodbye(mut client: actix_ws::Session, reason: &SessionEnd, event_id: &str) {
    let Some(code) = reason.client_code() else {
        return;
    };
    let event = reason.error_event(event_id);
    let close = actix_ws::CloseReason {
        code: code.into(),
        description: Some(reason.client_reason()).filter(|r| !r.is_empty()),
    };
    actix_web::rt::spawn(async move {
        let deliver = async move {
            if let Some(event) = event {
                client.text(event).await?;
            }
            client.close(Some(close)).await
        };
        let _ = tokio::time::timeout(CLOSE_GRACE, deliver).await;
    });
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let addr = ctx.address();
        let admit = self.registry.send(Admit {
            entry: Entry {
                handle: SessionHandle {
                    tick: addr.clone().recipient(),
                    end: addr.clone().recipient(),
                    budget_spent: addr.recipient(),
                },
                model: self.model.clone(),
                identity: self.identity.key.clone(),
                credential_models: self.identity.models.clone(),
                usd_budget: self.identity.usd_budget,
                client: self.client_ip,
                traffic: self.shared.traffic.clone(),
                opened_at: self.opened_at,
                transport: Transport::WebSocket,
                call_id: None,
            },
        });
        ctx.wait(admit.into_actor(self).map(|answer, act, ctx| match answer {
            Ok(Ok(id)) => act.admitted(id, ctx),
            Ok(Err(rejected)) => {
                act.refusals.refused(
                    "session refused",
                    rejected.label(),
                    act.client_ip,
                    None,
                    Instant::now(),
                );
                act.end(rejected.into_close_reason(), ctx);
            }
            Err(_) => act.end(SessionEnd::ShuttingDown, ctx),
        }));
    }

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        if self.ending.is_none() {
            self.finish(SessionEnd::ShuttingDown);
        }
        let Some(id) = self.id else {
            return Running::Stop;
        };
        let reason = self.ending.clone().unwrap_or(SessionEnd::ShuttingDown);
        self.registry.do_send(Release {
            id,
            reason: reason.clone(),
        });
        let s = &self.shared;
        let tokens = s.usage.get();
        // `-`: the client was gone, no close frame was sent.
        let code: log::kv::Value = match reason.client_code() {
            Some(c) => c.into(),
            None => "-".into(),
        };
        let duration_ms = u64::try_from(self.opened_at.elapsed().as_millis()).unwrap_or(u64::MAX);
        log::info!(
            target: LOG_TARGET,
            session = id,
            client = self.client_label().as_str(),
            identity = self.identity.key.as_str(),
            model = self.model.as_str(),
            policy = self.policy_label(),
            reason = reason.label(),
            code = code,
            duration_ms = duration_ms,
            client_to_upstream_messages = s.traffic.client_to_upstream.messages(),
            client_to_upstream_bytes = s.traffic.client_to_upstream.bytes(),
            upstream_to_client_messages = s.traffic.upstream_to_client.messages(),
            upstream_to_client_bytes = s.traffic.upstream_to_client.bytes(),
            input_tokens = tokens.input_tokens,
            output_tokens = tokens.output_tokens,
            total_tokens = tokens.billable(),
            cost_usd = tokens.cost_usd();
            "closed"
        );
        Running::Stop
    }
}

impl Handler<Tick> for Session {
    type Result = ();

    fn handle(&mut self, tick: Tick, ctx: &mut Context<Self>) {
        match self.on_tick(tick.now, tick.heartbeat) {
            Some(reason) => self.end(reason, ctx),
            None if tick.heartbeat => {
                // Never wait on a client that is not reading: an unsent ping is a missed one.
                let ping = self.shared.liveness.ping(liveness::nonce());
                let _ = self.client.ping(&ping).now_or_never();
            }
            None => {}
        }
    }
}

impl Handler<UpstreamOpened> for Session {
    type Result = ();

    fn handle(&mut self, msg: UpstreamOpened, _: &mut Context<Self>) {
        log::debug!(
            target: LOG_TARGET,
            "session={} upstream open after {} ms",
            self.label(),
            msg.took.as_millis()
        );
    }
}

impl Handler<End> for Session {
    type Result = ();

    fn handle(&mut self, msg: End, ctx: &mut Context<Self>) {
        self.end(msg.reason, ctx);
    }
}

impl Handler<BudgetSpent> for Session {
    type Result = ();

    fn handle(&mut self, msg: BudgetSpent, ctx: &mut Context<Self>) {
        self.shared.budget_spent.set(Some(msg.budget));
        // With a response streaming, the upstream reader ends the session after its
        // `response.done`, so the client is not cut off mid-answer.
        if self.shared.responses_in_flight.get() == 0 {
            self.end(SessionEnd::BudgetExceeded { budget: msg.budget }, ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_warning_comes_a_minute_early_or_halfway() {
        assert_eq!(
            expiry_warning_lead(Duration::from_secs(3600)),
            Duration::from_secs(60)
        );
        assert_eq!(
            expiry_warning_lead(Duration::from_secs(2)),
            Duration::from_secs(1)
        );
    }
}
