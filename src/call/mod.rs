//! WebRTC calls through the relay. A browser posts its SDP offer to `/v1/realtime/calls`
//! (`http/calls.rs`); after the same checks as a WebSocket upgrade a `Call` actor (`actor.rs`)
//! takes a slot in the registry, forwards the offer upstream with the server's key
//! (`upstream/calls.rs`), hands the answer back, and keeps the call's sideband WebSocket
//! (`?call_id=`) for the call's life (`sideband.rs`): usage and budgets from `response.done`,
//! the policy's pinned fields re-asserted, and a hangup upstream when the relay ends the call
//! (`MAX_SESSION_DURATION`, a spent budget, a drain). The media goes between the browser and the
//! upstream; the relay never touches it. `book.rs` remembers which identity owns which call, for
//! the hangup endpoint and for clients attaching to their call's events.

pub(crate) mod actor;
pub(crate) mod book;
pub(crate) mod msg;
pub(crate) mod sideband;
