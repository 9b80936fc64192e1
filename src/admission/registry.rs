//! `Registry`: the one place that admits sessions. It owns the table of live sessions, enforces
//! `MAX_CONNECTIONS` and the per-client limits and budgets before any upstream is dialed, keeps the
//! usage ledger, and turns the metrics into `/stats`. Sessions send it `Admit` when they start
//! and `Release` from `stopping()`; the reaper asks it for `LiveSessions`; the HTTP layer asks for
//! `GetStats`; dialers report `ConnectTime` and `RecordUsage`; shutdown sends `Drain`, after
//! which every session is told to end and nothing new is admitted. Its messages live in
//! `msg.rs`. It lives as long as the relay and publishes the live count on a watch channel, so
//! shutdown can wait for zero without polling. Two parts of it have files of their own:
//! `registry/report.rs` builds `/stats`, `registry/shared.rs` is its side of the shared state
//! (`REDIS_URL`).

use std::{
    collections::{BTreeMap, HashMap},
    io,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use actix::prelude::*;

use crate::{
    admission::{
        limits::{Limits, RateBuckets},
        msg::{
            Admit, ConnectTime, Drain, Entry, GetStats, LiveSessions, RecordUsage, Rejected,
            Release, SaveUsage, StatsSnapshot,
        },
        stats::{ConnectTimes, DirectionStats, IdentityUsage, Stats, UsageStats, TOP_IDENTITIES},
    },
    close::{budget_words, SessionEnd},
    cluster::{PendingUsage, LEASE_REFRESH},
    ops::metrics::{Metrics, CONNECT_FAILURE_LABELS, REJECT_LABELS},
    protection::usage::{self, Budget, Budgets, Ledger, StateLock, Usage, Writer},
    session::msg::{BudgetSpent, End, SessionHandle, SessionId},
};

mod report;
mod shared;

use self::shared::Shared;

/// Today's UTC day number.
fn today() -> u64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    usage::utc_day(secs)
}

pub(crate) struct Registry {
    max_connections: usize,
    /// Shared (`Arc`) so `/stats?sessions=true` takes a snapshot of the table for the price of
    /// a reference count per session, and lists it on an HTTP worker, not here.
    sessions: HashMap<SessionId, Arc<Entry>>,
    /// Live sessions per model, kept with `sessions`, for `/stats` without a scan.
    live_by_model: HashMap<String, usize>,
    /// Live sessions per identity, kept with `sessions`: admission and `/stats` read it in O(1)
    /// per identity instead of scanning every session.
    live_by_identity: HashMap<String, usize>,
    /// The own daily dollar budgets of identities with live sessions (tokens file, JWT
    /// `budget_usd`), kept with `live_by_identity`: usage reports name only the identity.
    own_usd_budgets: HashMap<String, u64>,
    next_id: SessionId,
    metrics: Arc<Metrics>,
    started_at: Instant,
    draining: bool,
    live: tokio::sync::watch::Sender<usize>,
    connect_times: ConnectTimes,
    limits: Limits,
    buckets: RateBuckets,
    ledger: Ledger,
    /// Saves the ledger to the usage state file, off this actor's thread; `None` in unit tests.
    usage_writer: Option<Writer>,
    usage_dirty: bool,
    /// `REDIS_URL`: limits, budgets and usage shared with other instances.
    shared: Option<Shared>,
}

/// How often the usage state file is written while usage changes.
pub(crate) const USAGE_SAVE_INTERVAL: Duration = Duration::from_secs(2);

/// How long the drain waits for the final save of the usage state file (a disk that hangs must
/// not hold the shutdown past its bound; the file on disk is then the previous save).
const FINAL_SAVE_WAIT: Duration = Duration::from_secs(3);

impl Registry {
    pub(crate) fn new(max_connections: usize, metrics: Arc<Metrics>) -> Registry {
        metrics.sessions_max.set(max_connections as i64);
        Registry {
            max_connections,
            sessions: HashMap::new(),
            live_by_model: HashMap::new(),
            live_by_identity: HashMap::new(),
            own_usd_budgets: HashMap::new(),
            next_id: 1,
            metrics,
            started_at: Instant::now(),
            draining: false,
            live: tokio::sync::watch::Sender::new(0),
            connect_times: ConnectTimes::default(),
            limits: Limits::default(),
            buckets: RateBuckets::default(),
            ledger: Ledger::default(),
            usage_writer: None,
            usage_dirty: false,
            shared: None,
        }
    }

    /// Adds per-client limits and budgets.
    pub(crate) fn with_limits(mut self, limits: Limits) -> Registry {
        self.limits = limits;
        self
    }

    /// Loads the usage ledger at `path` (a corrupt file is set aside; daily counts saved on a
    /// day after today are not today's), and from now on saves it there through a writer
    /// thread, while `lock` is held. Err if the thread cannot start.
    pub(crate) fn with_usage_file(
        mut self,
        path: PathBuf,
        lock: &Arc<StateLock>,
    ) -> io::Result<Registry> {
        let (mut ledger, warning) = Ledger::load_or_quarantine(&path);
        if let Some(w) = warning {
            log::warn!("{w}");
        }
        let today = today();
        if let Some(saved) = ledger.settle(today) {
            log::warn!(
                "usage state file {} was saved on UTC day {saved}, {} day(s) after today ({today}): \
                 the clock was ahead then or is behind now; today's counts start from zero \
                 (lifetime totals kept)",
                path.display(),
                saved - today
            );
        }
        self.ledger = ledger;
        self.usage_writer = Some(Writer::spawn(path, Arc::downgrade(lock))?);
        Ok(self)
    }

    /// Hands a copy of the ledger to the writer thread and returns at once, with the number to
    /// await the write with.
    fn save_usage(&mut self) -> Option<u64> {
        let writer = self.usage_writer.as_mut()?;
        self.usage_dirty = false;
        Some(writer.submit(self.ledger.clone()))
    }

    /// Records usage, and returns the budget it spent, if it just spent one.
    pub(crate) fn record_usage(
        &mut self,
        identity: &str,
        model: &str,
        usage: &Usage,
    ) -> Option<Budget> {
        let day = today();
        if day < self.ledger.day {
            log::warn!(
                "usage: the clock went back from UTC day {} to {day}; counting for {day} starts from zero",
                self.ledger.day
            );
        }
        if !self.ledger.record(identity, model, usage, day) {
            // parse_usage already drops such counts; this keeps any other sender honest.
            log::warn!(
                identity = identity, largest = usage.largest();
                "usage: a count above {} tokens in one event; not counted",
                usage::MAX_EVENT_TOKENS
            );
            return None;
        }
        self.usage_dirty = true;
        self.metrics.record_usage(model, usage);
        if !self.local_limits_apply() {
            // Budgets are judged on the shared ledger (`apply_totals`).
            return None;
        }
        self.ledger
            .exhausted(identity, day, &self.budgets_of(identity))
    }

    /// The budgets `identity` is held to, its own dollar budget included while it is live.
    pub(super) fn budgets_of(&self, identity: &str) -> Budgets {
        self.limits
            .budgets(self.own_usd_budgets.get(identity).copied())
    }

    /// The relay's own rules, in order: draining, capacity (admissions waiting for Redis hold a
    /// place), the model.
    fn check_local(&self, entry: &Entry) -> Result<(), Rejected> {
        let waiting = self.shared.as_ref().map_or(0, |s| s.pending);
        if self.draining {
            return Err(Rejected::ShuttingDown);
        }
        if self.sessions.len() + waiting >= self.max_connections {
            return Err(Rejected::Capacity {
                max: self.max_connections,
            });
        }
        self.check_model(entry)
    }

    fn check_model(&self, entry: &Entry) -> Result<(), Rejected> {
        // The session's own name; the other names a URL carries (`intent:..` beside a model)
        // were checked at the upgrade with the same rule (`protection/models.rs`).
        let model_refused =
            !crate::protection::models::admits(&self.limits.allowed_models, &entry.model)
                || entry
                    .credential_models
                    .as_ref()
                    .is_some_and(|m| !m.contains(&entry.model));
        if model_refused {
            return Err(Rejected::ModelNotAllowed {
                model: entry.model.clone(),
            });
        }
        Ok(())
    }

    /// Budgets, per-client sessions and rate, on this instance's own counts, in the order a
    /// client would want to hear them.
    fn check_limits(&mut self, entry: &Entry, now: Instant) -> Result<(), Rejected> {
        let budgets = self.limits.budgets(entry.usd_budget);
        if let Some(budget) = self.ledger.exhausted(&entry.identity, today(), &budgets) {
            return Err(Rejected::BudgetExceeded { budget });
        }
        let per_client = self.limits.per_client;
        if per_client > 0 && self.live_sessions_of(&entry.identity) >= per_client {
            return Err(Rejected::TooManyConnections { max: per_client });
        }
        let rate = self.limits.rate_per_minute;
        if rate > 0 && !self.buckets.take(&entry.identity, rate, now) {
            return Err(Rejected::RateLimited {
                per_minute: self.limits.rate_per_minute,
            });
        }
        Ok(())
    }

    /// The live session count, as it changes.
    pub(crate) fn watch_live(&self) -> tokio::sync::watch::Receiver<usize> {
        self.live.subscribe()
    }

    fn publish(&mut self) {
        let n = self.sessions.len();
        self.metrics.sessions_active.set(n as i64);
        self.live.send_replace(n);
    }

    fn live_sessions_of(&self, identity: &str) -> usize {
        self.live_by_identity.get(identity).copied().unwrap_or(0)
    }

    /// Admits a session on this instance's own rules and counts (no shared state).
    pub(crate) fn admit(&mut self, entry: Entry) -> Result<SessionId, Rejected> {
        let verdict = self
            .check_local(&entry)
            .and_then(|()| self.check_limits(&entry, Instant::now()));
        if let Err(rejected) = verdict {
            return Err(self.refuse(rejected));
        }
        let id = self.next_id;
        self.next_id += 1;
        self.insert(id, entry);
        Ok(id)
    }

    /// Counts a refusal and returns it.
    fn refuse(&self, rejected: Rejected) -> Rejected {
        self.metrics
            .sessions_rejected
            .with_label_values(&[rejected.label()])
            .inc();
        rejected
    }

    fn insert(&mut self, id: SessionId, entry: Entry) {
        *self
            .live_by_identity
            .entry(entry.identity.clone())
            .or_insert(0) += 1;
        *self.live_by_model.entry(entry.model.clone()).or_insert(0) += 1;
        if let Some(own) = entry.usd_budget {
            self.own_usd_budgets.insert(entry.identity.clone(), own);
        }
        self.metrics
            .sessions_by_transport
            .with_label_values(&[entry.transport.label()])
            .inc();
        self.sessions.insert(id, Arc::new(entry));
        self.metrics.sessions_opened.inc();
        self.publish();
    }

    /// Frees a session's slot; releasing twice is harmless.
    pub(crate) fn release(&mut self, id: SessionId, reason: &SessionEnd) {
        if let Some(entry) = self.sessions.remove(&id) {
            for (map, key) in [
                (&mut self.live_by_identity, &entry.identity),
                (&mut self.live_by_model, &entry.model),
            ] {
                if let Some(n) = map.get_mut(key) {
                    *n -= 1;
                    if *n == 0 {
                        map.remove(key);
                    }
                }
            }
            if !self.live_by_identity.contains_key(&entry.identity) {
                self.own_usd_budgets.remove(&entry.identity);
            }
            self.metrics
                .sessions_by_transport
                .with_label_values(&[entry.transport.label()])
                .dec();
            self.metrics
                .sessions_closed
                .with_label_values(&[reason.label()])
                .inc();
            self.metrics
                .session_duration_seconds
                .observe(entry.opened_at.elapsed().as_secs_f64());
            self.publish();
            self.release_lease(id, &entry.identity);
        }
    }

    /// Stops admitting; returns the sessions that must now be told to end.
    pub(crate) fn drain(&mut self) -> Vec<SessionHandle> {
        self.draining = true;
        self.handles()
    }

    fn handles(&self) -> Vec<SessionHandle> {
        self.sessions.values().map(|e| e.handle.clone()).collect()
    }

    /// The live sessions, for `/stats?sessions=true`: a reference to each entry, listed by the
    /// caller (`stats::session_list`) off this actor.
    fn snapshot(&self) -> Vec<(SessionId, Arc<Entry>)> {
        self.sessions
            .iter()
            .map(|(id, e)| (*id, Arc::clone(e)))
            .collect()
    }

    /// Tells the sessions a spent budget covers (all of them for a global one) to end after
    /// their response.
    fn announce_spent(&self, budget: Budget, identity: &str) {
        log::warn!(
            identity = identity;
            "budget: the {} budget is spent; ending affected sessions after their response",
            budget_words(budget)
        );
        for e in self.sessions.values() {
            if budget.is_global() || e.identity == identity {
                e.handle.budget_spent.do_send(BudgetSpent { budget });
            }
        }
    }

    pub(crate) fn uptime(&self) -> Duration {
        self.started_at.elapsed()
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(USAGE_SAVE_INTERVAL, |act, ctx| {
            // A failed write is tried again, with the newest counts.
            if act.usage_writer.as_ref().is_some_and(Writer::failed) {
                act.usage_dirty = true;
            }
            if act.usage_dirty {
                act.save_usage();
            }
            let rate = act.limits.rate_per_minute;
            if rate > 0 {
                act.buckets.prune(rate, Instant::now());
            }
            act.shared_tick(ctx);
        });
        if self.shared.is_some() {
            self.refresh_leases();
            ctx.run_interval(LEASE_REFRESH, |act, _| act.refresh_leases());
        }
    }

    /// Hands over the last counts; dropping the writer then waits for them to be written.
    fn stopped(&mut self, _: &mut Context<Self>) {
        if self.usage_dirty {
            self.save_usage();
        }
    }
}

impl Handler<RecordUsage> for Registry {
    type Result = ();

    fn handle(&mut self, msg: RecordUsage, ctx: &mut Context<Self>) {
        let spent = self.record_usage(&msg.identity, &msg.model, &msg.usage);
        if let Some(budget) = spent {
            self.announce_spent(budget, &msg.identity);
        }
        self.share_usage(
            PendingUsage {
                identity: msg.identity,
                model: msg.model,
                usage: msg.usage,
                key: msg.key,
            },
            ctx,
        );
    }
}

impl Handler<SaveUsage> for Registry {
    type Result = ResponseFuture<()>;

    /// Answers once the ledger as of now is on disk (or failed, or [`FINAL_SAVE_WAIT`] passed);
    /// the registry goes on admitting and counting meanwhile.
    fn handle(&mut self, _: SaveUsage, _: &mut Context<Self>) -> Self::Result {
        let seq = self.save_usage();
        let written = seq
            .zip(self.usage_writer.as_ref())
            .map(|(s, w)| w.written(s));
        Box::pin(async move {
            let Some(written) = written else { return };
            if tokio::time::timeout(FINAL_SAVE_WAIT, written)
                .await
                .is_err()
            {
                log::warn!(
                    "usage state: the final save did not finish within {} s; not waiting for it",
                    FINAL_SAVE_WAIT.as_secs()
                );
            }
        })
    }
}

impl Handler<Admit> for Registry {
    type Result = ResponseActFuture<Self, Result<SessionId, Rejected>>;

    fn handle(&mut self, msg: Admit, _: &mut Context<Self>) -> Self::Result {
        let started = Instant::now();
        let decided = if self.shared.is_some() {
            self.admit_shared(msg.entry)
        } else {
            Box::pin(fut::ready(self.admit(msg.entry)))
        };
        Box::pin(decided.map(move |verdict, act, _| {
            act.metrics
                .admission_seconds
                .observe(started.elapsed().as_secs_f64());
            verdict
        }))
    }
}

impl Handler<Release> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Release, _: &mut Context<Self>) {
        self.release(msg.id, &msg.reason);
    }
}

impl Handler<Drain> for Registry {
    type Result = usize;

    fn handle(&mut self, _: Drain, _: &mut Context<Self>) -> usize {
        let sessions = self.drain();
        for s in &sessions {
            s.end.do_send(End {
                reason: SessionEnd::ShuttingDown,
            });
        }
        sessions.len()
    }
}

impl Handler<ConnectTime> for Registry {
    type Result = ();

    fn handle(&mut self, msg: ConnectTime, _: &mut Context<Self>) {
        self.connect_times.record(msg.seconds);
    }
}

impl Handler<LiveSessions> for Registry {
    type Result = Vec<SessionHandle>;

    fn handle(&mut self, _: LiveSessions, _: &mut Context<Self>) -> Self::Result {
        self.handles()
    }
}

impl Handler<GetStats> for Registry {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, msg: GetStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(StatsSnapshot {
            stats: self.stats(),
            sessions: msg.sessions.then(|| self.snapshot()),
        })
    }
}

#[cfg(test)]
mod tests;
