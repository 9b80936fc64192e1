//! Per-client admission limits beyond `MAX_CONNECTIONS`: the settings, and the per-identity
//! token buckets behind `CONNECTION_RATE_PER_CLIENT`. Pure logic with the clock passed in.

use std::{collections::HashMap, time::Instant};

use crate::protection::usage::Budgets;

/// Admission limits beyond `MAX_CONNECTIONS` (all off by default).
#[derive(Debug, Clone, Default)]
pub(crate) struct Limits {
    /// 0 = unlimited.
    pub(crate) per_client: usize,
    /// New sessions per minute per identity; 0 = unlimited.
    pub(crate) rate_per_minute: u32,
    /// Empty = any model.
    pub(crate) allowed_models: Vec<String>,
    pub(crate) daily_budget: Option<u64>,
    pub(crate) client_budget: Option<u64>,
    /// `DAILY_USD_BUDGET`, in billionths of a dollar.
    pub(crate) daily_usd_budget: Option<u64>,
    /// `CLIENT_DAILY_USD_BUDGET`, in billionths of a dollar.
    pub(crate) client_usd_budget: Option<u64>,
}

impl Limits {
    /// The budgets a client is held to; `own_usd`, its own daily budget in dollars (tokens
    /// file, JWT `budget_usd`), replaces `CLIENT_DAILY_USD_BUDGET` for it.
    pub(crate) fn budgets(&self, own_usd: Option<u64>) -> Budgets {
        Budgets {
            global_tokens: self.daily_budget,
            client_tokens: self.client_budget,
            global_nano_usd: self.daily_usd_budget,
            client_nano_usd: own_usd.or(self.client_usd_budget),
        }
    }

    /// Whether any daily budget applies (the client's own ones aside).
    pub(crate) fn any_budget(&self) -> bool {
        self.daily_budget.is_some()
            || self.client_budget.is_some()
            || self.daily_usd_budget.is_some()
            || self.client_usd_budget.is_some()
    }
}

/// A token bucket of `rate_per_minute` new sessions, refilled continuously.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// One bucket per identity that has used some of its rate; full buckets are forgotten.
#[derive(Debug, Default)]
pub(crate) struct RateBuckets(HashMap<String, Bucket>);

impl RateBuckets {
    /// Takes one new-session token from `identity`'s bucket of `rate` per minute.
    pub(crate) fn take(&mut self, identity: &str, rate: u32, now: Instant) -> bool {
        let rate = f64::from(rate);
        let bucket = self.0.entry(identity.to_string()).or_insert(Bucket {
            tokens: rate,
            updated: now,
        });
        let refill = now.duration_since(bucket.updated).as_secs_f64() * rate / 60.0;
        bucket.tokens = (bucket.tokens + refill).min(rate);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets buckets that have refilled: they hold no information.
    pub(crate) fn prune(&mut self, rate: u32, now: Instant) {
        let rate = f64::from(rate);
        self.0.retain(|_, b| {
            b.tokens + now.duration_since(b.updated).as_secs_f64() * rate / 60.0 < rate
        });
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn rate_bucket_refuses_then_forgets() {
        let mut b = RateBuckets::default();
        let now = Instant::now();
        assert!(b.take("a", 2, now));
        assert!(b.take("a", 2, now));
        assert!(!b.take("a", 2, now));
        assert!(b.take("a", 2, now + Duration::from_secs(30)));
        b.prune(2, now + Duration::from_secs(120));
        assert!(b.is_empty());
    }
}
