//! Admission: the `Registry` that admits, counts and ends sessions (`registry.rs`, its messages
//! in `msg.rs`), its per-client limits (`limits.rs`) and `/stats` (`stats.rs`), and the `Reaper`
//! that sends heartbeats and evicts idle sessions (`reaper.rs`).

pub(crate) mod limits;
pub(crate) mod msg;
pub(crate) mod reaper;
pub(crate) mod registry;
pub(crate) mod stats;
