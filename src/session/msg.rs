//! The messages a `Session` receives, and `SessionHandle`, the way the registry, the reaper and
//! the HTTP layer reach a live session without naming its actor type. A leaf module: senders
//! import this file, never the actor, so no two files import each other.

use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::{close::SessionEnd, protection::usage::Budget};

/// A session's number, from 1, in admission order.
pub(crate) type SessionId = u64;

/// The reaper's periodic check; `heartbeat` also asks for a ping.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Tick {
    pub(crate) now: Instant,
    pub(crate) heartbeat: bool,
}

/// The upstream WebSocket is open.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct UpstreamOpened {
    pub(crate) took: Duration,
}

/// End the session with this reason: its upstream ended (failed to open, closed, or was lost),
/// or the relay ends it (shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct End {
    pub(crate) reason: SessionEnd,
}

/// A budget this session draws on is spent: end it once no response is in flight.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct BudgetSpent {
    pub(crate) budget: Budget,
}

/// The addresses the registry keeps for a live session: one `Recipient` per message it (or the
/// reaper, which gets it from the registry) sends.
#[derive(Clone)]
pub(crate) struct SessionHandle {
    pub(crate) tick: Recipient<Tick>,
    pub(crate) end: Recipient<End>,
    pub(crate) budget_spent: Recipient<BudgetSpent>,
}
