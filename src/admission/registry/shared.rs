//! The registry's side of the shared state (`REDIS_URL`, see `cluster/`): admission in one
//! Redis step after this instance's own checks, lease refreshes every `LEASE_REFRESH`, usage
//! reports sent to the shared ledger (kept in a backlog while Redis does not answer), and the
//! budgets other instances spent, polled every `USAGE_SAVE_INTERVAL` and announced to this
//! instance's sessions once each. A child of `registry.rs`: the same actor, its own file.

use std::{collections::HashSet, time::Instant};

use actix::prelude::*;

use super::Registry;
use crate::{
    admission::msg::{Entry, Rejected},
    cluster::{Admission, Backlog, Cluster, Lease, PendingUsage, SharedLimits, Totals},
    config::FailureMode,
    protection::usage::{Budgets, Spent},
    session::msg::SessionId,
};

/// What the registry keeps for the shared state (see `cluster/`).
pub(super) struct Shared {
    cluster: Cluster,
    /// Admissions waiting for Redis: they hold a place against `MAX_CONNECTIONS`.
    pub(super) pending: usize,
    /// Usage reports Redis has not taken yet.
    backlog: Backlog,
    /// Whether a flush of the backlog is running.
    flushing: bool,
    /// Budgets already announced to this instance's sessions today (`<budget> <identity>`, no
    /// identity for a relay-wide one), so each is announced once.
    announced: HashSet<String>,
    announced_day: u64,
}

impl Registry {
    /// Shares limits, budgets and usage with other instances through `cluster`.
    pub(crate) fn with_cluster(mut self, cluster: Cluster) -> Registry {
        self.shared = Some(Shared {
            cluster,
            pending: 0,
            backlog: Default::default(),
            flushing: false,
            announced: HashSet::new(),
            announced_day: 0,
        });
        self
    }

    /// Whether this instance's own ledger and counts decide budgets and per-client limits: always
    /// without Redis; with it, only while Redis does not answer and `REDIS_FAILURE_MODE=open`.
    pub(super) fn local_limits_apply(&self) -> bool {
        self.shared
            .as_ref()
            .is_none_or(|s| s.cluster.failure_mode == FailureMode::Open && !s.cluster.is_up())
    }

    /// The limits every instance enforces together, for the client of `entry`.
    pub(super) fn shared_limits(&self, entry: &Entry) -> SharedLimits {
        SharedLimits {
            per_client: self.limits.per_client,
            rate_per_minute: self.limits.rate_per_minute,
            budgets: self.limits.budgets(entry.usd_budget),
        }
    }

    /// Admits a session across instances: this instance's own rules first, then one atomic step
    /// in Redis for the shared limits and budgets. While Redis does not answer, the failure mode
    /// decides: refuse (`closed`), or this instance's own limits (`open`).
    pub(super) fn admit_shared(
        &mut self,
        entry: Entry,
    ) -> ResponseActFuture<Self, Result<SessionId, Rejected>> {
        if let Err(rejected) = self.check_local(&entry) {
            return Box::pin(fut::ready(Err(self.refuse(rejected))));
        }
        let limits = self.shared_limits(&entry);
        // Open mode with Redis known to be down: this instance's own limits, without waiting for
        // a timeout (the registry's tick notices when Redis answers again).
        if self.local_limits_apply() {
            return Box::pin(fut::ready(self.admit(entry)));
        }
        let Some(shared) = self.shared.as_mut() else {
            return Box::pin(fut::ready(self.admit(entry)));
        };
        shared.pending += 1;
        let id = self.next_id;
        self.next_id += 1;
        let lease = Lease::new(shared.cluster.instance(), id, &entry.identity);
        let cluster = shared.cluster.clone();
        let ask = async move {
            let verdict = cluster.admit(&lease, limits).await;
            (verdict, lease)
        };
        Box::pin(ask.into_actor(self).map(move |(verdict, lease), act, _| {
            let Some(shared) = act.shared.as_mut() else {
                return Err(Rejected::ShuttingDown);
            };
            shared.pending -= 1;
            let mode = shared.cluster.failure_mode;
            let cluster = shared.cluster.clone();
            let result = match verdict {
                // Drained while Redis answered: give the lease back.
                Admission::Admitted if act.draining => {
                    actix::spawn(async move { cluster.release(lease).await });
                    Err(Rejected::ShuttingDown)
                }
                Admission::Admitted => Ok(()),
                Admission::Refused(rejected) => Err(rejected),
                // Given up on, the admission may still run in Redis later (a Redis that was
                // paused, say) and take the lease: give it back after it, on the same connection.
                Admission::Unanswered => {
                    actix::spawn(async move { cluster.release(lease).await });
                    match mode {
                        FailureMode::Closed => Err(Rejected::Unavailable),
                        FailureMode::Open if act.draining => Err(Rejected::ShuttingDown),
                        FailureMode::Open => act.check_limits(&entry, Instant::now()),
                    }
                }
            };
            match result {
                Ok(()) => {
                    act.insert(id, entry);
                    Ok(id)
                }
                Err(rejected) => Err(act.refuse(rejected)),
            }
        }))
    }

    /// Announces the budgets Redis says are spent, each once a day.
    pub(super) fn apply_totals(&mut self, totals: &Totals) {
        let global = Budgets {
            client_tokens: None,
            client_nano_usd: None,
            ..self.limits.budgets(None)
        };
        let mut spent: Vec<_> = global
            .spent(totals.all, Spent::default())
            .map(|b| (b, String::new()))
            .into_iter()
            .collect();
        for (identity, used) in &totals.by_identity {
            let own = Budgets {
                global_tokens: None,
                global_nano_usd: None,
                ..self.budgets_of(identity)
            };
            if let Some(b) = own.spent(Spent::default(), *used) {
                spent.push((b, identity.clone()));
            }
        }
        let Some(shared) = self.shared.as_mut() else {
            return;
        };
        if shared.announced_day != totals.day {
            shared.announced.clear();
            shared.announced_day = totals.day;
        }
        spent
            .retain(|(budget, identity)| shared.announced.insert(format!("{budget:?} {identity}")));
        for (budget, identity) in spent {
            self.announce_spent(budget, &identity);
        }
    }

    /// Queues a usage report for the shared ledger and sends what is waiting.
    pub(super) fn share_usage(&mut self, report: PendingUsage, ctx: &mut Context<Self>) {
        if let Some(shared) = self.shared.as_mut() {
            shared.backlog.push(report);
            // While Redis is down the tick retries, at most every `USAGE_SAVE_INTERVAL`.
            if shared.cluster.is_up() {
                self.flush_backlog(ctx);
            }
        }
    }

    /// Sends waiting usage reports to Redis, one at a time, oldest first; stops at the first
    /// that gets no answer (the rest wait for the next tick).
    fn flush_backlog(&mut self, ctx: &mut Context<Self>) {
        let Some(shared) = self.shared.as_mut() else {
            return;
        };
        if shared.flushing || shared.backlog.len() == 0 {
            return;
        }
        shared.flushing = true;
        let reports = shared.backlog.take();
        let cluster = shared.cluster.clone();
        let send = async move {
            let mut totals = Vec::new();
            let mut reports = reports.into_iter();
            while let Some(report) = reports.next() {
                match cluster.record(&report).await {
                    Ok(t) => totals.push(t),
                    Err(_) => return (std::iter::once(report).chain(reports).collect(), totals),
                }
            }
            (Vec::new(), totals)
        };
        ctx.spawn(send.into_actor(self).map(
            |(left, totals): (Vec<PendingUsage>, Vec<Totals>), act, _| {
                if let Some(shared) = act.shared.as_mut() {
                    shared.flushing = false;
                    for report in left {
                        shared.backlog.push(report);
                    }
                }
                for t in &totals {
                    act.apply_totals(t);
                }
            },
        ));
    }

    /// Every `USAGE_SAVE_INTERVAL`: sends waiting usage, and learns of budgets spent through other
    /// instances (or, with no budget set, pings): so Redis going away or coming back is noticed
    /// within this interval.
    pub(super) fn shared_tick(&mut self, ctx: &mut Context<Self>) {
        let Some(shared) = self.shared.as_ref() else {
            return;
        };
        let cluster = shared.cluster.clone();
        self.flush_backlog(ctx);
        if self.limits.any_budget() || !self.own_usd_budgets.is_empty() {
            let identities: Vec<String> = self.live_by_identity.keys().cloned().collect();
            let ask = async move { cluster.totals(identities).await.ok() };
            ctx.spawn(ask.into_actor(self).map(|totals, act, _| {
                if let Some(t) = totals {
                    act.apply_totals(&t);
                }
            }));
        } else {
            // Otherwise nothing may ask Redis for up to a lease refresh: notice it going away
            // (and coming back) within this tick.
            actix::spawn(async move {
                cluster.ping().await;
            });
        }
    }

    /// Every `LEASE_REFRESH`: renews the leases of this instance's live sessions (and writes
    /// those Redis lost or never had).
    pub(super) fn refresh_leases(&self) {
        let Some(shared) = self.shared.as_ref() else {
            return;
        };
        let cluster = shared.cluster.clone();
        let leases: Vec<Lease> = self
            .sessions
            .iter()
            .map(|(id, e)| Lease::new(cluster.instance(), *id, &e.identity))
            .collect();
        actix::spawn(async move {
            cluster.refresh(leases).await;
        });
    }

    /// Gives a session's lease back at once.
    pub(super) fn release_lease(&self, id: SessionId, identity: &str) {
        if let Some(shared) = &self.shared {
            let cluster = shared.cluster.clone();
            let lease = Lease::new(cluster.instance(), id, identity);
            actix::spawn(async move { cluster.release(lease).await });
        }
    }
}
