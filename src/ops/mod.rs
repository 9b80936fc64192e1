//! Operating the relay: the metrics it exports, how its log lines are written, warnings that
//! would otherwise repeat, and what the binary does besides relaying (the `healthcheck`
//! subcommand, signals). `main` uses `logfmt`, `healthcheck` and `signals`; the rest is the
//! crate's own.

pub mod healthcheck;
pub mod logfmt;
pub(crate) mod metrics;
pub mod signals;
pub(crate) mod throttle;
