//! What a session's two pumps (the client reader in `client.rs`, the upstream reader in
//! `upstream/pump.rs`) write and its actor reads: flags and counters on the session's own worker
//! thread, so plain `Cell`s, except its [`Traffic`], which the registry also reads (from its own
//! thread) to list the session in `/stats?sessions=true` without asking it. A leaf: it imports no
//! actor.

use std::{
    cell::Cell,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, Instant},
};

use crate::{
    protection::usage::{Budget, Usage},
    session::liveness::Liveness,
};

/// State the session's pumps write and the actor reads; all on the session's own thread.
#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) traffic: Arc<Traffic>,
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

/// A session's traffic, and when it last had any: written on the session's thread, read by the
/// registry for `/stats?sessions=true`.
#[derive(Default)]
pub(crate) struct Traffic {
    pub(crate) client_to_upstream: Counter,
    pub(crate) upstream_to_client: Counter,
    /// Data messages either way at the last reaper tick that saw them change.
    seen_messages: AtomicU64,
    /// When that tick was, in ms after the session opened.
    active_at_ms: AtomicU64,
}

impl Traffic {
    /// Data messages either way: the reaper's measure of activity (pongs do not count).
    pub(crate) fn data_messages(&self) -> u64 {
        self.client_to_upstream.messages() + self.upstream_to_client.messages()
    }

    /// A reaper tick saw `messages` data messages, more than the tick before, at `at` after the
    /// session opened.
    pub(crate) fn saw_activity(&self, messages: u64, at: Duration) {
        self.seen_messages.store(messages, Relaxed);
        self.active_at_ms
            .store(u64::try_from(at.as_millis()).unwrap_or(u64::MAX), Relaxed);
    }

    /// How long the session has had no data message, as its reaper ticks see it: zero if there
    /// was one since the last tick.
    pub(crate) fn idle(&self, opened_at: Instant, now: Instant) -> Duration {
        if self.data_messages() != self.seen_messages.load(Relaxed) {
            return Duration::ZERO;
        }
        let active = opened_at + Duration::from_millis(self.active_at_ms.load(Relaxed));
        now.saturating_duration_since(active)
    }
}

/// Messages and bytes one way. One writer (the pump on the session's thread), so a relaxed load
/// and store, no read-modify-write: as cheap as a `Cell`, and readable from another thread.
#[derive(Default)]
pub(crate) struct Counter {
    messages: AtomicU64,
    bytes: AtomicU64,
}

impl Counter {
    #[inline]
    pub(crate) fn record(&self, bytes: usize) {
        self.messages
            .store(self.messages.load(Relaxed) + 1, Relaxed);
        self.bytes
            .store(self.bytes.load(Relaxed) + bytes as u64, Relaxed);
    }

    pub(crate) fn messages(&self) -> u64 {
        self.messages.load(Relaxed)
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session is idle from the last tick that saw traffic, and not idle while traffic is newer
    /// than that tick.
    #[test]
    fn idle_follows_the_ticks() {
        let t = Traffic::default();
        let opened = Instant::now();
        let later = opened + Duration::from_secs(10);
        assert_eq!(t.idle(opened, later), Duration::from_secs(10));
        t.client_to_upstream.record(5);
        assert_eq!(t.idle(opened, later), Duration::ZERO);
        t.saw_activity(t.data_messages(), Duration::from_secs(4));
        assert_eq!(t.idle(opened, later), Duration::from_secs(6));
        assert_eq!(t.client_to_upstream.bytes(), 5);
    }
}
