//! A client session: the `Session` actor (`actor.rs`), the messages it receives and the handle
//! others keep for it (`msg.rs`, a leaf), the client pump (`client.rs`), the state both pumps
//! share with the actor (`shared.rs`), whether the client answers the relay's pings
//! (`liveness.rs`), and debug logging of event types (`events.rs`).

pub(crate) mod actor;
pub(crate) mod client;
pub(crate) mod events;
pub(crate) mod guard;
pub(crate) mod liveness;
pub(crate) mod msg;
pub(crate) mod shared;
