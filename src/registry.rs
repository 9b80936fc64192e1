//! `Registry`: the one place that admits sessions. It owns the table of live sessions, enforces
//! `MAX_CONNECTIONS` before any upstream is dialed, and turns the metrics into `/stats`.
//! Sessions send it `Admit` when they start and `Release` from `stopping()`; the reaper asks it
//! for `LiveSessions`; the HTTP layer asks for `GetStats`. It lives as long as the relay.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use actix::prelude::*;
use serde::Serialize;

use crate::{
    close::CloseReason,
    metrics::{Metrics, CONNECT_FAILURE_LABELS, REJECT_LABELS},
    session::Session,
};

pub type SessionId = u64;

/// Why the registry refused a session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("capacity exceeded ({max} sessions)")]
    Capacity { max: usize },
}

impl Rejected {
    pub fn label(&self) -> &'static str {
        match self {
            Rejected::Capacity { .. } => "capacity_exceeded",
        }
    }

    pub fn into_close_reason(self) -> CloseReason {
        match self {
            Rejected::Capacity { max } => CloseReason::CapacityExceeded { max },
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

#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub uptime_seconds: u64,
    pub active_sessions: usize,
    pub max_connections: usize,
    pub total_sessions: u64,
    pub rejected_sessions: u64,
    pub rejected_by_reason: HashMap<&'static str, u64>,
    pub closed_by_reason: HashMap<&'static str, u64>,
    pub client_to_upstream: DirectionStats,
    pub upstream_to_client: DirectionStats,
    pub upstream_connect_failures: u64,
    pub upstream_connect_failures_by_reason: HashMap<&'static str, u64>,
}

pub struct Registry {
    max_connections: usize,
    sessions: HashMap<SessionId, Entry>,
    next_id: SessionId,
    metrics: Arc<Metrics>,
    started_at: Instant,
}

impl Registry {
    pub fn new(max_connections: usize, metrics: Arc<Metrics>) -> Registry {
        Registry {
            max_connections,
            sessions: HashMap::new(),
            next_id: 1,
            metrics,
            started_at: Instant::now(),
        }
    }

    /// Admits a session if there is room.
    pub fn admit(&mut self, entry: Entry) -> Result<SessionId, Rejected> {
        if self.sessions.len() >= self.max_connections {
            let rejected = Rejected::Capacity {
                max: self.max_connections,
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
        self.metrics.sessions_active.set(self.sessions.len() as i64);
        Ok(id)
    }

    /// Frees a session's slot; releasing twice is harmless.
    pub fn release(&mut self, id: SessionId, reason: &'static str) {
        if self.sessions.remove(&id).is_some() {
            self.metrics
                .sessions_closed
                .with_label_values(&[reason])
                .inc();
            self.metrics.sessions_active.set(self.sessions.len() as i64);
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
        Stats {
            uptime_seconds: self.uptime().as_secs(),
            active_sessions: self.sessions.len(),
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
