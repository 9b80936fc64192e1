//! OpenAI's WebRTC "unified interface" on the fake: `POST /v1/realtime/calls` answers an SDP
//! offer with a real webrtc-rs peer on loopback, each call runs the demo server over its
//! `oai-events` data channel and mirrors every server event to its sidebands (WebSockets opened
//! with `?call_id=`), and `POST /v1/realtime/calls/{call_id}/hangup` ends it. Only with the
//! `webrtc` feature; without it `unsupported.rs` answers 501 (and 404 for hangups and sidebands).
//!
//! The map, in the order a call meets it:
//! - `http.rs`: the endpoints (record, script, bearer key, body, answer) and the sideband upgrade;
//! - `multipart.rs`: the form reader for the request body;
//! - `peer.rs`: the peer connection, its loopback-only ICE settings and its callbacks;
//! - `call.rs`: the call's task, owning the peer and the demo, fanning events out in order;
//! - `sideband.rs`: one attached sideband WebSocket;
//! - `msg.rs`: what the call's task is told, and a call's `Handle`;
//! - `registry.rs`: the open calls, and the test API's way in;
//! - `test_peer.rs`: `TestPeer`, a client peer standing in for a browser in tests.

#[cfg(feature = "webrtc")]
mod call;
#[cfg(feature = "webrtc")]
mod http;
#[cfg(feature = "webrtc")]
mod msg;
#[cfg(feature = "webrtc")]
mod multipart;
#[cfg(feature = "webrtc")]
mod peer;
#[cfg(feature = "webrtc")]
mod registry;
#[cfg(feature = "webrtc")]
mod sideband;
#[cfg(feature = "webrtc")]
mod test_peer;
#[cfg(all(test, feature = "webrtc"))]
mod tests;
#[cfg(not(feature = "webrtc"))]
mod unsupported;

#[cfg(feature = "webrtc")]
pub(crate) use http::{attach, create, hangup};
#[cfg(feature = "webrtc")]
pub(crate) use registry::Calls;
#[cfg(feature = "webrtc")]
pub use registry::UnknownCall;
#[cfg(feature = "webrtc")]
pub use test_peer::TestPeer;
#[cfg(not(feature = "webrtc"))]
pub(crate) use unsupported::{attach, create, hangup};
