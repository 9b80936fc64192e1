//! The daily usage [`Ledger`]: totals for all clients, per identity and per model, that budgets
//! are checked against. Its day is the clock's UTC day: it starts a fresh day whenever the day it
//! is asked about differs from its own, later or earlier, so a clock that was ahead (and a state
//! file saved then) never freezes the daily reset. The registry owns the one ledger, records into
//! it and checks budgets against it; `store.rs` reads and writes it, `writer.rs` saves copies of it
//! off the registry's thread; `/stats` reads it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Usage;

/// UTC day number (days since 1970-01-01) of a unix time.
pub(crate) fn utc_day(unix_seconds: u64) -> u64 {
    unix_seconds / 86_400
}

/// At most this many entries in [`Ledger::by_identity`], counting [`OTHER`].
const MAX_IDENTITIES: usize = 100_000;
/// At most this many entries in [`Ledger::by_model`], counting [`OTHER`].
const MAX_MODELS: usize = 1_000;
/// The key that identities (or models) beyond the cap are aggregated under.
const OTHER: &str = "other";

/// Daily usage totals: all clients, per identity, per model; resets at UTC midnight; survives
/// restarts through a state file.
///
/// State is bounded: the per-identity and per-model maps only hold today, and hold at most
/// `MAX_IDENTITIES` and `MAX_MODELS` entries; usage of further names is added under
/// `OTHER`. An identity folded into `other` is held to the global budget only. Counts saturate,
/// and usage no single event can plausibly carry (`Usage::plausible`) is never added.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Ledger {
    pub day: u64,
    pub all: Usage,
    pub by_identity: BTreeMap<String, Usage>,
    pub by_model: BTreeMap<String, Usage>,
    /// Lifetime totals (not reset daily), for /stats.
    pub lifetime: Usage,
}

/// Which daily budget is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Budget {
    /// `DAILY_TOKEN_BUDGET`.
    Global,
    /// `CLIENT_DAILY_TOKEN_BUDGET`.
    Client,
    /// `DAILY_USD_BUDGET`.
    GlobalUsd,
    /// `CLIENT_DAILY_USD_BUDGET`, or the client's own budget in dollars.
    ClientUsd,
}

impl Budget {
    /// Whether it covers every client (so every live session ends when it is spent).
    pub(crate) fn is_global(self) -> bool {
        matches!(self, Budget::Global | Budget::GlobalUsd)
    }
}

/// The daily limits one client is held to (None = no limit): tokens, and billionths of a dollar.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Budgets {
    pub(crate) global_tokens: Option<u64>,
    pub(crate) client_tokens: Option<u64>,
    pub(crate) global_nano_usd: Option<u64>,
    pub(crate) client_nano_usd: Option<u64>,
}

impl Budgets {
    /// Which of these limits today's spending reaches (>= limit), relay-wide first, tokens
    /// before dollars: `all` is every client's, `mine` this client's.
    pub(crate) fn spent(&self, all: Spent, mine: Spent) -> Option<Budget> {
        let reached = |limit: Option<u64>, used: u64| limit.is_some_and(|l| used >= l);
        if reached(self.global_tokens, all.tokens) {
            Some(Budget::Global)
        } else if reached(self.global_nano_usd, all.nano_usd) {
            Some(Budget::GlobalUsd)
        } else if reached(self.client_tokens, mine.tokens) {
            Some(Budget::Client)
        } else if reached(self.client_nano_usd, mine.nano_usd) {
            Some(Budget::ClientUsd)
        } else {
            None
        }
    }
}

/// What budgets count of a day's usage: billable tokens and billionths of a dollar.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Spent {
    pub(crate) tokens: u64,
    pub(crate) nano_usd: u64,
}

impl From<&Usage> for Spent {
    fn from(u: &Usage) -> Spent {
        Spent {
            tokens: u.billable(),
            nano_usd: u.cost_nano_usd,
        }
    }
}

impl Ledger {
    /// Makes `day` the ledger's day: any other day than its own, later or earlier, starts fresh
    /// daily totals (lifetime kept). Following the clock backwards too is what keeps a day saved
    /// by a clock that ran ahead from pinning the counts: the cost of a clock that steps back
    /// over midnight is a few seconds of counts started over, never a day without a reset.
    pub(crate) fn roll(&mut self, day: u64) {
        if day != self.day {
            self.day = day;
            self.all = Usage::default();
            self.by_identity.clear();
            self.by_model.clear();
        }
    }

    /// For a ledger just read back: if it was saved on a day later than `today` (the clock was
    /// ahead then, or is behind now), its daily totals are not today's and are dropped (lifetime
    /// kept). Returns the day it was saved on when that happened, for a warning.
    pub(crate) fn settle(&mut self, today: u64) -> Option<u64> {
        let saved = self.day;
        (saved > today).then(|| {
            self.roll(today);
            saved
        })
    }

    /// Adds usage for identity and model on `day` (rolling first). Usage that is not
    /// [`Usage::plausible`] is not added; returns whether it was.
    pub(crate) fn record(&mut self, identity: &str, model: &str, usage: &Usage, day: u64) -> bool {
        self.roll(day);
        if !usage.plausible() {
            return false;
        }
        self.all.add(usage);
        self.lifetime.add(usage);
        add_capped(&mut self.by_identity, identity, usage, MAX_IDENTITIES);
        add_capped(&mut self.by_model, model, usage, MAX_MODELS);
        true
    }

    /// Which budget, if any, is spent (>= limit) for this identity on `day` (see
    /// [`Budgets::spent`] for the order). A `day` other than the ledger's counts as a fresh day.
    pub(crate) fn exhausted(&self, identity: &str, day: u64, limits: &Budgets) -> Option<Budget> {
        if day != self.day {
            return limits.spent(Spent::default(), Spent::default());
        }
        let mine = self.by_identity.get(identity).map(Spent::from);
        limits.spent(Spent::from(&self.all), mine.unwrap_or_default())
    }
}

/// Adds `usage` under `name`, or under [`OTHER`] when `name` is new and the map is full.
fn add_capped(map: &mut BTreeMap<String, Usage>, name: &str, usage: &Usage, cap: usize) {
    if let Some(entry) = map.get_mut(name) {
        entry.add(usage);
        return;
    }
    // Keep one slot for `other`, so the map never exceeds `cap` entries.
    let key = if map.len() + 1 >= cap { OTHER } else { name };
    map.entry(key.to_owned()).or_default().add(usage);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protection::usage::{tests::tokens, MAX_EVENT_TOKENS};

    fn tokens_only(global: Option<u64>, client: Option<u64>) -> Budgets {
        Budgets {
            global_tokens: global,
            client_tokens: client,
            ..Budgets::default()
        }
    }

    /// Dollar budgets count cost the way token budgets count tokens, after them, relay-wide
    /// first.
    #[test]
    fn ledger_usd_budgets() {
        let mut ledger = Ledger::default();
        let spent = |nano| Usage {
            cost_nano_usd: nano,
            ..tokens(10)
        };
        ledger.record("alice", "m", &spent(600), 7);
        ledger.record("bob", "m", &spent(300), 7);
        let usd = |global, client| Budgets {
            global_nano_usd: global,
            client_nano_usd: client,
            ..Budgets::default()
        };
        assert_eq!(ledger.exhausted("alice", 7, &usd(None, Some(601))), None);
        assert_eq!(
            ledger.exhausted("alice", 7, &usd(None, Some(600))),
            Some(Budget::ClientUsd)
        );
        assert_eq!(ledger.exhausted("bob", 7, &usd(None, Some(600))), None);
        assert_eq!(
            ledger.exhausted("bob", 7, &usd(Some(900), Some(600))),
            Some(Budget::GlobalUsd)
        );
        let both = Budgets {
            client_tokens: Some(10),
            ..usd(None, Some(1))
        };
        assert_eq!(ledger.exhausted("bob", 7, &both), Some(Budget::Client));
        assert_eq!(ledger.exhausted("bob", 8, &usd(Some(900), Some(1))), None);
        assert!(Budget::GlobalUsd.is_global() && !Budget::ClientUsd.is_global());
    }

    /// Day numbers change at UTC midnight.
    #[test]
    fn utc_day_boundaries() {
        assert_eq!(utc_day(0), 0);
        assert_eq!(utc_day(86_399), 0);
        assert_eq!(utc_day(86_400), 1);
        // 2026-05-01T00:00:00Z
        assert_eq!(utc_day(1_777_593_600), 20_574);
    }

    /// record adds to all, identity, model and lifetime; another day resets all but lifetime.
    #[test]
    fn ledger_record_and_roll() {
        let mut ledger = Ledger::default();
        ledger.record("alice", "gpt-realtime", &tokens(10), 100);
        ledger.record("bob", "gpt-realtime-mini", &tokens(5), 100);
        ledger.record("alice", "gpt-realtime-mini", &tokens(1), 100);
        assert_eq!(ledger.day, 100);
        assert_eq!(ledger.all.billable(), 16);
        assert_eq!(ledger.by_identity["alice"].billable(), 11);
        assert_eq!(ledger.by_identity["bob"].billable(), 5);
        assert_eq!(ledger.by_model["gpt-realtime-mini"].billable(), 6);
        assert_eq!(ledger.lifetime.billable(), 16);

        ledger.record("carol", "gpt-realtime", &tokens(4), 101);
        assert_eq!(ledger.day, 101);
        assert_eq!(ledger.all.billable(), 4);
        assert_eq!(ledger.by_identity.len(), 1);
        assert_eq!(ledger.by_model.len(), 1);
        assert_eq!(ledger.lifetime.billable(), 20);
    }

    /// A clock that went back a day counts into the day it says, not into the later one: the
    /// later day's counts are not today's (issue 10, 9: a ledger dated in the future).
    #[test]
    fn ledger_follows_a_clock_that_went_back() {
        let mut ledger = Ledger::default();
        ledger.record("alice", "m", &tokens(50), 105);
        ledger.record("alice", "m", &tokens(2), 100);
        assert_eq!(ledger.day, 100);
        assert_eq!(ledger.all.billable(), 2);
        assert_eq!(ledger.by_identity["alice"].billable(), 2);
        assert_eq!(ledger.lifetime.billable(), 52);
        // The next day resets again, as any other day would.
        ledger.record("bob", "m", &tokens(3), 101);
        assert_eq!(ledger.all.billable(), 3);
        assert!(!ledger.by_identity.contains_key("alice"));
    }

    /// Budgets spent on a day later than today are not spent today, and a ledger read back
    /// with such a day drops its daily counts (keeping lifetime) and says so.
    #[test]
    fn ledger_from_the_future_is_not_today() {
        let mut ledger = Ledger::default();
        ledger.record("alice", "m", &tokens(100), 20_579);
        assert_eq!(
            ledger.exhausted("alice", 20_579, &tokens_only(Some(100), None)),
            Some(Budget::Global)
        );
        assert_eq!(
            ledger.exhausted("alice", 20_574, &tokens_only(Some(100), Some(100))),
            None
        );

        assert_eq!(ledger.clone().settle(20_579), None);
        assert_eq!(ledger.clone().settle(20_580), None);
        assert_eq!(ledger.settle(20_574), Some(20_579));
        assert_eq!(ledger.day, 20_574);
        assert_eq!(ledger.all, Usage::default());
        assert!(ledger.by_identity.is_empty() && ledger.by_model.is_empty());
        assert_eq!(ledger.lifetime.billable(), 100);
    }

    /// A usage no event can carry (a u64::MAX total) is not counted and does not pin the day's
    /// total; one at the cap is counted; totals saturate instead of wrapping.
    #[test]
    fn ledger_refuses_implausible_usage() {
        let mut ledger = Ledger::default();
        let absurd = Usage {
            total_tokens: u64::MAX,
            ..tokens(10)
        };
        assert!(!ledger.record("alice", "m", &absurd, 7));
        assert_eq!(ledger.all, Usage::default());
        assert_eq!(ledger.lifetime, Usage::default());
        assert!(ledger.by_identity.is_empty() && ledger.by_model.is_empty());
        assert_eq!(
            ledger.exhausted("alice", 7, &tokens_only(Some(1_000), Some(1_000))),
            None
        );

        assert!(ledger.record("alice", "m", &tokens(MAX_EVENT_TOKENS), 7));
        assert_eq!(ledger.all.billable(), MAX_EVENT_TOKENS);

        ledger.lifetime.total_tokens = u64::MAX - 1;
        assert!(ledger.record("alice", "m", &tokens(10), 7));
        assert_eq!(ledger.lifetime.total_tokens, u64::MAX);
    }

    /// The global budget is checked first, then the client's; both reset on a new day.
    #[test]
    fn ledger_exhausted_budgets() {
        let mut ledger = Ledger::default();
        ledger.record("alice", "m", &tokens(60), 7);
        ledger.record("bob", "m", &tokens(30), 7);

        assert_eq!(ledger.exhausted("alice", 7, &tokens_only(None, None)), None);
        assert_eq!(
            ledger.exhausted("alice", 7, &tokens_only(None, Some(61))),
            None
        );
        assert_eq!(
            ledger.exhausted("alice", 7, &tokens_only(None, Some(60))),
            Some(Budget::Client)
        );
        assert_eq!(
            ledger.exhausted("bob", 7, &tokens_only(None, Some(60))),
            None
        );
        assert_eq!(
            ledger.exhausted("nobody", 7, &tokens_only(None, Some(1))),
            None
        );
        assert_eq!(
            ledger.exhausted("bob", 7, &tokens_only(Some(91), Some(60))),
            None
        );
        assert_eq!(
            ledger.exhausted("bob", 7, &tokens_only(Some(90), Some(60))),
            Some(Budget::Global)
        );
        assert_eq!(
            ledger.exhausted("alice", 7, &tokens_only(Some(90), Some(10))),
            Some(Budget::Global)
        );
        // Tomorrow, before anything rolled the ledger over, both budgets are fresh.
        assert_eq!(
            ledger.exhausted("alice", 8, &tokens_only(Some(90), Some(10))),
            None
        );
        // A zero limit allows nothing.
        assert_eq!(
            ledger.exhausted("carol", 8, &tokens_only(Some(0), None)),
            Some(Budget::Global)
        );
    }

    /// Identities beyond the cap are aggregated under `other`, so the map stays bounded.
    #[test]
    fn ledger_caps_identities() {
        let mut ledger = Ledger::default();
        for i in 0..MAX_IDENTITIES + 50 {
            ledger.record(&format!("client-{i}"), "m", &tokens(1), 1);
        }
        assert_eq!(ledger.by_identity.len(), MAX_IDENTITIES);
        assert_eq!(ledger.by_identity[OTHER].billable(), 51);
        assert_eq!(ledger.all.billable(), (MAX_IDENTITIES + 50) as u64);
        // Known identities keep their own entry.
        ledger.record("client-0", "m", &tokens(1), 1);
        assert_eq!(ledger.by_identity["client-0"].billable(), 2);
    }
}
