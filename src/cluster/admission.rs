//! Admission across instances: a session's slot is a [`Lease`] in Redis, taken by `admit.lua`
//! (budgets, the client's live sessions and its connection rate checked and the slot taken in one
//! atomic step), renewed by `refresh.lua` every `LEASE_REFRESH`, given back by `release.lua` at a
//! clean end, and dropped by Redis itself `LEASE_TTL` after an instance stops renewing it.
//! Called by the registry.

use super::{Cluster, Op, Unanswered, LEASE_TTL};
use crate::{
    admission::msg::Rejected,
    protection::usage::{Budget, Budgets},
};

/// One session's slot: `"<instance> <session id> <identity>"` in the client's set of live
/// sessions and in the cluster-wide set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lease {
    pub(crate) identity: String,
    pub(crate) member: String,
}

impl Lease {
    pub(crate) fn new(instance: &str, session: u64, identity: &str) -> Lease {
        Lease {
            identity: identity.to_string(),
            member: format!("{instance} {session} {identity}"),
        }
    }

    /// (instance, identity) of a member written by [`Lease::new`].
    pub(crate) fn parse(member: &str) -> Option<(&str, &str)> {
        let mut parts = member.splitn(3, ' ');
        let instance = parts.next()?;
        parts.next()?;
        Some((instance, parts.next()?))
    }
}

/// The limits every instance enforces together (0 / None = off).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SharedLimits {
    pub(crate) per_client: usize,
    pub(crate) rate_per_minute: u32,
    /// The daily budgets of the client being admitted (tokens and billionths of a dollar).
    pub(crate) budgets: Budgets,
}

/// What Redis said about a new session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Admission {
    Admitted,
    Refused(Rejected),
    /// Redis did not answer in time (the failure mode decides).
    Unanswered,
}

impl Cluster {
    /// Checks the shared limits and takes the lease, atomically.
    pub(crate) async fn admit(&self, lease: &Lease, limits: SharedLimits) -> Admission {
        let mut conn = self.conn.clone();
        let mut call = self.scripts.admit.prepare_invoke();
        call.arg(&*self.prefix)
            .arg(&lease.identity)
            .arg(&lease.member)
            .arg(LEASE_TTL.as_millis() as u64)
            .arg(limits.per_client)
            .arg(limits.rate_per_minute)
            .arg(limits.budgets.global_tokens.unwrap_or(0))
            .arg(limits.budgets.client_tokens.unwrap_or(0))
            .arg(limits.budgets.global_nano_usd.unwrap_or(0))
            .arg(limits.budgets.client_nano_usd.unwrap_or(0));
        let answer = self
            .run(Op::Admit, async move {
                Ok(call.invoke_async::<Vec<String>>(&mut conn).await?)
            })
            .await;
        match answer {
            Ok(words) => verdict(&words, limits).unwrap_or_else(|e| {
                log::warn!("redis: admission answered {e}; refusing");
                Admission::Unanswered
            }),
            Err(_) => Admission::Unanswered,
        }
    }

    /// Gives a lease back at once; if this fails the lease expires by itself.
    pub(crate) async fn release(&self, lease: Lease) {
        let mut conn = self.conn.clone();
        let mut call = self.scripts.release.prepare_invoke();
        call.arg(&*self.prefix)
            .arg(lease.identity)
            .arg(lease.member);
        let _ = self
            .run(Op::Release, async move {
                Ok(call.invoke_async::<i64>(&mut conn).await?)
            })
            .await;
    }

    /// Renews (or writes again) the leases of this instance's live sessions.
    pub(crate) async fn refresh(&self, leases: Vec<Lease>) -> bool {
        let mut conn = self.conn.clone();
        let mut call = self.scripts.refresh.prepare_invoke();
        call.arg(&*self.prefix)
            .arg(&*self.instance)
            .arg(LEASE_TTL.as_millis() as u64);
        for lease in leases {
            call.arg(lease.identity).arg(lease.member);
        }
        self.run(Op::Refresh, async move {
            Ok(call.invoke_async::<i64>(&mut conn).await?)
        })
        .await
        .is_ok()
    }
}

/// Reads `admit.lua`'s answer.
fn verdict(words: &[String], limits: SharedLimits) -> Result<Admission, Unanswered> {
    let refused = |r| Ok(Admission::Refused(r));
    match words.first().map(String::as_str) {
        Some("ok") => Ok(Admission::Admitted),
        Some("budget") => refused(Rejected::BudgetExceeded {
            budget: match words.get(1).map(String::as_str) {
                Some("global") => Budget::Global,
                Some("global_usd") => Budget::GlobalUsd,
                Some("client_usd") => Budget::ClientUsd,
                _ => Budget::Client,
            },
        }),
        Some("too_many") => refused(Rejected::TooManyConnections {
            max: limits.per_client,
        }),
        Some("rate") => refused(Rejected::RateLimited {
            per_minute: limits.rate_per_minute,
        }),
        _ => Err(Unanswered::Shape(format!("{words:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A member names its instance and identity, even an identity with spaces.
    #[test]
    fn lease_members_round_trip() {
        let lease = Lease::new("host/1/2", 7, "jwt:a user");
        assert_eq!(lease.member, "host/1/2 7 jwt:a user");
        assert_eq!(
            Lease::parse(&lease.member),
            Some(("host/1/2", "jwt:a user"))
        );
        assert_eq!(Lease::parse("nospace"), None);
    }

    /// Each answer of the script becomes the refusal a single instance would give.
    #[test]
    fn verdicts() {
        let limits = SharedLimits {
            per_client: 2,
            rate_per_minute: 5,
            ..SharedLimits::default()
        };
        let w = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(verdict(&w(&["ok"]), limits).ok(), Some(Admission::Admitted));
        assert_eq!(
            verdict(&w(&["budget", "global"]), limits).ok(),
            Some(Admission::Refused(Rejected::BudgetExceeded {
                budget: Budget::Global
            }))
        );
        assert_eq!(
            verdict(&w(&["budget", "client_usd"]), limits).ok(),
            Some(Admission::Refused(Rejected::BudgetExceeded {
                budget: Budget::ClientUsd
            }))
        );
        assert_eq!(
            verdict(&w(&["budget", "global_usd"]), limits).ok(),
            Some(Admission::Refused(Rejected::BudgetExceeded {
                budget: Budget::GlobalUsd
            }))
        );
        assert_eq!(
            verdict(&w(&["too_many"]), limits).ok(),
            Some(Admission::Refused(Rejected::TooManyConnections { max: 2 }))
        );
        assert_eq!(
            verdict(&w(&["rate"]), limits).ok(),
            Some(Admission::Refused(Rejected::RateLimited { per_minute: 5 }))
        );
        assert!(verdict(&w(&["what"]), limits).is_err());
    }
}
