//! `SAFETY_IDENTIFIER`: the `OpenAI-Safety-Identifier` header the relay sends upstream, a keyed
//! hash of the client's identity or address, so OpenAI can tell end users apart without learning
//! who they are. Built once at startup; the upgrade handler asks it per session.

use std::net::IpAddr;

use crate::{config::SafetyIdentifier, protection::identity::Identity, secret::Secret};

/// `SAFETY_IDENTIFIER`: how the `OpenAI-Safety-Identifier` header is made.
pub(crate) struct Safety {
    pub(crate) mode: SafetyIdentifier,
    /// HMAC key for the hash (`SAFETY_IDENTIFIER_SALT`, else the server key): stable across
    /// restarts and instances, and not reversible to the identity without it.
    pub(crate) salt: Secret,
}

impl Safety {
    /// The header value for this client, if the feature is on: 32 hex digits of
    /// HMAC-SHA256(salt, identity or address).
    pub(crate) fn identifier(&self, identity: &Identity, ip: Option<IpAddr>) -> Option<String> {
        let subject = match self.mode {
            SafetyIdentifier::Off => return None,
            SafetyIdentifier::Identity => identity.key.clone(),
            SafetyIdentifier::Address => Identity::address(ip).key,
        };
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.salt.expose().as_bytes());
        let tag = ring::hmac::sign(&key, subject.as_bytes());
        Some(
            tag.as_ref()[..16]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        )
    }
}
