//! A call's sideband: the relay's own WebSocket to the upstream at `?call_id=`, read for the
//! call's whole life. Each text event gets the same first-bytes look a WebSocket session's
//! upstream reader gives it (`Accounting::account`: responses in flight, usage into the ledger,
//! metrics and budgets); with a policy that pins locked fields, a `session.updated` that shows one
//! changed (the browser set it over its data channel, which the relay never sees) makes the relay
//! send the pinned `session.update` again. Pings are answered; anything else is not parsed.
//! Started by the `Call` actor once the upstream accepted the call; returns why the sideband
//! ended.

use std::{cell::Cell, rc::Rc, sync::Arc};

use awc::ws::{Frame, Message};
use futures_util::StreamExt;

use crate::{
    close::SessionEnd,
    protection::policy::{Action, Applied},
    session::shared::Shared,
    upstream::{
        pump::{Accounting, Fragment, Partial},
        sender::ToUpstream,
        wire,
    },
};

/// What the sideband reader writes to and counts into.
pub(crate) struct Sideband {
    /// The sideband's writing half: pongs and re-asserted pinned updates.
    pub(crate) writer: ToUpstream,
    pub(crate) shared: Rc<Shared>,
    pub(crate) accounting: Accounting,
    /// `relay_unaccounted_responses_total`.
    pub(crate) unaccounted: prometheus::IntCounter,
    /// The call's policy, when it pins locked fields (`Policy::guards_drift`).
    pub(crate) guard: Option<Arc<Applied>>,
    pub(crate) max_message_size: usize,
    /// Heartbeats since the upstream last sent anything; the reader resets it.
    pub(crate) unanswered: Rc<Cell<u32>>,
}

impl Sideband {
    /// Sends the pinned update again when `text` shows a locked field changed.
    fn reassert(&self, text: &str) {
        let Some(applied) = &self.guard else { return };
        let drifted = applied.policy.drifted(text);
        if drifted.is_empty() {
            return;
        }
        let Some(update) = applied.policy.pinned_update() else {
            return;
        };
        if self.writer.try_send(Message::Text(update.into())) {
            for field in drifted {
                applied.count(Action::Reasserted, field);
            }
        }
    }
}

/// Reads the sideband until it ends; why it ended. A spent budget ends it once no response is in
/// flight.
pub(crate) async fn read_sideband(mut stream: wire::Reader, to: Sideband) -> SessionEnd {
    stream.refuse_frames_over(to.max_message_size);
    let too_large = SessionEnd::UpstreamMessageTooLarge {
        limit: to.max_message_size,
    };
    let mut partial = Partial::default();
    while let Some(frame) = stream.next().await {
        to.unanswered.set(0);
        let (text, data) = match frame {
            Ok(Frame::Text(b)) => (true, b),
            Ok(Frame::Binary(b)) => (false, b),
            Ok(Frame::Continuation(item)) => match partial.push(item, to.max_message_size) {
                Ok(Some(whole)) => whole,
                Ok(None) => continue,
                Err(Fragment::TooLarge) => return too_large,
                Err(Fragment::OutOfOrder) => return SessionEnd::UpstreamProtocolError,
            },
            Ok(Frame::Ping(p)) => {
                let _ = to.writer.try_send(Message::Pong(p));
                continue;
            }
            Ok(Frame::Pong(_)) => continue,
            Ok(Frame::Close(reason)) => {
                return SessionEnd::UpstreamClosed {
                    code: reason.as_ref().map(|r| u16::from(r.code)),
                    reason: reason.and_then(|r| r.description).unwrap_or_default(),
                }
            }
            Err(wire::ReadError::TooLarge) => return too_large,
            Err(wire::ReadError::Gone) => return SessionEnd::UpstreamGone,
            Err(wire::ReadError::Invalid) => return SessionEnd::UpstreamProtocolError,
        };
        to.shared.traffic.upstream_to_client.record(data.len());
        if !text {
            continue;
        }
        let Ok(text) = std::str::from_utf8(&data) else {
            return SessionEnd::UpstreamProtocolError;
        };
        let budget_end = to.accounting.account(&to.shared, &to.unaccounted, text);
        to.reassert(text);
        if budget_end {
            if let Some(budget) = to.shared.budget_spent.get() {
                return SessionEnd::BudgetExceeded { budget };
            }
        }
    }
    SessionEnd::UpstreamGone
}
