//! Log lines that may repeat many times a second (an upstream that is down fails every dial)
//! collapsed to one line per key and window, with a count of what was held back. Pure logic: the
//! caller passes the clock, and keys come from closed sets (close reason labels), so the map
//! stays small. One `Throttle` lives as long as the relay; every worker's dialer shares it.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// How often a repeating line is written at most, per key.
pub(crate) const WINDOW: Duration = Duration::from_secs(10);

/// When each key was last written, and how many were held back since.
pub struct Throttle {
    window: Duration,
    slots: Mutex<HashMap<&'static str, Slot>>,
}

struct Slot {
    logged_at: Instant,
    held_back: u64,
}

impl Throttle {
    pub(crate) fn new(window: Duration) -> Throttle {
        Throttle {
            window,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(n)`: write the line now, and say that `n` like it were held back since the last
    /// one. `None`: hold this one back.
    pub(crate) fn check(&self, key: &'static str, now: Instant) -> Option<u64> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        match slots.get_mut(key) {
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

    #[test]
    fn note_names_the_count() {
        assert_eq!(held_back_note(0), "");
        assert_eq!(held_back_note(3), " (3 more like it since the last report)");
    }
}
