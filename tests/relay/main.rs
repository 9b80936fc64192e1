//! The relay's behaviour end to end, in one test binary: the real relay on 127.0.0.1:0 in front
//! of the scriptable fake upstream (also on port 0), the real binary as a child process, and the
//! deployment files read where they are. Nothing here needs a program from outside the
//! repository and the base system; the tests that run the real Nginx and Prometheus are the
//! `nginx` and `prometheus` targets beside this one.
//!
//! One module per concern, named after what it pins: `protocol` (what crosses the relay),
//! `failures` (what a client sees when something breaks), `backpressure`, `session_duration`,
//! `pool`, `tls`, `http` (the HTTP face), `protection` (credentials, limits, usage, budgets),
//! `operations` (drain, signals, admin endpoints, logs), `cost` (usage priced, budgets in
//! dollars), `policy` (the session policy a client
//! cannot override), `binary` (the program as an operator runs it), and `deploy` (Docker,
//! Compose, the scripts, `tests/run.sh`).

#[path = "../common/mod.rs"]
mod common;

mod backpressure;
mod billing;
mod binary;
mod bounds;
mod calls;
mod cost;
mod deploy;
mod failures;
mod faults;
mod http;
mod operations;
mod policy;
mod pool;
mod protection;
mod protocol;
mod session_duration;
mod tls;
