//! Operating the relay: metrics, log formats, and warnings that would otherwise repeat.

pub mod logfmt;
pub mod metrics;
pub mod throttle;
