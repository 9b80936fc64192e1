//! What a `Call` is told besides the session messages it shares with WebSocket sessions
//! (`session/msg.rs`: `Tick`, `End`, `BudgetSpent`), and what it answers the HTTP layer. A leaf:
//! the HTTP layer and the call book import this file, not the actor.

use actix::prelude::*;
use actix_web::{http::StatusCode, web::Bytes};
use tokio::sync::oneshot;

use crate::close::SessionEnd;

/// The client hangs its call up (`POST /v1/realtime/calls/{id}/hangup`): the call ends, hanging
/// up upstream once, and `reply` gets the upstream's status (None: the call had already ended).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct HangUp {
    pub(crate) reply: oneshot::Sender<Option<Result<StatusCode, SessionEnd>>>,
}

/// What the offer came to: the call's id and the SDP answer, or why there is no call.
pub(crate) type Answer = Result<(String, Bytes), SessionEnd>;
