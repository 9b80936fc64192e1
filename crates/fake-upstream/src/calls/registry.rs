//! The open calls of one fake ([`Calls`]): their ids and [`Handle`]s, at most [`MAX_CALLS`],
//! and the test API's way in ([`UnknownCall`] when the id names no open call). Ended calls are
//! dropped the next time the registry is looked at. Lives in `Shared`; written by the calls
//! endpoint, read by sidebands, hangups and tests.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use serde_json::Value;

pub use super::msg::UnknownCall;
use super::msg::{Handle, Input};

/// Open calls at most; a call request beyond it is refused with 429.
pub(crate) const MAX_CALLS: usize = 64;

/// The open calls, oldest first.
#[derive(Default)]
pub(crate) struct Calls {
    open: Mutex<Vec<(String, Handle)>>,
    made: AtomicU64,
}

impl Calls {
    fn lock(&self) -> MutexGuard<'_, Vec<(String, Handle)>> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|(_, handle)| !handle.is_ended());
        open
    }

    /// A new call id: `rtc_` and 32 random hex digits.
    pub(crate) fn new_id(&self) -> String {
        let n = self.made.fetch_add(1, Ordering::Relaxed);
        let keys = RandomState::new();
        let (high, low) = (keys.hash_one((n, 1u8)), keys.hash_one((n, 2u8)));
        format!("rtc_{high:016x}{low:016x}")
    }

    /// Whether another call may open.
    pub(crate) fn has_room(&self) -> bool {
        self.lock().len() < MAX_CALLS
    }

    pub(crate) fn insert(&self, call_id: String, handle: Handle) {
        self.lock().push((call_id, handle));
    }

    /// The handle of open call `call_id`.
    pub(crate) fn get(&self, call_id: &str) -> Option<Handle> {
        self.lock()
            .iter()
            .find(|(id, _)| id == call_id)
            .map(|(_, handle)| handle.clone())
    }

    /// The ids of the open calls, oldest first.
    pub(crate) fn ids(&self) -> Vec<String> {
        self.lock().iter().map(|(id, _)| id.clone()).collect()
    }

    /// Sends `event` on call `call_id` as if the model produced it; returns once sent.
    pub(crate) async fn push(&self, call_id: &str, event: Value) -> Result<(), UnknownCall> {
        let handle = self.get(call_id).ok_or(UnknownCall)?;
        handle.ask(|done| Input::Push { event, done }).await
    }

    /// Runs one response on call `call_id`; returns once `response.done` is sent.
    pub(crate) async fn respond(&self, call_id: &str) -> Result<(), UnknownCall> {
        let handle = self.get(call_id).ok_or(UnknownCall)?;
        handle.ask(|done| Input::Respond { done }).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Call ids are `rtc_` and 32 lowercase hex digits, and never repeat.
    #[test]
    fn call_ids_are_shaped_and_unique() {
        let calls = Calls::default();
        let ids: Vec<String> = (0..100).map(|_| calls.new_id()).collect();
        for id in &ids {
            let hex = id.strip_prefix("rtc_").expect("rtc_ prefix");
            assert_eq!(hex.len(), 32, "{id}");
            assert!(hex
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        }
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len());
    }
}
