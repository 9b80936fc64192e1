//! `Registry`: the one place that admits sessions. It owns the table of live sessions, enforces
//! `MAX_CONNECTIONS` before any upstream is dialed, and turns the metrics into `/stats`.
//! Sessions send it `Admit` when they start and `Release` from `stopping()`; the reaper asks it
//! for `LiveSessions`; the HTTP layer asks for `GetStats`; dialers report `ConnectTime`; shutdown
//! sends `Drain`, after which every session is told to end and nothing new is admitted. It
//! lives as long as the relay and publishes the live count on a watch channel, so shutdown can
//! wait for zero without polling.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    net::IpAddr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use actix::prelude::*;
use serde::Serialize;

use crate::{
    close::CloseReason,
    ops::metrics::{Metrics, CONNECT_FAILURE_LABELS, REJECT_LABELS},
    protection::usage::{self, Budget, Ledger, Usage},
    session::{self, Session},
};

pub type SessionId = u64;

/// Why the registry refused a session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("capacity exceeded ({max} sessions)")]
    Capacity { max: usize },
    #[error("shutting down")]
    ShuttingDown,
    #[error("too many connections for this client ({max})")]
    TooManyConnections { max: usize },
    #[error("rate limited ({per_minute}/min)")]
    RateLimited { per_minute: u32 },
    #[error("model {model} not allowed")]
    ModelNotAllowed { model: String },
    #[error("{} daily token budget spent", .which)]
    BudgetExceeded { which: &'static str },
}

impl Rejected {
    pub fn into_close_reason(self) -> CloseReason {
        match self {
            Rejected::Capacity { max } => CloseReason::CapacityExceeded { max },
            Rejected::ShuttingDown => CloseReason::ShuttingDown,
            Rejected::TooManyConnections { max } => CloseReason::TooManyConnections { max },
            Rejected::RateLimited { per_minute } => CloseReason::RateLimited { per_minute },
            Rejected::ModelNotAllowed { model } => CloseReason::ModelNotAllowed { model },
            Rejected::BudgetExceeded { which } => CloseReason::BudgetExceeded { which },
        }
    }

    pub fn label(&self) -> &'static str {
        self.clone().into_close_reason().label()
    }
}

/// Admission limits beyond `MAX_CONNECTIONS` (all off by default).
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// 0 = unlimited.
    pub per_client: usize,
    /// New sessions per minute per identity; 0 = unlimited.
    pub rate_per_minute: u32,
    /// Empty = any model.
    pub allowed_models: Vec<String>,
    pub daily_budget: Option<u64>,
    pub client_budget: Option<u64>,
}

/// A token bucket of `rate_per_minute` new sessions, refilled continuously.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Today's UTC day number.
fn today() -> u64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    usage::utc_day(secs)
}

/// What the registry knows of a live session.
#[derive(Debug, Clone)]
pub struct Entry {
    pub addr: Addr<Session>,
    pub model: String,
    pub client_ip: Option<IpAddr>,
    /// What limits and budgets key on: `token:<name>`, `jwt:<sub>` or `ip:<address>`.
    pub identity: String,
    /// Models the client's credential allows (JWT `models` claim), on top of `ALLOWED_MODELS`.
    pub credential_models: Option<Vec<String>>,
    pub opened_at: Instant,
}

/// Ask for a slot for a new session; answered before any upstream dial.
#[derive(Message)]
#[rtype(result = "Result<SessionId, Rejected>")]
pub struct Admit {
    pub entry: Entry,
}

/// A session ended and gives its slot back.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Release {
    pub id: SessionId,
    pub reason: &'static str,
}

/// Stop admitting and tell every live session to end; answers how many were live.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Drain;

/// Usage an upstream reported for a session (`response.done`, transcription completed).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RecordUsage {
    pub identity: String,
    pub model: String,
    pub usage: Usage,
}

/// Write the usage state file now (shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SaveUsage;

/// How long one successful upstream dial took, for the `/stats` latency window.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ConnectTime {
    pub seconds: f64,
}

/// The addresses of every live session, for the reaper's sweep.
#[derive(Message)]
#[rtype(result = "Vec<Addr<Session>>")]
pub struct LiveSessions;

/// A snapshot for `/stats` and `/health`.
#[derive(Message)]
#[rtype(result = "Stats")]
pub struct GetStats;

#[derive(Debug, Clone, Serialize)]
pub struct DirectionStats {
    pub messages: u64,
    pub bytes: u64,
}

/// Upstream connect latency over the last `CONNECT_WINDOW` dials.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub samples: usize,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Dials remembered for the latency percentiles.
pub const CONNECT_WINDOW: usize = 1024;

#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub uptime_seconds: u64,
    pub draining: bool,
    pub active_sessions: usize,
    pub sessions_by_model: BTreeMap<String, usize>,
    pub max_connections: usize,
    pub total_sessions: u64,
    pub rejected_sessions: u64,
    pub rejected_by_reason: BTreeMap<&'static str, u64>,
    pub closed_by_reason: BTreeMap<&'static str, u64>,
    pub client_to_upstream: DirectionStats,
    pub upstream_to_client: DirectionStats,
    pub upstream_connect_failures: u64,
    pub upstream_connect_failures_by_reason: BTreeMap<&'static str, u64>,
    pub upstream_connect_latency: Latency,
    pub usage: UsageStats,
}

/// Token usage for `/stats`: today's (UTC) totals overall, per model and for the top identities.
#[derive(Debug, Clone, Serialize)]
pub struct UsageStats {
    pub utc_day: u64,
    pub today: Usage,
    pub lifetime: Usage,
    pub by_model: BTreeMap<String, Usage>,
    /// The identities with the most billable tokens today, at most `TOP_IDENTITIES`.
    pub by_identity: Vec<IdentityUsage>,
    pub identities_today: usize,
    pub daily_token_budget: Option<u64>,
    pub client_daily_token_budget: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IdentityUsage {
    pub identity: String,
    pub usage: Usage,
    pub live_sessions: usize,
}

/// How many identities `/stats` lists.
pub const TOP_IDENTITIES: usize = 100;

pub struct Registry {
    max_connections: usize,
    sessions: HashMap<SessionId, Entry>,
    next_id: SessionId,
    metrics: Arc<Metrics>,
    started_at: Instant,
    draining: bool,
    live: tokio::sync::watch::Sender<usize>,
    connect_times: VecDeque<f64>,
    limits: Limits,
    buckets: HashMap<String, Bucket>,
    ledger: Ledger,
    /// Where the ledger is saved; `None` in unit tests.
    usage_file: Option<PathBuf>,
    usage_dirty: bool,
}

/// How often the usage state file is written while usage changes.
pub const USAGE_SAVE_INTERVAL: Duration = Duration::from_secs(2);

impl Registry {
    pub fn new(max_connections: usize, metrics: Arc<Metrics>) -> Registry {
        metrics.sessions_max.set(max_connections as i64);
        Registry {
            max_connections,
            sessions: HashMap::new(),
            next_id: 1,
            metrics,
            started_at: Instant::now(),
            draining: false,
            live: tokio::sync::watch::Sender::new(0),
            connect_times: VecDeque::with_capacity(CONNECT_WINDOW),
            limits: Limits::default(),
            buckets: HashMap::new(),
            ledger: Ledger::default(),
            usage_file: None,
            usage_dirty: false,
        }
    }

    /// Adds per-client limits and budgets.
    pub fn with_limits(mut self, limits: Limits) -> Registry {
        self.limits = limits;
        self
    }

    /// Loads (and later saves) the usage ledger at `path`; a corrupt file is set aside.
    pub fn with_usage_file(mut self, path: PathBuf) -> Registry {
        let (ledger, warning) = Ledger::load_or_quarantine(&path);
        if let Some(w) = warning {
            log::warn!("{w}");
        }
        self.ledger = ledger;
        self.usage_file = Some(path);
        self
    }

    fn save_usage(&mut self) {
        let Some(path) = &self.usage_file else { return };
        match self.ledger.save(path) {
            Ok(()) => self.usage_dirty = false,
            Err(e) => log::error!(
                "usage state: cannot write {}: {e}; counts since the last save are at risk",
                path.display()
            ),
        }
    }

    /// Records usage, and returns the budget it spent, if it just spent one.
    pub fn record_usage(&mut self, identity: &str, model: &str, usage: &Usage) -> Option<Budget> {
        let day = today();
        self.ledger.record(identity, model, usage, day);
        self.usage_dirty = true;
        let label = self.metrics.model_label(model);
        for (kind, n) in usage.by_kind() {
            if n > 0 {
                self.metrics
                    .tokens
                    .with_label_values(&[label, kind])
                    .inc_by(n);
            }
        }
        self.ledger.exhausted(
            identity,
            day,
            self.limits.daily_budget,
            self.limits.client_budget,
        )
    }

    /// Takes one new-session token from `identity`'s bucket.
    fn take_rate_token(&mut self, identity: &str, now: Instant) -> bool {
        let rate = f64::from(self.limits.rate_per_minute);
        let bucket = self.buckets.entry(identity.to_string()).or_insert(Bucket {
            tokens: rate,
            updated: now,
        });
        let refill = now.duration_since(bucket.updated).as_secs_f64() * rate / 60.0;
        bucket.tokens = (bucket.tokens + refill).min(rate);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets buckets that have refilled: they hold no information.
    fn prune_buckets(&mut self, now: Instant) {
        let rate = f64::from(self.limits.rate_per_minute);
        self.buckets.retain(|_, b| {
            b.tokens + now.duration_since(b.updated).as_secs_f64() * rate / 60.0 < rate
        });
    }

    /// Every admission rule except capacity, in the order a client would want to hear them.
    fn check_limits(&mut self, entry: &Entry, now: Instant) -> Result<(), Rejected> {
        let model_refused = (!self.limits.allowed_models.is_empty()
            && !self.limits.allowed_models.contains(&entry.model))
            || entry
                .credential_models
                .as_ref()
                .is_some_and(|m| !m.contains(&entry.model));
        if model_refused {
            return Err(Rejected::ModelNotAllowed {
                model: entry.model.clone(),
            });
        }
        if let Some(budget) = self.ledger.exhausted(
            &entry.identity,
            today(),
            self.limits.daily_budget,
            self.limits.client_budget,
        ) {
            return Err(Rejected::BudgetExceeded {
                which: budget_label(budget),
            });
        }
        let per_client = self.limits.per_client;
        if per_client > 0
            && self
                .sessions
                .values()
                .filter(|e| e.identity == entry.identity)
                .count()
                >= per_client
        {
            return Err(Rejected::TooManyConnections { max: per_client });
        }
        if self.limits.rate_per_minute > 0 && !self.take_rate_token(&entry.identity, now) {
            return Err(Rejected::RateLimited {
                per_minute: self.limits.rate_per_minute,
            });
        }
        Ok(())
    }

    /// The live session count, as it changes.
    pub fn watch_live(&self) -> tokio::sync::watch::Receiver<usize> {
        self.live.subscribe()
    }

    fn publish(&mut self) {
        let n = self.sessions.len();
        self.metrics.sessions_active.set(n as i64);
        self.live.send_replace(n);
    }

    /// Admits a session if there is room and the relay is not draining.
    pub fn admit(&mut self, entry: Entry) -> Result<SessionId, Rejected> {
        let verdict = if self.draining {
            Err(Rejected::ShuttingDown)
        } else if self.sessions.len() >= self.max_connections {
            Err(Rejected::Capacity {
                max: self.max_connections,
            })
        } else {
            self.check_limits(&entry, Instant::now())
        };
        if let Err(rejected) = verdict {
            self.metrics
                .sessions_rejected
                .with_label_values(&[rejected.label()])
                .inc();
            return Err(rejected);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.sessions.insert(id, entry);
        self.metrics.sessions_opened.inc();
        self.publish();
        Ok(id)
    }

    /// Frees a session's slot; releasing twice is harmless.
    pub fn release(&mut self, id: SessionId, reason: &'static str) {
        if let Some(entry) = self.sessions.remove(&id) {
            self.metrics
                .sessions_closed
                .with_label_values(&[reason])
                .inc();
            self.metrics
                .session_duration_seconds
                .observe(entry.opened_at.elapsed().as_secs_f64());
            self.publish();
        }
    }

    /// Stops admitting; returns the sessions that must now be told to end.
    pub fn drain(&mut self) -> Vec<Addr<Session>> {
        self.draining = true;
        self.sessions.values().map(|e| e.addr.clone()).collect()
    }

    pub fn record_connect(&mut self, seconds: f64) {
        if self.connect_times.len() == CONNECT_WINDOW {
            self.connect_times.pop_front();
        }
        self.connect_times.push_back(seconds);
    }

    fn latency(&self) -> Latency {
        let mut sorted: Vec<f64> = self.connect_times.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let pick = |q: f64| {
            (!sorted.is_empty()).then(|| {
                let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
                (sorted[i] * 1e6).round() / 1e3
            })
        };
        Latency {
            samples: sorted.len(),
            p50_ms: pick(0.50),
            p95_ms: pick(0.95),
            p99_ms: pick(0.99),
        }
    }

    pub fn active(&self) -> usize {
        self.sessions.len()
    }

    pub fn stats(&self) -> Stats {
        let m = &self.metrics;
        let rejected_by_reason: BTreeMap<_, _> =
            Metrics::by_label(&m.sessions_rejected, &REJECT_LABELS)
                .into_iter()
                .collect();
        let failures: BTreeMap<_, _> =
            Metrics::by_label(&m.upstream_connect_failures, &CONNECT_FAILURE_LABELS)
                .into_iter()
                .collect();
        let closed_by_reason = Metrics::by_label(&m.sessions_closed, &CloseReason::LABELS)
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect();
        let mut sessions_by_model = BTreeMap::new();
        for e in self.sessions.values() {
            *sessions_by_model.entry(e.model.clone()).or_insert(0) += 1;
        }
        let day = today();
        let mut by_identity: Vec<IdentityUsage> = self
            .ledger
            .by_identity
            .iter()
            .filter(|_| self.ledger.day == day)
            .map(|(identity, usage)| IdentityUsage {
                identity: identity.clone(),
                usage: *usage,
                live_sessions: self
                    .sessions
                    .values()
                    .filter(|e| &e.identity == identity)
                    .count(),
            })
            .collect();
        // Ties in identity order, so the answer does not change between requests.
        by_identity.sort_by(|a, b| {
            (b.usage.billable(), &a.identity).cmp(&(a.usage.billable(), &b.identity))
        });
        let identities_today = by_identity.len();
        by_identity.truncate(TOP_IDENTITIES);
        let current = self.ledger.day == day;
        let usage = UsageStats {
            utc_day: day,
            today: if current {
                self.ledger.all
            } else {
                Usage::default()
            },
            lifetime: self.ledger.lifetime,
            by_model: if current {
                self.ledger.by_model.clone()
            } else {
                Default::default()
            },
            by_identity,
            identities_today,
            daily_token_budget: self.limits.daily_budget,
            client_daily_token_budget: self.limits.client_budget,
        };
        Stats {
            uptime_seconds: self.uptime().as_secs(),
            draining: self.draining,
            active_sessions: self.sessions.len(),
            sessions_by_model,
            max_connections: self.max_connections,
            total_sessions: m.sessions_opened.get(),
            rejected_sessions: rejected_by_reason.values().sum(),
            rejected_by_reason,
            closed_by_reason,
            client_to_upstream: DirectionStats {
                messages: m.client_to_upstream.messages.get(),
                bytes: m.client_to_upstream.bytes.get(),
            },
            upstream_to_client: DirectionStats {
                messages: m.upstream_to_client.messages.get(),
                bytes: m.upstream_to_client.bytes.get(),
            },
            upstream_connect_failures: failures.values().sum(),
            upstream_connect_failures_by_reason: failures,
            upstream_connect_latency: self.latency(),
            usage,
        }
    }

    pub fn uptime(&self) -> Duration {
        self.started_at.elapsed()
    }
}

fn budget_label(b: Budget) -> &'static str {
    match b {
        Budget::Global => "relay-wide",
        Budget::Client => "per-client",
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(USAGE_SAVE_INTERVAL, |act, _| {
            if act.usage_dirty {
                act.save_usage();
            }
            if act.limits.rate_per_minute > 0 {
                act.prune_buckets(Instant::now());
            }
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        if self.usage_dirty {
            self.save_usage();
        }
    }
}

impl Handler<RecordUsage> for Registry {
    type Result = ();

    fn handle(&mut self, msg: RecordUsage, _: &mut Context<Self>) {
        let Some(budget) = self.record_usage(&msg.identity, &msg.model, &msg.usage) else {
            return;
        };
        let which = budget_label(budget);
        log::warn!(
            "budget: the {which} daily token budget is spent (identity={}); ending affected sessions after their response",
            msg.identity
        );
        for e in self.sessions.values() {
            if budget == Budget::Global || e.identity == msg.identity {
                e.addr.do_send(session::BudgetSpent { which });
            }
        }
    }
}

impl Handler<SaveUsage> for Registry {
    type Result = ();

    fn handle(&mut self, _: SaveUsage, _: &mut Context<Self>) {
        self.save_usage();
    }
}

impl Handler<Admit> for Registry {
    type Result = Result<SessionId, Rejected>;

    fn handle(&mut self, msg: Admit, _: &mut Context<Self>) -> Self::Result {
        self.admit(msg.entry)
    }
}

impl Handler<Release> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Release, _: &mut Context<Self>) {
        self.release(msg.id, msg.reason);
    }
}

impl Handler<Drain> for Registry {
    type Result = usize;

    fn handle(&mut self, _: Drain, _: &mut Context<Self>) -> usize {
        let sessions = self.drain();
        for s in &sessions {
            s.do_send(session::Shutdown {
                reason: CloseReason::ShuttingDown,
            });
        }
        sessions.len()
    }
}

impl Handler<ConnectTime> for Registry {
    type Result = ();

    fn handle(&mut self, msg: ConnectTime, _: &mut Context<Self>) {
        self.record_connect(msg.seconds);
    }
}

impl Handler<LiveSessions> for Registry {
    type Result = Vec<Addr<Session>>;

    fn handle(&mut self, _: LiveSessions, _: &mut Context<Self>) -> Self::Result {
        self.sessions.values().map(|e| e.addr.clone()).collect()
    }
}

impl Handler<GetStats> for Registry {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.stats())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(identity: &str, model: &str) -> Entry {
        // An address that is never started: admission logic does not send to it.
        let (tx, _rx) = actix::dev::channel::channel(1);
        Entry {
            addr: Addr::new(tx),
            model: model.into(),
            client_ip: None,
            identity: identity.into(),
            credential_models: None,
            opened_at: Instant::now(),
        }
    }

    #[test]
    fn per_client_limit_and_release() {
        let mut r = Registry::new(10, Arc::new(Metrics::default())).with_limits(Limits {
            per_client: 1,
            ..Limits::default()
        });
        let id = r.admit(entry("token:a", "m")).expect("first");
        assert_eq!(
            r.admit(entry("token:a", "m")),
            Err(Rejected::TooManyConnections { max: 1 })
        );
        assert!(r.admit(entry("token:b", "m")).is_ok());
        r.release(id, "client_closed");
        assert!(r.admit(entry("token:a", "m")).is_ok());
    }

    #[test]
    fn rate_bucket_refuses_then_forgets() {
        let mut r = Registry::new(100, Arc::new(Metrics::default())).with_limits(Limits {
            rate_per_minute: 2,
            ..Limits::default()
        });
        let now = Instant::now();
        assert!(r.take_rate_token("a", now));
        assert!(r.take_rate_token("a", now));
        assert!(!r.take_rate_token("a", now));
        assert!(r.take_rate_token("a", now + Duration::from_secs(30)));
        r.prune_buckets(now + Duration::from_secs(120));
        assert!(r.buckets.is_empty());
    }

    #[test]
    fn models_are_checked_against_both_lists() {
        let mut r = Registry::new(10, Arc::new(Metrics::default())).with_limits(Limits {
            allowed_models: vec!["gpt-realtime".into(), "gpt-realtime-mini".into()],
            ..Limits::default()
        });
        assert!(matches!(
            r.admit(entry("ip:1", "gpt-4o-realtime-preview")),
            Err(Rejected::ModelNotAllowed { .. })
        ));
        let mut e = entry("jwt:u", "gpt-realtime");
        e.credential_models = Some(vec!["gpt-realtime-mini".into()]);
        assert!(matches!(r.admit(e), Err(Rejected::ModelNotAllowed { .. })));
        assert!(r.admit(entry("ip:1", "gpt-realtime")).is_ok());
    }

    #[test]
    fn spent_budget_refuses_new_sessions() {
        let mut r = Registry::new(10, Arc::new(Metrics::default())).with_limits(Limits {
            client_budget: Some(100),
            ..Limits::default()
        });
        let used = Usage {
            total_tokens: 100,
            ..Usage::default()
        };
        assert_eq!(r.record_usage("token:a", "m", &used), Some(Budget::Client));
        assert_eq!(
            r.admit(entry("token:a", "m")),
            Err(Rejected::BudgetExceeded {
                which: "per-client"
            })
        );
        assert!(r.admit(entry("token:b", "m")).is_ok());
    }

    #[test]
    fn latency_percentiles_over_the_window() {
        let mut r = Registry::new(1, Arc::new(Metrics::default()));
        assert_eq!(r.latency().samples, 0);
        assert_eq!(r.latency().p50_ms, None);
        for i in 1..=100 {
            r.record_connect(i as f64 / 1000.0);
        }
        let l = r.latency();
        assert_eq!(l.samples, 100);
        assert_eq!(l.p50_ms, Some(50.0));
        assert_eq!(l.p95_ms, Some(95.0));
        assert_eq!(l.p99_ms, Some(99.0));
        for _ in 0..CONNECT_WINDOW {
            r.record_connect(0.5);
        }
        assert_eq!(r.latency().samples, CONNECT_WINDOW);
        assert_eq!(r.latency().p99_ms, Some(500.0));
    }
}
