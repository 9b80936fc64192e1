//! The messages the `Registry` handles, what it answers, and `Entry`, what it keeps of a live
//! session. A leaf module: sessions, dialers, the reaper and the HTTP layer import this file,
//! not the actor.

use std::{sync::Arc, time::Instant};

use actix::prelude::*;

use crate::{
    admission::stats::Stats,
    close::SessionEnd,
    protection::usage::{Budget, Usage},
    session::{
        msg::{SessionHandle, SessionId},
        shared::Traffic,
    },
};

/// Why the registry refused a session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Rejected {
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
    #[error("{} budget spent", crate::close::budget_words(*.budget))]
    BudgetExceeded { budget: Budget },
    #[error("the shared state (Redis) did not answer")]
    Unavailable,
}

impl Rejected {
    pub(crate) fn into_close_reason(self) -> SessionEnd {
        match self {
            Rejected::Capacity { max } => SessionEnd::CapacityExceeded { max },
            Rejected::ShuttingDown => SessionEnd::ShuttingDown,
            Rejected::TooManyConnections { max } => SessionEnd::TooManyConnections { max },
            Rejected::RateLimited { per_minute } => SessionEnd::RateLimited { per_minute },
            Rejected::ModelNotAllowed { model } => SessionEnd::ModelNotAllowed { model },
            Rejected::BudgetExceeded { budget } => SessionEnd::BudgetExceeded { budget },
            Rejected::Unavailable => SessionEnd::ServiceUnavailable,
        }
    }

    pub(crate) fn label(&self) -> &'static str {
        self.clone().into_close_reason().label()
    }
}

/// How a session reaches the upstream: its own WebSocket through the relay, or a WebRTC call
/// whose media goes between the browser and the upstream while the relay holds its sideband.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Transport {
    WebSocket,
    WebRtc,
}

impl Transport {
    pub(crate) const ALL: [Transport; 2] = [Transport::WebSocket, Transport::WebRtc];

    /// The `/stats` and metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::WebRtc => "webrtc",
        }
    }
}

/// What the registry knows of a live session.
#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) handle: SessionHandle,
    pub(crate) model: String,
    /// What limits and budgets key on: `token:<name>`, `jwt:<sub>` or `ip:<address>`.
    pub(crate) identity: String,
    /// Models the client's credential allows (JWT `models` claim), on top of `ALLOWED_MODELS`.
    pub(crate) credential_models: Option<Vec<String>>,
    /// The client's own daily budget in billionths of a dollar (tokens file, JWT `budget_usd`),
    /// in place of `CLIENT_DAILY_USD_BUDGET`.
    pub(crate) usd_budget: Option<u64>,
    pub(crate) opened_at: Instant,
    /// The client's address (after `TRUSTED_PROXIES`), for `/stats?sessions=true`.
    pub(crate) client: Option<std::net::IpAddr>,
    /// The session's traffic, which `/stats?sessions=true` reads without asking the session.
    pub(crate) traffic: Arc<Traffic>,
    pub(crate) transport: Transport,
    /// A WebRTC call's upstream id (`rtc_…`, set once the upstream answered), for
    /// `/stats?sessions=true`.
    pub(crate) call_id: Option<Arc<std::sync::OnceLock<String>>>,
}

/// Ask for a slot for a new session; answered before any upstream dial.
#[derive(Message)]
#[rtype(result = "Result<SessionId, Rejected>")]
pub(crate) struct Admit {
    pub(crate) entry: Entry,
}

/// A session ended and gives its slot back.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Release {
    pub(crate) id: SessionId,
    pub(crate) reason: SessionEnd,
}

/// Stop admitting and tell every live session to end; answers how many were live.
#[derive(Message)]
#[rtype(result = "usize")]
pub(crate) struct Drain;

/// Usage an upstream reported for a session (`response.done`, transcription completed).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct RecordUsage {
    pub(crate) identity: String,
    pub(crate) model: String,
    pub(crate) usage: Usage,
    /// What makes the report unique (the response id): with Redis, a report is counted once
    /// per key however often it is sent.
    pub(crate) key: Option<String>,
}

/// Write the usage state file now (shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SaveUsage;

/// How long one successful upstream dial took, for the `/stats` latency window.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ConnectTime {
    pub(crate) seconds: f64,
}

/// The addresses of every live session, for the reaper's sweep.
#[derive(Message)]
#[rtype(result = "Vec<SessionHandle>")]
pub(crate) struct LiveSessions;

/// A snapshot for `/stats` and `/health`; with `sessions`, every live session too.
#[derive(Message)]
#[rtype(result = "StatsSnapshot")]
pub(crate) struct GetStats {
    pub(crate) sessions: bool,
}

/// What `GetStats` answers: the counts, and the live sessions' entries when asked for.
pub(crate) struct StatsSnapshot {
    pub(crate) stats: Stats,
    pub(crate) sessions: Option<Vec<(SessionId, Arc<Entry>)>>,
}
