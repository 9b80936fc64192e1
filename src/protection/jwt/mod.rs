//! HS256 JSON Web Tokens (`RELAY_JWT_SECRET`): an app's backend mints a short-lived token per
//! user and the relay checks it, so every user is an identity (`jwt:<sub>`) with optional model
//! restrictions without the relay holding a user list. The [`Authenticator`] calls
//! [`JwtVerifier::verify`] for a credential with two dots; tests mint tokens with [`mint_jwt`]
//! (docs/security.md shows how in Python and Node). Nothing here logs, and no error or `Debug`
//! output contains the secret or a token.
//!
//! `verifier.rs` holds the token's shape, its header and its signature, and the expected `aud`
//! and `iss`; `claims.rs` the relay's own claims (`sub`, `exp`, `nbf`, `models`, `budget_usd`,
//! `policy`) and what makes each valid. This file holds the error both report.
//!
//! The signature is HMAC-SHA256 from `ring` (which rustls already brings); the checks around it
//! are the relay's policy, each written down where it is made. `jsonwebtoken` 10 was measured
//! against this: its `decode` refuses base64 padding that this accepts (a test pins it), reads the
//! wall clock where this takes the caller's `now`, reports an unknown `alg` as a JSON error, and
//! has no `ring` backend (its own would add RustCrypto's RSA, ECDSA and EdDSA, or aws-lc), so the
//! policy here would stay and the file would grow.
//!
//! [`Authenticator`]: super::identity::Authenticator

mod claims;
mod verifier;

pub use self::verifier::mint_jwt;
pub(crate) use self::verifier::JwtVerifier;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum JwtError {
    #[error("malformed token")]
    Malformed,
    #[error("unsupported algorithm")]
    Algorithm,
    #[error("bad signature")]
    Signature,
    /// Also returned for a token whose `nbf` is still in the future: it is not valid now.
    #[error("token expired")]
    Expired,
    #[error("missing claim {0}")]
    MissingClaim(&'static str),
    /// `aud` is missing or does not name `RELAY_JWT_AUDIENCE`.
    #[error("wrong audience")]
    Audience,
    /// `iss` is missing or is not `RELAY_JWT_ISSUER`.
    #[error("wrong issuer")]
    Issuer,
}

/// What the unit tests of `verifier.rs` and `claims.rs` share: a fixed `now`, the test secret,
/// and tokens minted with it.
#[cfg(test)]
mod testing {
    use serde_json::Value;

    use super::{mint_jwt, JwtVerifier};
    use crate::secret::Secret;

    pub(super) const NOW: u64 = 1_800_000_000;

    pub(super) fn secret() -> Secret {
        Secret::new("jwt-test-secret-0123456789")
    }

    pub(super) fn mint(claims: Value) -> String {
        mint_jwt(&secret(), &claims)
    }

    pub(super) fn verifier() -> JwtVerifier {
        JwtVerifier::new(&secret())
    }
}
