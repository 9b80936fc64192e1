//! The upstream side of a session: TLS (`tls.rs`), the per-worker `Dialer` and its warm pool
//! (`dial.rs`, `pool.rs`), the socket after its handshake (`wire.rs`), the `Upstream` actor
//! (`actor.rs`) and its two pumps (`pump.rs`).

pub mod actor;
pub mod dial;
pub mod pool;
pub mod pump;
pub mod tls;
pub mod wire;
