//! # openai-realtime-relay
//!
//! A relay for the OpenAI Realtime API. Browsers and apps open a WebSocket here (offering the
//! `realtime` subprotocol); the relay opens its own WebSocket to OpenAI with the server's key and
//! relays every frame both ways, unchanged and in order.
//!
//! ## Map
//!
//! The folders follow a request on its way in:
//!
//! ```text
//!  client ──► http/upgrade ──► session/actor ──Admit/Release──► admission/registry ◄── admission/reaper
//!             http/admin          │    ▲   (messages: session/msg, admission/msg)        (Tick to every session)
//!                        starts   ▼    │ UpstreamOpened / End
//!                              upstream/actor ── upstream/dial (+ pool, tls) ── awc ──► OpenAI
//!              client pump: session/client ──► upstream/sender (writes the socket itself) ──► upstream
//!              upstream pump: upstream/pump::read_upstream ──► client (usage glanced at)
//! ```
//!
//! - `relay.rs`: `start` wires a running relay from a `Config`; `Relay` drains and stops it.
//! - `config/`: every environment variable, validated at once; `secret.rs`: values that print
//!   as `***`.
//! - `close/`: every way a session ends: close code, `error` event, metric label.
//! - `http/`: `upgrade.rs` (the WebSocket entry points, refusals before the upgrade, client
//!   identity), `calls.rs` (WebRTC signalling: `/v1/realtime/calls` and its hangup),
//!   `console.rs` (the console page of `console/`, embedded) and `admin.rs` (`/health`,
//!   `/stats`, `/metrics`, CORS, 404).
//! - `call/`: WebRTC calls (`http/calls.rs` takes the offer): the `Call` actor, which takes a slot,
//!   forwards the offer (`upstream/calls.rs`), and keeps the call's sideband WebSocket for usage,
//!   budgets, the policy's pinned fields and the hangup; the book of live calls by owner.
//! - `admission/`: the `Registry` (capacity, models, budgets, per-client limits, the usage
//!   ledger; `registry/shared.rs` its side of the shared state), its messages, `/stats`, and the
//!   `Reaper` (heartbeats, idle eviction).
//! - `cluster/`: with `REDIS_URL`, the limits, budgets and usage several instances share in
//!   Redis: atomic admission with leases, the shared ledger, `/stats?scope=cluster`. Never on the
//!   path of a frame.
//! - `session/`: the `Session` actor, its messages, the client pump, the state the pumps share,
//!   heartbeat liveness.
//! - `upstream/`: TLS, the per-worker dialer and warm pool, the socket after its handshake, the
//!   `Upstream` actor, its reader (`pump.rs`), the shared writing half (`sender.rs`) and the byte
//!   bound on what waits for the client (`backlog.rs`).
//! - `protection/`: who a client is (tokens, JWTs, the relay's client secrets, its address
//!   behind `TRUSTED_PROXIES`), the
//!   throttle on failed authentication, the model allow-list on every path, the session policy
//!   (`policy/`), the safety identifier, what the upstream says it used (`response.done`, the
//!   daily ledger, its state file) and what that costs (`pricing.rs`, the price table).
//! - `ops/`: metrics, log formats, repeated warnings collapsed.
//!
//! No two files import each other: actors reach each other through `Recipient`s of the messages
//! in the leaf modules `session/msg.rs` and `admission/msg.rs`. The hot path is two futures per
//! session, one per direction, each reading one socket and writing the other with backpressure;
//! actors only see lifecycle events.

#![forbid(unsafe_code)]

pub(crate) mod admission;
pub(crate) mod call;
pub(crate) mod close;
pub(crate) mod cluster;
pub mod config;
pub(crate) mod http;
pub mod ops;
pub mod protection;
pub(crate) mod relay;
pub(crate) mod secret;
pub(crate) mod session;
pub(crate) mod upstream;

pub use relay::{listen, start, DrainReport, Relay, TokenReloader};
