//! Protecting the key and the bill, beside the path of a request: who a client is
//! (`identity.rs`, with the static `tokens.rs` and HS256 `jwt/` credentials, the relay's own
//! short-lived `client_secret.rs`, and
//! `auth_failures.rs`, which throttles an address that keeps failing), its address behind
//! `TRUSTED_PROXIES` and how an address is keyed (`client_ip.rs`), which models a client may use
//! (`models.rs`, `ALLOWED_MODELS`; `client_events.rs`, the `session.update`s not forwarded), the
//! keyed safety identifier sent upstream (`safety.rs`), the session policy a client cannot
//! override (`policy/`: pinned, locked and hidden fields), and what the upstream says it used
//! (`usage/`: the events and the daily ledger) and what that costs (`pricing.rs`, the price
//! table). `config` reads the settings; the HTTP upgrade asks
//! who a client is and checks its URL; the client pump checks its events; the upstream pump reads
//! usage and the registry keeps the ledger. Nothing here is an actor.

pub(crate) mod auth_failures;
pub(crate) mod client_events;
pub(crate) mod client_ip;
pub(crate) mod client_secret;
pub mod identity;
pub(crate) mod jwt;
pub(crate) mod models;
pub(crate) mod policy;
pub(crate) mod pricing;
pub(crate) mod safety;
pub(crate) mod tokens;
pub mod usage;
