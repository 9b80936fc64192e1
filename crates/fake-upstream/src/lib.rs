//! A scriptable fake of OpenAI's Realtime server, on loopback.
//!
//! It owns a small actix-web server (one worker, port 0) and a [`Recorder`] that every connection
//! and call writes to: upgrade requests, data messages, how each connection ended, and (with the
//! `webrtc` feature) call requests, the events each call received, hangups. What a new connection
//! or call does is decided by the [`Script`] current when its request arrives; tests swap it with
//! [`FakeUpstream::set_script`]. Three users: the relay's `--demo` mode (no API key, no `webrtc`
//! feature), the integration tests (with it), and the echo benchmark. It stops when
//! [`FakeUpstream::stop`] is called or the actix `System` that started it goes away.
//!
//! The map, in the order a request meets it:
//! - `server.rs`: [`FakeUpstream`], the listener, the routes, and the upgrade (record, delay,
//!   reject, attach to a call, accept); `request.rs` what it reads from a request, `shared.rs`
//!   what the handle and the worker share, `http_error.rs` its OpenAI-shaped error answers;
//! - `script.rs`: [`Script`], [`Mode`] and [`CallScript`], what a connection or call does;
//! - `connection/`: one open WebSocket: what it sends on open, its read loop, its faults
//!   (drop, stop reading); `stream.rs` the streamer;
//! - `demo/`: the demo server, for a WebSocket or a call: it listens with `hearing.rs`, answers
//!   with `reply.rs` through `respond.rs`, and writes through `emit.rs`;
//! - `calls/`: WebRTC calls (`POST /v1/realtime/calls`), their peers, sidebands and hangups,
//!   and `TestPeer`, a browser stand-in for tests; without the `webrtc` feature only a 501;
//! - `recorder/`: [`Recorder`] and what it keeps ([`Handshake`], [`Received`], [`Closed`]; for
//!   calls [`CallRequest`], [`CallEvent`], [`Hangup`], [`CallEnd`]).

mod calls;
mod connection;
mod demo;
mod http_error;
mod recorder;
mod request;
mod script;
mod server;
mod shared;
#[cfg(test)]
mod test_client;

#[cfg(feature = "webrtc")]
pub use calls::{TestPeer, UnknownCall};
pub use recorder::{
    CallEnd, CallEvent, CallRequest, Closed, Frame, Handshake, Hangup, Received, Recorder, Source,
    WaitTimeout,
};
pub use script::{CallScript, Mode, Script};
pub use server::FakeUpstream;
