//! A scriptable fake of OpenAI's Realtime WebSocket server, on loopback.
//!
//! It owns a small actix-web server (one worker, port 0) and a [`Recorder`] that every connection
//! writes to: upgrade requests, data messages, and how each connection ended. What a new
//! connection does is decided by the [`Script`] current when its upgrade arrives; tests swap it
//! with [`FakeUpstream::set_script`]. Three users: the relay's `--demo` mode (no API key), the
//! integration tests, and the echo benchmark. It stops when [`FakeUpstream::stop`] is called or
//! the actix `System` that started it goes away.
//!
//! The map, in the order a connection meets it:
//! - `server.rs`: [`FakeUpstream`], the listener, and the upgrade (record, delay, reject, accept);
//! - `script.rs`: [`Script`] and [`Mode`], what a connection does;
//! - `connection/`: one open WebSocket: what it sends on open, its read loop, its faults
//!   (drop, stop reading); `demo.rs` the demo server (it listens with `hearing.rs` and answers
//!   with `reply.rs` through `respond.rs`), `stream.rs` the streamer;
//! - `recorder.rs`: [`Recorder`] and what it keeps ([`Handshake`], [`Received`], [`Closed`]).

mod connection;
mod recorder;
mod script;
mod server;
#[cfg(test)]
mod test_client;

pub use recorder::{Closed, Frame, Handshake, Received, Recorder, WaitTimeout};
pub use script::{Mode, Script};
pub use server::FakeUpstream;
