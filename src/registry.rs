//! `Registry`: the one place that admits sessions. It owns the table of live sessions, enforces
//! `MAX_CONNECTIONS` before any upstream is dialed, and turns the metrics into `/stats`.
//! Sessions send it `Admit` when they start and `Release` from `stopping()`; the reaper asks it
//! for `LiveSessions`; the HTTP layer asks for `GetStats`; dialers report `ConnectTime`; shutdown
//! sends `Drain`, after which every session is told to end and nothing new is admitted. It
//! lives as long as the relay and publishes the live count on a watch channel, so shutdown can
//! wait for zero without polling.

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use actix::prelude::*;
use serde::Serialize;

use crate::{
    close::CloseReason,
    metrics::{Metrics, CONNECT_FAILURE_LABELS, REJECT_LABELS},
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
}

impl Rejected {
    pub fn label(&self) -> &'static str {
        match self {
            Rejected::Capacity { .. } => "capacity_exceeded",
            Rejected::ShuttingDown => "server_shutting_down",
        }
    }

    pub fn into_close_reason(self) -> CloseReason {
        match self {
            Rejected::Capacity { max } => CloseReason::CapacityExceeded { max },
            Rejected::ShuttingDown => CloseReason::ShuttingDown,
        }
    }
}

/// What the registry knows of a live session.
#[derive(Debug, Clone)]
pub struct Entry {
    pub addr: Addr<Session>,
    pub model: String,
    pub client_ip: Option<IpAddr>,
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
    pub sessions_by_model: HashMap<String, usize>,
    pub max_connections: usize,
    pub total_sessions: u64,
    pub rejected_sessions: u64,
    pub rejected_by_reason: HashMap<&'static str, u64>,
    pub closed_by_reason: HashMap<&'static str, u64>,
    pub client_to_upstream: DirectionStats,
    pub upstream_to_client: DirectionStats,
    pub upstream_connect_failures: u64,
    pub upstream_connect_failures_by_reason: HashMap<&'static str, u64>,
    pub upstream_connect_latency: Latency,
}

pub struct Registry {
    max_connections: usize,
    sessions: HashMap<SessionId, Entry>,
    next_id: SessionId,
    metrics: Arc<Metrics>,
    started_at: Instant,
    draining: bool,
    live: tokio::sync::watch::Sender<usize>,
    connect_times: VecDeque<f64>,
}

impl Registry {
    pub fn new(max_connections: usize, metrics: Arc<Metrics>) -> Registry {
        Registry {
            max_connections,
            sessions: HashMap::new(),
            next_id: 1,
            metrics,
            started_at: Instant::now(),
            draining: false,
            live: tokio::sync::watch::Sender::new(0),
            connect_times: VecDeque::with_capacity(CONNECT_WINDOW),
        }
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
        if self.draining || self.sessions.len() >= self.max_connections {
            let rejected = if self.draining {
                Rejected::ShuttingDown
            } else {
                Rejected::Capacity {
                    max: self.max_connections,
                }
            };
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
        let rejected_by_reason: HashMap<_, _> =
            Metrics::by_label(&m.sessions_rejected, &REJECT_LABELS)
                .into_iter()
                .collect();
        let failures: HashMap<_, _> =
            Metrics::by_label(&m.upstream_connect_failures, &CONNECT_FAILURE_LABELS)
                .into_iter()
                .collect();
        let closed_by_reason = Metrics::by_label(&m.sessions_closed, &CloseReason::LABELS)
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect();
        let mut sessions_by_model = HashMap::new();
        for e in self.sessions.values() {
            *sessions_by_model.entry(e.model.clone()).or_insert(0) += 1;
        }
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
        }
    }

    pub fn uptime(&self) -> Duration {
        self.started_at.elapsed()
    }
}

impl Actor for Registry {
    type Context = Context<Self>;
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
