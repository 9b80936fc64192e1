//! `/stats` as this instance sees it: the counts, the usage of today and of all time, and the
//! budgets, built in one pass over the registry's own tables (never over the sessions). A child
//! of `registry.rs`: the same actor, its own file.

use super::*;
use crate::admission::msg::Transport;

impl Registry {
    pub(crate) fn stats(&self) -> Stats {
        let m = &self.metrics;
        let rejected_by_reason: BTreeMap<_, _> =
            Metrics::by_label(&m.sessions_rejected, &REJECT_LABELS)
                .into_iter()
                .collect();
        let failures: BTreeMap<_, _> =
            Metrics::by_label(&m.upstream_connect_failures, &CONNECT_FAILURE_LABELS)
                .into_iter()
                .collect();
        let closed_by_reason = Metrics::by_label(&m.sessions_closed, &SessionEnd::LABELS)
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect();
        let sessions_by_model = self
            .live_by_model
            .iter()
            .map(|(m, n)| (m.clone(), *n))
            .collect();
        let sessions_by_transport = Transport::ALL
            .into_iter()
            .map(|t| {
                let n = m
                    .sessions_by_transport
                    .with_label_values(&[t.label()])
                    .get();
                (t.label(), usize::try_from(n).unwrap_or(0))
            })
            .collect();
        let day = today();
        let mut by_identity: Vec<IdentityUsage> = self
            .ledger
            .by_identity
            .iter()
            .filter(|_| self.ledger.day == day)
            .map(|(identity, usage)| IdentityUsage {
                identity: identity.clone(),
                usage: *usage,
                live_sessions: self.live_sessions_of(identity),
            })
            .collect();
        // Ties in identity order, so the answer does not change between requests.
        by_identity.sort_by(|a, b| {
            (b.usage.billable(), &a.identity).cmp(&(a.usage.billable(), &b.identity))
        });
        let identities_today = by_identity.len();
        by_identity.truncate(TOP_IDENTITIES);
        let current = self.ledger.day == day;
        let usage = UsageStats {
            utc_day: day,
            today: if current {
                self.ledger.all
            } else {
                Usage::default()
            },
            lifetime: self.ledger.lifetime,
            by_model: if current {
                self.ledger.by_model.clone()
            } else {
                Default::default()
            },
            by_identity,
            identities_today,
            daily_token_budget: self.limits.daily_budget,
            client_daily_token_budget: self.limits.client_budget,
            daily_usd_budget: self.limits.daily_usd_budget.map(usage::nano_to_usd),
            client_daily_usd_budget: self.limits.client_usd_budget.map(usage::nano_to_usd),
            unpriced_models: self
                .ledger
                .by_model
                .iter()
                .filter(|(_, u)| current && u.unpriced > 0)
                .map(|(m, _)| m.clone())
                .collect(),
        };
        Stats {
            uptime_seconds: self.uptime().as_secs(),
            draining: self.draining,
            active_sessions: self.sessions.len(),
            sessions_by_model,
            sessions_by_transport,
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
            upstream_connect_latency: self.connect_times.latency(),
            usage,
        }
    }
}
