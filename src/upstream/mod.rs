//! The upstream side of a session: TLS (`tls.rs`), the per-worker `Dialer` and its warm pool
//! (`dial.rs`, `pool.rs`), the socket after its handshake (`wire.rs`), the `Upstream` actor
//! (`actor.rs`), its reader (`pump.rs`), the writing half the client reader and the actor share
//! (`sender.rs`), and the byte bound on what waits for the client (`backlog.rs`).

pub(crate) mod actor;
pub(crate) mod backlog;
pub(crate) mod calls;
pub(crate) mod dial;
pub(crate) mod pool;
pub(crate) mod pump;
pub(crate) mod sender;
pub(crate) mod tls;
pub(crate) mod wire;
