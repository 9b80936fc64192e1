//! What `load`, `idle` and `slow` runs are made of, shared by the coordinating main thread
//! (`drive.rs`, `admission.rs`) and the client threads (`client.rs`): the run's configuration, its
//! phases, the events a thread reports and what it measured. Plain data.

use std::time::{Duration, Instant};

/// What a run does once its sessions are set up.
#[derive(Clone, Debug)]
pub(crate) enum Kind {
    Load {
        bytes: usize,
        /// Messages per second per session; None = flat out with `window` in flight.
        rate: Option<f64>,
        window: usize,
        duration: Duration,
        messages: Option<u64>,
    },
    Idle {
        hold: Duration,
        probe: bool,
    },
    Slow {
        hold: Duration,
    },
}

/// A `load`, `idle` or `slow` run (and the held sessions of `admission`).
#[derive(Clone, Debug)]
pub(crate) struct Cfg {
    pub(crate) url: String,
    pub(crate) sessions: usize,
    pub(crate) kind: Kind,
    /// Connection attempts in progress at once, per thread (a burst of 10,000 SYNs would only
    /// overflow the accept backlog and measure the kernel).
    pub(crate) connect_concurrency: usize,
}

/// Where the whole run is; the main thread moves it forward, sessions follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    Setup,
    Run,
    Probe,
    Close,
}

/// What a client thread tells the main thread.
pub(crate) enum Event {
    /// Every session of this thread has its `session.created` (or failed).
    Ready,
    /// Every session of this thread finished its load run.
    RunDone,
}

/// What one thread measured.
#[derive(Default)]
pub(crate) struct Report {
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    pub(crate) errors: Vec<String>,
    pub(crate) setup_us: Vec<u32>,
    pub(crate) rtt_us: Vec<u32>,
    pub(crate) sent: u64,
    pub(crate) messages: u64,
    pub(crate) bytes: u64,
    /// Echoes that never came back (sent but not seen before the drain timeout).
    pub(crate) lost: u64,
    pub(crate) last_echo: Option<Instant>,
    pub(crate) open_at_end: u64,
    pub(crate) probe_ok: u64,
    pub(crate) probe_rtt_us: Vec<u32>,
}

impl Report {
    pub(crate) fn fail(&mut self, why: String) {
        self.failed += 1;
        if self.errors.len() < 5 {
            self.errors.push(why);
        }
    }

    pub(crate) fn merge(&mut self, other: Report) {
        self.ok += other.ok;
        self.failed += other.failed;
        for e in other.errors {
            if self.errors.len() < 5 {
                self.errors.push(e);
            }
        }
        self.setup_us.extend(other.setup_us);
        self.rtt_us.extend(other.rtt_us);
        self.sent += other.sent;
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.lost += other.lost;
        self.last_echo = match (self.last_echo, other.last_echo) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.open_at_end += other.open_at_end;
        self.probe_ok += other.probe_ok;
        self.probe_rtt_us.extend(other.probe_rtt_us);
    }
}
