//! Admission: the `Registry` that admits, counts and ends sessions (`registry.rs`, its messages
//! in `msg.rs`), its per-client limits (`limits.rs`) and `/stats` (`stats.rs`), and the `Reaper`
//! that sends heartbeats and evicts idle sessions (`reaper.rs`).

pub mod limits;
pub mod msg;
pub mod reaper;
pub mod registry;
pub mod stats;
