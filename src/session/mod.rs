//! A client session: the `Session` actor (`actor.rs`), the messages it receives and the handle
//! others keep for it (`msg.rs`, a leaf), the client pump (`client.rs`), the state both pumps
//! share with the actor (`shared.rs`), and debug logging of event types (`events.rs`).

pub(crate) mod actor;
pub(crate) mod client;
pub(crate) mod events;
pub(crate) mod msg;
pub(crate) mod shared;
