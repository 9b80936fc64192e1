//! What a session's two pumps (the client reader in `client.rs`, the upstream reader in
//! `upstream/pump.rs`) write and its actor reads: counters and flags, all on the session's own
//! worker thread, so plain `Cell`s. A leaf: it imports no actor.

use std::cell::Cell;

use crate::{
    protection::usage::{Budget, Usage},
    session::liveness::Liveness,
};

/// State the session's pumps write and the actor reads; all on the session's own thread.
#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) client_to_upstream: Counter,
    pub(crate) upstream_to_client: Counter,
    /// The relay's heartbeat pings and the client's answers to them.
    pub(crate) liveness: Liveness,
    /// A frame for the client is waiting for room in its socket.
    pub(crate) client_write_blocked: Cell<bool>,
    /// A frame for the upstream is waiting for room in its socket.
    pub(crate) upstream_write_blocked: Cell<bool>,
    /// Responses the upstream has started (`response.created`) and not finished.
    pub(crate) responses_in_flight: Cell<u32>,
    /// Set when a budget this session draws on is spent: end after the response in flight.
    pub(crate) budget_spent: Cell<Option<Budget>>,
    /// Tokens the upstream reported for this session.
    pub(crate) usage: Cell<Usage>,
}

#[derive(Default)]
pub(crate) struct Counter {
    pub(crate) messages: Cell<u64>,
    pub(crate) bytes: Cell<u64>,
}

impl Counter {
    #[inline]
    pub(crate) fn record(&self, bytes: usize) {
        self.messages.set(self.messages.get() + 1);
        self.bytes.set(self.bytes.get() + bytes as u64);
    }
}

impl Shared {
    /// Data messages either way: the reaper's measure of activity (pongs do not count).
    pub(crate) fn data_messages(&self) -> u64 {
        self.client_to_upstream.messages.get() + self.upstream_to_client.messages.get()
    }
}
