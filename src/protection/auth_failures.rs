//! Failed authentication, throttled per client address (`AUTH_FAILURES_PER_MINUTE`): an address
//! (an IPv6 client by its prefix) that failed that many times in a burst has its next attempts
//! refused with `rate_limited` before any credential is looked at, until its allowance refills
//! (one attempt every `60 / N` seconds). Guessing tokens or JWT secrets from one place becomes
//! slow, and every refused guess costs the relay almost nothing. The `Authenticator` owns the one
//! instance (shared by every worker) and asks it around each credential check. Pure logic: the
//! caller passes the clock.
//!
//! The map is bounded: addresses whose allowance has refilled hold no information and are
//! dropped when it is full. If it is still full, a new address is not tracked (its failures are
//! not throttled) rather than pushing out one that is: otherwise spraying failures from many
//! addresses would set the throttled ones free.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::Instant,
};

/// Most addresses tracked at once (about 100 bytes each).
const MAX_ADDRESSES: usize = 10_000;

/// What is left of one address's allowance.
#[derive(Debug, Clone, Copy)]
struct Allowance {
    failures_left: f64,
    updated: Instant,
}

/// Failures per minute per address; 0 turns the throttle off.
#[derive(Debug)]
pub(crate) struct AuthFailures {
    per_minute: u32,
    addresses: Mutex<HashMap<String, Allowance>>,
}

impl AuthFailures {
    pub(crate) fn new(per_minute: u32) -> AuthFailures {
        AuthFailures {
            per_minute,
            addresses: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn per_minute(&self) -> u32 {
        self.per_minute
    }

    /// Whether `address` has used up its failures: its attempts are refused unchecked.
    pub(crate) fn blocked(&self, address: &str, now: Instant) -> bool {
        if self.per_minute == 0 {
            return false;
        }
        let addresses = self.lock();
        addresses
            .get(address)
            .is_some_and(|a| self.refilled(a, now) < 1.0)
    }

    /// Counts one failed authentication from `address`.
    pub(crate) fn failed(&self, address: &str, now: Instant) {
        if self.per_minute == 0 {
            return;
        }
        let mut addresses = self.lock();
        if let Some(a) = addresses.get_mut(address) {
            a.failures_left = (self.refilled(a, now) - 1.0).max(0.0);
            a.updated = now;
            return;
        }
        if addresses.len() >= MAX_ADDRESSES {
            let full = f64::from(self.per_minute);
            addresses.retain(|_, a| self.refilled(a, now) < full);
            if addresses.len() >= MAX_ADDRESSES {
                return;
            }
        }
        addresses.insert(
            address.to_string(),
            Allowance {
                failures_left: f64::from(self.per_minute) - 1.0,
                updated: now,
            },
        );
    }

    /// The allowance of `a` at `now`, refilled at `per_minute` a minute up to `per_minute`.
    fn refilled(&self, a: &Allowance, now: Instant) -> f64 {
        let rate = f64::from(self.per_minute);
        let refill = now.saturating_duration_since(a.updated).as_secs_f64() * rate / 60.0;
        (a.failures_left + refill).min(rate)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Allowance>> {
        // Every change leaves the map consistent, so a poisoned lock still holds a usable value.
        self.addresses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// N failures in a burst block the address; one more attempt is allowed every 60/N seconds;
    /// another address is not affected.
    #[test]
    fn blocks_after_the_burst_then_refills() {
        let f = AuthFailures::new(3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(!f.blocked("198.51.100.7", t0));
            f.failed("198.51.100.7", t0);
        }
        assert!(f.blocked("198.51.100.7", t0));
        assert!(!f.blocked("198.51.100.8", t0));
        assert!(f.blocked("198.51.100.7", t0 + Duration::from_secs(19)));
        let later = t0 + Duration::from_secs(20);
        assert!(!f.blocked("198.51.100.7", later));
        f.failed("198.51.100.7", later);
        assert!(f.blocked("198.51.100.7", later));
        assert!(!f.blocked("198.51.100.7", t0 + Duration::from_secs(200)));
    }

    /// 0 is off: nothing is tracked, nothing blocked.
    #[test]
    fn zero_is_off() {
        let f = AuthFailures::new(0);
        let t0 = Instant::now();
        for _ in 0..100 {
            f.failed("a", t0);
        }
        assert!(!f.blocked("a", t0));
        assert_eq!(f.tracked(), 0);
    }

    /// A full map drops refilled addresses to make room; while every slot holds a throttled
    /// address, a new one is not tracked and the throttled ones stay throttled.
    #[test]
    fn the_map_is_bounded_and_keeps_the_throttled() {
        let f = AuthFailures::new(1);
        let t0 = Instant::now();
        for i in 0..MAX_ADDRESSES {
            f.failed(&format!("a{i}"), t0);
        }
        assert_eq!(f.tracked(), MAX_ADDRESSES);
        f.failed("newcomer", t0);
        assert_eq!(f.tracked(), MAX_ADDRESSES);
        assert!(!f.blocked("newcomer", t0));
        assert!(f.blocked("a0", t0));
        let later = t0 + Duration::from_secs(61);
        f.failed("newcomer", later);
        assert_eq!(f.tracked(), 1);
        assert!(f.blocked("newcomer", later));
    }
}
