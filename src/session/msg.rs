//! The messages a `Session` receives, and `SessionHandle`, the way the registry, the reaper and
//! the HTTP layer reach a live session without naming its actor type. A leaf module: senders
//! import this file, never the actor, so no two files import each other.

use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::{close::CloseReason, protection::usage::Budget};

/// A session's number, from 1, in admission order.
pub type SessionId = u64;

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

/// End the session with this reason: its upstream ended (failed to open, closed, or was lost),
/// or the relay ends it (shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct End {
    pub reason: CloseReason,
}

/// A budget this session draws on is spent: end it once no response is in flight.
#[derive(Message)]
#[rtype(result = "()")]
pub struct BudgetSpent {
    pub budget: Budget,
}

/// What `/stats?sessions=true` shows of a session.
#[derive(Message)]
#[rtype(result = "Option<SessionInfo>")]
pub struct Describe;

/// One session as `/stats?sessions=true` lists it.
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

/// The addresses the registry keeps for a live session: one `Recipient` per message it (or the
/// reaper and `/stats`, which get it from the registry) sends.
#[derive(Clone)]
pub struct SessionHandle {
    pub tick: Recipient<Tick>,
    pub end: Recipient<End>,
    pub budget_spent: Recipient<BudgetSpent>,
    pub describe: Recipient<Describe>,
}
