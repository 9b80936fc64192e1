//! Several relay binaries (`instances`) sharing one real `redis-server` that each test starts on
//! a free loopback port (`common::redis`), in front of one in-process fake upstream (issue 11,
//! `REDIS_URL`): per-client limits and the connection rate held once across instances, and two
//! instances racing for the last slot (`limits`); budgets spent through one instance refusing and
//! ending sessions on another (`budgets`); an instance killed with SIGKILL freeing its slots when
//! its leases expire (`leases`, the slow one: up to the 30 s lease); Redis killed and restarted,
//! or hung, under `REDIS_FAILURE_MODE` closed and open (`outage`); a password in `REDIS_URL`,
//! never shown (`password`); `GET /stats?scope=cluster` (`cluster_stats`); usage counted once per
//! response id, through the relay and at the script (`ledger`); a WebRTC call holding a shared
//! slot and spending the shared ledger (`calls`).
//!
//! Needs `redis-server` (Debian's package): without it each test says it is skipped, unless
//! `RELAY_TESTS_REQUIRE` lists it; `bash tests/run.sh` installs it.

#[path = "../common/mod.rs"]
mod common;

mod budgets;
mod calls;
mod cluster_stats;
mod instances;
mod leases;
mod ledger;
mod limits;
mod outage;
mod password;
