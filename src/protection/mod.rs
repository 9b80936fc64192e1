//! Protecting the key and the bill: who a client is (tokens, JWTs, its address), and what the
//! upstream says it used.

pub mod client_ip;
pub mod identity;
pub mod usage;
