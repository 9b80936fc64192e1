//! `Session`: one client WebSocket and everything that happens to it. Created by the HTTP layer
//! right after the upgrade, it asks the `Registry` for a slot, starts its `Upstream`, and reads
//! the client: frames sent before the upstream is open wait in a bounded queue, then every frame
//! goes to the upstream in order, with backpressure. It hears from the `Reaper` (`Tick`), from
//! its upstream (`UpstreamOpened`, `UpstreamEnded`) and from shutdown (`Shutdown`). Whichever
//! side ends first, `end()` tells the other why, sends the client an `error` event (for failures)
//! and a close frame, and stops; `stopping()` gives the slot back and writes the log line.

use std::{
    cell::Cell,
    collections::VecDeque,
    io,
    net::IpAddr,
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use actix::prelude::*;
use actix_ws::{AggregatedMessage, AggregatedMessageStream, Message, ProtocolError};
use futures_util::{FutureExt, StreamExt};
use tokio::sync::oneshot;

use crate::{
    admission::registry::{self, Registry, SessionId},
    close::{error_event, CloseReason},
    ops::metrics::{Flow, Metrics},
    protection::identity::Identity,
    protection::usage::Usage,
    upstream::{self, Dialer, Upstream, Writer},
};

/// How long the client gets to take the final `error` event and close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How long before `MAX_SESSION_DURATION` the client is warned (`session_expiring`).
pub const EXPIRY_WARNING: Duration = Duration::from_secs(60);

/// The warning comes `EXPIRY_WARNING` before the end, or halfway for limits under two minutes.
pub fn expiry_warning_lead(max: Duration) -> Duration {
    EXPIRY_WARNING.min(max / 2)
}

/// State the session's pumps write and the actor reads; all on the session's own thread.
#[derive(Default)]
pub struct Shared {
    pub client_to_upstream: Counter,
    pub upstream_to_client: Counter,
    /// Heartbeats sent since the client's last pong.
    pub missed_pongs: Cell<u32>,
    /// A frame for the client is waiting for room in its socket.
    pub client_write_blocked: Cell<bool>,
    /// A frame for the upstream is waiting for room in its socket.
    pub upstream_write_blocked: Cell<bool>,
    /// Responses the upstream has started (`response.created`) and not finished.
    pub responses_in_flight: Cell<u32>,
    /// Set when a budget this session draws on is spent: end after the response in flight.
    pub budget_spent: Cell<Option<&'static str>>,
    /// Tokens the upstream reported for this session.
    pub usage: Cell<Usage>,
}

#[derive(Default)]
pub struct Counter {
    pub messages: Cell<u64>,
    pub bytes: Cell<u64>,
}

impl Counter {
    #[inline]
    pub fn record(&self, bytes: usize) {
        self.messages.set(self.messages.get() + 1);
        self.bytes.set(self.bytes.get() + bytes as u64);
    }
}

impl Shared {
    /// Data messages either way: the reaper's measure of activity (pongs do not count).
    pub fn data_messages(&self) -> u64 {
        self.client_to_upstream.messages.get() + self.upstream_to_client.messages.get()
    }
}

/// The reaper's periodic check; `heartbeat` also asks for a ping.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Tick {
    pub now: Instant,
    pub heartbeat: bool,
}

/// The upstream WebSocket is open.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UpstreamOpened {
    pub took: Duration,
}

/// The upstream ended (failed to open, closed, or lost); the session ends with this reason.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UpstreamEnded {
    pub reason: CloseReason,
}

/// A budget this session draws on is spent: end it once no response is in flight.
#[derive(Message)]
#[rtype(result = "()")]
pub struct BudgetSpent {
    pub which: &'static str,
}

/// End the session from the relay's side (shutdown, eviction).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown {
    pub reason: CloseReason,
}

/// What `/stats?sessions=true` shows of a session.
#[derive(Message)]
#[rtype(result = "Option<SessionInfo>")]
pub struct Describe;

#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionInfo {
    pub id: SessionId,
    pub client: Option<String>,
    pub model: String,
    pub identity: String,
    pub age_seconds: u64,
    pub idle_seconds: u64,
    pub client_to_upstream_bytes: u64,
    pub upstream_to_client_bytes: u64,
}

/// The log target for per-message event types (`DEBUG=true`); never payloads.
pub const EVENTS_TARGET: &str = "openai_realtime_relay::events";

/// The `type` of a Realtime event, found without parsing the JSON (only for debug logging):
/// the top-level `"type"` key when it is among the first bytes, as OpenAI and the SDKs send it.
pub fn event_type(text: &str) -> &str {
    crate::protection::usage::top_level_type(text).unwrap_or("-")
}

/// Logs one message's event type at debug level on `EVENTS_TARGET`.
pub fn log_event(id: SessionId, direction: &str, msg: &Message) {
    let kind = match msg {
        Message::Text(t) => event_type(t),
        Message::Binary(_) => "binary",
        _ => return,
    };
    log::debug!(target: EVENTS_TARGET, "session={id} direction={direction} type={kind}");
}

/// Everything the HTTP layer hands a new session.
pub struct Params {
    pub client: actix_ws::Session,
    pub stream: AggregatedMessageStream,
    /// The upstream query string (`model=..`, `intent=..`), already validated.
    pub query: String,
    pub model: String,
    pub client_ip: Option<IpAddr>,
    pub identity: Identity,
    /// `OpenAI-Safety-Identifier` for the upstream handshake, when enabled.
    pub safety_id: Option<String>,
    pub max_session_duration: Option<Duration>,
    pub registry: Addr<Registry>,
    pub metrics: Arc<Metrics>,
    pub dialer: Rc<Dialer>,
    pub max_message_size: usize,
    pub inactivity_timeout: Duration,
}

pub struct Session {
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
    upstream: Option<Addr<Upstream>>,
    shared: Rc<Shared>,
    opened_at: Instant,
    last_activity: Instant,
    seen_messages: u64,
    ending: Option<CloseReason>,
}

impl Session {
    pub fn new(p: Params) -> Session {
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
            upstream: None,
            shared: Rc::new(Shared::default()),
            opened_at: now,
            last_activity: now,
            seen_messages: 0,
            ending: None,
        }
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
            "session={id} opened client={} identity={} model={}",
            self.client_ip
                .map_or_else(|| "-".into(), |ip| ip.to_string()),
            self.identity.key,
            self.model
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
            ctx.run_later(max, |act, ctx| {
                act.end(CloseReason::SessionMaxDuration, ctx)
            });
        }
        let (opened_tx, opened_rx) = oneshot::channel();
        self.upstream = Some(
            Upstream::new(upstream::Params {
                session: ctx.address(),
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
    pub fn on_tick(&mut self, now: Instant, heartbeat: bool) -> Option<CloseReason> {
        let seen = self.shared.data_messages();
        if seen != self.seen_messages {
            self.seen_messages = seen;
            self.last_activity = now;
        } else if now.duration_since(self.last_activity) >= self.inactivity_timeout {
            return Some(CloseReason::IdleTimeout);
        }
        if heartbeat {
            let missed = self.shared.missed_pongs.get();
            if missed >= 2 {
                return Some(if self.shared.client_write_blocked.get() {
                    CloseReason::ClientTooSlow
                } else if self.shared.upstream_write_blocked.get() {
                    CloseReason::UpstreamTooSlow
                } else {
                    CloseReason::HeartbeatTimeout
                });
            }
            self.shared.missed_pongs.set(missed + 1);
        }
        None
    }

    /// Ends the session once: tells the upstream, tells the client, stops.
    fn end(&mut self, reason: CloseReason, ctx: &mut Context<Self>) {
        if self.ending.is_some() {
            return;
        }
        self.finish(reason);
        ctx.stop();
    }

    fn finish(&mut self, reason: CloseReason) {
        if let Some(upstream) = self.upstream.take() {
            upstream.do_send(upstream::Close {
                code: reason.upstream_code(),
                reason: match &reason {
                    CloseReason::ClientClosed { reason, .. } => reason.clone(),
                    other => other.label().to_string(),
                },
            });
        }
        if reason != CloseReason::ClientGone {
            say_goodbye(self.client.clone(), &reason, &self.event_id());
        }
        self.ending = Some(reason);
    }
}

/// Sends the client the `error` event for `reason` (if it is a failure) and the close frame.
/// Detached, so the client still gets its close after the session actor is gone; bounded, so a
/// client that never reads cannot keep the task alive.
pub fn say_goodbye(mut client: actix_ws::Session, reason: &CloseReason, event_id: &str) {
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
        let admit = self.registry.send(registry::Admit {
            entry: registry::Entry {
                addr: ctx.address(),
                model: self.model.clone(),
                client_ip: self.client_ip,
                identity: self.identity.key.clone(),
                credential_models: self.identity.models.clone(),
                opened_at: self.opened_at,
            },
        });
        ctx.wait(admit.into_actor(self).map(|answer, act, ctx| match answer {
            Ok(Ok(id)) => act.admitted(id, ctx),
            Ok(Err(rejected)) => {
                log::warn!(
                    "session refused client={} reason={}",
                    act.client_ip
                        .map_or_else(|| "-".into(), |ip| ip.to_string()),
                    rejected.label()
                );
                act.end(rejected.into_close_reason(), ctx);
            }
            Err(_) => act.end(CloseReason::ShuttingDown, ctx),
        }));
    }

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        if self.ending.is_none() {
            self.finish(CloseReason::ShuttingDown);
        }
        let Some(id) = self.id else {
            return Running::Stop;
        };
        let reason = self
            .ending
            .as_ref()
            .map_or("server_shutting_down", |r| r.label());
        self.registry.do_send(registry::Release { id, reason });
        let s = &self.shared;
        let tokens = s.usage.get();
        log::info!(
            "session={id} closed client={} identity={} model={} reason={reason} code={} \
             duration_ms={} client_to_upstream_messages={} client_to_upstream_bytes={} \
             upstream_to_client_messages={} upstream_to_client_bytes={} \
             input_tokens={} output_tokens={} total_tokens={}",
            self.client_ip
                .map_or_else(|| "-".into(), |ip| ip.to_string()),
            self.identity.key,
            self.model,
            // `-`: the client was gone, no close frame was sent.
            self.ending
                .as_ref()
                .map_or(Some(1012), |r| r.client_code())
                .map_or_else(|| "-".to_string(), |c| c.to_string()),
            self.opened_at.elapsed().as_millis(),
            s.client_to_upstream.messages.get(),
            s.client_to_upstream.bytes.get(),
            s.upstream_to_client.messages.get(),
            s.upstream_to_client.bytes.get(),
            tokens.input_tokens,
            tokens.output_tokens,
            tokens.billable(),
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
                let _ = self.client.ping(b"").now_or_never();
            }
            None => {}
        }
    }
}

impl Handler<Describe> for Session {
    type Result = Option<SessionInfo>;

    fn handle(&mut self, _: Describe, _: &mut Context<Self>) -> Self::Result {
        let id = self.id?;
        let now = Instant::now();
        let idle = if self.shared.data_messages() == self.seen_messages {
            now.duration_since(self.last_activity)
        } else {
            Duration::ZERO
        };
        Some(SessionInfo {
            id,
            client: self.client_ip.map(|ip| ip.to_string()),
            model: self.model.clone(),
            identity: self.identity.key.clone(),
            age_seconds: now.duration_since(self.opened_at).as_secs(),
            idle_seconds: idle.as_secs(),
            client_to_upstream_bytes: self.shared.client_to_upstream.bytes.get(),
            upstream_to_client_bytes: self.shared.upstream_to_client.bytes.get(),
        })
    }
}

impl Handler<UpstreamOpened> for Session {
    type Result = ();

    fn handle(&mut self, msg: UpstreamOpened, _: &mut Context<Self>) {
        log::debug!(
            "session={} upstream open after {} ms",
            self.label(),
            msg.took.as_millis()
        );
    }
}

impl Handler<UpstreamEnded> for Session {
    type Result = ();

    fn handle(&mut self, msg: UpstreamEnded, ctx: &mut Context<Self>) {
        self.end(msg.reason, ctx);
    }
}

impl Handler<BudgetSpent> for Session {
    type Result = ();

    fn handle(&mut self, msg: BudgetSpent, ctx: &mut Context<Self>) {
        self.shared.budget_spent.set(Some(msg.which));
        // With a response streaming, the upstream reader ends the session after its
        // `response.done`, so the client is not cut off mid-answer.
        if self.shared.responses_in_flight.get() == 0 {
            self.end(CloseReason::BudgetExceeded { which: msg.which }, ctx);
        }
    }
}

impl Handler<Shutdown> for Session {
    type Result = ();

    fn handle(&mut self, msg: Shutdown, ctx: &mut Context<Self>) {
        self.end(msg.reason, ctx);
    }
}

/// One client frame, sorted.
enum Step {
    Data(Message, usize),
    Skip,
    End(CloseReason),
}

fn classify(
    item: Option<Result<AggregatedMessage, ProtocolError>>,
    client: &mut actix_ws::Session,
    shared: &Shared,
    max_message_size: usize,
) -> Step {
    match item {
        Some(Ok(AggregatedMessage::Text(t))) => {
            let len = t.len();
            Step::Data(Message::Text(t), len)
        }
        Some(Ok(AggregatedMessage::Binary(b))) => {
            let len = b.len();
            Step::Data(Message::Binary(b), len)
        }
        Some(Ok(AggregatedMessage::Ping(p))) => {
            // Answer for the relay; a client whose socket is full is not reading the pong either.
            let _ = client.pong(&p).now_or_never();
            Step::Skip
        }
        Some(Ok(AggregatedMessage::Pong(_))) => {
            shared.missed_pongs.set(0);
            Step::Skip
        }
        Some(Ok(AggregatedMessage::Close(reason))) => Step::End(CloseReason::ClientClosed {
            code: reason.as_ref().map_or(1000, |r| u16::from(r.code)),
            reason: reason.and_then(|r| r.description).unwrap_or_default(),
        }),
        Some(Err(ProtocolError::Overflow)) => Step::End(CloseReason::ClientMessageTooLarge {
            limit: max_message_size,
        }),
        Some(Err(ProtocolError::Io(e))) if is_continuation_overflow(&e) => {
            Step::End(CloseReason::ClientMessageTooLarge {
                limit: max_message_size,
            })
        }
        Some(Err(ProtocolError::Io(_))) | None => Step::End(CloseReason::ClientGone),
        Some(Err(_)) => Step::End(CloseReason::ClientProtocolError),
    }
}

/// actix-ws reports an oversized fragmented message as an I/O error with this text.
fn is_continuation_overflow(e: &io::Error) -> bool {
    e.to_string().contains("maximum continuation size")
}

/// Reads the client until it ends. Before the upstream is open, data frames wait in a queue of
/// at most `max_queued` bytes; after, each is handed to the upstream writer in order, waiting for
/// room (so a stalled upstream stops the reading, not the memory).
/// What the client reader needs besides its stream.
struct FromClient {
    id: SessionId,
    client: actix_ws::Session,
    shared: Rc<Shared>,
    flow: Flow,
    max_queued: usize,
    log_events: bool,
}

async fn read_client(
    mut stream: AggregatedMessageStream,
    mut opened: oneshot::Receiver<Writer>,
    from: FromClient,
) -> CloseReason {
    let FromClient {
        id,
        mut client,
        shared,
        flow,
        max_queued,
        log_events,
    } = from;
    let mut queue: VecDeque<(Message, usize)> = VecDeque::new();
    let mut queued = 0usize;
    let writer = loop {
        tokio::select! {
            biased;
            writer = &mut opened => match writer {
                Ok(writer) => break writer,
                // The upstream failed to open; its `UpstreamEnded` ends this session.
                Err(_) => return std::future::pending().await,
            },
            item = stream.next() => match classify(item, &mut client, &shared, max_queued) {
                Step::Data(msg, len) => {
                    queued += len;
                    if queued > max_queued {
                        return CloseReason::ClientQueueOverflow { limit: max_queued };
                    }
                    queue.push_back((msg, len));
                }
                Step::Skip => {}
                Step::End(reason) => return reason,
            },
        }
    };
    for (msg, len) in queue {
        if log_events {
            log_event(id, "client_to_upstream", &msg);
        }
        if !forward(&writer, msg, len, &shared, &flow).await {
            return std::future::pending().await;
        }
    }
    loop {
        match classify(stream.next().await, &mut client, &shared, max_queued) {
            Step::Data(msg, len) => {
                if log_events {
                    log_event(id, "client_to_upstream", &msg);
                }
                if !forward(&writer, msg, len, &shared, &flow).await {
                    // The upstream is closing; its `UpstreamEnded` ends this session.
                    return std::future::pending().await;
                }
            }
            Step::Skip => {}
            Step::End(reason) => return reason,
        }
    }
}

#[inline]
async fn forward(writer: &Writer, msg: Message, len: usize, shared: &Shared, flow: &Flow) -> bool {
    flow.record(len);
    shared.client_to_upstream.record(len);
    shared.upstream_write_blocked.set(true);
    let sent = writer.send(msg).await.is_ok();
    shared.upstream_write_blocked.set(false);
    sent
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

    #[test]
    fn event_type_is_found_without_parsing() {
        assert_eq!(
            event_type(r#"{"type":"input_audio_buffer.append","audio":"AAAA"}"#),
            "input_audio_buffer.append"
        );
        assert_eq!(
            event_type(r#"{ "event_id": "e", "type" : "response.create" }"#),
            "response.create"
        );
        assert_eq!(event_type("not json"), "-");
        assert_eq!(event_type(r#"{"type":42}"#), "-");
        assert_eq!(
            event_type(r#"{"event_id":"e","session":{"type":"realtime"}}"#),
            "-"
        );
    }
}
