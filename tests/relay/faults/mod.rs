//! The fault and abuse suite (issue 10): what the relay does when either peer misbehaves, on
//! loopback only, bounded in count and time. `upstream`: an upstream that resets mid-response,
//! never answers its handshake, stops reading, or sends odd JSON. `clients`: many sessions with
//! mixed client faults, malformed upgrades and slow-header connections. `processes`: the binary
//! killed, drained under load, and started with random configuration.

mod clients;
mod processes;
mod upstream;
