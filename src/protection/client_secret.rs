//! Relay client secrets (`POST /v1/realtime/client_secrets`): a short-lived credential an app's
//! backend mints with its relay token or JWT and hands to a browser, bound to the minting
//! identity, one model and the session fields it narrows. Never an OpenAI `ek_` key: the value is
//! `rcs_` + base64url(JSON [`Grant`]) + `.` + base64url(HMAC-SHA256 tag), signed with
//! `CLIENT_SECRET_KEY` (or a random key per process when unset). Stateless: nothing is stored,
//! so one secret cannot be revoked on its own; removing (or changing) the relay token that minted
//! it revokes it through the token fingerprint it carries, rotating the key revokes them all.
//! The HTTP handler mints with [`ClientSecrets::mint`]; the
//! [`Authenticator`](super::identity::Authenticator) verifies every credential that starts with
//! `rcs_`. Pure: the clock is passed in. Nothing here logs, and no error or `Debug` output
//! contains a secret or the key.

use std::fmt;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine as _};
use ring::{
    hmac,
    rand::{SecureRandom, SystemRandom},
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::secret::Secret;

/// Every relay client secret starts with this, so the relay tells it from a token or a JWT
/// without trying each (and a reader never mistakes it for OpenAI's `ek_`).
pub(crate) const PREFIX: &str = "rcs_";
/// The payload format; another version is not recognised.
const VERSION: u8 = 1;
/// Longer values are refused before any decoding, and none is minted: a secret must fit the
/// browser's `Sec-WebSocket-Protocol` header, well inside the relay's header limit.
pub(crate) const MAX_LEN: usize = 8 * 1024;
/// `expires_after.seconds`: OpenAI's range, and its default.
pub(crate) const MIN_SECONDS: u64 = 10;
pub(crate) const MAX_SECONDS: u64 = 7200;
pub(crate) const DEFAULT_SECONDS: u64 = 600;
/// What the tag covers besides the payload: a secret signed for another purpose with the same
/// key (a JWT, if an operator reused `RELAY_JWT_SECRET`) is never a valid client secret.
const DOMAIN: &[u8] = b"rcs1.";

/// Which credential minted the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Holder {
    Token,
    Jwt,
    Address,
}

/// What a client secret says, signed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Grant {
    pub(crate) v: u8,
    /// The minting identity's key (`token:<name>`, `jwt:<sub>`, `ip:<address>`).
    pub(crate) sub: String,
    pub(crate) kind: Holder,
    /// The minting credential's own models, policy and daily budget (billionths of a dollar).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) models: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) usd_budget: Option<u64>,
    /// The one model a session opened with it may use.
    pub(crate) model: String,
    /// Session fields it pins and locks on top of the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) session: Option<Map<String, Value>>,
    /// For a relay token: [`ClientSecrets::fingerprint`] of the token, so a token removed or
    /// changed (and SIGHUP) revokes what it minted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tf: Option<String>,
    pub(crate) iat: u64,
    pub(crate) exp: u64,
    /// Random, so two secrets minted in the same second differ.
    #[serde(default)]
    pub(crate) id: String,
}

/// Why a presented client secret is not accepted; the message goes into the client's refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SecretError {
    /// Not ours: malformed, tampered with, signed with another key, another version.
    #[error("client secret not recognised")]
    NotRecognised,
    #[error("client secret expired")]
    Expired,
}

/// Why a secret could not be minted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MintError {
    #[error("the session fields make the client secret longer than {MAX_LEN} bytes")]
    TooLong,
    #[error("the system's random number generator failed")]
    Random,
    /// The relay token minting it is no longer listed (a reload raced the request).
    #[error("the relay token is no longer listed")]
    Revoked,
}

/// The key client secrets are signed and checked with.
pub(crate) struct ClientSecrets {
    key: hmac::Key,
    /// No `CLIENT_SECRET_KEY`: a random key that dies with the process.
    ephemeral: bool,
}

impl fmt::Debug for ClientSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSecrets")
            .field("key", &"***")
            .field("ephemeral", &self.ephemeral)
            .finish()
    }
}

impl ClientSecrets {
    /// Signing with `CLIENT_SECRET_KEY`.
    pub(crate) fn new(key: &Secret) -> ClientSecrets {
        ClientSecrets {
            key: hmac::Key::new(hmac::HMAC_SHA256, key.expose().as_bytes()),
            ephemeral: false,
        }
    }

    /// Signing with a random key: secrets are accepted by this process only, until it ends.
    pub(crate) fn random() -> Result<ClientSecrets, MintError> {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())
            .map_err(|_| MintError::Random)?;
        Ok(ClientSecrets {
            key,
            ephemeral: true,
        })
    }

    /// `CLIENT_SECRET_KEY` when set, else a random key.
    pub(crate) fn from_key(key: Option<&Secret>) -> Result<ClientSecrets, MintError> {
        key.map_or_else(ClientSecrets::random, |k| Ok(ClientSecrets::new(k)))
    }

    pub(crate) fn is_ephemeral(&self) -> bool {
        self.ephemeral
    }

    /// The secret for `grant`, with a fresh random `id`.
    pub(crate) fn mint(&self, grant: &Grant) -> Result<String, MintError> {
        let mut id = [0u8; 12];
        SystemRandom::new()
            .fill(&mut id)
            .map_err(|_| MintError::Random)?;
        let grant = Grant {
            id: B64.encode(id),
            ..grant.clone()
        };
        let payload = serde_json::to_vec(&grant).map_err(|_| MintError::TooLong)?;
        let value = self.seal(&payload);
        if value.len() > MAX_LEN {
            return Err(MintError::TooLong);
        }
        Ok(value)
    }

    /// `rcs_<payload>.<tag>` for these payload bytes.
    fn seal(&self, payload: &[u8]) -> String {
        let payload = B64.encode(payload);
        let tag = B64.encode(hmac::sign(&self.key, &signed(&payload)));
        format!("{PREFIX}{payload}.{tag}")
    }

    /// The grant of `value` if it is a secret this key signed and it has not expired at
    /// `now_unix` (no leeway: `exp <= now` is expired). The tag is checked in constant time
    /// before the payload is decoded.
    pub(crate) fn verify(&self, value: &str, now_unix: u64) -> Result<Grant, SecretError> {
        if value.len() > MAX_LEN {
            return Err(SecretError::NotRecognised);
        }
        let (payload, tag) = value
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('.'))
            .ok_or(SecretError::NotRecognised)?;
        let tag = B64.decode(tag).map_err(|_| SecretError::NotRecognised)?;
        hmac::verify(&self.key, &signed(payload), &tag).map_err(|_| SecretError::NotRecognised)?;
        let bytes = B64
            .decode(payload)
            .map_err(|_| SecretError::NotRecognised)?;
        let grant: Grant =
            serde_json::from_slice(&bytes).map_err(|_| SecretError::NotRecognised)?;
        if grant.v != VERSION {
            return Err(SecretError::NotRecognised);
        }
        if grant.exp <= now_unix {
            return Err(SecretError::Expired);
        }
        Ok(grant)
    }

    /// What a secret minted with the relay token `token` carries of it: a keyed hash, so the
    /// payload (readable by whoever holds the secret) says nothing about the token.
    pub(crate) fn fingerprint(&self, token: &str) -> String {
        let tag = hmac::sign(&self.key, &[b"token:", token.as_bytes()].concat());
        B64.encode(&tag.as_ref()[..16])
    }

    /// Whether `fingerprint` is [`fingerprint`](Self::fingerprint)`(token)`, in constant time.
    pub(crate) fn fingerprint_matches(&self, fingerprint: &str, token: &str) -> bool {
        Secret::new(self.fingerprint(token)).matches(fingerprint)
    }
}

/// The bytes the tag covers.
fn signed(payload: &str) -> Vec<u8> {
    [DOMAIN, payload.as_bytes()].concat()
}

impl Grant {
    /// A grant of version 1 for `sub` bound to `model`, from `iat` to `exp`; the rest empty.
    pub(crate) fn new(sub: &str, kind: Holder, model: &str, iat: u64, exp: u64) -> Grant {
        Grant {
            v: VERSION,
            sub: sub.to_string(),
            kind,
            models: None,
            policy: None,
            usd_budget: None,
            model: model.to_string(),
            session: None,
            tf: None,
            iat,
            exp,
            id: String::new(),
        }
    }
}

/// For tests and tools, like `mint_jwt`: a client secret signed with `key` as the relay signs
/// it, for `identity` (`token:<name>` with its `token`, `jwt:<sub>` or `ip:<address>`) bound to
/// `model`, issued at `iat` and expiring at `exp` (unix seconds).
pub fn mint_client_secret(
    key: &Secret,
    identity: &str,
    token: Option<&str>,
    model: &str,
    iat: u64,
    exp: u64,
) -> String {
    let secrets = ClientSecrets::new(key);
    let kind = match identity.split_once(':').map(|(k, _)| k) {
        Some("token") => Holder::Token,
        Some("jwt") => Holder::Jwt,
        _ => Holder::Address,
    };
    let mut grant = Grant::new(identity, kind, model, iat, exp);
    grant.tf = token.map(|t| secrets.fingerprint(t));
    grant.id = "test".into();
    let payload = serde_json::to_vec(&grant).unwrap_or_default();
    secrets.seal(&payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;

    fn secrets() -> ClientSecrets {
        ClientSecrets::new(&Secret::new("client-secret-key-for-tests-0123456789"))
    }

    fn grant() -> Grant {
        let mut g = Grant::new("token:alice", Holder::Token, "gpt-realtime", NOW, NOW + 600);
        g.models = Some(vec!["gpt-realtime".into(), "gpt-realtime-mini".into()]);
        g.policy = Some("kiosk".into());
        g.usd_budget = Some(2_000_000_000);
        g.session = json!({"instructions": "Be brief."}).as_object().cloned();
        g.tf = Some(secrets().fingerprint("tok-alice"));
        g
    }

    /// What is minted verifies to the same grant, with a random id that differs each time.
    #[test]
    fn round_trip() {
        let s = secrets();
        let a = s.mint(&grant()).expect("mints");
        let b = s.mint(&grant()).expect("mints");
        assert_ne!(a, b);
        let back = s.verify(&a, NOW).expect("valid");
        assert_eq!(
            back,
            Grant {
                id: back.id.clone(),
                ..grant()
            }
        );
        assert!(!back.id.is_empty());
        assert!(s.fingerprint_matches(back.tf.as_deref().expect("tf"), "tok-alice"));
        assert!(!s.fingerprint_matches(back.tf.as_deref().expect("tf"), "tok-alice2"));
    }

    /// Any change to the payload or the tag, or a missing prefix, is not recognised.
    #[test]
    fn tampered_is_refused() {
        let s = secrets();
        let value = s.mint(&grant()).expect("mints");
        let (payload, tag) = value[PREFIX.len()..].split_once('.').expect("two parts");
        let mut forged: Value =
            serde_json::from_slice(&B64.decode(payload).expect("b64")).expect("json");
        forged["model"] = json!("gpt-realtime-2");
        let forged = format!("{PREFIX}{}.{tag}", B64.encode(forged.to_string()));
        let flipped = {
            let mut t = tag.to_string();
            let c = if t.starts_with('A') { "B" } else { "A" };
            t.replace_range(0..1, c);
            format!("{PREFIX}{payload}.{t}")
        };
        for bad in [
            forged,
            flipped,
            value[PREFIX.len()..].to_string(),
            format!("ek_{}", &value[PREFIX.len()..]),
            format!("{value}x"),
            "rcs_".into(),
            "rcs_.".into(),
            "x".repeat(MAX_LEN + 1),
        ] {
            assert_eq!(
                s.verify(&bad, NOW),
                Err(SecretError::NotRecognised),
                "{bad}"
            );
        }
    }

    /// A secret is valid until the second before `exp`, and expired from `exp` on.
    #[test]
    fn expiry_at_the_exact_second() {
        let s = secrets();
        let value = s.mint(&grant()).expect("mints");
        assert!(s.verify(&value, NOW + 599).is_ok());
        assert_eq!(s.verify(&value, NOW + 600), Err(SecretError::Expired));
        assert_eq!(s.verify(&value, NOW + 7200), Err(SecretError::Expired));
    }

    /// Another key (another instance's random key, a rotated CLIENT_SECRET_KEY) recognises
    /// nothing this one minted.
    #[test]
    fn wrong_key_is_refused() {
        let value = secrets().mint(&grant()).expect("mints");
        let other = ClientSecrets::new(&Secret::new("another-client-secret-key-0123456789"));
        assert_eq!(other.verify(&value, NOW), Err(SecretError::NotRecognised));
        let random = ClientSecrets::random().expect("random key");
        assert!(random.is_ephemeral() && !secrets().is_ephemeral());
        assert_eq!(random.verify(&value, NOW), Err(SecretError::NotRecognised));
        let own = random.mint(&grant()).expect("mints");
        assert!(random.verify(&own, NOW).is_ok());
    }

    /// The value is a relay secret (`rcs_`), never shaped like an OpenAI ephemeral key, and
    /// `Debug` shows no key.
    #[test]
    fn never_an_ek_key() {
        let s = secrets();
        for _ in 0..50 {
            let value = s.mint(&grant()).expect("mints");
            assert!(
                value.starts_with("rcs_") && !value.starts_with("ek_"),
                "{value}"
            );
            assert!(!value.contains("ek_"), "{value}");
        }
        let out = format!("{s:?}");
        assert!(!out.contains("client-secret-key"), "{out}");
    }

    /// A grant too big to fit a header is not minted; the test helper signs as the relay does.
    #[test]
    fn too_long_and_the_helper() {
        let mut big = grant();
        big.session = json!({"instructions": "x".repeat(MAX_LEN)})
            .as_object()
            .cloned();
        assert_eq!(secrets().mint(&big), Err(MintError::TooLong));
        let key = Secret::new("client-secret-key-for-tests-0123456789");
        let value = mint_client_secret(&key, "token:alice", Some("tok-alice"), "m", NOW, NOW + 1);
        let g = secrets().verify(&value, NOW).expect("valid");
        assert_eq!(
            (g.kind, g.model.as_str(), g.exp),
            (Holder::Token, "m", NOW + 1)
        );
        assert!(secrets().fingerprint_matches(g.tf.as_deref().expect("tf"), "tok-alice"));
        assert_eq!(secrets().verify(&value, NOW + 1), Err(SecretError::Expired));
    }
}
