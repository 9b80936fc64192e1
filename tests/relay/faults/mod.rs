//! The fault and abuse suite (issue 10): what the relay does when either peer misbehaves, on
//! loopback only, bounded in count and time. `upstream`: an upstream that resets mid-response,
//! stops reading, or sends odd JSON. `upstream_handshake`: one that never answers its handshake,
//! or upgrades and never sends `session.created`. `clients`: many sessions with mixed client
//! faults, and slow-header connections. `malformed_upgrades`: upgrade requests no client should
//! send. `processes`: the binary killed, and drained under load. `config_fuzz`: the binary
//! started with random configuration.

mod clients;
mod config_fuzz;
mod malformed_upgrades;
mod processes;
mod upstream;
mod upstream_handshake;
