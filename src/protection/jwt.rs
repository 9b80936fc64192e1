//! HS256 JSON Web Tokens (`RELAY_JWT_SECRET`): an app's backend mints a short-lived token per
//! user and the relay checks it, so every user is an identity (`jwt:<sub>`) with optional model
//! restrictions without the relay holding a user list. The [`Authenticator`] calls
//! [`JwtVerifier::verify`] for a credential with two dots; tests mint tokens with [`mint_jwt`]
//! (docs/security.md shows how in Python and Node). Nothing here logs, and no error or `Debug`
//! output contains the secret or a token.
//!
//! The signature is HMAC-SHA256 from `ring` (which rustls already brings); the checks around it
//! are the relay's policy, each written down where it is made. `jsonwebtoken` 10 was measured
//! against this: its `decode` refuses base64 padding that this accepts (a test pins it), reads the
//! wall clock where this takes the caller's `now`, reports an unknown `alg` as a JSON error, and
//! has no `ring` backend (its own would add RustCrypto's RSA, ECDSA and EdDSA, or aws-lc), so the
//! policy here would stay and the file would grow.
//!
//! [`Authenticator`]: super::identity::Authenticator

use std::fmt;

use base64::{
    alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
    Engine as _,
};
use ring::hmac;
use serde_json::{Map, Value};

use super::usage::usd_to_nano;
use crate::secret::Secret;

/// Base64url as JWTs use it: no padding written, padding tolerated when read.
const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Longer tokens are refused before any decoding, so a client cannot make the relay parse
/// megabytes of JSON per connection attempt.
const MAX_JWT_LEN: usize = 8 * 1024;

/// Longest `sub` accepted; it becomes a key in logs and `/stats`.
const MAX_SUB_LEN: usize = 256;

/// HS256 JWT verification (RELAY_JWT_SECRET), with the `aud` and `iss` the relay expects
/// (`RELAY_JWT_AUDIENCE`, `RELAY_JWT_ISSUER`) when set.
pub(crate) struct JwtVerifier {
    key: hmac::Key,
    audience: Option<String>,
    issuer: Option<String>,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtVerifier(HS256, ***)")
    }
}

/// What a valid token says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JwtClaims {
    pub(crate) sub: String,
    pub(crate) exp: u64,
    pub(crate) models: Option<Vec<String>>,
    /// `budget_usd`: the holder's own daily budget in dollars, as billionths (0 = none).
    pub(crate) usd_budget: Option<u64>,
    /// `policy`: the name of the session policy the holder gets.
    pub(crate) policy: Option<String>,
}

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

impl JwtVerifier {
    pub(crate) fn new(secret: &Secret) -> JwtVerifier {
        JwtVerifier {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret.expose().as_bytes()),
            audience: None,
            issuer: None,
        }
    }

    /// From now on, a token's `aud` must name `audience` (when Some).
    pub(crate) fn audience(mut self, audience: Option<String>) -> JwtVerifier {
        self.audience = audience;
        self
    }

    /// From now on, a token's `iss` must be exactly `issuer` (when Some).
    pub(crate) fn issuer(mut self, issuer: Option<String>) -> JwtVerifier {
        self.issuer = issuer;
        self
    }

    /// Verifies `header.payload.signature` (base64url, padding tolerated). The header must say
    /// `alg: HS256` (never `none`, never another algorithm, whatever the token claims) and the
    /// signature is checked in constant time before the payload is even decoded. `sub` (a
    /// non-empty string without whitespace or control characters, at most 256 bytes) and `exp`
    /// (seconds) are required, with no leeway: `exp <= now` is expired. `nbf`, when present, is
    /// honoured. `models`, when present, is an array of strings. With an expected audience, `aud`
    /// must be that string or an array holding it (RFC 7519 §4.1.3); with an expected issuer,
    /// `iss` must be that string; a token without the claim is refused like a wrong one.
    pub(crate) fn verify(&self, token: &str, now_unix: u64) -> Result<JwtClaims, JwtError> {
        if token.len() > MAX_JWT_LEN {
            return Err(JwtError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        check_header(&decode_object(header)?)?;
        let signature = B64.decode(signature).map_err(|_| JwtError::Malformed)?;
        // The signature covers `header.payload` exactly as sent, not a re-encoding.
        let signed = token
            .get(..header.len() + 1 + payload.len())
            .ok_or(JwtError::Malformed)?;
        hmac::verify(&self.key, signed.as_bytes(), &signature).map_err(|_| JwtError::Signature)?;
        let payload = decode_object(payload)?;
        let claims = claims(&payload, now_unix)?;
        if let Some(audience) = &self.audience {
            let named = match payload.get("aud") {
                Some(Value::String(aud)) => aud == audience,
                Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(audience)),
                _ => false,
            };
            if !named {
                return Err(JwtError::Audience);
            }
        }
        if let Some(issuer) = &self.issuer {
            if payload.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
                return Err(JwtError::Issuer);
            }
        }
        Ok(claims)
    }
}

/// Only `alg: HS256`, spelled exactly so. RFC 7515 §4.1.11: extensions we do not understand
/// (`crit`) must make the token invalid.
fn check_header(header: &Map<String, Value>) -> Result<(), JwtError> {
    if header.get("alg").and_then(Value::as_str) != Some("HS256") || header.contains_key("crit") {
        return Err(JwtError::Algorithm);
    }
    Ok(())
}

/// The relay's claims, checked against `now_unix`.
fn claims(claims: &Map<String, Value>, now_unix: u64) -> Result<JwtClaims, JwtError> {
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| valid_sub(s))
        .ok_or(JwtError::MissingClaim("sub"))?;
    let exp = claims
        .get("exp")
        .and_then(numeric_date)
        .ok_or(JwtError::MissingClaim("exp"))?;
    if exp <= now_unix {
        return Err(JwtError::Expired);
    }
    match claims.get("nbf") {
        None | Some(Value::Null) => {}
        Some(nbf) => match numeric_date(nbf) {
            Some(nbf) if nbf <= now_unix => {}
            Some(_) => return Err(JwtError::Expired),
            None => return Err(JwtError::Malformed),
        },
    }
    let models = match claims.get("models") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|m| m.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or(JwtError::Malformed)?,
        ),
        Some(_) => return Err(JwtError::Malformed),
    };
    let usd_budget = match claims.get("budget_usd") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let nano = v
                .as_f64()
                .and_then(usd_to_nano)
                .ok_or(JwtError::Malformed)?;
            (nano > 0).then_some(nano)
        }
    };
    let policy = match claims.get("policy") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) if valid_policy(name) => Some(name.clone()),
        Some(_) => return Err(JwtError::Malformed),
    };
    Ok(JwtClaims {
        sub: sub.to_string(),
        exp,
        models,
        usd_budget,
        policy,
    })
}

/// A policy name: what a tokens-file entry may name too (`tokens::valid_name`).
fn valid_policy(name: &str) -> bool {
    name.len() <= MAX_SUB_LEN && super::tokens::valid_name(name)
}

/// One base64url part holding a JSON object.
fn decode_object(part: &str) -> Result<Map<String, Value>, JwtError> {
    let bytes = B64.decode(part).map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)
}

/// A JWT NumericDate: seconds, possibly fractional (truncated); negative or non-numeric is None.
fn numeric_date(v: &Value) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let f = v.as_f64()?;
    // `as` saturates at u64::MAX, which is as good as "never expires" for a finite huge value.
    (f.is_finite() && f >= 0.0).then_some(f as u64)
}

/// `sub` ends up as `identity=jwt:<sub>` in `key=value` log lines: no whitespace, no control
/// characters, bounded length.
fn valid_sub(sub: &str) -> bool {
    !sub.is_empty()
        && sub.len() <= MAX_SUB_LEN
        && !sub.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// For tests: mint an HS256 token.
pub fn mint_jwt(secret: &Secret, claims: &serde_json::Value) -> String {
    let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = B64.encode(claims.to_string());
    let signed = format!("{header}.{payload}");
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.expose().as_bytes());
    let signature = B64.encode(hmac::sign(&key, signed.as_bytes()));
    format!("{signed}.{signature}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;

    fn secret() -> Secret {
        Secret::new("jwt-test-secret-0123456789")
    }

    fn mint(claims: Value) -> String {
        mint_jwt(&secret(), &claims)
    }

    /// A token with a hand-made header, signed with the test secret.
    fn mint_with_header(header: Value, claims: Value) -> String {
        let signed = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret().expose().as_bytes());
        format!(
            "{signed}.{}",
            B64.encode(hmac::sign(&key, signed.as_bytes()))
        )
    }

    fn verifier() -> JwtVerifier {
        JwtVerifier::new(&secret())
    }

    /// A well-formed token yields its claims; models is optional.
    #[test]
    fn jwt_valid() {
        let claims = verifier()
            .verify(&mint(json!({"sub": "user-1", "exp": NOW + 60})), NOW)
            .expect("valid");
        assert_eq!(
            claims,
            JwtClaims {
                sub: "user-1".into(),
                exp: NOW + 60,
                models: None,
                usd_budget: None,
                policy: None,
            }
        );
    }

    /// `budget_usd` becomes billionths of a dollar (0 = none) and `policy` a name; a budget that
    /// is not an amount, or a policy that is not a name, rejects the token.
    #[test]
    fn jwt_budget_and_policy_claims() {
        let token =
            mint(json!({"sub": "u", "exp": NOW + 60, "budget_usd": 2.5, "policy": "support-bot"}));
        let claims = verifier().verify(&token, NOW).expect("valid");
        assert_eq!(claims.usd_budget, Some(2_500_000_000));
        assert_eq!(claims.policy.as_deref(), Some("support-bot"));
        let zero = mint(json!({"sub": "u", "exp": NOW + 60, "budget_usd": 0}));
        assert_eq!(
            verifier().verify(&zero, NOW).map(|c| c.usd_budget),
            Ok(None)
        );
        for bad in [
            json!({"sub": "u", "exp": NOW + 60, "budget_usd": -1}),
            json!({"sub": "u", "exp": NOW + 60, "budget_usd": "2"}),
            json!({"sub": "u", "exp": NOW + 60, "policy": 3}),
            json!({"sub": "u", "exp": NOW + 60, "policy": "no spaces"}),
        ] {
            assert_eq!(
                verifier().verify(&mint(bad.clone()), NOW),
                Err(JwtError::Malformed),
                "{bad}"
            );
        }
    }

    /// The models claim restricts models; a malformed one rejects the token.
    #[test]
    fn jwt_models_claim() {
        let token = mint(json!({"sub": "u", "exp": NOW + 60, "models": ["gpt-realtime-mini"]}));
        let claims = verifier().verify(&token, NOW).expect("valid");
        assert_eq!(claims.models, Some(vec!["gpt-realtime-mini".to_string()]));

        let bad = mint(json!({"sub": "u", "exp": NOW + 60, "models": ["ok", 3]}));
        assert_eq!(verifier().verify(&bad, NOW), Err(JwtError::Malformed));
        let bad = mint(json!({"sub": "u", "exp": NOW + 60, "models": "gpt-realtime"}));
        assert_eq!(verifier().verify(&bad, NOW), Err(JwtError::Malformed));
    }

    /// exp is enforced with no leeway; nbf in the future is not valid yet.
    #[test]
    fn jwt_expired() {
        let v = verifier();
        assert_eq!(
            v.verify(&mint(json!({"sub": "u", "exp": NOW})), NOW),
            Err(JwtError::Expired)
        );
        assert_eq!(
            v.verify(&mint(json!({"sub": "u", "exp": NOW - 1})), NOW),
            Err(JwtError::Expired)
        );
        assert!(v
            .verify(&mint(json!({"sub": "u", "exp": NOW + 1})), NOW)
            .is_ok());
        assert_eq!(
            v.verify(
                &mint(json!({"sub": "u", "exp": NOW + 60, "nbf": NOW + 10})),
                NOW
            ),
            Err(JwtError::Expired)
        );
        assert!(v
            .verify(&mint(json!({"sub": "u", "exp": NOW + 60, "nbf": NOW})), NOW)
            .is_ok());
    }

    /// A token signed with another secret is refused.
    #[test]
    fn jwt_wrong_secret() {
        let token = mint_jwt(
            &Secret::new("some-other-secret"),
            &json!({"sub": "u", "exp": NOW + 60}),
        );
        assert_eq!(verifier().verify(&token, NOW), Err(JwtError::Signature));
    }

    /// alg none (with or without a signature) and other algorithms are refused.
    #[test]
    fn jwt_algorithms() {
        let claims = json!({"sub": "u", "exp": NOW + 60});
        let none = format!(
            "{}.{}.",
            B64.encode(r#"{"alg":"none","typ":"JWT"}"#),
            B64.encode(claims.to_string())
        );
        assert_eq!(verifier().verify(&none, NOW), Err(JwtError::Algorithm));
        let none_signed = mint_with_header(json!({"alg": "none"}), claims.clone());
        assert_eq!(
            verifier().verify(&none_signed, NOW),
            Err(JwtError::Algorithm)
        );
        let hs512 = mint_with_header(json!({"alg": "HS512", "typ": "JWT"}), claims.clone());
        assert_eq!(verifier().verify(&hs512, NOW), Err(JwtError::Algorithm));
        let lower = mint_with_header(json!({"alg": "hs256"}), claims.clone());
        assert_eq!(verifier().verify(&lower, NOW), Err(JwtError::Algorithm));
        let crit = mint_with_header(json!({"alg": "HS256", "crit": ["x"]}), claims.clone());
        assert_eq!(verifier().verify(&crit, NOW), Err(JwtError::Algorithm));
        let no_typ = mint_with_header(json!({"alg": "HS256"}), claims);
        assert!(verifier().verify(&no_typ, NOW).is_ok());
    }

    /// Changing the payload after signing (a longer exp, another sub) breaks the signature.
    #[test]
    fn jwt_tampered_payload() {
        let token = mint(json!({"sub": "user", "exp": NOW + 60}));
        let parts: Vec<&str> = token.split('.').collect();
        let forged = B64.encode(json!({"sub": "admin", "exp": NOW + 60}).to_string());
        let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert_eq!(verifier().verify(&tampered, NOW), Err(JwtError::Signature));
    }

    /// sub (usable string) and exp (number) are required.
    #[test]
    fn jwt_missing_claims() {
        let v = verifier();
        let cases = [
            (json!({"exp": NOW + 60}), "sub"),
            (json!({"sub": "", "exp": NOW + 60}), "sub"),
            (json!({"sub": 42, "exp": NOW + 60}), "sub"),
            (json!({"sub": "a b", "exp": NOW + 60}), "sub"),
            (json!({"sub": "a\nlevel=ERROR", "exp": NOW + 60}), "sub"),
            (json!({"sub": "u"}), "exp"),
            (json!({"sub": "u", "exp": "soon"}), "exp"),
            (json!({"sub": "u", "exp": -5}), "exp"),
        ];
        for (claims, missing) in cases {
            assert_eq!(
                v.verify(&mint(claims.clone()), NOW),
                Err(JwtError::MissingClaim(missing)),
                "{claims}"
            );
        }
        let fractional = mint(json!({"sub": "u", "exp": (NOW + 60) as f64 + 0.5}));
        assert_eq!(v.verify(&fractional, NOW).map(|c| c.exp), Ok(NOW + 60));
    }

    /// With RELAY_JWT_AUDIENCE set, `aud` must name it (a string, or an array holding it); with
    /// RELAY_JWT_ISSUER set, `iss` must equal it; a missing claim is refused like a wrong one,
    /// and neither is looked at when not configured.
    #[test]
    fn jwt_audience_and_issuer() {
        let v = verifier()
            .audience(Some("relay".into()))
            .issuer(Some("https://auth.example.com/".into()));
        let with = |extra: Value| {
            let mut claims = json!({"sub": "u", "exp": NOW + 60});
            for (k, val) in extra.as_object().expect("object") {
                claims[k] = val.clone();
            }
            v.verify(&mint(claims), NOW)
        };
        let iss = "https://auth.example.com/";
        assert!(with(json!({"aud": "relay", "iss": iss})).is_ok());
        assert!(with(json!({"aud": ["other", "relay"], "iss": iss})).is_ok());
        for aud in [
            json!("other"),
            json!(["other"]),
            json!([]),
            json!(null),
            json!(5),
        ] {
            assert_eq!(
                with(json!({"aud": aud, "iss": iss})),
                Err(JwtError::Audience),
                "{aud}"
            );
        }
        assert_eq!(with(json!({"iss": iss})), Err(JwtError::Audience));
        assert_eq!(
            with(json!({"aud": "relay", "iss": "https://evil.example.com/"})),
            Err(JwtError::Issuer)
        );
        assert_eq!(with(json!({"aud": "relay"})), Err(JwtError::Issuer));
        assert_eq!(
            with(json!({"aud": "relay", "iss": ["https://auth.example.com/"]})),
            Err(JwtError::Issuer)
        );
        // Expiry is still checked first; without expectations aud and iss are ignored.
        assert_eq!(
            v.verify(
                &mint(json!({"sub": "u", "exp": NOW - 1, "aud": "relay", "iss": iss})),
                NOW
            ),
            Err(JwtError::Expired)
        );
        assert!(verifier()
            .verify(
                &mint(json!({"sub": "u", "exp": NOW + 60, "aud": "x", "iss": "y"})),
                NOW
            )
            .is_ok());
    }

    /// Garbage in any part is malformed, never a panic; padding is tolerated.
    #[test]
    fn jwt_malformed_and_padding() {
        let v = verifier();
        for bad in ["", "a", "a.b", "a.b.c.d", "!!.!!.!!", "e30.e30.e30"] {
            assert!(v.verify(bad, NOW).is_err(), "{bad}");
        }
        assert_eq!(v.verify("a.b.c.d", NOW), Err(JwtError::Malformed));
        assert_eq!(
            v.verify(&"a".repeat(MAX_JWT_LEN + 1), NOW),
            Err(JwtError::Malformed)
        );
        // An issuer that pads signs the padded text; the signature segment may be padded too.
        let pad = |p: &str| format!("{p}{}", "=".repeat((4 - p.len() % 4) % 4));
        let claims = json!({"sub": "u", "exp": NOW + 60});
        let signed = format!(
            "{}.{}",
            pad(&B64.encode(r#"{"alg":"HS256"}"#)),
            pad(&B64.encode(claims.to_string()))
        );
        assert!(signed.contains('='), "test input must actually be padded");
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret().expose().as_bytes());
        let sig = pad(&B64.encode(hmac::sign(&key, signed.as_bytes())));
        assert!(sig.ends_with('='));
        assert!(v.verify(&format!("{signed}.{sig}"), NOW).is_ok());
        // Padding added after signing changes the signed text.
        let token = mint(claims);
        let parts: Vec<&str> = token.split('.').collect();
        let repadded = format!("{}.{}.{}", pad(parts[0]), pad(parts[1]), parts[2]);
        assert_ne!(repadded, token);
        assert_eq!(v.verify(&repadded, NOW), Err(JwtError::Signature));
        // A payload that is valid JSON but not an object, correctly signed.
        let array = mint_with_header(json!({"alg": "HS256"}), json!(["sub", "exp"]));
        assert_eq!(v.verify(&array, NOW), Err(JwtError::Malformed));
    }
}
