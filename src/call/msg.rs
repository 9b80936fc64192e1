//! What a `Call` is told besides the session messages it shares with WebSocket sessions
//! (`session/msg.rs`: `Tick`, `End`, `BudgetSpent`), and what it answers the HTTP layer. A leaf:
//! the HTTP layer and the call book import this file, not the actor.

use actix::prelude::*;
use actix_web::web::Bytes;

use crate::close::SessionEnd;

/// The client hung the call up itself (`POST /v1/realtime/calls/{id}/hangup`, already passed
/// upstream): end without a second hangup.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct HungUp;

/// What the offer came to: the call's id and the SDP answer, or why there is no call.
pub(crate) type Answer = Result<(String, Bytes), SessionEnd>;
