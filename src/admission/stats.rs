//! What `/stats` answers, and the window of upstream connect times behind its latency
//! percentiles. Plain data and pure logic; the registry fills it in.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use crate::protection::usage::{self, Usage};

#[derive(Debug, Clone, Serialize)]
pub(crate) struct DirectionStats {
    pub(crate) messages: u64,
    pub(crate) bytes: u64,
}

/// Upstream connect latency over the last `CONNECT_WINDOW` dials.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Latency {
    pub(crate) samples: usize,
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p95_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
}

/// Dials remembered for the latency percentiles.
pub(crate) const CONNECT_WINDOW: usize = 1024;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Stats {
    pub(crate) uptime_seconds: u64,
    pub(crate) draining: bool,
    pub(crate) active_sessions: usize,
    pub(crate) sessions_by_model: BTreeMap<String, usize>,
    /// Live sessions by transport: `websocket`, `webrtc` (calls).
    pub(crate) sessions_by_transport: BTreeMap<&'static str, usize>,
    pub(crate) max_connections: usize,
    pub(crate) total_sessions: u64,
    pub(crate) rejected_sessions: u64,
    pub(crate) rejected_by_reason: BTreeMap<&'static str, u64>,
    pub(crate) closed_by_reason: BTreeMap<&'static str, u64>,
    pub(crate) client_to_upstream: DirectionStats,
    pub(crate) upstream_to_client: DirectionStats,
    pub(crate) upstream_connect_failures: u64,
    pub(crate) upstream_connect_failures_by_reason: BTreeMap<&'static str, u64>,
    pub(crate) upstream_connect_latency: Latency,
    pub(crate) usage: UsageStats,
}

/// Token usage and its cost for `/stats`: today's (UTC) totals overall, per model and for the
/// top identities. Each usage shows `cost_usd` beside its exact `cost_nano_usd`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct UsageStats {
    pub(crate) utc_day: u64,
    #[serde(serialize_with = "usage::shown")]
    pub(crate) today: Usage,
    #[serde(serialize_with = "usage::shown")]
    pub(crate) lifetime: Usage,
    #[serde(serialize_with = "usage::shown_map")]
    pub(crate) by_model: BTreeMap<String, Usage>,
    /// The identities with the most billable tokens today, at most `TOP_IDENTITIES`.
    pub(crate) by_identity: Vec<IdentityUsage>,
    pub(crate) identities_today: usize,
    pub(crate) daily_token_budget: Option<u64>,
    pub(crate) client_daily_token_budget: Option<u64>,
    /// `DAILY_USD_BUDGET` and `CLIENT_DAILY_USD_BUDGET`, in dollars.
    pub(crate) daily_usd_budget: Option<f64>,
    pub(crate) client_daily_usd_budget: Option<f64>,
    /// Models whose usage today was not (fully) priced: no entry in the price table.
    pub(crate) unpriced_models: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct IdentityUsage {
    pub(crate) identity: String,
    #[serde(serialize_with = "usage::shown")]
    pub(crate) usage: Usage,
    pub(crate) live_sessions: usize,
}

/// How many identities `/stats` lists.
pub(crate) const TOP_IDENTITIES: usize = 100;

/// The last `CONNECT_WINDOW` upstream connect times, in seconds.
#[derive(Debug, Default)]
pub(crate) struct ConnectTimes(VecDeque<f64>);

impl ConnectTimes {
    pub(crate) fn record(&mut self, seconds: f64) {
        if self.0.len() == CONNECT_WINDOW {
            self.0.pop_front();
        }
        self.0.push_back(seconds);
    }

    /// p50/p95/p99 in milliseconds (three decimals), nearest-rank.
    pub(crate) fn latency(&self) -> Latency {
        let mut sorted: Vec<f64> = self.0.iter().copied().collect();
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_percentiles_over_the_window() {
        let mut t = ConnectTimes::default();
        assert_eq!(t.latency().samples, 0);
        assert_eq!(t.latency().p50_ms, None);
        for i in 1..=100 {
            t.record(i as f64 / 1000.0);
        }
        let l = t.latency();
        assert_eq!(l.samples, 100);
        assert_eq!(l.p50_ms, Some(50.0));
        assert_eq!(l.p95_ms, Some(95.0));
        assert_eq!(l.p99_ms, Some(99.0));
        for _ in 0..CONNECT_WINDOW {
            t.record(0.5);
        }
        assert_eq!(t.latency().samples, CONNECT_WINDOW);
        assert_eq!(t.latency().p99_ms, Some(500.0));
    }
}
