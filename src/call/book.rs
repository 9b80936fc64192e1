//! `CallBook`: the live calls of this relay by their upstream id, with the identity that created
//! each. Shared by every HTTP worker (`web::Data`): the hangup endpoint and the WebSocket attach
//! (`?call_id=`) answer only the identity that created the call, and 404 to anyone else, so a
//! call id is no capability on its own. A `Call` enters itself once the upstream has answered
//! and leaves in `stopping()`; the registry's `MAX_CONNECTIONS` bounds it.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
};

use actix::Recipient;

use crate::call::msg::HangUp;

/// What the book keeps of a live call.
#[derive(Clone)]
pub(crate) struct Booked {
    pub(crate) identity: String,
    pub(crate) model: String,
    pub(crate) hang_up: Recipient<HangUp>,
}

#[derive(Default)]
pub(crate) struct CallBook {
    calls: Mutex<HashMap<String, Booked>>,
}

impl CallBook {
    pub(crate) fn insert(&self, call_id: String, booked: Booked) {
        self.lock().insert(call_id, booked);
    }

    pub(crate) fn remove(&self, call_id: &str) {
        self.lock().remove(call_id);
    }

    /// The call `call_id` if `identity` created it; None for an unknown call and for anyone else
    /// (the two look the same to the asker).
    pub(crate) fn owned_by(&self, call_id: &str, identity: &str) -> Option<Booked> {
        self.lock()
            .get(call_id)
            .filter(|b| b.identity == identity)
            .cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Booked>> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
