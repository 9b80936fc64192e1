//! Protecting the key and the bill, beside the path of a request: who a client is
//! (`identity.rs`, with the static `tokens.rs` and HS256 `jwt.rs` credentials), its address
//! behind `TRUSTED_PROXIES` (`client_ip.rs`), the keyed safety identifier sent upstream
//! (`safety.rs`), and what the upstream says it used (`usage/`: the
//! events and the daily ledger). `config` reads the settings; the HTTP upgrade asks who a client
//! is; the upstream pump reads usage and the registry keeps the ledger. Nothing here is an actor.

pub(crate) mod client_ip;
pub mod identity;
pub(crate) mod jwt;
pub(crate) mod safety;
pub(crate) mod tokens;
pub mod usage;
