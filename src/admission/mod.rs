//! Admission: the registry that admits and counts sessions, and the reaper that evicts them.

pub mod reaper;
pub mod registry;
