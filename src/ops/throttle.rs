//! Log lines that may repeat many times a second (an upstream that is down fails every dial, a
//! client that retries a refused connection in a loop) collapsed to one line per key and window,
//! with a count of what was held back. [`Throttle`] keys on a closed set (close reason labels), so
//! its map stays small; every worker's dialer shares the relay's one. [`RefusalLog`] keys on a
//! refusal reason and a client address, which clients choose, so its map is bounded: past
//! [`MAX_REFUSAL_KEYS`] addresses, further ones share one line per reason. The HTTP upgrade and
//! the sessions share the relay's one. Pure logic apart from the log line itself: the caller
//! passes the clock.

use std::{
    collections::HashMap,
    hash::Hash,
    net::IpAddr,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

/// How often a repeating line is written at most, per key.
pub(crate) const WINDOW: Duration = Duration::from_secs(10);

/// How often a refusal line is written at most, per reason and client address.
pub(crate) const REFUSAL_WINDOW: Duration = Duration::from_secs(5);

/// The log target of refusal lines: the session's, where most of them always were.
const REFUSAL_TARGET: &str = "openai_realtime_relay::session";

/// Most (reason, address) pairs [`RefusalLog`] tracks at once.
pub(crate) const MAX_REFUSAL_KEYS: usize = 10_000;

/// When each key was last written, and how many were held back since.
pub struct Throttle {
    slots: Keyed<&'static str>,
}

impl Throttle {
    pub(crate) fn new(window: Duration) -> Throttle {
        Throttle {
            slots: Keyed::new(window),
        }
    }

    /// `Some(n)`: write the line now, and say that `n` like it were held back since the last
    /// one. `None`: hold this one back.
    pub(crate) fn check(&self, key: &'static str, now: Instant) -> Option<u64> {
        self.slots.check(key, now)
    }
}

/// The map behind both throttles: per key, when its line was last written and how many were held
/// back since.
struct Keyed<K> {
    window: Duration,
    slots: Mutex<HashMap<K, Slot>>,
}

struct Slot {
    logged_at: Instant,
    held_back: u64,
}

impl<K: Hash + Eq> Keyed<K> {
    fn new(window: Duration) -> Keyed<K> {
        Keyed {
            window,
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn check(&self, key: K, now: Instant) -> Option<u64> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        self.check_in(&mut slots, key, now)
    }

    /// [`Keyed::check`] for `key` while the map holds fewer than `max` keys (those whose window
    /// has passed with nothing held back are dropped to make room: they hold no information),
    /// else for `shared`. Returns whether `shared` was used, and what `check` returns.
    fn check_bounded(&self, key: K, shared: K, max: usize, now: Instant) -> (bool, Option<u64>) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if !slots.contains_key(&key) && slots.len() >= max {
            let window = self.window;
            slots.retain(|_, s| {
                s.held_back > 0 || now.saturating_duration_since(s.logged_at) < window
            });
            if slots.len() >= max {
                return (true, self.check_in(&mut slots, shared, now));
            }
        }
        (false, self.check_in(&mut slots, key, now))
    }

    fn check_in(&self, slots: &mut HashMap<K, Slot>, key: K, now: Instant) -> Option<u64> {
        match slots.get_mut(&key) {
            Some(slot) if now.saturating_duration_since(slot.logged_at) < self.window => {
                slot.held_back += 1;
                None
            }
            Some(slot) => {
                let held_back = std::mem::take(&mut slot.held_back);
                slot.logged_at = now;
                Some(held_back)
            }
            None => {
                slots.insert(
                    key,
                    Slot {
                        logged_at: now,
                        held_back: 0,
                    },
                );
                Some(0)
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Refusals of client connections, logged at most once per [`REFUSAL_WINDOW`] for each reason
/// and client address, with how many more there were: a client retrying in a loop, or many at
/// once, cannot flood the log (each refusal is still counted in `relay_sessions_rejected_total`).
pub(crate) struct RefusalLog {
    slots: Keyed<(&'static str, Option<IpAddr>, bool)>,
    max_keys: usize,
}

impl Default for RefusalLog {
    fn default() -> Self {
        RefusalLog::new(REFUSAL_WINDOW, MAX_REFUSAL_KEYS)
    }
}

impl RefusalLog {
    pub(crate) fn new(window: Duration, max_keys: usize) -> RefusalLog {
        RefusalLog {
            slots: Keyed::new(window),
            max_keys,
        }
    }

    /// A connection from `client` was refused for `reason` (a close reason label): writes
    /// `<what> client=.. reason=..` at `warn` unless one went out for the pair within the window,
    /// with `repeats=N` when N were held back since. `what` is the line's sentence (`session
    /// refused`, `upgrade refused`); `origin`, for `origin_not_allowed`, the refused `Origin` (the
    /// one of the line that is written).
    pub(crate) fn refused(
        &self,
        what: &'static str,
        reason: &'static str,
        client: Option<IpAddr>,
        origin: Option<&str>,
        now: Instant,
    ) {
        let Some((client, held_back)) = self.check(reason, client, now) else {
            return;
        };
        let client = client.map_or_else(|| "-".to_string(), |ip| ip.to_string());
        let note = held_back_note(held_back);
        // One target for every refusal line, wherever it was decided, so one filter finds them.
        match origin {
            Some(origin) => log::warn!(
                target: REFUSAL_TARGET,
                client = client.as_str(), reason = reason, origin:? = origin, repeats = held_back;
                "{what}{note}"
            ),
            None => log::warn!(
                target: REFUSAL_TARGET,
                client = client.as_str(), reason = reason, repeats = held_back;
                "{what}{note}"
            ),
        }
    }

    /// Whether to write the line now, for which client (`None` when addresses past the bound
    /// share one line), and how many were held back since the last.
    fn check(
        &self,
        reason: &'static str,
        client: Option<IpAddr>,
        now: Instant,
    ) -> Option<(Option<IpAddr>, u64)> {
        // Past the bound: one shared line per reason (its slot may exceed the bound by the few
        // reasons there are).
        let (shared, held_back) = self.slots.check_bounded(
            (reason, client, false),
            (reason, None, true),
            self.max_keys,
            now,
        );
        held_back.map(|n| (if shared { None } else { client }, n))
    }
}

/// `" (N more like it since the last report)"`, or nothing when none were held back.
pub(crate) fn held_back_note(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} more like it since the last report)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_passes_repeats_are_counted_until_the_window_ends() {
        let t = Throttle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(t.check("upstream_unavailable", t0), Some(0));
        for i in 1..=5 {
            assert_eq!(
                t.check("upstream_unavailable", t0 + Duration::from_secs(i)),
                None
            );
        }
        // Another key is not held back by the first.
        assert_eq!(t.check("upstream_auth_failed", t0), Some(0));
        assert_eq!(
            t.check("upstream_unavailable", t0 + Duration::from_secs(10)),
            Some(5)
        );
        assert_eq!(
            t.check("upstream_unavailable", t0 + Duration::from_secs(21)),
            Some(0)
        );
    }

    /// Refusals are written once per reason and address and window, with a count of the rest.
    #[test]
    fn refusals_collapse_per_reason_and_address() {
        let log = RefusalLog::new(Duration::from_secs(5), 100);
        let a: Option<IpAddr> = Some("198.51.100.7".parse().expect("ip"));
        let b: Option<IpAddr> = Some("198.51.100.8".parse().expect("ip"));
        let t0 = Instant::now();
        assert_eq!(log.check("unauthorized", a, t0), Some((a, 0)));
        for i in 1..=9 {
            assert_eq!(
                log.check("unauthorized", a, t0 + Duration::from_millis(i)),
                None
            );
        }
        assert_eq!(log.check("rate_limited", a, t0), Some((a, 0)));
        assert_eq!(log.check("unauthorized", b, t0), Some((b, 0)));
        assert_eq!(
            log.check("unauthorized", a, t0 + Duration::from_secs(5)),
            Some((a, 9))
        );
    }

    /// Past the bound, quiet pairs are dropped to make room; while every pair is busy, new
    /// addresses share one line per reason, and the map stays bounded.
    #[test]
    fn refusal_map_is_bounded() {
        let log = RefusalLog::new(Duration::from_secs(5), 10);
        let t0 = Instant::now();
        let ip = |i: u32| Some(IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i)));
        for i in 0..10 {
            assert!(log.check("unauthorized", ip(i), t0).is_some());
            assert!(log.check("unauthorized", ip(i), t0).is_none(), "busy");
        }
        assert_eq!(log.check("unauthorized", ip(100), t0), Some((None, 0)));
        assert_eq!(log.check("unauthorized", ip(101), t0), None);
        assert_eq!(log.slots.len(), 11);
        // A window later the busy pairs report; once quiet, they make room for new addresses.
        let t1 = t0 + Duration::from_secs(5);
        for i in 0..10 {
            assert_eq!(log.check("unauthorized", ip(i), t1), Some((ip(i), 1)));
        }
        let t2 = t1 + Duration::from_secs(5);
        assert_eq!(log.check("unauthorized", ip(200), t2), Some((ip(200), 0)));
        assert!(log.slots.len() <= 11);
    }

    #[test]
    fn note_names_the_count() {
        assert_eq!(held_back_note(0), "");
        assert_eq!(held_back_note(3), " (3 more like it since the last report)");
    }
}
